// KvDecoder's seams (nn/backend.h, moe/moe_backend.h): a decoder on a backend that records each
// op and runs the CPU's (recording_backend.h), each FFN on a MoeBackend that runs a plain CPU
// MoeLayer behind the seam, gives bitwise the logits and routing plans of the plain CPU decoder,
// for every causal router, fp32 and bf16. Every op of a step reaches the backends, so nothing of
// the step reads host memory behind their back: the parameters go up once, each step uploads its
// token id, downloads its logits and runs a fixed count of each op.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checked_backend.h"
#include "host_moe_backend.h"
#include "model/kv_decoder.h"
#include "model_test_util.h"
#include "recording_backend.h"

namespace ecmoe {
namespace {

using testing::CheckedBackend;
using testing::HostMoeBackend;
using testing::random_batch;
using testing::RecordingBackend;
using testing::tiny_config;

constexpr int kSeq = 10;

// Thresholds calibrated by expert choice on other tokens (as test_kv_decoder.cpp does).
void calibrate(const ModelConfig& cfg, const FlatBuffer& params, FlatBuffer& state) {
  ModelConfig ec = cfg;
  ec.moe.router = RouterKind::kExpertChoice;
  Transformer choice(ec);
  const ForwardResult f = choice.forward(params, state, random_batch(cfg, 4, kSeq, 99), false, 0);
  choice.update_cutoffs(state, f.layer_stats, 1.f);
}

void check(RouterKind router, Precision precision) {
  SCOPED_TRACE(router_name(router) + " " + precision_name(precision));
  ModelConfig cfg = tiny_config(ModelKind::kDecoder, router);
  cfg.moe_every = 1;
  cfg.precision = precision;
  Transformer model(cfg);
  FlatBuffer params(model.table()), state(model.state_table());
  model.init_params(params, 5);
  model.init_state(state);
  if (router == RouterKind::kExpertThreshold) calibrate(cfg, params, state);
  const Batch batch = random_batch(cfg, 1, kSeq, 13);

  RecordingBackend recording;
  KvDecoder plain(model, params, state);
  KvDecoder seamed(model, params, state, recording,
                   [&] { return std::make_unique<HostMoeBackend>(recording.calls); });
  EXPECT_STREQ(plain.device(), "cpu");
  EXPECT_STREQ(seamed.device(), "recording");
  const int L = cfg.n_layers;
  EXPECT_EQ(recording.calls["upload"], 1);  // the parameters, once
  EXPECT_EQ(recording.calls["stats off"], L);
  for (int p = 0; p < kSeq; ++p) {
    const std::vector<float> want = plain.step(batch.tokens[p]);
    const std::vector<float> got = seamed.step(batch.tokens[p]);
    EXPECT_EQ(got, want) << "position " << p;
    for (int l = 0; l < L; ++l) {
      EXPECT_EQ(seamed.ffn_layer(l).plan().slot_token, plain.ffn_layer(l).plan().slot_token);
      EXPECT_EQ(seamed.ffn_layer(l).plan().slot_gate, plain.ffn_layer(l).plan().slot_gate);
    }
  }
  // Per step: the token up, the logits down, and each op of the layers.
  const std::map<std::string, int> per_step = {{"upload", 1},
                                               {"download", 1},
                                               {"embedding_forward", 1},
                                               {"layernorm_forward", 2 * L + 1},
                                               {"linear_forward", 2 * L},
                                               {"copy", 2 * L},
                                               {"attention_decode", L},
                                               {"add_inplace", 2 * L},
                                               {"moe forward", L},
                                               {"tied_output_forward", 1}};
  for (const auto& [op, count] : per_step)
    EXPECT_EQ(recording.calls[op], count * kSeq + (op == "upload" ? 1 : 0)) << op;
  for (const char* op : {"attention_forward causal", "moe backward", "stats on"})
    EXPECT_EQ(recording.calls[op], 0) << op;
  // reset() starts a new sequence on the same cache.
  plain.reset();
  seamed.reset();
  EXPECT_EQ(seamed.step(batch.tokens[3]), plain.step(batch.tokens[3]));
  // With the backend's memory told apart from the host's: no host pointer reaches an op.
  CheckedBackend checked;
  KvDecoder strict(model, params, state, checked, {});
  plain.reset();
  for (int p = 0; p < kSeq; ++p)
    EXPECT_EQ(strict.step(batch.tokens[p]), plain.step(batch.tokens[p])) << "position " << p;
  EXPECT_GT(checked.checks, 0);
}

TEST(KvDecoderBackend, EveryOpReachesTheBackendsWithTheSameLogits) {
  for (const Precision precision : {Precision::kFp32, Precision::kBf16})
    for (const RouterKind router : {RouterKind::kDense, RouterKind::kTop1, RouterKind::kTop2,
                                    RouterKind::kHash, RouterKind::kExpertThreshold})
      check(router, precision);
}

}  // namespace
}  // namespace ecmoe
