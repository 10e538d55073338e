#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <span>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/device_math.cuh"
#include "cuda/device_reduce.cuh"
#include "cuda/launch.cuh"
#include "cuda/route_expert_choice.h"
#include "cuda/route_expert_choice_capped.h"
#include "moe/capped_scaling.h"
#include "moe/capped_solver.h"
#include "moe/routing_groups.h"

namespace ecmoe::cuda {

namespace {

constexpr int kRowThreads = 512;  // at most; a group's size rounded up to a warp when smaller
int capped_row_threads(int group_size) {
  return std::clamp((group_size + 31) / 32 * 32, 32, kRowThreads);
}
constexpr int kColumnWarps = 8;

// capped_scaling.h's masked_lse over a team's values: a double sum of float exponentials, as
// capped_solver.cpp's, each reduction a fixed tree.
template <class Team>
__device__ __forceinline__ MaskedLse team_masked_lse(Team& team, double w, bool shifted) {
  const float* v = team.v;
  const int n = team.n;
  float m = -INFINITY;
  int clipped = 0;
  for (int j = team.rank(); j < n; j += team.size()) {
    if (double(v[j]) + w >= 0) {
      ++clipped;
    } else {
      m = fmaxf(m, shifted ? float(double(v[j]) + w) : v[j]);
    }
  }
  m = team.max(m);
  clipped = team.count(clipped);
  if (m == -INFINITY) return {-INFINITY, clipped};
  double s = 0;
  for (int j = team.rank(); j < n; j += team.size())
    if (double(v[j]) + w < 0) s += double(expf((shifted ? float(double(v[j]) + w) : v[j]) - m));
  s = team.sum(s);
  return {double(m) + log(s), clipped};
}

// A team of threads that reduce together: a block (a row of the plan: an expert over its group's
// tokens) or a warp (a column: a token over the experts). Every thread of the team calls each
// reduction and gets the same bits back, so the root find below branches alike in all of them.
struct BlockTeam {
  const float* v;  // the row
  int n;
  double* dshared;  // 32 each
  float* fshared;
  int* ishared;
  int* hist;  // 256
  unsigned* prefix_out;
  int* remaining_out;
  __device__ int rank() const { return int(threadIdx.x); }
  __device__ int size() const { return int(blockDim.x); }
  __device__ double sum(double x) { return block_sum(x, dshared); }
  __device__ int count(int x) { return block_sum(x, ishared); }
  __device__ float max(float x) { return block_max(x, fshared); }
  __device__ MaskedLse masked_lse(double w, bool shifted) {
    return team_masked_lse(*this, w, shifted);
  }
  // The (kth + 1)-th largest of v[0..n): a radix select over the order keys, 8 bits at a time.
  __device__ float kth_largest(int kth) {
    unsigned prefix = 0, mask = 0;
    int remaining = kth + 1;
    for (int shift = 24; shift >= 0; shift -= 8) {
      __syncthreads();
      for (int b = rank(); b < 256; b += size()) hist[b] = 0;
      __syncthreads();
      for (int j = rank(); j < n; j += size()) {
        const unsigned key = order_key(v[j]);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
      }
      __syncthreads();
      if (rank() == 0) {
        int above = 0, b = 255;
        for (; b > 0; --b) {
          if (above + hist[b] >= remaining) break;
          above += hist[b];
        }
        *prefix_out = prefix | (unsigned(b) << shift);
        *remaining_out = remaining - above;
      }
      __syncthreads();
      prefix = *prefix_out;
      remaining = *remaining_out;
      mask |= 255u << shift;
    }
    return key_to_float(prefix);
  }
};

struct WarpTeam {
  const float* v;  // the column
  int n;
  __device__ int rank() const { return int(threadIdx.x % 32); }
  __device__ int size() const { return 32; }
  __device__ double sum(double x) { return warp_sum(x); }
  __device__ int count(int x) { return warp_sum(x); }
  __device__ float max(float x) { return warp_max(x); }
  __device__ MaskedLse masked_lse(double w, bool shifted) {
    return team_masked_lse(*this, w, shifted);
  }
  // The (kth + 1)-th largest of v[0..n) (n is an expert count: small): the value with at most
  // kth values above it and more than kth at or above it.
  __device__ float kth_largest(int kth) {
    float found = -INFINITY;
    for (int j = rank(); j < n; j += 32) {
      int greater = 0, not_less = 0;
      for (int q = 0; q < n; ++q) {
        greater += v[q] > v[j];
        not_less += v[q] >= v[j];
      }
      if (greater <= kth && kth < not_less) found = v[j];
    }
    return warp_max(found);
  }
};

struct Groups {
  int n, group_size, k_full, k_last;
  __device__ int begin(int g) const { return g * group_size; }
  __device__ int size(int g) const { return min(group_size, n - g * group_size); }
  __device__ int k(int g) const { return g == int(gridDim.x) - 1 ? k_last : k_full; }
};

// A block team over `count` values at `values`, with its shared memory declared in the kernel.
#define ECMOE_BLOCK_TEAM(team, values, count)                                                   \
  __shared__ double team##_d[32];                                                               \
  __shared__ float team##_f[32];                                                                \
  __shared__ int team##_i[32];                                                                  \
  __shared__ int team##_hist[256];                                                              \
  __shared__ unsigned team##_prefix;                                                            \
  __shared__ int team##_remaining;                                                              \
  BlockTeam team {                                                                              \
    values, count, team##_d, team##_f, team##_i, team##_hist, &team##_prefix, &team##_remaining \
  }

// Row v[t] = float((S[t, i] + c[t]) / lambda) of block (g, i) into rows [e, n]; returns it.
__device__ const float* scaled_row(float* rows, const float* scores_t, const double* c,
                                   const Groups& grp, double lambda) {
  const int g = blockIdx.x, i = blockIdx.y, begin = grp.begin(g), size = grp.size(g);
  float* v = rows + int64_t(i) * grp.n + begin;
  const float* s = scores_t + int64_t(i) * grp.n + begin;
  for (int j = threadIdx.x; j < size; j += blockDim.x)
    v[j] = float((double(s[j]) + c[begin + j]) / lambda);
  __syncthreads();
  return v;
}

// Rows: each expert's mass to exactly k, entries at most 1 (grid: groups x experts).
__global__ void __launch_bounds__(kRowThreads)
    row_kernel(double* u, float* rows, const float* scores_t, const double* c, Groups grp,
               double lambda, const int* done) {
  const int g = blockIdx.x, i = blockIdx.y, e = gridDim.y;
  if (done[g]) return;
  const float* v = scaled_row(rows, scores_t, c, grp, lambda);
  ECMOE_BLOCK_TEAM(team, v, grp.size(g));
  const double w = capped_scaling(team, grp.size(g), grp.k(g));
  if (threadIdx.x == 0) u[int64_t(g) * e + i] = lambda * w;
}

// Columns: each token's mass to at most b, entries at most 1 (a warp per token).
__global__ void __launch_bounds__(kColumnWarps * 32)
    column_kernel(double* c, float* cols, const float* probs, const double* u, int n, int e,
                  int group_size, int b, double lambda, const int* done) {
  const int t = int(blockIdx.x) * kColumnWarps + int(threadIdx.x / 32), lane = threadIdx.x % 32;
  if (t >= n) return;
  const int g = t / group_size;
  if (done[g]) return;
  const float* p = probs + int64_t(t) * e;
  const double* ug = u + int64_t(g) * e;
  double mass = 0;
  for (int i = lane; i < e; i += 32) {
    const float x = float((double(p[i]) + ug[i]) / lambda);
    mass += double(expf(x < 0.f ? x : 0.f));
  }
  mass = warp_sum(mass);
  if (mass <= b) {  // most tokens: under the cap already
    if (lane == 0) c[t] = 0.0;
    return;
  }
  float* v = cols + int64_t(t) * e;
  for (int i = lane; i < e; i += 32) v[i] = float((double(p[i]) + ug[i]) / lambda);
  __syncwarp();
  WarpTeam team{v, e};
  const double w = capped_scaling(team, e, b);
  if (lane == 0) c[t] = lambda * w;
}

// Each row's relative error |row sum - k| / k after the sweep (grid: groups x experts).
__global__ void __launch_bounds__(kRowThreads)
    row_error_kernel(double* row_error, float* rows, const float* scores_t, const double* c,
                     const double* u, Groups grp, double lambda, const int* done) {
  const int g = blockIdx.x, i = blockIdx.y, e = gridDim.y;
  if (done[g]) return;
  const float* v = scaled_row(rows, scores_t, c, grp, lambda);
  ECMOE_BLOCK_TEAM(team, v, grp.size(g));
  const int k = grp.k(g);
  const double mass = capped_mass(team, u[int64_t(g) * e + i] / lambda).mass;
  if (threadIdx.x == 0) row_error[int64_t(g) * e + i] = fabs(mass - k) / k;
}

// The sweep's end for each group still running: its residual and iterations, and whether it is
// done (lambda at its final value, every row within the tolerance).
__global__ void finish_sweep_kernel(double* residual, int* iterations, int* done,
                                    double* lambda_used, const double* row_error, int groups, int e,
                                    int sweep, double lambda, double lambda_final,
                                    double tolerance) {
  const int g = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (g >= groups || done[g]) return;
  double worst = 0;
  for (int i = 0; i < e; ++i) worst = fmax(worst, row_error[int64_t(g) * e + i]);
  residual[g] = worst;
  iterations[g] = sweep + 1;
  lambda_used[g] = lambda;
  if (lambda <= lambda_final && worst < tolerance) done[g] = 1;
}

__global__ void init_kernel(double* u, double* c, double* residual, int* iterations, int* done,
                            double* lambda_used, int n, int groups, int e, double lambda) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < n) c[j] = 0.0;
  if (j < int64_t(groups) * e) u[j] = 0.0;
  if (j < groups) {
    residual[j] = 0.0;
    iterations[j] = 0;
    done[j] = 0;
    lambda_used[j] = lambda;
  }
}

// log A [e, n] = min(0, float((S + u + c) / lambda)) with each group's last lambda (+0, never -0).
__global__ void log_plan_kernel(float* log_plan, const float* scores_t, const double* u,
                                const double* c, const double* lambda_used, int n, int e,
                                int group_size) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= int64_t(n) * e) return;
  const int i = int(j / n), t = int(j % n), g = t / group_size;
  const float x = float((double(scores_t[j]) + u[int64_t(g) * e + i] + c[t]) / lambda_used[g]);
  log_plan[j] = x < 0.f ? x : 0.f;
}

// Each group's pairs j = i · size + t at [begin · e + j), keyed so that an ascending stable sort
// gives the greedy's order: A descending, then the score descending, then j.
__global__ void pair_keys_kernel(uint64_t* keys, int* pairs, const float* log_plan,
                                 const float* probs, int n, int e, int group_size) {
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= int64_t(n) * e) return;
  const int g = int(p / (int64_t(group_size) * e)), begin = g * group_size;
  const int size = min(group_size, n - begin);
  const int j = int(p - int64_t(begin) * e), i = j / size, t = begin + j % size;
  keys[p] = (uint64_t(~order_key(log_plan[int64_t(i) * n + t])) << 32) |
            uint64_t(~order_key(probs[int64_t(t) * e + i]));
  pairs[p] = j;
}

// Gate = score: slot s of expert i (block i) holds token t with gate probs[t, i].
__global__ void gate_kernel(float* slot_gate, const int* slot_token, const int* expert_offsets,
                            const float* probs, int e) {
  const int i = blockIdx.x;
  for (int s = expert_offsets[i] + int(threadIdx.x); s < expert_offsets[i + 1]; s += blockDim.x)
    slot_gate[s] = probs[int64_t(slot_token[s]) * e + i];
}

struct Shape {
  std::vector<GroupRange> groups;
  int k_full = 0, k_last = 0;
  int k(size_t g) const { return g + 1 == groups.size() ? k_last : k_full; }
};
Shape shape_of(int n, const MoeConfig& config, float capacity_factor) {
  Shape s;
  s.groups = routing_groups(n, config.group_size);
  const int e = config.n_experts, b = config.capped.max_experts_per_token;
  for (const GroupRange& g : s.groups) capped_capacity(g.size, e, b, capacity_factor);  // checks
  if (!s.groups.empty()) {
    s.k_full = capped_capacity(s.groups[0].size, e, b, capacity_factor);
    s.k_last = capped_capacity(s.groups.back().size, e, b, capacity_factor);
  }
  return s;
}

// A group's sorted pairs read back from the device a chunk at a time, the first chunk of every
// group fetched together (one wait); each further one twice the last.
class SortedPairs {
 public:
  SortedPairs(const int* device_pairs, const Shape& shape, int e, cudaStream_t stream)
      : device_(device_pairs), groups_(shape.groups), e_(e), stream_(stream) {
    host_.resize(groups_.size());
    for (size_t g = 0; g < groups_.size(); ++g) {
      // Every expert full takes e·k pairs at least; where the cap binds (e·k = b·g) the greedy
      // read 1.7 to 6.4 times that at gpu-small's layer shape on random scores, so the first
      // chunk takes 4 times (1 MB there) and a longer walk one or two more.
      host_[g].resize(size_t(std::min<int64_t>(total(g), 4 * int64_t(e) * shape.k(g) + 1024)));
      copy(g, 0);
    }
    ECMOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  // The group's pairs from `from` on (what is already here, or a new chunk).
  std::span<const int> from(size_t g, int64_t from) {
    std::vector<int>& h = host_[g];
    if (from >= int64_t(h.size())) {
      const int64_t more = std::min<int64_t>(total(g) - int64_t(h.size()), int64_t(h.size()));
      ECMOE_CHECK(more > 0, "expert_choice_capped: the sorted pairs ended early (internal)");
      const size_t at = h.size();
      h.resize(at + size_t(more));
      copy(g, at);
      ECMOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    return std::span<const int>(h).subspan(size_t(from));
  }

 private:
  int64_t total(size_t g) const { return int64_t(groups_[g].size) * e_; }
  // Group g's sorted pairs [at, host size) from the device (group g's begin at its first token's
  // e pairs).
  void copy(size_t g, size_t at) {
    const size_t count = host_[g].size() - at;
    if (count > 0)
      ECMOE_CUDA_CHECK(cudaMemcpyAsync(host_[g].data() + at,
                                       device_ + int64_t(groups_[g].begin) * e_ + int64_t(at),
                                       count * sizeof(int), cudaMemcpyDeviceToHost, stream_));
  }
  const int* device_;
  std::vector<GroupRange> groups_;
  int e_;
  cudaStream_t stream_;
  std::vector<std::vector<int>> host_;
};

}  // namespace

void solve_capped_on_device(CappedScratch& s, const float* probs, int n, const MoeConfig& config,
                            float capacity_factor, cudaStream_t stream) {
  const int e = config.n_experts, b = config.capped.max_experts_per_token;
  const Shape shape = shape_of(n, config, capacity_factor);
  const int G = int(shape.groups.size());
  s.log_plan.resize(size_t(n) * e);
  if (G == 0 || e == 0) return;
  const Groups grp{n, shape.groups[0].size, shape.k_full, shape.k_last};
  s.scores_t.resize(size_t(n) * e);
  s.rows.resize(size_t(n) * e);
  s.cols.resize(size_t(n) * e);
  s.c.resize(size_t(n));
  s.u.resize(size_t(G) * e);
  s.row_error.resize(size_t(G) * e);
  s.residual.resize(size_t(G));
  s.lambda_used.resize(size_t(G));
  s.iterations.resize(size_t(G));
  s.done.resize(size_t(G));
  transpose_scores(s.scores_t.data(), probs, n, e, stream);

  // The CPU's schedule (capped_solver.cpp), in the same double arithmetic on the host.
  const CappedSolverConfig& cfg = config.capped;
  const double lambda_final = cfg.lambda;
  const double lambda_start = cfg.epsilon_scaling ? std::max(1.0, lambda_final) : lambda_final;
  const int scaling_sweeps = std::max(1, cfg.max_iterations / 2);
  const double decay = std::pow(lambda_final / lambda_start, 1.0 / scaling_sweeps);
  const int64_t init_items = std::max<int64_t>(n, int64_t(G) * e);
  launch(init_kernel, blocks_for(init_items, 256), 256, 0, stream, s.u.data(), s.c.data(),
         s.residual.data(), s.iterations.data(), s.done.data(), s.lambda_used.data(), n, G, e,
         lambda_start);
  // Every sweep is queued; a group that has converged skips the rest (each kernel reads its flag),
  // so nothing waits for the device here.
  const int threads = capped_row_threads(grp.group_size);
  double lambda = lambda_start;
  for (int sweep = 0; sweep < cfg.max_iterations; ++sweep) {
    if (sweep > 0) lambda = std::max(lambda_final, lambda * decay);
    launch(row_kernel, dim3(G, e), threads, 0, stream, s.u.data(), s.rows.data(), s.scores_t.data(),
           s.c.data(), grp, lambda, s.done.data());
    if (b < e)
      launch(column_kernel, blocks_for(n, kColumnWarps), kColumnWarps * 32, 0, stream, s.c.data(),
             s.cols.data(), probs, s.u.data(), n, e, grp.group_size, b, lambda, s.done.data());
    launch(row_error_kernel, dim3(G, e), threads, 0, stream, s.row_error.data(), s.rows.data(),
           s.scores_t.data(), s.c.data(), s.u.data(), grp, lambda, s.done.data());
    launch(finish_sweep_kernel, blocks_for(G, 128), 128, 0, stream, s.residual.data(),
           s.iterations.data(), s.done.data(), s.lambda_used.data(), s.row_error.data(), G, e,
           sweep, lambda, lambda_final, double(cfg.tolerance));
  }
  launch(log_plan_kernel, blocks_for(int64_t(n) * e, 256), 256, 0, stream, s.log_plan.data(),
         s.scores_t.data(), s.u.data(), s.c.data(), s.lambda_used.data(), n, e, grp.group_size);
}

RoutingStats round_capped_on_device(DevicePlan& plan, CappedScratch& s, const float* probs, int n,
                                    const MoeConfig& config, float capacity_factor,
                                    bool count_changes, cudaStream_t stream) {
  const int e = config.n_experts, b = config.capped.max_experts_per_token;
  const Shape shape = shape_of(n, config, capacity_factor);
  const int G = int(shape.groups.size());
  if (G == 0 || e == 0) {
    RouteResult none = capped_route_result(n, e, nullptr, shape.groups, {});
    upload_plan(plan, none.plan, stream);
    return none.stats;
  }
  const int group_size = shape.groups[0].size;
  const int64_t P = int64_t(n) * e;
  ECMOE_CHECK(P <= int64_t(INT32_MAX), "expert_choice_capped: ", n, " tokens and ", e,
              " experts are more pairs than the GPU's rounding indexes (2^31 - 1)");

  // The greedy's order: one stable sort of every group's pairs.
  s.keys.resize(size_t(P));
  s.keys_sorted.resize(size_t(P));
  s.pairs.resize(size_t(P));
  s.pairs_sorted.resize(size_t(P));
  launch(pair_keys_kernel, blocks_for(P, 256), 256, 0, stream, s.keys.data(), s.pairs.data(),
         s.log_plan.data(), probs, n, e, group_size);
  // One group: a plain radix sort; several: segmented, a segment per group.
  if (G > 1) {
    std::vector<int> segments(size_t(G) + 1);
    for (int g = 0; g < G; ++g) segments[g] = int(int64_t(shape.groups[g].begin) * e);
    segments[G] = int(P);
    s.segments.upload(std::span<const int>(segments), stream);
  }
  size_t temp_bytes = 0;
  auto sort = [&](void* temp) {
    if (G == 1) {
      ECMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, s.keys.data(),
                                                       s.keys_sorted.data(), s.pairs.data(),
                                                       s.pairs_sorted.data(), P, 0, 64, stream));
    } else {
      ECMOE_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
          temp, temp_bytes, s.keys.data(), s.keys_sorted.data(), s.pairs.data(),
          s.pairs_sorted.data(), P, G, s.segments.data(), s.segments.data() + 1, 0, 64, stream));
    }
  };
  sort(nullptr);
  s.sort_temp.resize(temp_bytes);
  sort(s.sort_temp.data());
  // The plain top-k of A per expert, which the rounding's changes are counted against.
  const int per_expert = (G - 1) * shape.k_full + shape.k_last;
  if (count_changes) {
    s.top_tokens.resize(size_t(e) * per_expert);
    s.top_values.resize(size_t(e) * per_expert);
    s.top_kth.resize(size_t(G) * e);
    select_top_k(s.log_plan.data(), n, e, group_size, G, shape.k_full, shape.k_last, per_expert,
                 s.top_tokens.data(), s.top_values.data(), s.top_kth.data(), stream);
  }
  std::vector<double> residual(static_cast<size_t>(G));
  std::vector<int> iterations(static_cast<size_t>(G)), top;
  ECMOE_CUDA_CHECK(cudaMemcpyAsync(residual.data(), s.residual.data(), G * sizeof(double),
                                   cudaMemcpyDeviceToHost, stream));
  ECMOE_CUDA_CHECK(cudaMemcpyAsync(iterations.data(), s.iterations.data(), G * sizeof(int),
                                   cudaMemcpyDeviceToHost, stream));
  if (count_changes) {
    top.resize(s.top_tokens.size());
    ECMOE_CUDA_CHECK(cudaMemcpyAsync(top.data(), s.top_tokens.data(), top.size() * sizeof(int),
                                     cudaMemcpyDeviceToHost, stream));
  }
  SortedPairs sorted(s.pairs_sorted.data(), shape, e, stream);  // waits for all of the above

  std::vector<CappedGroupRoute> routes(static_cast<size_t>(G));
  std::vector<int> top_k;
  for (int g = 0; g < G; ++g) {
    const int size = shape.groups[g].size, begin = shape.groups[g].begin, k = shape.k(g);
    const std::vector<char> taken = capped_assignment(
        [&](int64_t from) { return sorted.from(size_t(g), from); }, size, e, k, b);
    top_k.clear();
    if (count_changes)
      for (int i = 0; i < e; ++i)
        for (int j = 0; j < k; ++j)
          top_k.push_back(top[size_t(i) * per_expert + size_t(g) * shape.k_full + j] - begin);
    routes[g] = {capped_selection(taken, top_k, size, e, k), residual[g], iterations[g], k};
  }
  // The plan with its gates (the scores) gathered on the device.
  RouteResult routed = capped_route_result(n, e, nullptr, shape.groups, routes);
  upload_plan(plan, routed.plan, stream);
  launch(gate_kernel, e, 256, 0, stream, plan.slot_gate.data(), plan.slot_token.data(),
         plan.expert_offsets.data(), probs, e);
  return routed.stats;
}

RoutingStats route_expert_choice_capped(DevicePlan& plan, CappedScratch& scratch,
                                        const float* probs, int n, const MoeConfig& config,
                                        float capacity_factor, bool count_changes,
                                        cudaStream_t stream) {
  solve_capped_on_device(scratch, probs, n, config, capacity_factor, stream);
  return round_capped_on_device(plan, scratch, probs, n, config, capacity_factor, count_changes,
                                stream);
}

}  // namespace ecmoe::cuda
