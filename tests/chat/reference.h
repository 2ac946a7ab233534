// Shared by the chat-template tests: cases rendered by Loom and by the reference (Python's jinja2
// set up as transformers sets it up, tests/chat/render_reference.py, run as one subprocess per
// batch), compared byte for byte. When the reference fails, Loom must fail too; when the failure
// is the template's own raise_exception, Loom's message must carry the template's.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loom/chat/template.h"
#include "loom/core/error.h"

namespace loom::chat::testing {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

// A template rendered with `context` as its variables.
inline Json render_case(const std::string& tmpl, Json context) { return {{"template", tmpl}, {"context", std::move(context)}}; }

// A template applied to a conversation as apply_chat_template(tokenize=False) does.
inline Json chat_case(const std::string& tmpl, Json messages, bool add_generation_prompt, const std::string& bos,
                      const std::string& eos, Json extra = Json::object()) {
  return {{"template", tmpl},
          {"chat",
           {{"messages", std::move(messages)},
            {"add_generation_prompt", add_generation_prompt},
            {"bos_token", bos},
            {"eos_token", eos},
            {"extra", std::move(extra)}}}};
}

// Why the reference cannot run here, or "" when it can.
inline std::string reference_missing() {
  const std::string cmd = std::string("'") + LOOM_PYTHON + "' -c 'import jinja2.sandbox' > /dev/null 2>&1";
  return std::system(cmd.c_str()) == 0 ? "" : std::string(LOOM_PYTHON) + " has no jinja2 (Debian: python3-jinja2)";
}

// The reference's answer for each case: {"output": ...} or {"error": ...}.
inline std::vector<Json> reference(const std::vector<Json>& cases) {
  const fs::path dir = fs::temp_directory_path() / ("loom_chat_" + std::to_string(getpid()) + "_" + std::to_string(std::time(nullptr)));
  fs::create_directories(dir);
  std::ofstream(dir / "cases.json") << Json(cases).dump();
  const std::string cmd = std::string("'") + LOOM_PYTHON + "' '" + LOOM_SOURCE_DIR + "/tests/chat/render_reference.py' < '" +
                          (dir / "cases.json").string() + "' > '" + (dir / "out.json").string() + "' 2> '" +
                          (dir / "err.txt").string() + "'";
  const int rc = std::system(cmd.c_str());
  std::ifstream out(dir / "out.json"), err(dir / "err.txt");
  const std::string text(std::istreambuf_iterator<char>(out), {}), errors(std::istreambuf_iterator<char>(err), {});
  fs::remove_all(dir);
  if (rc != 0) ADD_FAILURE() << "the reference failed: " << cmd << "\n" << errors;
  return rc == 0 ? Json::parse(text).get<std::vector<Json>>() : std::vector<Json>(cases.size());
}

// Loom's render of a case: {"output": ...} or {"error": ...}.
inline Json loom_render(const Json& c) {
  try {
    if (!c.contains("chat")) return {{"output", Template(c["template"].get<std::string>()).render(c["context"])}};
    const Json& chat = c["chat"];
    return {{"output", apply_chat_template(c["template"], chat["messages"], chat["add_generation_prompt"].get<bool>(),
                                           chat["bos_token"], chat["eos_token"], chat["extra"])}};
  } catch (const Error& e) {
    return {{"error", e.what()}};
  }
}

// Renders every case with Loom and the reference and expects the same bytes (or both to fail);
// returns how many matched.
inline size_t expect_same_as_reference(const std::vector<Json>& cases, const std::vector<std::string>& names = {}) {
  const std::vector<Json> ref = reference(cases);
  size_t matched = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i < names.size() ? names[i] : "template: " + cases[i]["template"].get<std::string>());
    const Json got = loom_render(cases[i]);
    if (ref[i].contains("output")) {
      if (!got.contains("output")) {
        ADD_FAILURE() << "Loom failed: " << got["error"].get<std::string>() << "\nthe reference renders: "
                      << Json(ref[i]["output"]).dump();
        continue;
      }
      EXPECT_EQ(Json(got["output"]).dump(), Json(ref[i]["output"]).dump());
      matched += got["output"] == ref[i]["output"];
    } else if (ref[i].contains("error")) {
      const std::string ref_error = ref[i]["error"];
      if (!got.contains("error")) {
        ADD_FAILURE() << "Loom renders " << Json(got["output"]).dump() << "\nbut the reference fails: " << ref_error;
        continue;
      }
      const std::string prefix = "TemplateError: ";  // the template's own raise_exception
      if (ref_error.starts_with(prefix)) {
        EXPECT_NE(got["error"].get<std::string>().find(ref_error.substr(prefix.size())), std::string::npos)
            << "Loom's error: " << got["error"].get<std::string>() << "\nthe reference's: " << ref_error;
      }
      ++matched;
    }
  }
  return matched;
}

}  // namespace loom::chat::testing
