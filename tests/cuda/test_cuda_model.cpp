// The whole model on the GPU: the dense ops through cuda::make_nn_backend(), every MoE layer
// through cuda::make_moe_backend(), parameters and gradients in device memory. Against the CPU
// model on the same parameters and batch: the loss and every gradient, encoder and decoder, every
// router, fp32 (the loss within 1e-5 relative, gradients within 1e-4 of close()'s measure) and
// bf16 (within a few bf16 steps); and the same bits run to run.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "cuda/moe_layer.h"
#include "cuda/nn_backend.h"
#include "cuda_test_util.h"
#include "model/transformer.h"

namespace ecmoe::cuda::testing {
namespace {

// Small, with router scores far apart (a large init_std), so that float differences between the
// devices do not flip routing decisions.
ModelConfig model_config(ModelKind kind, RouterKind router, Precision precision) {
  ModelConfig c;
  c.kind = kind;
  c.vocab_size = 45;
  c.seq_len = 12;
  c.d_model = 32;
  c.n_layers = 3;
  c.n_heads = 4;
  c.d_ff = 48;
  c.moe_every = 2;
  c.moe = default_moe_config(router);
  c.moe.n_experts = 4;
  c.init_std = 0.3f;
  c.precision = precision;
  return c;
}

// Masked LM (encoder: about a third of the positions counted) or next-token (decoder) targets.
Batch make_batch(const ModelConfig& c, int batch_size, uint64_t seed) {
  Batch b;
  b.batch_size = batch_size;
  b.seq_len = c.seq_len;
  const int n = batch_size * c.seq_len;
  b.tokens.resize(n);
  b.targets.assign(n, -1);
  const Rng rng(seed, 3);
  for (int i = 0; i < n; ++i) b.tokens[i] = 5 + int32_t(rng.below(i, c.vocab_size - 5));
  for (int i = 0; i < n; ++i) {
    if (c.kind == ModelKind::kEncoder) {
      if (i % 3 == 0) {
        b.targets[i] = b.tokens[i];
        b.tokens[i] = 4;
      }
    } else if ((i + 1) % c.seq_len != 0) {
      b.targets[i] = b.tokens[i + 1];
    }
  }
  return b;
}

struct StepResult {
  double loss = 0;
  std::vector<float> grads;
};

StepResult cpu_step(const ModelConfig& c, const FlatBuffer& params, const Batch& batch) {
  Transformer model(c);
  FlatBuffer grads(model.table());
  const ForwardResult f = model.forward(params, batch, true, 7);
  model.backward(params, grads);
  return {f.loss, std::vector<float>(grads.data(), grads.data() + grads.size())};
}

StepResult gpu_step(const ModelConfig& c, const FlatBuffer& params, const Batch& batch) {
  std::unique_ptr<nn::Backend> be = make_nn_backend();
  Transformer model(c);
  model.set_nn_backend(*be);
  model.set_moe_backends([] { return make_moe_backend(); });
  const std::vector<float> host(params.data(), params.data() + params.size());
  DeviceVec<float> p = to_device(host);
  DeviceVec<float> g = to_device(std::vector<float>(host.size(), 0.f));
  const ForwardResult f = model.forward_on_backend(p.data(), nullptr, batch, true, 7);
  model.backward_on_backend(p.data(), g.data());
  return {f.loss, to_host(g)};
}

struct Case {
  ModelKind kind;
  RouterKind router;
  Precision precision;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.kind == ModelKind::kEncoder ? "encoder_" : "decoder_") +
         router_name(info.param.router) +
         (info.param.precision == Precision::kBf16 ? "_bf16" : "_fp32");
}

class CudaModel : public ::testing::TestWithParam<Case> {};

TEST_P(CudaModel, LossAndEveryGradientMatchTheCpuModel) {
  ECMOE_REQUIRE_GPU();
  const Case k = GetParam();
  const ModelConfig c = model_config(k.kind, k.router, k.precision);
  Transformer reference(c);
  FlatBuffer params(reference.table());
  reference.init_params(params, 21);
  const Batch batch = make_batch(c, 3, 5);
  const StepResult cpu = cpu_step(c, params, batch);
  const StepResult gpu = gpu_step(c, params, batch);
  const bool bf16 = k.precision == Precision::kBf16;
  EXPECT_NEAR(gpu.loss, cpu.loss, (bf16 ? 2e-3 : 1e-5) * std::fabs(cpu.loss));
  for (const TensorSpec& spec : reference.table().specs()) {
    const std::vector<float> want(cpu.grads.begin() + spec.offset,
                                  cpu.grads.begin() + spec.offset + spec.numel());
    const std::vector<float> got(gpu.grads.begin() + spec.offset,
                                 gpu.grads.begin() + spec.offset + spec.numel());
    EXPECT_TRUE(close(got, want, bf16 ? 3e-2 : 1e-4)) << spec.name;
  }
  // Run to run: the same bits.
  const StepResult again = gpu_step(c, params, batch);
  EXPECT_EQ(again.loss, gpu.loss);
  EXPECT_TRUE(same_bits(again.grads, gpu.grads));
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const ModelKind kind : {ModelKind::kEncoder, ModelKind::kDecoder})
    for (const RouterKind router :
         {RouterKind::kDense, RouterKind::kExpertChoice, RouterKind::kExpertChoiceCapped,
          RouterKind::kTop1, RouterKind::kTop2, RouterKind::kHash})
      out.push_back({kind, router, Precision::kFp32});
  for (const ModelKind kind : {ModelKind::kEncoder, ModelKind::kDecoder})
    out.push_back({kind, RouterKind::kExpertChoice, Precision::kBf16});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Routers, CudaModel, ::testing::ValuesIn(cases()), case_name);

}  // namespace
}  // namespace ecmoe::cuda::testing
