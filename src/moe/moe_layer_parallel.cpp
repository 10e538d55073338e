// Expert parallelism of the MoE layer: the exchange around the experts. The local plan is laid
// out expert by expert and rank r owns a contiguous block of experts, so the rows for rank r are
// one contiguous run of slots: dispatch is a gather into slot order and one Alltoallv.
//   forward:  x [n, d] -> slot rows [S, d] -> Alltoallv -> received rows [R, d] -> local experts
//             -> [R, d] -> Alltoallv back -> slot outputs [S, d] -> gated combine -> y [n, d]
//   backward: dy -> gated slot gradients [S, d] (and dgate) -> Alltoallv -> expert backward on
//             [R, d] (dW1, dW2 of the owned experts) -> [R, d] -> Alltoallv back -> dx (+=)
// On the owner, expert j's rows come from rank 0, then rank 1, ... in each rank's slot order: the
// order one process uses for the same tokens when its routing groups are the ranks' batches, so
// the expert GEMMs see the same rows in the same order.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.h"
#include "moe/dispatch_combine.h"
#include "moe/moe_layer.h"

namespace ecmoe {

ExpertShard expert_shard(const MoeConfig& config, const dist::Comm* comm) {
  if (comm == nullptr || !comm->parallel() || config.router == RouterKind::kDense) return {};
  ECMOE_CHECK(config.n_experts % comm->size() == 0, "expert parallelism: moe.n_experts (",
              config.n_experts, ") must be divisible by the number of MPI ranks (", comm->size(),
              ")");
  return {comm->rank(), comm->size()};
}

void MoeLayer::set_comm(const dist::Comm* comm) {
  comm_ = expert_shard(config_, comm).split() ? comm : nullptr;
  ECMOE_CHECK(!comm_ || !backend_, "moe: expert parallelism runs on the CPU only");
}

// Every rank routes the all-gathered scores of all ranks' tokens (the same computation, so the
// same plan everywhere) and keeps its own tokens' slots, in the global plan's order. Gates depend
// only on a token's own scores, so the backward pass stays local. Additive statistics describe
// the global route and are carried by rank 0 alone, so that reducing over ranks gives them once.
RouteResult MoeLayer::route_global(const MoeConfig& routing, const RouteRequest& local) {
  const int me = comm_->rank(), n = local.n_tokens, e = config_.n_experts;
  const std::vector<uint64_t> counts = comm_->allgather(uint64_t(n));
  int first = 0;
  for (int r = 0; r < me; ++r) first += int(counts[r]);
  std::vector<float> probs;
  std::vector<int32_t> ids;
  RouteRequest global = local;
  if (local.probs) {
    probs = comm_->allgatherv(std::span<const float>(local.probs, size_t(n) * e));
    global.probs = probs.data();
  }
  if (local.token_ids) {
    ids = comm_->allgatherv(std::span<const int32_t>(local.token_ids, size_t(n)));
    global.token_ids = ids.data();
  }
  global.n_tokens = int(probs.empty() ? ids.size() : probs.size() / e);
  RouteResult all = route_tokens(routing, global);

  const RoutingPlan& plan = all.plan;
  std::vector<Assignment> mine;
  for (int i = 0; i < plan.n_experts; ++i)
    for (int s = plan.expert_offsets[i]; s < plan.expert_offsets[i + 1]; ++s)
      if (plan.slot_token[s] >= first && plan.slot_token[s] < first + n)
        mine.push_back({i, plan.slot_token[s] - first, plan.slot_gate[s]});
  RouteResult r;
  r.plan = make_routing_plan(n, plan.n_experts, plan.gate_kind, mine);
  r.plan.choices_per_token = plan.choices_per_token;
  if (plan.choices_per_token > 0)
    r.plan.token_choices.assign(
        plan.token_choices.begin() + int64_t(first) * plan.choices_per_token,
        plan.token_choices.begin() + int64_t(first + n) * plan.choices_per_token);
  r.stats = me == 0 ? all.stats : all.stats.maxima_only();
  return r;
}

void MoeLayer::experts_forward_parallel(const MoeWeights& w, const float* x, float* y,
                                        const float* residual) {
  const int P = comm_->size(), e = config_.n_experts, el = e / P;
  const int d = config_.d_model, f = config_.d_ff, S = plan_.slot_count();

  FloatVec send(int64_t(S) * d);
  dispatch_forward(send.data(), x, plan_, d);
  std::vector<int> load(e);
  for (int i = 0; i < e; ++i) load[i] = plan_.expert_load(i);
  const std::vector<int> recv_load = comm_->alltoall(load, el);  // [P, el]: rank r, expert j
  send_rows_.assign(P, 0);
  recv_rows_.assign(P, 0);
  for (int r = 0; r < P; ++r)
    for (int j = 0; j < el; ++j) {
      send_rows_[r] += load[r * el + j];
      recv_rows_[r] += recv_load[r * el + j];
    }
  int R = 0;
  for (int r = 0; r < P; ++r) R += recv_rows_[r];
  FloatVec recv(int64_t(R) * d);
  comm_->alltoallv(send.data(), send_rows_, recv.data(), recv_rows_, d);

  // Received rows in rank order, each rank's in expert order; the stable sort by expert of
  // make_routing_plan makes expert j's slots rank 0's rows, then rank 1's, ...
  std::vector<Assignment> rows;
  rows.reserve(R);
  for (int r = 0, row = 0; r < P; ++r)
    for (int j = 0; j < el; ++j)
      for (int k = 0; k < recv_load[r * el + j]; ++k) rows.push_back({j, row++, 1.f});
  local_plan_ = make_routing_plan(R, el, GateKind::kConstant, rows);

  // Gate 1 and one slot per row make the local combine a plain copy (1·o + 0 is exact).
  FloatVec out(int64_t(R) * d);
  experts_forward(out.data(), act_, local_plan_, recv.data(), w.w1, w.w2, d, f, config_.precision);
  slot_out_.resize(int64_t(S) * d);
  comm_->alltoallv(out.data(), recv_rows_, slot_out_.data(), send_rows_, d);

  combine_forward(y, slot_out_.data(), plan_, d, residual);  // as experts_forward combines
}

void MoeLayer::experts_backward_parallel(const MoeWeights& w, MoeGrads& g, const float* dy,
                                         float* dx, float* dgate) {
  const int d = config_.d_model, f = config_.d_ff, S = plan_.slot_count();
  const int R = local_plan_.n_tokens;

  // Adjoint of combine, as in experts_backward: d_out[s] = gate[s]·dy[t], dgate[s] = <dy[t], out>.
  FloatVec d_out(int64_t(S) * d);
  combine_backward(d_out.data(), dgate, dy, slot_out_.data(), plan_, d);
  FloatVec recv(int64_t(R) * d);
  comm_->alltoallv(d_out.data(), send_rows_, recv.data(), recv_rows_, d);

  FloatVec d_rows(int64_t(R) * d, 0.f);
  std::vector<float> unused_dgate(R);
  experts_backward(d_rows.data(), g.w1, g.w2, unused_dgate.data(), scratch_, recv.data(), act_,
                   local_plan_, w.w1, w.w2, d, f, config_.precision);
  FloatVec d_slots(int64_t(S) * d);
  comm_->alltoallv(d_rows.data(), recv_rows_, d_slots.data(), send_rows_, d);

  dispatch_backward(dx, d_slots.data(), plan_, d);  // as experts_backward does
}

}  // namespace ecmoe
