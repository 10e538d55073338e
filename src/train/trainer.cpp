#include "train/trainer.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"
#include "core/rng_streams.h"
#include "core/timer.h"
#include "data/token_dataset.h"
#include "io/atomic_file.h"
#include "io/dir_lock.h"
#include "io/output_dir.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/eval_batches.h"
#include "train/memory_estimate.h"
#include "train/metrics.h"
#include "train/nonfinite.h"
#include "train/progress.h"

namespace fs = std::filesystem;

namespace ecmoe {

namespace {

// Router jitter noise of step s is Rng(seeds.mask, kNoiseStream).bits(s): a stream the masks
// (streams = step numbers < 2^62) never use.
constexpr uint64_t kNoiseStream = streams::kTrainJitter;

// Opens a split with an error that says what to do when the folder is not there at all.
data::TokenDataset open_split(const std::string& dir, const std::string& split) {
  ECMOE_CHECK(fs::exists(dir), "data folder '", dir,
              "' does not exist: run `ecmoe prepare` (or --set data.dir=FOLDER)");
  return data::TokenDataset::open(dir, split);
}

// Called when step `step` (1-based) produced a non-finite loss or gradient norm: names the first
// bad tensor, parameters first (a bad parameter poisons everything after it).
[[noreturn]] void fail_nonfinite(int64_t step, const std::string& what, const FlatBuffer& params,
                                 const FlatBuffer& grads) {
  std::ostringstream s;
  s << "training diverged at step " << step << ": " << what;
  if (const auto p = first_nonfinite(params))
    s << "; first non-finite parameter: " << describe(*p);
  else if (const auto g = first_nonfinite(grads))
    s << "; parameters are finite, first non-finite gradient: " << describe(*g);
  else
    s << "; parameters and gradients are finite (an activation overflowed)";
  s << ". Lower schedule.peak_lr, enable clip_norm, or resume from an earlier checkpoint";
  fail(s.str());
}

MetricsJson aux_json(const AuxLosses& aux) {
  MetricsJson j;
  j["load_balance"] = aux.load_balance;
  j["z_loss"] = aux.z_loss;
  j["weighted_total"] = aux.weighted_total;
  return j;
}

std::string eval_line(int64_t step, const EvalResult& r) {
  char text[160];
  std::snprintf(text, sizeof(text), "step %lld: validation loss %.4f, perplexity %.2f",
                (long long)step, r.loss, r.perplexity);
  return text;
}

// True when the metrics log at `path` already holds the evaluation of step `step` (a finished
// run's last line), so that resuming that run does not log it twice.
bool logged_eval_at(const std::string& path, int64_t step) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const MetricsJson j = MetricsJson::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("type", "") == "eval" && j.value("step", int64_t(-1)) == step)
      return true;
  }
  return false;
}

}  // namespace

TrainResult train(TrainConfig config, const TrainOptions& options) {
  config.validate();
  const dist::Comm single = dist::Comm::single();
  const dist::Comm& comm = options.comm ? *options.comm : single;
  const bool root = comm.is_root();
  // The output folder first: a run that could not save its work fails before it starts, and a
  // second run on the same folder fails instead of mixing its files with the first one's.
  DirLock lock;
  if (root) {
    prepare_output_dir(config.out, "output folder (--out)");
    lock = DirLock(config.out, "output folder");
  }
  const data::TokenDataset train_data = open_split(config.data.dir, "train");
  const data::TokenDataset val_data = open_split(config.data.dir, "val");
  ECMOE_CHECK(config.model.vocab_size == 0 || config.model.vocab_size == train_data.vocab_size(),
              "model.vocab_size is ", config.model.vocab_size, " but the data in ", config.data.dir,
              " has ", train_data.vocab_size(),
              " token ids (set it to 0 to take it from the data)");
  config.model.vocab_size = train_data.vocab_size();
  config.model.validate();
  check_memory(config, /*training=*/true);
  const DataReference data_ref = data_reference(config.data.dir, train_data);
  if (comm.parallel()) {
    comm.check_same(
        dist::fingerprint(std::string(ECMOE_VERSION) + "\n" + config_to_json(config).dump()),
        "the ecmoe version or the training config");
    comm.check_same(dist::fingerprint(data_ref.tokenizer_checksum + "\n" + data_ref.source_id +
                                      "\n" + std::to_string(train_data.size()) + "\n" +
                                      std::to_string(val_data.size())),
                    "the training data");
    check_batch_splits(config.batch_size, comm, "batch_size");
    if (config.eval.batches > 0)
      check_batch_splits(config.eval_batch_size(), comm, "eval.batch_size");
  }

  const std::string checkpoint_path = (fs::path(config.out) / kCheckpointFile).string();
  const bool have_checkpoint = fs::exists(checkpoint_path);
  ECMOE_CHECK(!options.resume || have_checkpoint, "nothing to resume: ", checkpoint_path,
              " does not exist");
  ECMOE_CHECK(options.resume || !have_checkpoint, config.out,
              " already holds a checkpoint: pass --resume to continue that run, or choose "
              "another --out");

  Transformer model(config.model, &comm);
  FlatBuffer params(model.table()), grads(model.table());
  AdamW adam(model.table(), config.optimizer);
  TrainState state;
  // Router state: threshold cutoffs, moved toward each step's k-th selected scores (every expert-
  // choice run keeps them, so its checkpoint can be evaluated with thresholds).
  FlatBuffer router_state(model.state_table());
  model.init_state(router_state);
  const MoeConfig& moe = config.model.moe;
  // A threshold-routed run trains its first steps with expert choice, which sets the cutoffs.
  std::optional<Transformer> warmup_model;
  if (moe.router == RouterKind::kExpertThreshold) {
    ECMOE_CHECK(moe.threshold_warmup_steps >= 1,
                "model.moe.threshold_warmup_steps must be >= 1 for expert_threshold training (the "
                "cutoffs come from expert-choice steps)");
    ModelConfig warm = config.model;
    warm.moe.router = RouterKind::kExpertChoice;
    warmup_model.emplace(warm, &comm);
  }
  if (options.resume) {
    const Checkpoint checkpoint = Checkpoint::open(checkpoint_path);
    check_resume_config(checkpoint, config);
    check_same_data(checkpoint, data_ref);
    checkpoint.load_training_state(params, adam, state);
    checkpoint.load_router_state(router_state);
    ECMOE_CHECK(state.step <= config.steps, "the checkpoint in ", config.out,
                " is already at step ", state.step, ", past steps = ", config.steps,
                " (steps counts from the start of the run): nothing to do; raise steps to "
                "train further");
  } else {
    model.init_params(params, config.seeds.init);
  }
  // Resuming a run that already reached `steps`: nothing to train, the final evaluation is only
  // measured again for the result (and logged only if the run was killed before logging it).
  const bool finished = options.resume && state.step == config.steps;
  const std::string metrics_path = (fs::path(config.out) / "metrics.jsonl").string();
  if (root && !finished)
    write_file_atomically((fs::path(config.out) / "config.json").string(),
                          config_to_json(config).dump(2) + "\n");

  // Only rank 0 writes; the other ranks' logs go nowhere.
  std::optional<MetricsLog> metrics_log;
  if (root && !(finished && logged_eval_at(metrics_path, state.step)))
    metrics_log.emplace(metrics_path, options.resume ? state.step : -1);
  struct {
    std::optional<MetricsLog>* log;
    void write(const MetricsJson& j) {
      if (*log) (*log)->write(j);
    }
  } metrics{&metrics_log};
  MetricsJson start;
  start["type"] = "start";
  start["step"] = state.step;
  start["resumed"] = options.resume;
  start["parameters"] = model.table().model_parameter_count();
  start["parameters_on_rank"] = model.table().parameter_count();
  start["ecmoe_version"] = ECMOE_VERSION;
  start["ranks"] = comm.size();
  start["precision"] = precision_name(config.model.precision);
  if (!finished) metrics.write(start);

  const BatchSource train_batches =
      BatchSource::random(train_data, batch_spec(config, config.batch_size));
  std::optional<BatchSource> val_batches;
  FixedBatches eval_batches;
  if (config.eval.batches > 0) {
    const BatchSpec spec = batch_spec(config, config.eval_batch_size());
    eval_batches = cap_fixed_batches(val_data, "val", spec, config.eval.batches, "eval.batches");
    val_batches = BatchSource::fixed(val_data, spec, eval_batches.batches);
  }
  const Rng noise(config.seeds.mask, kNoiseStream);

  std::FILE* null_out = root ? nullptr : std::fopen("/dev/null", "w");
  ECMOE_CHECK(root || null_out, "cannot open /dev/null");
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> null_guard(
      null_out, [](std::FILE* f) { return f ? std::fclose(f) : 0; });
  Progress progress(state.step, config.steps, config.log_interval, root && options.terminal,
                    root ? options.progress : null_out);
  if (!eval_batches.note.empty()) progress.message(eval_batches.note);
  if (finished)
    progress.message(config.out + " is already at step " + std::to_string(state.step) +
                     " = steps: nothing to train");
  const auto run_eval = [&](int64_t step) {
    EvalResult r =
        evaluate(model, params, *val_batches, eval_batches.batches, &router_state, &comm);
    MetricsJson j;
    j["type"] = "eval";
    j["step"] = step;
    j["split"] = "val";
    j.update(eval_json(config.model, r));
    metrics.write(j);
    progress.message(eval_line(step, r));
    return r;
  };
  const auto save = [&] {
    if (const auto bad = first_nonfinite(params))
      fail("refusing to checkpoint non-finite parameters at step ", state.step, ": ",
           describe(*bad));
    save_checkpoint(checkpoint_path, config, data_ref, params, adam, state, &router_state, &comm);
  };

  TrainResult result;
  result.first_step = state.step;
  const int64_t tokens_per_step = int64_t(config.batch_size) * config.model.seq_len;
  for (int64_t s = state.step; s < config.steps; ++s) {
    const double t0 = now_seconds();
    const int64_t step = s + 1;  // 1-based in everything the user sees
    const Batch batch = slice_batch(train_batches.get(s), comm);
    grads.zero();
    Transformer& routed = warmup_model && s < moe.threshold_warmup_steps ? *warmup_model : model;
    const ForwardResult local =
        routed.forward(params, router_state, batch, /*training=*/true, noise.bits(uint64_t(s)));
    routed.backward(params, grads);
    average_gradients(grads, comm);
    // Reduced over ranks, so every rank moves its cutoffs identically.
    const ForwardResult f = reduce_forward_result(local, comm);
    if (model.has_cutoffs())
      model.update_cutoffs(router_state, f.layer_stats, moe.threshold_ema_rate);
    if (!std::isfinite(f.loss))
      fail_nonfinite(step, "the loss is " + std::to_string(f.loss), params, grads);
    const float norm = clip_grad_norm(grads, config.clip_norm, &comm);
    if (!std::isfinite(norm))
      fail_nonfinite(step, "the gradient norm is " + std::to_string(norm), params, grads);
    const float lr = config.schedule.lr_at(s);
    adam.step(params, grads, lr);
    state.step = step;
    state.tokens_seen += tokens_per_step;
    const double dt = now_seconds() - t0;
    result.seconds += dt;

    MetricsJson j;
    j["type"] = "train";
    j["step"] = step;
    j["loss"] = f.loss;
    j["lm_loss"] = f.lm_loss;
    j["aux"] = aux_json(f.aux);
    j["lr"] = lr;
    j["grad_norm"] = norm;
    j["targets"] = f.counted;
    j["tokens"] = state.tokens_seen;
    j["tokens_per_second"] = double(tokens_per_step) / dt;
    j["step_seconds"] = dt;
    j["moe_layers"] = moe_layers_json(config.model, f.layer_stats);
    metrics.write(j);
    progress.update(step, f.loss, double(tokens_per_step) / dt);

    if (step == config.steps) break;  // the final evaluation and checkpoint follow the loop
    if (config.eval.interval > 0 && config.eval.batches > 0 && step % config.eval.interval == 0)
      run_eval(step);
    if (config.checkpoint_interval > 0 && step % config.checkpoint_interval == 0) {
      save();
      progress.message("step " + std::to_string(step) + ": saved " + checkpoint_path);
    }
  }
  if (state.step > result.first_step) save();
  if (config.eval.batches > 0) result.final_eval = run_eval(state.step);
  progress.finish();

  result.config = config;
  result.last_step = state.step;
  result.checkpoint = checkpoint_path;
  const int64_t steps_run = result.last_step - result.first_step;
  result.tokens_per_second =
      result.seconds > 0 ? double(steps_run * tokens_per_step) / result.seconds : 0.0;
  return result;
}

}  // namespace ecmoe
