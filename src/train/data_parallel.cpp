#include "train/data_parallel.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "nn/cross_entropy.h"

namespace ecmoe {

namespace {

// Sequences [first, first + count) of `batch` as a batch of their own, with its share of a step
// of `parts` parts and `step_counted` targets.
Batch part_of(const Batch& batch, int first, int count, int64_t step_counted, int parts) {
  const int T = batch.seq_len;
  const int64_t begin = int64_t(first) * T, end = int64_t(first + count) * T;
  Batch out;
  out.batch_size = count;
  out.seq_len = T;
  out.tokens.assign(batch.tokens.begin() + begin, batch.tokens.begin() + end);
  out.targets.assign(batch.targets.begin() + begin, batch.targets.begin() + end);
  if (!batch.valid_len.empty())
    out.valid_len.assign(batch.valid_len.begin() + first, batch.valid_len.begin() + first + count);
  out.share = {batch.share.first_token + begin, step_counted, batch.share.parts * parts};
  return out;
}

int64_t counted_targets(const Batch& batch) {
  return batch.share.step_counted > 0
             ? batch.share.step_counted
             : int64_t(std::count_if(batch.targets.begin(), batch.targets.end(),
                                     [](int32_t t) { return t != nn::kIgnoreIndex; }));
}

}  // namespace

void check_batch_splits(int batch_size, const dist::Comm& comm, const char* what,
                        int micro_batches) {
  ECMOE_CHECK(micro_batches >= 1, "grad_accum must be >= 1, got ", micro_batches);
  if (micro_batches == 1) {
    ECMOE_CHECK(batch_size % comm.size() == 0, what, " (", batch_size,
                " sequences) must be divisible by the number of MPI ranks (", comm.size(),
                "): each rank takes an equal slice");
    return;
  }
  const int64_t parts = int64_t(comm.size()) * micro_batches;
  ECMOE_CHECK(batch_size % parts == 0, what, " (", batch_size, " sequences) must be divisible by ",
              comm.parallel() ? "the MPI ranks times grad_accum (" + std::to_string(comm.size()) +
                                    " x " + std::to_string(micro_batches) + ")"
                              : "grad_accum (" + std::to_string(micro_batches) + ")",
              ": each micro-batch takes an equal part");
}

std::vector<Batch> step_parts(const Batch& step, const dist::Comm& comm, int micro_batches) {
  check_batch_splits(step.batch_size, comm, "the batch size", micro_batches);
  if (!comm.parallel() && micro_batches == 1) return {step};
  const int parts = comm.size() * micro_batches;
  const int each = step.batch_size / parts;
  const int64_t counted = counted_targets(step);
  std::vector<Batch> out;
  out.reserve(size_t(micro_batches));
  for (int i = 0; i < micro_batches; ++i)
    out.push_back(part_of(step, (comm.rank() * micro_batches + i) * each, each, counted, parts));
  return out;
}

Batch slice_batch(const Batch& batch, const dist::Comm& comm) {
  return std::move(step_parts(batch, comm, 1).front());
}

void reduce_gradients(FlatBuffer& grads, const dist::Comm& comm) {
  if (!comm.parallel()) return;
  const auto& specs = grads.table().specs();
  // Replicated tensors lie in runs between the expert shards (one run per MoE layer and one
  // after the last); each run, padding included (zero), is summed over ranks in place. The owner
  // of an expert shard ran its experts on every rank's rows: it already holds their sum.
  for (size_t i = 0; i < specs.size();) {
    if (specs[i].sharded()) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < specs.size() && !specs[end].sharded()) ++end;
    const int64_t begin = specs[i].offset;
    const int64_t n = specs[end - 1].offset + specs[end - 1].numel() - begin;
    comm.allreduce_sum(std::span<float>(grads.data() + begin, size_t(n)));
    i = end;
  }
}

namespace {

// The parts' sums: cross-entropy (mean times count), auxiliary losses, counted, parts.
struct PartSums {
  double lm = 0, load_balance = 0, z_loss = 0, weighted = 0;
  int64_t counted = 0, parts = 0;
};

ForwardResult from_sums(ForwardResult r, const PartSums& s) {
  r.counted = s.counted;
  r.lm_loss = s.counted > 0 ? s.lm / double(s.counted) : 0.0;
  r.aux.load_balance = float(s.load_balance / double(s.parts));
  r.aux.z_loss = float(s.z_loss / double(s.parts));
  r.aux.weighted_total = float(s.weighted / double(s.parts));
  r.loss = r.lm_loss + double(r.aux.weighted_total);
  return r;
}

}  // namespace

ForwardResult combine_parts(std::span<const ForwardResult> parts) {
  ECMOE_CHECK(!parts.empty(), "combine_parts: no parts");
  if (parts.size() == 1) return parts.front();
  PartSums s;
  ForwardResult r = parts.front();
  for (size_t i = 0; i < parts.size(); ++i) {
    const ForwardResult& f = parts[i];
    s.lm += f.lm_loss * double(f.counted);
    s.load_balance += f.aux.load_balance;
    s.z_loss += f.aux.z_loss;
    s.weighted += f.aux.weighted_total;
    s.counted += f.counted;
    ++s.parts;
    if (i > 0)
      for (size_t l = 0; l < r.layer_stats.size() && l < f.layer_stats.size(); ++l)
        r.layer_stats[l].merge(f.layer_stats[l]);
  }
  return from_sums(std::move(r), s);
}

ForwardResult reduce_forward_result(const ForwardResult& f, const dist::Comm& comm) {
  if (!comm.parallel()) return f;
  double sums[4] = {f.lm_loss * double(f.counted), f.aux.load_balance, f.aux.z_loss,
                    f.aux.weighted_total};
  comm.allreduce_sum(std::span<double>(sums, 4));
  int64_t counted = f.counted;
  comm.allreduce_sum(std::span<int64_t>(&counted, 1));
  PartSums s{sums[0], sums[1], sums[2], sums[3], counted, comm.size()};
  ForwardResult r = from_sums(f, s);
  for (RoutingStats& stats : r.layer_stats) stats = reduce_routing_stats(stats, comm);
  return r;
}

}  // namespace ecmoe
