#include "train/trainer.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/rng_streams.h"
#include "core/timer.h"
#include "data/token_dataset.h"
#include "io/atomic_file.h"
#include "io/dir_lock.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/optimizer_device.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/eval_batches.h"
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

// The data of a run, opened and checked against the config: model.vocab_size is resolved from it,
// the memory estimate checked, and under MPI every rank's config and data compared.
struct RunData {
  data::TokenDataset train, val;
  DataReference ref;
};

RunData open_data(TrainConfig& config, const dist::Comm& comm, const TrainDevice* device) {
  RunData d{open_split(config.data.dir, "train"), open_split(config.data.dir, "val"), {}};
  ECMOE_CHECK(config.model.vocab_size == 0 || config.model.vocab_size == d.train.vocab_size(),
              "model.vocab_size is ", config.model.vocab_size, " but the data in ", config.data.dir,
              " has ", d.train.vocab_size(), " token ids (set it to 0 to take it from the data)");
  config.model.vocab_size = d.train.vocab_size();
  config.model.validate();
  check_training_memory(config, device);
  d.ref = data_reference(config.data.dir, d.train);
  if (comm.parallel()) {
    comm.check_same(
        dist::fingerprint(std::string(ECMOE_VERSION) + "\n" + config_to_json(config).dump()),
        "the ecmoe version or the training config");
    comm.check_same(
        dist::fingerprint(d.ref.tokenizer_checksum + "\n" + d.ref.source_id + "\n" +
                          std::to_string(d.train.size()) + "\n" + std::to_string(d.val.size())),
        "the training data");
    check_batch_splits(config.batch_size, comm, "batch_size", config.grad_accum);
    if (config.eval.batches > 0)
      check_batch_splits(config.eval_batch_size(), comm, "eval.batch_size");
  }
  return d;
}

// <out>/checkpoint.safetensors, which must exist to resume and must not to start afresh.
std::string checkpoint_path_for(const TrainConfig& config, bool resume) {
  const std::string path = (fs::path(config.out) / kCheckpointFile).string();
  const bool exists = fs::exists(path);
  ECMOE_CHECK(!resume || exists, "nothing to resume: ", path, " does not exist");
  ECMOE_CHECK(resume || !exists, config.out,
              " already holds a checkpoint: pass --resume to continue that run, or choose "
              "another --out");
  return path;
}

// One training step's outcome, for the metrics and the progress line.
struct StepOutcome {
  ForwardResult forward;  // reduced over ranks
  float grad_norm = 0;    // before clipping
  float lr = 0;
  double seconds = 0;
};

// Everything a run holds between its steps: the model and its state, the data, the logs. Built
// by the constructor (setup: output folder, data, resume or init, logs), advanced by
// train_step(), closed by finish() (final checkpoint and evaluation).
class TrainingRun {
 public:
  TrainingRun(TrainConfig config, const TrainOptions& options, const dist::Comm& comm)
      : config_(validated(std::move(config))),
        options_(options),
        comm_(comm),
        root_(comm.is_root()),
        // The output folder first: a run that could not save its work fails before it starts,
        // and a second run on the same folder fails instead of mixing its files with this one's.
        lock_(root_ ? claim_output_dir(config_.out, "output folder (--out)") : DirLock()),
        data_(open_data(config_, comm_, options.device)),
        checkpoint_path_(checkpoint_path_for(config_, options.resume)),
        metrics_path_((fs::path(config_.out) / "metrics.jsonl").string()),
        model_(config_.model, &comm_),
        params_(model_.table()),
        grads_(model_.table()),
        adam_(model_.table(), config_.optimizer),
        // Threshold cutoffs, moved toward each step's k-th selected scores (every expert-choice
        // run keeps them, so its checkpoint can be evaluated with thresholds).
        router_state_(model_.state_table()),
        train_batches_(BatchSource::random(data_.train, batch_spec(config_, config_.batch_size))),
        noise_(config_.seeds.mask, kNoiseStream) {
    const MoeConfig& moe = config_.model.moe;
    ECMOE_CHECK(moe.router != RouterKind::kExpertThreshold || moe.threshold_warmup_steps >= 1,
                "model.moe.threshold_warmup_steps must be >= 1 for expert_threshold training (the "
                "cutoffs come from expert-choice steps)");
    model_.init_state(router_state_);
    if (options.resume)
      restore();
    else
      model_.init_params(params_, config_.seeds.init);
    if (options.device) {
      const TrainDevice& device = *options.device;
      ECMOE_CHECK(!comm_.parallel(), "training on ", device.name,
                  " runs in one process (not under mpirun)");
      ECMOE_CHECK(device.nn && device.optimizer, "training device ", device.name, " is incomplete");
      use_device(model_, device);
      device_ = device.optimizer(model_.table(), config_.optimizer);
      device_->load(params_, adam_);
    }
    // Resuming a run that already reached `steps`: nothing to train, the final evaluation is
    // only measured again for the result (and logged only if the run was killed first).
    finished_ = options.resume && state_.step == config_.steps;
    if (root_ && !finished_)
      write_file_atomically((fs::path(config_.out) / "config.json").string(),
                            config_to_json(config_).dump(2) + "\n");
    // Only rank 0 writes metrics and progress.
    if (root_ && !(finished_ && logged_eval_at(metrics_path_, state_.step)))
      metrics_.emplace(metrics_path_, options.resume ? state_.step : -1);
    progress_.emplace(state_.step, config_.steps, config_.log_interval, root_ && options.terminal,
                      root_ ? options.progress : nullptr);
    if (config_.eval.batches > 0) {
      const BatchSpec spec = batch_spec(config_, config_.eval_batch_size());
      eval_batches_ =
          cap_fixed_batches(data_.val, "val", spec, config_.eval.batches, "eval.batches");
      val_batches_ = BatchSource::fixed(data_.val, spec, eval_batches_.batches);
      if (!eval_batches_.note.empty()) progress_->message(eval_batches_.note);
    }
    if (finished_)
      progress_->message(config_.out + " is already at step " + std::to_string(state_.step) +
                         " = steps: nothing to train");
    else
      write_metrics(start_json());
  }

  int64_t step() const { return state_.step; }
  bool done() const { return state_.step >= config_.steps; }

  // Step s + 1: forward and backward of each micro-batch (the gradients adding up), gradients
  // summed over ranks, cutoffs moved, clipping, AdamW.
  StepOutcome train_step() {
    const double t0 = now_seconds();
    const int64_t s = state_.step;
    const std::vector<Batch> parts = step_parts(train_batches_.get(s), comm_, config_.grad_accum);
    if (device_)
      device_->zero_grads();
    else
      grads_.zero();
    // A threshold-routed run routes its first steps by expert choice, which sets the cutoffs.
    const MoeConfig& moe = config_.model.moe;
    const std::optional<RouterKind> router =
        moe.router == RouterKind::kExpertThreshold && s < moe.threshold_warmup_steps
            ? std::optional(RouterKind::kExpertChoice)
            : std::nullopt;
    const uint64_t noise = noise_.bits(uint64_t(s));
    std::vector<ForwardResult> local;
    float grad_norm = 0;
    if (device_) {
      // Forward, backward and the gradient norm are all queued before the host waits for the
      // device, once: for the norm, the last of them, by which time the loss and the layers'
      // values are there too. The device never idles while the host queues the next part. An
      // earlier micro-batch's values are waited for once its backward is queued.
      for (size_t i = 0; i < parts.size(); ++i) {
        Transformer::PendingForward pending = model_.start_forward_on_backend(
            device_->params(), &router_state_, parts[i], /*training=*/true, noise, router);
        model_.backward_on_backend(device_->params(), device_->grads());
        if (i + 1 == parts.size()) {
          device_->start_clip_grad_norm(config_.clip_norm);
          grad_norm = device_->finish_clip_grad_norm();
        }
        local.push_back(model_.finish_forward(pending));
      }
    } else {
      for (const Batch& part : parts) {
        local.push_back(
            model_.forward(params_, router_state_, part, /*training=*/true, noise, router));
        model_.backward(params_, grads_);
      }
      reduce_gradients(grads_, comm_);
    }
    StepOutcome out;
    // Reduced over ranks, so every rank moves its cutoffs identically.
    out.forward = reduce_forward_result(combine_parts(local), comm_);
    if (model_.has_cutoffs())
      model_.update_cutoffs(router_state_, out.forward.layer_stats, moe.threshold_ema_rate);
    if (!std::isfinite(out.forward.loss))
      fail_nonfinite_now(s + 1, "the loss is " + std::to_string(out.forward.loss));
    out.grad_norm = device_ ? grad_norm : clip_grad_norm(grads_, config_.clip_norm, &comm_);
    if (!std::isfinite(out.grad_norm))
      fail_nonfinite_now(s + 1, "the gradient norm is " + std::to_string(out.grad_norm));
    out.lr = config_.schedule.lr_at(s);
    if (device_)
      device_->adamw_step(out.lr);
    else
      adam_.step(params_, grads_, out.lr);
    state_.step = s + 1;
    state_.tokens_seen += tokens_per_step();
    out.seconds = now_seconds() - t0;
    return out;
  }

  // The step's metrics line and progress; evaluation and checkpoint when their intervals say so
  // (not after the last step: finish() does both).
  void after_step(const StepOutcome& out) {
    const int64_t step = state_.step;  // 1-based in everything the user sees
    const double tokens_per_second = double(tokens_per_step()) / out.seconds;
    MetricsJson j;
    j["type"] = "train";
    j["step"] = step;
    j["loss"] = out.forward.loss;
    j["lm_loss"] = out.forward.lm_loss;
    j["aux"] = aux_json(out.forward.aux);
    j["lr"] = out.lr;
    j["grad_norm"] = out.grad_norm;
    j["targets"] = out.forward.counted;
    j["tokens"] = state_.tokens_seen;
    j["tokens_per_second"] = tokens_per_second;
    j["step_seconds"] = out.seconds;
    j["moe_layers"] = moe_layers_json(config_.model, out.forward.layer_stats);
    write_metrics(j);
    progress_->update(step, out.forward.loss, tokens_per_second);
    if (step == config_.steps) return;
    if (config_.eval.interval > 0 && config_.eval.batches > 0 && step % config_.eval.interval == 0)
      evaluate_now();
    if (config_.checkpoint_interval > 0 && step % config_.checkpoint_interval == 0) {
      save();
      progress_->message("step " + std::to_string(step) + ": saved " + checkpoint_path_);
    }
  }

  // Rank 0's clock decides for every rank, so that all stop at the same step.
  bool time_is_up(double elapsed, double limit) const {
    return comm_.root_decides(root_ && elapsed >= limit);
  }

  // Stopped by the time limit before `steps`: a checkpoint (if this invocation trained) to resume
  // from, a "stop" line, no final evaluation.
  TrainResult stop(TrainResult result, double limit) {
    if (state_.step > result.first_step) save();
    MetricsJson j;
    j["type"] = "stop";
    j["step"] = state_.step;
    j["reason"] = "time limit";
    j["time_limit_seconds"] = limit;
    write_metrics(j);
    progress_->message("step " + std::to_string(state_.step) + " of " +
                       std::to_string(config_.steps) + ": stopped by the time limit (" +
                       std::to_string(int64_t(limit)) + " s), checkpoint " + checkpoint_path_ +
                       "; --resume continues");
    progress_->finish();
    result.stopped = true;
    return summarise(std::move(result));
  }

  // The final checkpoint (if this invocation trained) and evaluation.
  TrainResult finish(TrainResult result) {
    if (state_.step > result.first_step) save();
    if (config_.eval.batches > 0) result.final_eval = evaluate_now();
    progress_->finish();
    return summarise(std::move(result));
  }

 private:
  TrainResult summarise(TrainResult result) const {
    result.config = config_;
    result.last_step = state_.step;
    result.checkpoint = checkpoint_path_;
    const int64_t steps_run = result.last_step - result.first_step;
    result.tokens_per_second =
        result.seconds > 0 ? double(steps_run * tokens_per_step()) / result.seconds : 0.0;
    return result;
  }

  static TrainConfig validated(TrainConfig config) {
    config.validate();
    return config;
  }
  int64_t tokens_per_step() const { return int64_t(config_.batch_size) * config_.model.seq_len; }
  void write_metrics(const MetricsJson& j) {
    if (metrics_) metrics_->write(j);
  }

  void restore() {
    const Checkpoint checkpoint = Checkpoint::open(checkpoint_path_);
    check_resume_config(checkpoint, config_);
    check_same_data(checkpoint, data_.ref);
    checkpoint.load_training_state(params_, adam_, state_);
    checkpoint.load_router_state(router_state_);
    ECMOE_CHECK(state_.step <= config_.steps, "the checkpoint in ", config_.out,
                " is already at step ", state_.step, ", past steps = ", config_.steps,
                " (steps counts from the start of the run): nothing to do; raise steps to "
                "train further");
  }

  MetricsJson start_json() const {
    MetricsJson start;
    start["type"] = "start";
    start["step"] = state_.step;
    start["resumed"] = options_.resume;
    start["parameters"] = model_.table().model_parameter_count();
    start["parameters_on_rank"] = model_.table().parameter_count();
    start["ecmoe_version"] = ECMOE_VERSION;
    start["ranks"] = comm_.size();
    start["precision"] = precision_name(config_.model.precision);
    start["device"] = options_.device ? options_.device->name : std::string("cpu");
    start["train_tokens"] = data_.train.size();  // the training split: epochs = tokens seen / it
    return start;
  }

  EvalResult evaluate_now() {
    EvalResult r = device_ ? evaluate_on_backend(model_, device_->params(), *val_batches_,
                                                 eval_batches_.batches, &router_state_)
                           : evaluate(model_, params_, *val_batches_, eval_batches_.batches,
                                      &router_state_, &comm_);
    MetricsJson j;
    j["type"] = "eval";
    j["step"] = state_.step;
    j["split"] = "val";
    j.update(eval_json(config_.model, r));
    write_metrics(j);
    progress_->message(eval_line(state_.step, r));
    return r;
  }

  // The host buffers, brought up to date from the device first.
  [[noreturn]] void fail_nonfinite_now(int64_t step, const std::string& what) {
    if (device_) {
      device_->store(params_, adam_);
      device_->store_grads(grads_);
    }
    fail_nonfinite(step, what, params_, grads_);
  }

  void save() {
    if (device_) device_->store(params_, adam_);
    if (const auto bad = first_nonfinite(params_))
      fail("refusing to checkpoint non-finite parameters at step ", state_.step, ": ",
           describe(*bad));
    save_checkpoint(checkpoint_path_, config_, data_.ref, params_, adam_, state_, &router_state_,
                    &comm_);
  }

  TrainConfig config_;
  const TrainOptions& options_;
  const dist::Comm& comm_;
  const bool root_;
  const DirLock lock_;
  const RunData data_;
  const std::string checkpoint_path_, metrics_path_;
  Transformer model_;
  FlatBuffer params_, grads_;
  AdamW adam_;
  TrainState state_;
  FlatBuffer router_state_;
  const BatchSource train_batches_;
  std::optional<BatchSource> val_batches_;
  FixedBatches eval_batches_;
  const Rng noise_;
  bool finished_ = false;
  std::optional<MetricsLog> metrics_;
  std::optional<Progress> progress_;
  std::unique_ptr<OptimizerDevice> device_;  // with TrainOptions::device: where the steps run
};

}  // namespace

TrainResult train(TrainConfig config, const TrainOptions& options) {
  const dist::Comm single = dist::Comm::single();
  TrainingRun run(std::move(config), options, options.comm ? *options.comm : single);
  TrainResult result;
  result.first_step = run.step();
  const double start = now_seconds(), limit = options.time_limit_seconds;
  while (!run.done()) {
    const StepOutcome out = run.train_step();
    result.seconds += out.seconds;
    run.after_step(out);
    if (limit > 0 && !run.done() && run.time_is_up(now_seconds() - start, limit))
      return run.stop(std::move(result), limit);
  }
  return run.finish(std::move(result));
}

}  // namespace ecmoe
