#include "moe/capped_solver.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/vecmath.h"
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

// f(w) = sum over j of min(1, exp(v[j] + w)), with the count of clipped entries.
struct CappedMass {
  double mass;
  int clipped;
};
CappedMass capped_mass(const float* v, int n, double w, float* scratch) {
  int clipped = 0;
  for (int j = 0; j < n; ++j) {
    const bool clip = v[j] + w >= 0;
    clipped += clip;
    scratch[j] = clip ? -std::numeric_limits<float>::infinity() : float(v[j] + w);
  }
  const double rest = log_sum_exp(scratch, n, scratch);
  return {clipped + (std::isinf(rest) ? 0.0 : std::exp(rest)), clipped};
}

// The exact KL projection of one row or column onto {sum = target, entries <= 1}: the log-scale
// w with f(w) = target (f as above; 0 < target < n). f is increasing, smooth between the points
// where an entry reaches 1, and equal to m + exp(w) · T while the clipped set is fixed. Keep a
// bracket lo <= root <= hi; from lo, the closed form for lo's clipped set never passes the root
// (it ignores entries that would clip, so it undershoots) and is exact once no new entry clips;
// from hi, a Newton step on the convex piece; bisection if both stall.
double capped_scaling(const float* v, int n, double target, float* scratch) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const double tol = 1e-6 * target;  // the mass is summed from fp32 exponentials
  double lo = std::log(target) - log_sum_exp(v, n, scratch);  // f(lo) <= target
  std::copy_n(v, n, scratch);
  const int kth = std::min(n - 1, int(std::ceil(target)) - 1);
  std::nth_element(scratch, scratch + kth, scratch + n, std::greater<float>());
  double hi = -double(scratch[kth]);  // the kth largest entry reaches 1: f(hi) >= target
  if (hi <= lo) return lo;
  CappedMass at_lo = capped_mass(v, n, lo, scratch), at_hi = capped_mass(v, n, hi, scratch);
  for (int iter = 0; iter < 64; ++iter) {
    if (at_hi.mass - target <= tol) return hi;
    if (target - at_lo.mass <= tol) return lo;
    // Closed form on lo's clipped set (exact when hi clips the same entries).
    for (int j = 0; j < n; ++j) scratch[j] = v[j] + lo >= 0 ? kNegInf : v[j];
    const double rest = log_sum_exp(scratch, n, scratch);
    if (at_lo.clipped < target && !std::isinf(rest)) {
      const double w = std::log(target - at_lo.clipped) - rest;
      if (at_lo.clipped == at_hi.clipped) return w;
      if (w > lo && w < hi) {
        const CappedMass at_w = capped_mass(v, n, w, scratch);
        if (at_w.clipped == at_lo.clipped) return w;  // no new entry clipped: exact
        lo = w, at_lo = at_w;
      }
    }
    // Newton from hi (f convex on its piece, so the step stays at or above the root).
    const double slope = at_hi.mass - at_hi.clipped;
    double w = slope > 0 ? hi - (at_hi.mass - target) / slope : 0.5 * (lo + hi);
    if (!(w > lo && w < hi)) w = 0.5 * (lo + hi);
    const CappedMass at_w = capped_mass(v, n, w, scratch);
    if (at_w.mass < target) {
      lo = w, at_lo = at_w;
    } else {
      hi = w, at_hi = at_w;
    }
  }
  return hi;
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
      worst = std::max(
          worst, std::abs(capped_mass(v.data(), g, u[i] / lambda, scratch.data()).mass - k) / k);
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
      u[i] = lambda * capped_scaling(v.data(), g, k, scratch.data());
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
        c[t] = lambda * capped_scaling(v.data(), e, b, scratch.data());
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

CappedSelection round_capped_plan(const std::vector<float>& log_plan, const float* probs, int g,
                                  int e, int k, int b) {
  // Greedy over all (expert, token) pairs by A, then score, then index: a strict total order.
  std::vector<int64_t> pairs(int64_t(e) * g);
  std::iota(pairs.begin(), pairs.end(), 0);
  auto prob = [&](int64_t j) { return probs[(j % g) * e + j / g]; };
  std::sort(pairs.begin(), pairs.end(), [&](int64_t a, int64_t b2) {
    if (log_plan[a] != log_plan[b2]) return log_plan[a] > log_plan[b2];
    if (prob(a) != prob(b2)) return prob(a) > prob(b2);
    return a < b2;
  });
  std::vector<std::vector<char>> taken(e, std::vector<char>(g, 0));
  std::vector<int> expert_fill(e, 0), token_fill(g, 0);
  for (int64_t j : pairs) {
    const int i = int(j / g), t = int(j % g);
    if (expert_fill[i] < k && token_fill[t] < b) {
      taken[i][t] = 1;
      ++expert_fill[i];
      ++token_fill[t];
    }
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
          if (taken[i][t]) continue;
          if (token_fill[t] < b) {
            end_expert = i, end_token = t;
            break;
          }
          for (int j = 0; j < e; ++j)
            if (!seen[j] && taken[j][t]) {
              seen[j] = 1, parent_expert[j] = i, via_token[j] = t;
              queue.push_back(j);
            }
        }
      }
      ECMOE_CHECK(end_expert >= 0, "expert_choice_capped: no feasible assignment (internal)");
      // Apply: end_expert takes end_token; walking back, each parent takes the child's token.
      taken[end_expert][end_token] = 1;
      ++token_fill[end_token];
      for (int j = end_expert; j != start; j = parent_expert[j]) {
        const int t = via_token[j], i = parent_expert[j];
        taken[j][t] = 0;
        taken[i][t] = 1;
      }
      ++expert_fill[start];
    }

  CappedSelection sel;
  sel.tokens_of_expert.resize(e);
  for (int i = 0; i < e; ++i) {
    // The plain top-k of A for this expert, to count what rounding changed.
    std::vector<int> order(g);
    std::iota(order.begin(), order.end(), 0);
    const float* row = log_plan.data() + int64_t(i) * g;
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), [&](int a, int b2) {
      return row[a] > row[b2] || (row[a] == row[b2] && a < b2);
    });
    std::vector<char> in_top(g, 0);
    for (int j = 0; j < k; ++j) in_top[order[j]] = 1;
    for (int t = 0; t < g; ++t)
      if (taken[i][t]) {
        sel.tokens_of_expert[i].push_back(t);
        if (!in_top[t]) ++sel.rounding_changes;
      }
  }
  return sel;
}

}  // namespace ecmoe
