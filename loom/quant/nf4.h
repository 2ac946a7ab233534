// NF4 with double quantisation, as bitsandbytes stores a QLoRA base weight
// (quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=True)), and the blockwise
// 8-bit quantiser on its dynamic map that the double quantisation uses (quantize_blockwise).
// Codes, quantised absmax and scales equal what bitsandbytes' CUDA kernels write, bit for bit;
// docs/finetuning.md ("QLoRA base: NF4") gives every rounding rule and the two places where
// bitsandbytes itself depends on the machine (the dynamic map's last bits, the offset's).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "loom/core/tensor.h"

namespace loom::quant {

// NF4's 16 values, ascending (bitsandbytes' get_4bit_type("nf4"), as float32).
inline constexpr std::array<float, 16> kNf4Values = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
    -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
inline constexpr int64_t kNf4BlockSize = 64;     // values per absmax
inline constexpr int64_t kNf4StatsBlockSize = 256;  // absmax per scale in the double quantisation

// bitsandbytes' create_dynamic_map(signed, max_exponent_bits, total_bits): 2^total_bits values
// (padded with zeros to 256), ascending, computed in float32 as bitsandbytes computes them with
// torch on the CPU (torch.linspace as PyTorch's AVX2 kernel rounds it).
std::vector<float> create_dynamic_map(bool is_signed = true, int max_exponent_bits = 7, int total_bits = 8);

// The index of the map value nearest x, by the rule of bitsandbytes' kernel (dQuantize): a
// bisection over the odd indices, then the nearer of the neighbours by their float32 midpoint.
// map: 256 ascending values. NaN maps to 0.
uint8_t quantize_dynamic(float x, const float* map);

// Blockwise 8-bit quantisation on the signed dynamic map (bitsandbytes' quantize_blockwise).
struct Blockwise8bit {
  Shape shape;                // of the input
  int64_t blocksize = 4096;
  Tensor codes;               // u8 (numel): indices into the dynamic map
  Tensor absmax;              // f32 (ceil(numel / blocksize)): max |x| of each block
};
// x: f32, bf16 or f16, finite. Each value is quantised as x · (1 / absmax of its block).
Blockwise8bit quantize_blockwise(const Tensor& x, int64_t blocksize = 4096);
// f32 of q.shape: map[code] · absmax.
Tensor dequantize_blockwise(const Blockwise8bit& q);

// A weight in NF4 with double-quantised statistics: what bitsandbytes' Params4bit holds
// (weight, absmax, nested_absmax, offset; quant_map and nested_quant_map are the constants above).
struct Nf4Weight {
  Shape shape;          // of the original weight
  Tensor codes;         // u8 ((numel + 1) / 2): two codes a byte, the first element in the high nibble
  Tensor absmax;        // u8 (ceil(numel / 64)): each block's absmax − offset on the dynamic map
  Tensor absmax_scale;  // f32 (ceil(blocks / 256)): max |absmax − offset| of each 256 blocks
  float offset = 0.0f;  // mean of the blocks' absmax
  int64_t numel() const { return numel_of(shape); }
  size_t nbytes() const;  // memory the four tensors hold
};

// w: f32, bf16 or f16 with memory, finite values (an error names the first that is not).
Nf4Weight quantize_nf4(const Tensor& w);
// Each block's absmax as dequantised: map[absmax] · scale + offset (float32, rounded twice).
std::vector<float> nf4_block_absmax(const Nf4Weight& q);
// f32 of q.shape: kNf4Values[code] · absmax of its block.
Tensor dequantize_nf4(const Nf4Weight& q);

// Rows [offset[0], offset[0] + box[0]) × columns [offset[1], offset[1] + box[1]) of a 2-D NF4
// weight, kept so that it dequantises to exactly those elements of dequantize_nf4(whole): their
// codes and the dequantised absmax of the 64-blocks they lie in (a tensor-parallel rank's part of a
// QLoRA base; the double quantisation's statistics are the whole weight's).
struct Nf4Block {
  Shape whole, offset, box;
  Tensor codes;   // u8 ((box[0]·box[1] + 1) / 2): the box's codes row-major, two a byte, the first in the high nibble
  Tensor absmax;  // f32 (box[0], k): for row i, the dequantised absmax of the 64-block holding its first element and the k - 1 after it
};
Nf4Block nf4_block(const Nf4Weight& q, const Shape& offset, const Shape& box);
// f32 of b.box: kNf4Values[code] · absmax of the whole's block, as dequantize_nf4 gives them.
Tensor dequantize_nf4_block(const Nf4Block& b);

}  // namespace loom::quant
