// The whole MoE layer on the GPU (MoeLayer with the CUDA backend) against the same layer on the
// CPU: output, input gradient, every parameter gradient, the auxiliary losses and the routing
// statistics, for every router, in fp32 (1e-5 relative) and bf16 (two bf16 rounding steps); run
// to run bitwise; and the fp32 gradients against central finite differences on the GPU itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor_table.h"
#include "cuda/moe_layer.h"
#include "cuda_test_util.h"
#include "moe/moe_layer.h"

using namespace ecmoe;
using namespace ecmoe::cuda;
using namespace ecmoe::cuda::testing;

namespace {

MoeConfig layer_config(RouterKind router, Precision precision) {
  MoeConfig c;
  c.router = router;
  c.d_model = 24;
  c.d_ff = 40;
  c.n_experts = 4;
  c.group_size = 32;
  c.precision = precision;
  c.capacity_factor_train = router == RouterKind::kTop1 || router == RouterKind::kTop2 ? 1.f : 2.f;
  if (router == RouterKind::kTop1 || router == RouterKind::kTop2) {
    c.load_balance_weight = 0.01f;
    c.z_loss_weight = 0.001f;
  }
  c.jitter = router == RouterKind::kTop1 ? 0.01f : 0.f;  // one router runs with jitter
  c.batch_prioritized = router == RouterKind::kTop1;     // and batch-prioritised
  return c;
}

struct Result {
  std::vector<float> y, dx, grads;
  MoeOutput out;
};

// One forward and backward of `layer` with the params and inputs given (host); on the GPU when
// the layer has the CUDA backend.
Result run(MoeLayer& layer, const TensorTable& table, const std::vector<float>& params,
           const std::vector<float>& x, const std::vector<float>& dy,
           const std::vector<int32_t>& ids, const std::vector<float>& cutoffs) {
  const MoeConfig& config = layer.config();
  const int d = config.d_model, n = int(x.size()) / d;
  FlatBuffer p(table), g(table);
  std::copy(params.begin(), params.end(), p.data());
  const bool gpu = std::string(layer.device()) == "cuda";
  Result r;
  MoeInput in{nullptr, ids.data(), n, true, 42};
  in.cutoffs = cutoffs.empty() ? nullptr : cutoffs.data();
  if (!gpu) {
    r.y.resize(x.size());
    r.dx.assign(x.size(), 0.f);
    in.x = x.data();
    MoeWeights w = moe_weights(p, "", config);
    MoeGrads gr = moe_grads(g, "", config);
    r.out = layer.forward(w, in, r.y.data());
    layer.backward(w, gr, dy.data(), r.dx.data());
    r.grads.assign(g.data(), g.data() + g.size());
    return r;
  }
  // The same layout in device memory: each tensor at its offset in the flat buffer.
  DeviceVec<float> dp = to_device(params), dg(params.size()), dx_dev(x.size()), y(x.size());
  DeviceVec<float> xd = to_device(x), dyd = to_device(dy);
  dg.zero(stream());
  dx_dev.zero(stream());
  auto on_device = [&](const float* host, const FlatBuffer& buf, float* base) -> float* {
    return host ? base + (host - buf.data()) : nullptr;
  };
  const MoeWeights hw = moe_weights(p, "", config);
  MoeWeights w{on_device(hw.router, p, dp.data()), on_device(hw.w1, p, dp.data()),
               on_device(hw.w2, p, dp.data())};
  const MoeGrads hg = moe_grads(g, "", config);
  MoeGrads gr{on_device(hg.router, g, dg.data()), on_device(hg.w1, g, dg.data()),
              on_device(hg.w2, g, dg.data())};
  in.x = xd.data();
  r.out = layer.forward(w, in, y.data());
  layer.backward(w, gr, dyd.data(), dx_dev.data());
  r.y = to_host(y);
  r.dx = to_host(dx_dev);
  r.grads = to_host(dg);
  return r;
}

struct Case {
  MoeConfig config;
  TensorTable table;
  std::vector<float> params, x, dy, cutoffs;
  std::vector<int32_t> ids;
  explicit Case(const MoeConfig& c, int n) : config(c) {
    declare_moe_params(table, "", config);
    FlatBuffer p(table);
    init_moe_params(p, "", config, 5, 1.f);
    params.assign(p.data(), p.data() + p.size());
    x = random_normal(size_t(n) * c.d_model, 31);
    dy = random_normal(size_t(n) * c.d_model, 32);
    for (int t = 0; t < n; ++t) ids.push_back((t * 7919) % 1000);
    if (c.router == RouterKind::kExpertThreshold) cutoffs = {0.2f, 0.25f, 0.3f, 0.22f};
  }
  Result cpu() {
    MoeLayer layer(config);
    return run(layer, table, params, x, dy, ids, cutoffs);
  }
  Result gpu() {
    MoeLayer layer(config);
    layer.set_backend(make_moe_backend());
    return run(layer, table, params, x, dy, ids, cutoffs);
  }
};

const RouterKind kRouters[] = {RouterKind::kExpertChoice,   RouterKind::kExpertChoiceCapped,
                               RouterKind::kTop1,           RouterKind::kTop2,
                               RouterKind::kDense,          RouterKind::kHash,
                               RouterKind::kExpertThreshold};

TEST(CudaMoeLayer, MatchesTheCpuLayerForEveryRouter) {
  ECMOE_REQUIRE_GPU();
  for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
    const double tol = precision == Precision::kFp32 ? 1e-5 : 2.0 / 256;
    for (RouterKind router : kRouters) {
      for (int n : {1, 3, 77}) {
        // Capped expert choice cannot give 4 experts a token each from 1 token at 2 per token.
        if (router == RouterKind::kExpertChoiceCapped && n == 1) continue;
        SCOPED_TRACE(router_name(router) + " " + precision_name(precision) + " n " +
                     std::to_string(n));
        Case c(layer_config(router, precision), n);
        const Result cpu = c.cpu(), gpu = c.gpu();
        EXPECT_TRUE(close(gpu.y, cpu.y, tol));
        EXPECT_TRUE(close(gpu.dx, cpu.dx, tol));
        EXPECT_TRUE(close(gpu.grads, cpu.grads, tol));
        EXPECT_NEAR(gpu.out.aux.weighted_total, cpu.out.aux.weighted_total,
                    1e-5 * (1 + std::abs(cpu.out.aux.weighted_total)));
        // Counted on the device from its plan (finish()), or the CPU router's own (capped).
        expect_same_routing_stats(gpu.out.stats, cpu.out.stats);
      }
    }
  }
}

TEST(CudaMoeLayer, RunToRunBitwise) {
  ECMOE_REQUIRE_GPU();
  for (RouterKind router : {RouterKind::kExpertChoice, RouterKind::kTop2}) {
    for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
      Case c(layer_config(router, precision), 500);
      const Result a = c.gpu(), b = c.gpu();
      EXPECT_TRUE(same_bits(a.y, b.y));
      EXPECT_TRUE(same_bits(a.dx, b.dx));
      EXPECT_TRUE(same_bits(a.grads, b.grads));
    }
  }
}

// d/dθ of <y, dy> by central differences in fp32 on the GPU, for a spread of coordinates of x
// and of every parameter, against the backward's gradient (routing is piecewise constant: a step
// that changes the plan is skipped by using a step small against the scores' gaps).
TEST(CudaMoeLayer, GradientsMatchFiniteDifferences) {
  ECMOE_REQUIRE_GPU();
  for (RouterKind router : {RouterKind::kExpertChoice, RouterKind::kTop2}) {
    MoeConfig config = layer_config(router, Precision::kFp32);
    config.jitter = 0.f;
    Case c(config, 40);
    const Result base = c.gpu();
    auto objective = [&]() {
      const Result r = c.gpu();
      double s = r.out.aux.weighted_total;
      for (size_t j = 0; j < r.y.size(); ++j) s += double(r.y[j]) * c.dy[j];
      return s;
    };
    const float h = 1e-2f;
    int checked = 0, agreed = 0;
    // Central differences at a spread of `count` coordinates of `values`, against `analytic`.
    auto check = [&](std::vector<float>& values, const std::vector<float>& analytic, size_t count) {
      for (size_t j = 0; j < values.size(); j += values.size() / count + 1) {
        const float keep = values[j];
        values[j] = keep + h;
        const double up = objective();
        values[j] = keep - h;
        const double down = objective();
        values[j] = keep;
        const double numeric = (up - down) / (2.0 * h);
        ++checked;
        agreed += std::abs(numeric - analytic[j]) <= 2e-2 * (1 + std::abs(numeric));
      }
    };
    check(c.params, base.grads, 25);
    check(c.x, base.dx, 15);
    // A coordinate whose step flips a routing decision disagrees; they are rare.
    EXPECT_GE(agreed, checked - 2) << router_name(router) << ": " << agreed << " of " << checked;
  }
}

}  // namespace
