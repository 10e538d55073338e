// The JSON form of TrainConfig comes from one list of fields (visit_fields), walked by a writer
// and by a strict reader, so a field cannot be written under one name and read under another.
#include "train/train_config.h"

#include <cmath>

#include "core/error.h"
#include "io/config_fields.h"

namespace ecmoe {

namespace {

LrDecay parse_decay(const std::string& name) {
  if (name == "inverse_sqrt") return LrDecay::InverseSqrt;
  if (name == "cosine") return LrDecay::Cosine;
  if (name == "constant") return LrDecay::Constant;
  if (name == "linear") return LrDecay::Linear;
  fail("unknown learning-rate decay '", name,
       "' (expected inverse_sqrt, cosine, constant or linear)");
}

std::string decay_name(LrDecay decay) {
  switch (decay) {
    case LrDecay::InverseSqrt:
      return "inverse_sqrt";
    case LrDecay::Cosine:
      return "cosine";
    case LrDecay::Constant:
      return "constant";
    case LrDecay::Linear:
      return "linear";
  }
  return "inverse_sqrt";
}

// The one list of fields. `v.group(key, body)` opens a nested object, `v.field(key, ref)` a value.
template <typename Visitor>
void visit_fields(Visitor& v, TrainConfig& c) {
  v.group("model", [&] {
    ModelConfig& m = c.model;
    v.field("kind", NamedEnum<ModelKind>{m.kind, parse_model_kind, model_kind_name});
    v.field("vocab_size", m.vocab_size);
    v.field("seq_len", m.seq_len);
    v.field("d_model", m.d_model);
    v.field("n_layers", m.n_layers);
    v.field("n_heads", m.n_heads);
    v.field("d_ff", m.d_ff);
    v.field("moe_every", m.moe_every);
    v.field("init_std", m.init_std);
    v.group("moe", [&] {
      MoeConfig& e = m.moe;
      v.field("router", NamedEnum<RouterKind>{e.router, parse_router_kind, router_name});
      v.field("n_experts", e.n_experts);
      v.field("capacity_factor_train", e.capacity_factor_train);
      v.field("capacity_factor_eval", e.capacity_factor_eval);
      v.field("group_size", e.group_size);
      v.field("global_routing", e.global_routing);
      v.field("token_choice_k", e.token_choice_k);
      v.field("renormalize_gates", e.renormalize_gates);
      v.field("batch_prioritized", e.batch_prioritized);
      v.field("load_balance_weight", e.load_balance_weight);
      v.field("z_loss_weight", e.z_loss_weight);
      v.field("jitter", e.jitter);
      v.field("threshold_ema_rate", e.threshold_ema_rate);
      v.field("threshold_warmup_steps", e.threshold_warmup_steps);
      v.group("capped", [&] {
        v.field("max_experts_per_token", e.capped.max_experts_per_token);
        v.field("lambda", e.capped.lambda);
        v.field("max_iterations", e.capped.max_iterations);
        v.field("tolerance", e.capped.tolerance);
        v.field("epsilon_scaling", e.capped.epsilon_scaling);
      });
    });
  });
  v.group("data", [&] {
    v.field("dir", c.data.dir);
    v.field("mask_prob", c.data.mask_prob);
    v.field("mask_token_prob", c.data.mask_token_prob);
    v.field("random_token_prob", c.data.random_token_prob);
  });
  v.group("optimizer", [&] {
    v.field("beta1", c.optimizer.beta1);
    v.field("beta2", c.optimizer.beta2);
    v.field("eps", c.optimizer.eps);
    v.field("weight_decay", c.optimizer.weight_decay);
  });
  v.field("clip_norm", c.clip_norm);
  v.group("schedule", [&] {
    v.field("peak_lr", c.schedule.peak_lr);
    v.field("warmup_steps", c.schedule.warmup_steps);
    v.field("decay", NamedEnum<LrDecay>{c.schedule.decay, parse_decay, decay_name});
    v.field("decay_start", c.schedule.decay_start);
    v.field("total_steps", c.schedule.total_steps);
    v.field("min_lr", c.schedule.min_lr);
  });
  v.field("steps", c.steps);
  v.field("batch_size", c.batch_size);
  v.field("grad_accum", c.grad_accum);
  // Kept in ModelConfig (the model's GEMMs read it), named at the top level: `--set
  // precision=bf16`.
  v.field("precision", NamedEnum<Precision>{c.model.precision, parse_precision, precision_name});
  v.group("seeds", [&] {
    v.field("init", c.seeds.init);
    v.field("data", c.seeds.data);
    v.field("mask", c.seeds.mask);
  });
  v.group("eval", [&] {
    v.field("interval", c.eval.interval);
    v.field("batches", c.eval.batches);
    v.field("batch_size", c.eval.batch_size);
  });
  v.field("checkpoint_interval", c.checkpoint_interval);
  v.field("log_interval", c.log_interval);
  v.field("out", c.out);
}

}  // namespace

ConfigJson config_to_json(const TrainConfig& config) {
  TrainConfig copy = config;
  ConfigWriter w;
  visit_fields(w, copy);
  return w.result;
}

TrainConfig config_from_json(const ConfigJson& json) {
  ECMOE_CHECK(json.is_object(), "config: expected a JSON object at the top level");
  TrainConfig config;
  ConfigReader r(json, "config");
  visit_fields(r, config);
  r.check_unknown();
  return config;
}

void TrainConfig::validate() const {
  ModelConfig m = model;
  if (m.vocab_size == 0) m.vocab_size = 8;  // the data decides; check the rest now
  ECMOE_CHECK(model.vocab_size >= 0, "model.vocab_size must be >= 0 (0: from the data)");
  m.validate();
  ECMOE_CHECK(!data.dir.empty(), "data.dir is empty");
  ECMOE_CHECK(data.mask_prob > 0.f && data.mask_prob <= 1.f,
              "data.mask_prob must be in (0, 1], got ", data.mask_prob);
  ECMOE_CHECK(data.mask_token_prob >= 0.f && data.random_token_prob >= 0.f &&
                  data.mask_token_prob + data.random_token_prob <= 1.f,
              "data.mask_token_prob and data.random_token_prob must be >= 0 with a sum <= 1");
  optimizer.validate();
  ECMOE_CHECK(clip_norm >= 0.f, "clip_norm must be >= 0 (0: no clipping), got ", clip_norm);
  schedule.validate();
  ECMOE_CHECK(steps > 0, "steps must be positive, got ", steps);
  ECMOE_CHECK(batch_size > 0, "batch_size must be positive, got ", batch_size);
  ECMOE_CHECK(grad_accum >= 1, "grad_accum must be >= 1 (1: no accumulation), got ", grad_accum);
  ECMOE_CHECK(batch_size % grad_accum == 0, "batch_size (", batch_size,
              ") must be divisible by grad_accum (", grad_accum,
              "): each micro-batch takes an equal part");
  ECMOE_CHECK(eval.interval >= 0, "eval.interval must be >= 0 (0: only at the end)");
  ECMOE_CHECK(eval.batches >= 0, "eval.batches must be >= 0 (0: no validation)");
  ECMOE_CHECK(eval.batch_size >= 0,
              "eval.batch_size must be >= 0 (0: the training micro-batch size)");
  ECMOE_CHECK(checkpoint_interval >= 0, "checkpoint_interval must be >= 0 (0: only at the end)");
  ECMOE_CHECK(log_interval > 0, "log_interval must be positive, got ", log_interval);
  ECMOE_CHECK(!out.empty(), "out (the output folder) is empty");
}

}  // namespace ecmoe
