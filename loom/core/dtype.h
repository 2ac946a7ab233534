// Element types, their sizes and names, and the fp32 <-> bf16/f16 conversions.
// Half types are storage formats: ops compute in f32 and round once on output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <immintrin.h>

#include "loom/core/error.h"

namespace loom {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16; }
inline bool is_half(DType t) { return t == DType::bf16 || t == DType::f16; }

// 16-bit storage types; distinct structs so templates can dispatch on them.
struct bf16 { uint16_t bits; };
struct f16 { uint16_t bits; };

inline float bf16_to_f32(bf16 h) {
  uint32_t u = uint32_t(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even; NaN stays NaN (quiet bit forced so truncation cannot make it Inf).
inline bf16 f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}
// F16C instructions (part of x86-64-v3), round to nearest even: bit for bit what GCC's _Float16
// conversions give, and clang 14 (the fuzz build) has no _Float16 on x86.
inline float f16_to_f32(f16 h) { return _cvtsh_ss(h.bits); }
inline f16 f32_to_f16(float f) { return f16{uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT))}; }

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<f16>() { return DType::f16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

// Calls f(T{}) with T the C++ type of t. The *_float variant accepts f32/f64 only.
template <typename F> decltype(auto) dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(bf16{});
    case DType::f16: return f(f16{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
  }
  throw Error("dispatch: bad dtype");
}
// Numeric types with native arithmetic (everything but the half storage types).
template <typename F> decltype(auto) dispatch_numeric(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
    default: throw Error(fmt::format("{}: dtype {} is not supported here", op, dtype_name(t)));
  }
}
template <typename F> decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default: throw Error(fmt::format("{}: expected a f32 or f64 tensor, got {}", op, dtype_name(t)));
  }
}

}  // namespace loom
