// safetensors checked against an independent implementation: a Python writer/reader built on
// json + struct + torch (tests/io/safetensors_reference.py). Python writes, Loom reads; Loom
// writes, Python reads; both compare with the same reference values.
#include <gtest/gtest.h>

#include "io_testing.h"
#include "loom/io/safetensors.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io_testing;

namespace {

// Runs the reference script in `mode` on `file`.
int run_reference(const std::string& mode, const fs::path& file, std::string& out) {
  return run_python("safetensors_reference.py", mode + " '" + file.string() + "'", out);
}

// The values the script uses: value(k) = 0.75 k - 2 (floats), 7 k - 5 (ints), 7 k + 1 (U8).
TensorMap reference() {
  TensorMap out;
  const std::pair<const char*, DType> dtypes[] = {{"F32", DType::f32}, {"F64", DType::f64}, {"BF16", DType::bf16}, {"F16", DType::f16},
                                                  {"I32", DType::i32}, {"I64", DType::i64}, {"U8", DType::u8}};
  for (const auto& [name, d] : dtypes) {
    std::vector<double> v;
    for (int k = 0; k < 6; ++k) v.push_back(is_floating(d) ? 0.75 * k - 2 : d == DType::u8 ? 7 * k + 1 : 7 * k - 5);
    out[std::string("t_") + name] = Tensor::from_vector(v, {2, 3}, d);
  }
  out["scalar"] = Tensor::full({}, -1.5);
  out["empty"] = Tensor::zeros({0, 4}, DType::i64);
  return out;
}

}  // namespace

TEST(TorchCrossCheck, LoomReadsAFileWrittenByPython) {
  if (!python_available()) GTEST_SKIP() << LOOM_PYTHON << " not found";
  TempDir dir;
  std::string out;
  ASSERT_EQ(run_reference("write", dir / "py.safetensors", out), 0) << out;
  Metadata meta;
  TensorMap got = read_safetensors(dir / "py.safetensors", &meta);
  EXPECT_EQ(meta, (Metadata{{"source", "torch"}, {"format", "pt"}}));
  const TensorMap want = reference();
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(got.count(name));
    EXPECT_EQ(got[name].dtype(), t.dtype());
    EXPECT_EQ(got[name].shape(), t.shape());
    EXPECT_EQ(bytes_of(got[name]), bytes_of(t));
  }
}

TEST(TorchCrossCheck, PythonReadsAFileWrittenByLoom) {
  if (!python_available()) GTEST_SKIP() << LOOM_PYTHON << " not found";
  TempDir dir;
  write_safetensors(dir / "loom.safetensors", reference(), {{"source", "torch"}, {"format", "pt"}});
  std::string out;
  EXPECT_EQ(run_reference("check", dir / "loom.safetensors", out), 0) << out;
  EXPECT_NE(out.find("ok 9 tensors"), std::string::npos) << out;
}
