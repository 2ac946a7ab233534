// File helpers shared by the weight readers and writers: all-or-nothing file writes
// (`path.tmp.<pid>` then rename, so a failed write never touches a good file), whole-file
// reads and copy-on-write maps, and strict JSON parsing (duplicate keys rejected) with messages that name the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "loom/core/storage.h"

namespace loom::io {

// `path` with ".tmp.<pid>" appended: the name a file or directory is built under.
std::filesystem::path temp_path_for(const std::filesystem::path& path);

// Writes go to temp_path_for(path); commit() flushes, fsyncs and renames over `path`.
// Destroyed without commit() (an exception on the way), the temporary is removed.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();
  void write(const void* data, size_t nbytes);
  void write(std::string_view text) { write(text.data(), text.size()); }
  void commit();

 private:
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
};

// The whole of `path` mapped private and writable (copy-on-write: writes never reach the file),
// unmapped with the last tensor over it. Errors start with `what`; a file shorter than min_bytes
// (at least 1) is one, naming `header` ("8-byte header size").
std::shared_ptr<Storage> map_file(const std::filesystem::path& path, std::string_view what, size_t min_bytes, std::string_view header);

std::string read_text_file(const std::filesystem::path& path);
// Parses `text`; throws naming `where` on a syntax error or a key repeated within one object.
// Json is nlohmann::json (keys sorted) or nlohmann::ordered_json (keys in the text's order).
template <class Json = nlohmann::json>
Json parse_json(std::string_view text, const std::string& where);
extern template nlohmann::json parse_json(std::string_view, const std::string&);
extern template nlohmann::ordered_json parse_json(std::string_view, const std::string&);
// Calls fn(value, line number) for each non-blank line of a JSON Lines file, its objects' keys
// in the line's order. A line that is not JSON, or that fn rejects (a loom::Error or a JSON type
// error), fails with one message naming `what`, the file and the line.
void for_each_json_line(const std::filesystem::path& file, const std::string& what,
                        const std::function<void(const nlohmann::ordered_json&, int64_t)>& fn);
// The string field "text" of a JSON object (a document of a JSON Lines corpus); throws otherwise.
std::string text_field(const nlohmann::ordered_json& j);

}  // namespace loom::io
