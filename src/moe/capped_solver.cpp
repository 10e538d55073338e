#include "moe/capped_solver.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <deque>
#include <limits>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/vecmath.h"
#include "moe/capped_scaling.h"
#include "moe/routers.h"

namespace ecmoe {

int capped_capacity(int group_tokens, int n_experts, int cap, float capacity_factor) {
  ECMOE_CHECK(int64_t(group_tokens) * cap >= n_experts, "expert_choice_capped: a group of ",
              group_tokens, " tokens with at most ", cap, " experts per token cannot give each of ",
              n_experts, " experts a token (need group_size * cap >= n_experts)");
  const int k = expert_choice_capacity(group_tokens, n_experts, capacity_factor);
  return std::min<int64_t>(k, int64_t(group_tokens) * cap / n_experts);
}

namespace {

// log-sum-exp of v[0..n) in double; scratch receives exp(v - max).
double log_sum_exp(const float* v, int n, float* scratch) {
  float m = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < n; ++j) m = std::max(m, v[j]);
  if (m == -std::numeric_limits<float>::infinity()) return m;
  for (int j = 0; j < n; ++j) scratch[j] = v[j] - m;
  vec_exp(scratch, scratch, n);
  double s = 0;
  for (int j = 0; j < n; ++j) s += scratch[j];
  return double(m) + std::log(s);
}

// capped_scaling.h's Team on one thread: v[0..n) with a scratch row of n floats.
struct SerialTeam {
  const float* v;
  int n;
  float* scratch;
  MaskedLse masked_lse(double w, bool shifted) {
    int clipped = 0;
    for (int j = 0; j < n; ++j) {
      const bool clip = v[j] + w >= 0;
      clipped += clip;
      scratch[j] =
          clip ? -std::numeric_limits<float>::infinity() : (shifted ? float(v[j] + w) : v[j]);
    }
    return {log_sum_exp(scratch, n, scratch), clipped};
  }
  float kth_largest(int kth) {
    std::copy_n(v, n, scratch);
    std::nth_element(scratch, scratch + kth, scratch + n, std::greater<float>());
    return scratch[kth];
  }
};

// One row's or column's scaling on this thread.
double serial_scaling(const float* v, int n, double target, float* scratch) {
  SerialTeam team{v, n, scratch};
  return capped_scaling(team, n, target);
}

}  // namespace

CappedSolution solve_capped_plan(const float* probs, int g, int e, int k,
                                 const CappedSolverConfig& config) {
  const int b = config.max_experts_per_token;
  // Dual potentials in score units: A[i, t] = min(1, exp((S[t, i] + u[i] + c[t]) / lambda)).
  // The box A <= 1 is folded into both projections, which stay exact and closed-form; its
  // Dykstra correction is implicit in the min.
  std::vector<double> u(e, 0.0), c(g, 0.0);
  std::vector<float> scores_t(int64_t(e) * g);  // S^T [e, g]
  for (int t = 0; t < g; ++t)
    for (int i = 0; i < e; ++i) scores_t[int64_t(i) * g + t] = probs[int64_t(t) * e + i];

  const double lambda_final = config.lambda;
  const double lambda_start = config.epsilon_scaling ? std::max(1.0, lambda_final) : lambda_final;
  // Shrink lambda geometrically to its final value over the first half of the sweeps; then
  // polish there. Faster shrinking can stall: at small lambda the dual is nearly non-smooth.
  const int scaling_sweeps = std::max(1, config.max_iterations / 2);
  const double decay = std::pow(lambda_final / lambda_start, 1.0 / scaling_sweeps);

  CappedSolution sol;
  double lambda = lambda_start;
  // Worst relative row error of the current plan (columns hold after every column step).
  auto row_residual = [&]() {
    double worst = 0;
#pragma omp parallel for schedule(static) reduction(max : worst)
    for (int i = 0; i < e; ++i) {
      std::vector<float> v(g), scratch(g);
      for (int t = 0; t < g; ++t) v[t] = float((scores_t[int64_t(i) * g + t] + c[t]) / lambda);
      SerialTeam team{v.data(), g, scratch.data()};
      worst = std::max(worst, std::abs(capped_mass(team, u[i] / lambda).mass - k) / k);
    }
    return worst;
  };
  for (int sweep = 0; sweep < config.max_iterations; ++sweep) {
    if (sweep > 0) lambda = std::max(lambda_final, lambda * decay);
      // Rows: each expert's mass to exactly k, entries at most 1.
#pragma omp parallel for schedule(static)
    for (int i = 0; i < e; ++i) {
      std::vector<float> v(g), scratch(g);
      for (int t = 0; t < g; ++t) v[t] = float((scores_t[int64_t(i) * g + t] + c[t]) / lambda);
      u[i] = lambda * serial_scaling(v.data(), g, k, scratch.data());
    }
    // Columns: each token's mass to at most b, entries at most 1. Most tokens are already under
    // the cap: find them with one vectorised pass, then solve only the others.
    if (b < e) {
      std::vector<float> col(int64_t(g) * e);
      for (int t = 0; t < g; ++t)
        for (int i = 0; i < e; ++i)
          col[int64_t(t) * e + i] =
              std::min(0.f, float((probs[int64_t(t) * e + i] + u[i]) / lambda));
      vec_exp(col.data(), col.data(), int64_t(g) * e);
#pragma omp parallel for schedule(static)
      for (int t = 0; t < g; ++t) {
        double mass = 0;
        for (int i = 0; i < e; ++i) mass += col[int64_t(t) * e + i];
        if (mass <= b) {
          c[t] = 0.0;
          continue;
        }
        std::vector<float> v(e), scratch(e);
        for (int i = 0; i < e; ++i) v[i] = float((probs[int64_t(t) * e + i] + u[i]) / lambda);
        c[t] = lambda * serial_scaling(v.data(), e, b, scratch.data());
      }
    }
    sol.iterations = sweep + 1;
    sol.residual = row_residual();
    if (lambda <= lambda_final && sol.residual < config.tolerance) break;
  }
  sol.log_plan.resize(int64_t(e) * g);
  for (int i = 0; i < e; ++i)
    for (int t = 0; t < g; ++t)
      sol.log_plan[int64_t(i) * g + t] =
          std::min(0.f, float((scores_t[int64_t(i) * g + t] + u[i] + c[t]) / lambda));
  return sol;
}

std::vector<int> capped_pair_order(const std::vector<float>& log_plan, const float* probs, int g,
                                   int e) {
  ECMOE_CHECK(int64_t(e) * g <= std::numeric_limits<int>::max(),
              "expert_choice_capped: a routing group of ", g, " tokens and ", e,
              " experts has more pairs than the rounding indexes (2^31 - 1)");
  // A strict total order: A, then score, then index.
  std::vector<int> pairs(int64_t(e) * g);
  std::iota(pairs.begin(), pairs.end(), 0);
  auto prob = [&](int j) { return probs[int64_t(j % g) * e + j / g]; };
  std::sort(pairs.begin(), pairs.end(), [&](int a, int b2) {
    if (log_plan[a] != log_plan[b2]) return log_plan[a] > log_plan[b2];
    if (prob(a) != prob(b2)) return prob(a) > prob(b2);
    return a < b2;
  });
  return pairs;
}

std::vector<char> capped_assignment(const CappedPairSource& pairs, int g, int e, int k, int b) {
  std::vector<char> taken(int64_t(e) * g, 0);
  auto is_taken = [&](int i, int t) -> char& { return taken[int64_t(i) * g + t]; };
  std::vector<int> expert_fill(e, 0), token_fill(g, 0);
  // Greedy: each pair in order, taken while its expert and its token both have room. Once every
  // expert has k, no later pair can be taken: stop reading.
  const int64_t total = int64_t(e) * g, wanted = int64_t(e) * k;
  int64_t filled = 0;
  for (int64_t pos = 0; pos < total && filled < wanted;) {
    const std::span<const int> chunk = pairs(pos);
    ECMOE_CHECK(!chunk.empty(), "expert_choice_capped: the pair order ended early (internal)");
    for (const int j : chunk) {
      const int i = j / g, t = j % g;
      if (expert_fill[i] < k && token_fill[t] < b) {
        is_taken(i, t) = 1;
        ++expert_fill[i];
        ++token_fill[t];
        if (++filled == wanted) break;
      }
    }
    pos += int64_t(chunk.size());
  }
  // An expert left short means every token it lacks is at its cap. Search (BFS over experts) for
  // a chain: expert i takes full token t from expert j, j takes t' from ..., until some expert
  // can take a token with room. Feasibility (e·k <= b·g) guarantees a chain exists.
  for (int start = 0; start < e; ++start)
    while (expert_fill[start] < k) {
      std::vector<int> parent_expert(e, -1), via_token(e, -1);
      std::vector<char> seen(e, 0);
      std::deque<int> queue{start};
      seen[start] = 1;
      int end_expert = -1, end_token = -1;
      while (!queue.empty() && end_expert < 0) {
        const int i = queue.front();
        queue.pop_front();
        for (int t = 0; t < g && end_expert < 0; ++t) {
          if (is_taken(i, t)) continue;
          if (token_fill[t] < b) {
            end_expert = i, end_token = t;
            break;
          }
          for (int j = 0; j < e; ++j)
            if (!seen[j] && is_taken(j, t)) {
              seen[j] = 1, parent_expert[j] = i, via_token[j] = t;
              queue.push_back(j);
            }
        }
      }
      ECMOE_CHECK(end_expert >= 0, "expert_choice_capped: no feasible assignment (internal)");
      // Apply: end_expert takes end_token; walking back, each parent takes the child's token.
      is_taken(end_expert, end_token) = 1;
      ++token_fill[end_token];
      for (int j = end_expert; j != start; j = parent_expert[j]) {
        const int t = via_token[j], i = parent_expert[j];
        is_taken(j, t) = 0;
        is_taken(i, t) = 1;
      }
      ++expert_fill[start];
    }
  return taken;
}

std::vector<int> capped_plain_top_k(const std::vector<float>& log_plan, int g, int e, int k) {
  std::vector<int> top(int64_t(e) * k), order(g);
  if (k == 0) return top;
  for (int i = 0; i < e; ++i) {
    std::iota(order.begin(), order.end(), 0);
    const float* row = log_plan.data() + int64_t(i) * g;
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), [&](int a, int b2) {
      return row[a] > row[b2] || (row[a] == row[b2] && a < b2);
    });
    std::copy_n(order.begin(), k, top.begin() + int64_t(i) * k);
  }
  return top;
}

CappedSelection capped_selection(const std::vector<char>& taken, const std::vector<int>& top_k,
                                 int g, int e, int k) {
  CappedSelection sel;
  sel.tokens_of_expert.resize(e);
  std::vector<char> in_top(g, 0);
  const bool count = !top_k.empty();
  for (int i = 0; i < e; ++i) {
    if (count)
      for (int j = 0; j < k; ++j) in_top[top_k[int64_t(i) * k + j]] = 1;
    for (int t = 0; t < g; ++t)
      if (taken[int64_t(i) * g + t]) {
        sel.tokens_of_expert[i].push_back(t);
        if (count && !in_top[t]) ++sel.rounding_changes;
      }
    if (count)
      for (int j = 0; j < k; ++j) in_top[top_k[int64_t(i) * k + j]] = 0;
  }
  return sel;
}

CappedSelection round_capped_plan(const std::vector<float>& log_plan, const float* probs, int g,
                                  int e, int k, int b) {
  const std::vector<int> order = capped_pair_order(log_plan, probs, g, e);
  const std::vector<char> taken = capped_assignment(
      [&](int64_t from) { return std::span<const int>(order).subspan(size_t(from)); }, g, e, k, b);
  return capped_selection(taken, capped_plain_top_k(log_plan, g, e, k), g, e, k);
}

}  // namespace ecmoe
