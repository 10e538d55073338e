#include "core/bf16.h"

#include <omp.h>

namespace ecmoe {
namespace {

// Row loop, parallel at the top level only (a call inside a parallel region runs on its thread).
template <typename Body>
void for_rows(int64_t rows, int64_t cols, Body body) {
  if (omp_in_parallel() || rows * cols < (int64_t(1) << 15)) {
    for (int64_t r = 0; r < rows; ++r) body(r);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) body(r);
}

}  // namespace

void convert_to_bf16(uint16_t* out, const float* in, int64_t rows, int64_t cols, int64_t ld_in) {
  for_rows(rows, cols, [&](int64_t r) {
    const float* src = in + r * ld_in;
    uint16_t* dst = out + r * cols;
    for (int64_t c = 0; c < cols; ++c) dst[c] = float_to_bf16(src[c]);
  });
}

void convert_to_bf16(uint16_t* out, const float* in, int64_t n) {
  constexpr int64_t kChunk = 4096;  // rows of a [chunks, kChunk] view, then the tail
  const int64_t full = n / kChunk;
  convert_to_bf16(out, in, full, kChunk, kChunk);
  for (int64_t i = full * kChunk; i < n; ++i) out[i] = float_to_bf16(in[i]);
}

void round_to_bf16(float* out, const float* in, int64_t rows, int64_t cols, int64_t ld_in) {
  for_rows(rows, cols, [&](int64_t r) {
    const float* src = in + r * ld_in;
    float* dst = out + r * cols;
    for (int64_t c = 0; c < cols; ++c) dst[c] = round_to_bf16(src[c]);
  });
}

void bf16_to_float(float* out, const uint16_t* in, int64_t rows, int64_t cols, int64_t ld_in) {
  for_rows(rows, cols, [&](int64_t r) {
    const uint16_t* src = in + r * ld_in;
    float* dst = out + r * cols;
    for (int64_t c = 0; c < cols; ++c) dst[c] = bf16_to_float(src[c]);
  });
}

}  // namespace ecmoe
