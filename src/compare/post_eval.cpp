#include "compare/post_eval.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/timer.h"
#include "data/token_dataset.h"
#include "model/kv_decoder.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/leakage.h"

namespace ecmoe::compare {

namespace {

// Greedy decoding of one whole sequence (seq_len tokens from the first validation token) with the
// KV cache; tokens per second.
double generation_speed(const Transformer& model, const FlatBuffer& params, const FlatBuffer& state,
                        int32_t first_token, const TrainDevice* device) {
  KvDecoder decoder = device ? KvDecoder(model, params, state, *device->nn, device->moe)
                             : KvDecoder(model, params, state);
  const int n = model.config().seq_len;
  int32_t token = first_token;
  const double t0 = now_seconds();
  for (int i = 0; i < n; ++i) {
    const std::vector<float>& logits = decoder.step(token);
    token = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  return double(n) / (now_seconds() - t0);
}

bool causal_per_token(RouterKind kind) {
  return kind != RouterKind::kExpertChoice && kind != RouterKind::kExpertChoiceCapped;
}

}  // namespace

PostEval evaluate_checkpoint(const std::string& path, const std::string& router,
                             const TrainDevice* device) {
  const Checkpoint checkpoint = Checkpoint::open(path);
  const TrainConfig& config = checkpoint.config();
  ECMOE_CHECK(config.model.kind == ModelKind::kDecoder, path, ": not a decoder checkpoint");
  ModelConfig model_config = config.model;
  if (!router.empty()) {
    model_config.moe.router = evaluation_router(model_config.moe.router, router, path);
  }
  Transformer model(model_config);
  FlatBuffer params(model.table());
  checkpoint.load_params(params);
  FlatBuffer state(model.state_table());
  model.init_state(state);
  checkpoint.load_router_state(state);

  const data::TokenDataset val = data::TokenDataset::open(config.data.dir, "val");
  check_same_data(checkpoint, data_reference(config.data.dir, val));
  const int batches = std::max(1, config.eval.batches);
  const BatchSource source =
      BatchSource::fixed(val, batch_spec(config, config.eval_batch_size()), batches);
  // Leakage over half the validation batches, 4 cuts each: enough positions for a stable mean.
  const LeakageOptions leakage{std::max(1, batches / 2), 4, 1, 0};
  EvalResult r;
  LeakageResult leak;
  if (device) {
    const auto on_device = place_on_device(model, *device, params);
    r = evaluate_on_backend(model, on_device.data(), source, batches, &state);
    leak = measure_leakage_on_backend(model, on_device.data(), source, leakage, &state);
  } else {
    r = evaluate(model, params, source, batches, &state);
    leak = measure_leakage(model, params, source, leakage, &state);
  }

  PostEval e;
  e.router = router_name(model_config.moe.router);
  e.loss = r.loss;
  e.perplexity = r.perplexity;
  int moe_layers = 0;
  e.min_load_share = 1;
  for (int l = 0; l < int(r.layers.size()); ++l) {
    if (!model_config.is_moe_layer(l)) continue;
    const RoutingStats& s = r.layers[l];
    ++moe_layers;
    e.mean_experts_per_token += s.mean_experts_per_token();
    int64_t slots = 0;
    for (int64_t c : s.tokens_per_expert) slots += c;
    for (int64_t c : s.tokens_per_expert) {
      const double share = slots ? double(c) / double(slots) : 0.0;
      e.min_load_share = std::min(e.min_load_share, share);
      e.max_load_share = std::max(e.max_load_share, share);
    }
  }
  if (moe_layers > 0)
    e.mean_experts_per_token /= moe_layers;
  else
    e.min_load_share = 0;

  e.leakage = {leak.max_abs_change, leak.mean_abs_change, leak.loss_change, leak.positions};
  if (causal_per_token(model_config.moe.router))
    e.generation_tokens_per_second =
        generation_speed(model, params, state, source.get(0).tokens[0], device);
  return e;
}

Json post_eval_to_json(const PostEval& e) {
  Json j;
  j["router"] = e.router;
  j["loss"] = e.loss;
  j["perplexity"] = e.perplexity;
  j["leakage"] = {{"max_abs_logprob_change", e.leakage.max_abs_logprob_change},
                  {"mean_abs_logprob_change", e.leakage.mean_abs_logprob_change},
                  {"loss_change", e.leakage.loss_change},
                  {"positions", e.leakage.positions}};
  j["mean_experts_per_token"] = e.mean_experts_per_token;
  j["min_load_share"] = e.min_load_share;
  j["max_load_share"] = e.max_load_share;
  j["generation_tokens_per_second"] = e.generation_tokens_per_second;
  return j;
}

PostEval post_eval_from_json(const Json& j) {
  PostEval e;
  e.router = j.at("router");
  e.loss = j.at("loss");
  e.perplexity = j.at("perplexity");
  const Json& l = j.at("leakage");
  e.leakage = {l.at("max_abs_logprob_change"), l.at("mean_abs_logprob_change"), l.at("loss_change"),
               l.at("positions")};
  e.mean_experts_per_token = j.at("mean_experts_per_token");
  e.min_load_share = j.at("min_load_share");
  e.max_load_share = j.at("max_load_share");
  e.generation_tokens_per_second = j.at("generation_tokens_per_second");
  return e;
}

}  // namespace ecmoe::compare
