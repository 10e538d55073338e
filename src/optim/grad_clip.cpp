// Gradient norm with a thread-count-invariant reduction order, and the clipping scale.
#include "optim/grad_clip.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ecmoe {

namespace {

constexpr int64_t kChunkFloats = 1 << 14;
constexpr int kLanes = 8;  // independent accumulators: lets the compiler vectorise a fixed order

double chunk_sum_of_squares(const float* x, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += double(x[i + l]) * double(x[i + l]);
  }
  for (; i < n; ++i) acc[0] += double(x[i]) * double(x[i]);
  double sum = 0.0;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  return sum;
}

}  // namespace

float grad_norm(const FlatBuffer& grads) {
  const float* g = grads.data();
  const int64_t n = grads.size();
  const int64_t n_chunks = (n + kChunkFloats - 1) / kChunkFloats;
  std::vector<double> partial(size_t(n_chunks), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t begin = c * kChunkFloats;
    partial[size_t(c)] = chunk_sum_of_squares(g + begin, std::min(kChunkFloats, n - begin));
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return float(std::sqrt(total));
}

float clip_grad_norm(FlatBuffer& grads, float max_norm) {
  const float norm = grad_norm(grads);
  if (max_norm <= 0.f || !std::isfinite(norm)) return norm;
  const double coef = double(max_norm) / (double(norm) + 1e-6);
  if (coef >= 1.0) return norm;
  const float scale = float(coef);
  float* g = grads.data();
  const int64_t n = grads.size();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) g[i] *= scale;
  return norm;
}

}  // namespace ecmoe
