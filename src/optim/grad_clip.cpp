// Gradient norm with a thread-count-invariant reduction order, and the clipping scale.
#include "optim/grad_clip.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.h"

namespace ecmoe {

namespace {

constexpr int64_t kChunkFloats = kGradNormChunk;
constexpr int kLanes = kGradNormLanes;  // independent accumulators: lets the compiler vectorise

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

// Sum of squares of g[0, n) in fixed chunks, added in chunk order.
double sum_of_squares(const float* g, int64_t n) {
  const int64_t n_chunks = (n + kChunkFloats - 1) / kChunkFloats;
  std::vector<double> partial(size_t(n_chunks), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t begin = c * kChunkFloats;
    partial[size_t(c)] = chunk_sum_of_squares(g + begin, std::min(kChunkFloats, n - begin));
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

// The squared L2 norm of one buffer's gradients (shards summed over ranks).
double grad_sum_of_squares(const FlatBuffer& grads, const dist::Comm* comm) {
  if (!grads.table().has_shards()) return sum_of_squares(grads.data(), grads.size());
  ECMOE_CHECK(comm != nullptr, "grad_norm: a table with expert shards needs the communicator");
  double replicated = 0.0, sharded = 0.0;
  for (const TensorSpec& spec : grads.table().specs())
    (spec.sharded() ? sharded : replicated) +=
        sum_of_squares(grads.data() + spec.offset, spec.numel());
  comm->allreduce_sum(std::span<double>(&sharded, 1));
  return replicated + sharded;
}

float grad_norm(const FlatBuffer& grads, const dist::Comm* comm) {
  return float(std::sqrt(grad_sum_of_squares(grads, comm)));
}

float clip_grad_norm(std::span<FlatBuffer* const> buffers, float max_norm, const dist::Comm* comm) {
  double squares = 0.0;
  for (const FlatBuffer* g : buffers) squares += grad_sum_of_squares(*g, comm);
  const float norm = float(std::sqrt(squares));
  const float scale = clip_scale(norm, max_norm);
  for (FlatBuffer* buffer : buffers) scale_grads(*buffer, scale);
  return norm;
}

float clip_scale(float norm, float max_norm) {
  if (max_norm <= 0.f || !std::isfinite(norm)) return 1.f;
  const double coef = double(max_norm) / (double(norm) + 1e-6);
  return coef < 1.0 ? float(coef) : 1.f;
}

void scale_grads(FlatBuffer& grads, float scale) {
  if (scale == 1.f) return;  // g·1 = g
  float* g = grads.data();
  const int64_t n = grads.size();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) g[i] *= scale;
}

float clip_grad_norm(FlatBuffer& grads, float max_norm, const dist::Comm* comm) {
  FlatBuffer* const one[] = {&grads};
  return clip_grad_norm(one, max_norm, comm);
}

}  // namespace ecmoe
