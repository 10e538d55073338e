// Incremental decoding on the GPU (`ecmoe generate --device cuda`):
// - the decode-attention kernel (cuda/attention_decode.h) against the CPU op
//   (nn/attention_decode.h): within 1e-5 relative (CUDA's expf, the exponentials summed in a tree),
//   a one-position cache bitwise its value, rows past the length never read (NaN there), the
//   same bits run to run; lengths 1 to 1000, 1 to 12 heads, head_dim 1, 5, 64 and 65;
// - KV-cache generation on the GPU equals full recompute: KvDecoder on the `--device cuda`
//   backends (cli/train_device.h) at every position of a sequence, for every causal router
//   (dense, top-1, top-2, hash, expert_threshold), fp32 and bf16, against
//   - the CPU decoder on the same parameters: the same routing plans; logits within 1e-4 (fp32:
//     the order of cuBLAS's sums, CUDA's expf) or one bf16 step (bf16: an fp32-level difference
//     may round an expert GEMM operand the other way);
//   - a full forward over the prefix (Transformer::forward_on_backend on the GPU, and
//     Transformer::forward on the CPU), the last position's final hidden state times the token
//     table: in fp32 within 2e-5 of max(1, max |logit|) (test_kv_decoder.cpp's bound). In bf16
//     the decoder's dense ops run in fp32 (model/kv_decoder.h), the full forward's in bf16, so
//     they differ by the bf16 rounding of the attention path; the bound is derived from it: twice
//     the largest difference between the full forward in fp32 and in bf16 (measured here on the
//     GPU, same parameters and tokens), plus the fp32 bound;
//   - itself: a second pass over the sequence after reset() gives the same bits.
// Without a GPU every test skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cli/train_device.h"
#include "core/error.h"
#include "cuda/attention_decode.h"
#include "cuda_test_util.h"
#include "model/kv_decoder.h"
#include "model/model_test_util.h"
#include "model/transformer.h"
#include "nn/attention_decode.h"
#include "nn/buffer.h"
#include "nn/tied_output.h"
#include "train/train_device.h"

namespace ecmoe::cuda::testing {
namespace {

using ecmoe::testing::random_batch;
using ecmoe::testing::tiny_config;

constexpr double kFp32 = 1e-5;
constexpr double kBf16Step = 1.0 / 256;  // one bf16 rounding step, relative
constexpr int kSeq = 10;

TEST(CudaDecode, AttentionDecodeMatchesTheCpuOp) {
  ECMOE_REQUIRE_GPU();
  AttentionDecodeScratch scratch;
  for (const int len : {1, 2, 33, 257, 1000})
    for (const int heads : {1, 3, 12})
      for (const int hd : {1, 5, 64, 65}) {
        SCOPED_TRACE("length " + std::to_string(len) + ", heads " + std::to_string(heads) +
                     ", head_dim " + std::to_string(hd));
        const int d = heads * hd, rows = len + 2;
        const nn::AttentionDecodeConfig cfg{len, heads, hd};
        const std::vector<float> q = random_normal(size_t(d), 41 + len);
        std::vector<float> keys = random_normal(size_t(rows) * d, 42 + hd),
                           values = random_normal(size_t(rows) * d, 43 + heads);
        std::fill(keys.begin() + size_t(len) * d, keys.end(), NAN);  // past the length
        std::fill(values.begin() + size_t(len) * d, values.end(), NAN);
        std::vector<float> want(static_cast<size_t>(d));
        nn::attention_decode(want.data(), q.data(), keys.data(), values.data(), cfg);

        DeviceVec<float> gq = to_device(q), gkeys = to_device(keys), gvalues = to_device(values);
        DeviceVec<float> gout = to_device(std::vector<float>(size_t(d), NAN));
        cuda::attention_decode(gout.data(), gq.data(), gkeys.data(), gvalues.data(), cfg, scratch,
                               stream());
        const std::vector<float> got = to_host(gout);
        EXPECT_TRUE(close(got, want, kFp32));
        if (len == 1) {  // one position: probability exactly 1, the output its value
          EXPECT_TRUE(same_bits(got, std::vector<float>(values.begin(), values.begin() + d)));
        }
        cuda::attention_decode(gout.data(), gq.data(), gkeys.data(), gvalues.data(), cfg, scratch,
                               stream());
        EXPECT_TRUE(same_bits(to_host(gout), got));
      }
}

// The device `generate --device cuda` decodes on (cli/train_device.h), not a second assembly.
const TrainDevice& gpu() { return *cli::train_device("cuda"); }

struct Case {
  RouterKind router;
  Precision precision;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return router_name(info.param.router) +
         (info.param.precision == Precision::kBf16 ? "_bf16" : "_fp32");
}

ModelConfig decoder(const Case& k) {
  ModelConfig c = tiny_config(ModelKind::kDecoder, k.router);
  c.moe_every = 1;
  if (router_is_token_choice(k.router)) c.moe.group_size = 1;  // as at decode time
  c.precision = k.precision;
  return c;
}

Batch prefix(const std::vector<int32_t>& tokens, int len) {
  Batch b;
  b.batch_size = 1;
  b.seq_len = len;
  b.tokens.assign(tokens.begin(), tokens.begin() + len);
  b.targets.assign(size_t(len), -1);
  b.targets[size_t(len) - 1] = 0;
  return b;
}

// Logits [V] of the last position of a full forward over tokens[0..len) on the CPU: its final
// hidden state times the token table, in fp32 (the decoder's tied output).
std::vector<float> cpu_full_logits(Transformer& model, const FlatBuffer& params,
                                   const FlatBuffer& state, const std::vector<int32_t>& tokens,
                                   int len) {
  model.forward(params, state, prefix(tokens, len), /*training=*/false, 0);
  const int d = model.config().d_model, V = model.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(V));
  nn::tied_output_forward(logits.data(), model.final_hidden() + int64_t(len - 1) * d,
                          params.get("embed.tokens"), {1, d, V});
  return logits;
}

// The same on the GPU: the model on the `--device cuda` backends, params in device memory.
class GpuFullForward {
 public:
  GpuFullForward(const ModelConfig& config, const FlatBuffer& params, const FlatBuffer& state)
      : model_(config), state_(state), be_(*gpu().nn) {
    model_.set_nn_backend(be_);
    model_.set_moe_backends(gpu().moe);
    params_.upload(be_, std::vector<float>(params.data(), params.data() + params.size()));
    embed_tokens_ = model_.table().spec("embed.tokens").offset;
  }
  std::vector<float> logits(const std::vector<int32_t>& tokens, int len) {
    model_.forward_on_backend(params_.data(), &state_, prefix(tokens, len), false, 0);
    const int d = model_.config().d_model, V = model_.config().vocab_size;
    logits_.resize(be_, V);
    be_.tied_output_forward(logits_.data(), model_.final_hidden() + int64_t(len - 1) * d,
                            params_.data() + embed_tokens_, {1, d, V}, Precision::kFp32);
    return logits_.download();
  }

 private:
  Transformer model_;
  const FlatBuffer& state_;
  nn::Backend& be_;
  nn::Buffer<float> params_, logits_;
  int64_t embed_tokens_ = 0;
};

// max |a − b| and max |b|.
struct Gap {
  double worst = 0, scale = 0;
  void add(const std::vector<float>& a, const std::vector<float>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      const double diff = std::abs(double(a[i]) - b[i]);
      worst = std::isnan(diff) ? INFINITY : std::max(worst, diff);
      scale = std::max(scale, std::abs(double(b[i])));
    }
  }
};

class CudaKvDecoder : public ::testing::TestWithParam<Case> {};

TEST_P(CudaKvDecoder, GenerationOnTheGpuEqualsFullRecompute) {
  ECMOE_REQUIRE_GPU();
  const Case k = GetParam();
  const bool bf16 = k.precision == Precision::kBf16;
  const ModelConfig cfg = decoder(k);
  Transformer model(cfg);
  FlatBuffer params(model.table()), state(model.state_table());
  model.init_params(params, 5);
  model.init_state(state);
  if (k.router == RouterKind::kExpertThreshold) {
    // Cutoffs from other tokens: calibrated on these, a score would sit exactly on a cutoff and
    // the last-bit differences between the paths could flip it. Calibrated in fp32 for both
    // precisions, so the bf16 bound below measures rounding, not a flipped route (on the CPU the
    // closest of these scores is 0.2% from its cutoff, and the decoder differs from the bf16
    // full forward by about the bf16 effect itself: no route flips).
    ModelConfig ec = cfg;
    ec.moe.router = RouterKind::kExpertChoice;
    ec.precision = Precision::kFp32;
    Transformer choice(ec);
    const ForwardResult f = choice.forward(params, state, random_batch(cfg, 4, kSeq, 99), false, 0);
    choice.update_cutoffs(state, f.layer_stats, 1.f);
  }
  const Batch batch = random_batch(cfg, 1, kSeq, 13);
  const std::vector<int32_t>& tokens = batch.tokens;

  KvDecoder on_gpu(model, params, state, *gpu().nn, gpu().moe);
  KvDecoder on_cpu(model, params, state);
  EXPECT_STREQ(on_gpu.device(), "cuda");
  GpuFullForward full_gpu(cfg, params, state);
  ModelConfig cfg32 = cfg;
  cfg32.precision = Precision::kFp32;
  GpuFullForward full_gpu32(cfg32, params, state);  // for the bf16 bound
  Gap vs_gpu_full, vs_cpu_full, bf16_effect;
  std::vector<std::vector<float>> first_pass;
  for (int p = 0; p < kSeq; ++p) {
    SCOPED_TRACE("position " + std::to_string(p));
    const std::vector<float> got = on_gpu.step(tokens[p]);
    const std::vector<float> cpu = on_cpu.step(tokens[p]);
    EXPECT_TRUE(close(got, cpu, bf16 ? kBf16Step : 1e-4));
    for (int l = 0; l < cfg.n_layers; ++l)
      EXPECT_EQ(on_gpu.ffn_layer(l).plan().slot_token, on_cpu.ffn_layer(l).plan().slot_token)
          << "layer " << l;
    const std::vector<float> full = full_gpu.logits(tokens, p + 1);
    vs_gpu_full.add(got, full);
    vs_cpu_full.add(got, cpu_full_logits(model, params, state, tokens, p + 1));
    if (bf16) bf16_effect.add(full_gpu32.logits(tokens, p + 1), full);
    first_pass.push_back(got);
  }
  const double fp32_bound = 2e-5 * std::max(1.0, vs_gpu_full.scale);
  const double bound = bf16 ? 2 * bf16_effect.worst + fp32_bound : fp32_bound;
  if (bf16) {
    EXPECT_GT(bf16_effect.worst, 0.0) << "the bf16 model computed in fp32?";
  }
  EXPECT_LE(vs_gpu_full.worst, bound) << "against the full forward on the GPU";
  EXPECT_LE(vs_cpu_full.worst, bound) << "against the full forward on the CPU";
  // Run to run, and reset() starts over on the same cache.
  on_gpu.reset();
  for (int p = 0; p < kSeq; ++p)
    EXPECT_TRUE(same_bits(on_gpu.step(tokens[p]), first_pass[size_t(p)])) << "position " << p;
  EXPECT_THROW(on_gpu.step(tokens[0]), Error);  // past the sequence length
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const Precision precision : {Precision::kFp32, Precision::kBf16})
    for (const RouterKind router : {RouterKind::kDense, RouterKind::kTop1, RouterKind::kTop2,
                                    RouterKind::kHash, RouterKind::kExpertThreshold})
      out.push_back({router, precision});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Routers, CudaKvDecoder, ::testing::ValuesIn(cases()), case_name);

}  // namespace
}  // namespace ecmoe::cuda::testing
