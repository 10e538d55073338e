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

float grad_norm(const FlatBuffer& grads, const dist::Comm* comm) {
  if (!grads.table().has_shards())
    return float(std::sqrt(sum_of_squares(grads.data(), grads.size())));
  ECMOE_CHECK(comm != nullptr, "grad_norm: a table with expert shards needs the communicator");
  double replicated = 0.0, sharded = 0.0;
  for (const TensorSpec& spec : grads.table().specs())
    (spec.sharded() ? sharded : replicated) +=
        sum_of_squares(grads.data() + spec.offset, spec.numel());
  comm->allreduce_sum(std::span<double>(&sharded, 1));
  return float(std::sqrt(replicated + sharded));
}

float clip_grad_norm(FlatBuffer& grads, float max_norm, const dist::Comm* comm) {
  const float norm = grad_norm(grads, comm);
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
