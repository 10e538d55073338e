#include "train/data_parallel.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"

namespace ecmoe {

void check_batch_splits(int batch_size, const dist::Comm& comm, const char* what) {
  ECMOE_CHECK(batch_size % comm.size() == 0, what, " (", batch_size,
              " sequences) must be divisible by the number of MPI ranks (", comm.size(),
              "): each rank takes an equal slice");
}

Batch slice_batch(const Batch& batch, const dist::Comm& comm) {
  if (!comm.parallel()) return batch;
  check_batch_splits(batch.batch_size, comm, "the batch size");
  const int b = batch.batch_size / comm.size(), T = batch.seq_len;
  const int64_t first = int64_t(comm.rank()) * b * T, count = int64_t(b) * T;
  Batch out;
  out.batch_size = b;
  out.seq_len = T;
  out.tokens.assign(batch.tokens.begin() + first, batch.tokens.begin() + first + count);
  out.targets.assign(batch.targets.begin() + first, batch.targets.begin() + first + count);
  if (!batch.valid_len.empty())
    out.valid_len.assign(batch.valid_len.begin() + int64_t(comm.rank()) * b,
                         batch.valid_len.begin() + int64_t(comm.rank() + 1) * b);
  return out;
}

void average_gradients(FlatBuffer& grads, const dist::Comm& comm) {
  if (!comm.parallel()) return;
  const float scale = 1.f / float(comm.size());
  const auto& specs = grads.table().specs();
  // Replicated tensors lie in runs between the expert shards (one run per MoE layer and one
  // after the last); each run, padding included (zero), is summed over ranks in place.
  for (size_t i = 0; i < specs.size();) {
    if (specs[i].sharded()) {
      // The owner ran its experts on every rank's rows: it already holds the sum over ranks.
      float* g = grads.data() + specs[i].offset;
      const int64_t n = specs[i].numel();
#pragma omp parallel for schedule(static)
      for (int64_t k = 0; k < n; ++k) g[k] *= scale;
      ++i;
      continue;
    }
    size_t end = i;
    while (end < specs.size() && !specs[end].sharded()) ++end;
    const int64_t begin = specs[i].offset;
    const int64_t n = specs[end - 1].offset + specs[end - 1].numel() - begin;
    float* g = grads.data() + begin;
    comm.allreduce_sum(std::span<float>(g, size_t(n)));
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n; ++k) g[k] *= scale;
    i = end;
  }
}

ForwardResult reduce_forward_result(const ForwardResult& f, const dist::Comm& comm) {
  if (!comm.parallel()) return f;
  ForwardResult r = f;
  double sums[5] = {f.loss, f.lm_loss, f.aux.load_balance, f.aux.z_loss, f.aux.weighted_total};
  comm.allreduce_sum(std::span<double>(sums, 5));
  const double P = comm.size();
  r.loss = sums[0] / P;
  r.lm_loss = sums[1] / P;
  r.aux.load_balance = float(sums[2] / P);
  r.aux.z_loss = float(sums[3] / P);
  r.aux.weighted_total = float(sums[4] / P);
  int64_t counted = f.counted;
  comm.allreduce_sum(std::span<int64_t>(&counted, 1));
  r.counted = counted;
  for (RoutingStats& s : r.layer_stats) s = reduce_routing_stats(s, comm);
  return r;
}

}  // namespace ecmoe
