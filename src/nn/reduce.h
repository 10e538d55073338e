// Row reductions in a fixed order: 16 independent lanes (one AVX-512 register), combined in a
// fixed tree. The order depends only on the length, never on threads or data, so a row's result
// is reproducible, and the lanes let the compiler vectorise what a plain `sum += x[i]` cannot.
#pragma once
#include <cstdint>

namespace ecmoe::nn::detail {

inline constexpr int kLanes = 16;

inline float combine_lanes(float (&acc)[kLanes]) {
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0];
}

// Σ x[i]
inline float sum(const float* x, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l];
  for (int l = 0; i + l < n; ++l) acc[l] += x[i + l];
  return combine_lanes(acc);
}

// Σ x[i]·y[i]
inline float dot(const float* x, const float* y, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l] * y[i + l];
  for (int l = 0; i + l < n; ++l) acc[l] += x[i + l] * y[i + l];
  return combine_lanes(acc);
}

// Σ (x[i] − c)²
inline float sum_squared_deviation(const float* x, float c, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += (x[i + l] - c) * (x[i + l] - c);
  for (int l = 0; i + l < n; ++l) acc[l] += (x[i + l] - c) * (x[i + l] - c);
  return combine_lanes(acc);
}

// max x[i], n >= 1
inline float max(const float* x, int64_t n) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = acc[l] > x[i + l] ? acc[l] : x[i + l];
  for (int l = 0; i + l < n; ++l) acc[l] = acc[l] > x[i + l] ? acc[l] : x[i + l];
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) acc[l] = acc[l] > acc[l + width] ? acc[l] : acc[l + width];
  return acc[0];
}

// Columns [c0, c0 + kColumnBlock) of a [rows, dim] matrix form one unit of work for reductions
// over rows (bias and gain gradients, embedding scatter-add): one thread owns a block and adds
// the rows in order, so sums never depend on the thread count. 16 floats = one cache line.
inline constexpr int kColumnBlock = 16;
inline int column_blocks(int dim) { return (dim + kColumnBlock - 1) / kColumnBlock; }

}  // namespace ecmoe::nn::detail
