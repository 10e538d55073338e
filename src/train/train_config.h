// Everything a training run is made of: model, data, optimizer, schedule, seeds, evaluation and
// checkpoint cadence, output folder. It has one JSON form (configs/*.json, the checkpoint's
// metadata, <out>/config.json) whose dotted key paths are also the `--set KEY=VALUE` names; the
// JSON form is produced from the struct, so the list of keys cannot drift from the fields.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/model_config.h"
#include "optim/adamw.h"
#include "optim/lr_schedule.h"

namespace ecmoe {

// ordered_json keeps the struct's field order in files and listings.
using ConfigJson = nlohmann::ordered_json;

struct DataConfig {
  std::string dir = "data/english";  // a folder written by `ecmoe prepare`
  // Masked LM (encoders): each position is selected with mask_prob; a selected position becomes
  // [MASK] with mask_token_prob, a random ordinary token with random_token_prob, and stays as it
  // is otherwise (BERT's 15% / 80-10-10). Any position may be selected, EOS included.
  float mask_prob = 0.15f;
  float mask_token_prob = 0.8f;
  float random_token_prob = 0.1f;
};

struct SeedConfig {
  uint64_t init = 1;  // parameter initialisation
  uint64_t data = 2;  // which windows of the token stream each step reads
  uint64_t mask = 3;  // masked-LM corruption and router jitter noise
};

struct EvalConfig {
  int64_t interval = 100;  // validate every N steps (0: only at the end)
  int batches = 8;         // fixed validation windows: batches × batch_size of them
  int batch_size = 0;      // 0: the training micro-batch size (batch_size / grad_accum)
};

struct TrainConfig {
  ModelConfig model;  // model.vocab_size 0 means "from the data"; otherwise it must match
  DataConfig data;
  AdamWConfig optimizer;
  float clip_norm = 1.f;  // global gradient-norm clipping; 0 disables (the norm is still logged)
  LrSchedule schedule;
  int64_t steps = 1000;
  int batch_size = 32;  // sequences per step, each model.seq_len tokens
  // Gradient accumulation: each step runs its batch as this many micro-batches of
  // batch_size / grad_accum sequences in turn (per MPI rank: batch_size / (ranks · grad_accum)),
  // adding their gradients, so that activations take memory for a micro-batch only; the step's
  // loss and gradient are the whole batch's (train/data_parallel.h; docs/training.md).
  int grad_accum = 1;
  SeedConfig seeds;
  EvalConfig eval;
  int64_t checkpoint_interval = 100;  // steps between checkpoints (0: only at the end)
  int64_t log_interval = 10;          // steps between plain progress lines (not on a terminal)
  std::string out = "runs/default";

  int micro_batch_size() const { return grad_accum > 0 ? batch_size / grad_accum : batch_size; }
  int eval_batch_size() const { return eval.batch_size > 0 ? eval.batch_size : micro_batch_size(); }
  // Throws ecmoe::Error naming the bad field. Checks what can be checked without the data; a
  // vocab_size of 0 (from the data) is accepted here.
  void validate() const;
};

ConfigJson config_to_json(const TrainConfig& config);
// Strict: every key must be one of config_to_json's (at its place), with a value of the same
// type; keys that are absent keep their defaults. Errors name the key.
TrainConfig config_from_json(const ConfigJson& json);

}  // namespace ecmoe
