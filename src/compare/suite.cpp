#include "compare/suite.h"

#include "core/error.h"

namespace ecmoe::compare {

namespace {

struct Variant {
  std::string slug;   // folder prefix
  std::string label;  // report label
  std::vector<std::string> sets;
  int seeds;
  std::vector<std::string> eval_routers = {};
};

// paper-small: the paper's Table/Figure comparisons on the `small` encoder (masked LM). Switching
// model.moe.router brings the router's defaults (config_overrides.h): top-1/top-2 train at
// capacity factor 1.25, evaluate at 2.0, load-balancing weight 0.01; expert choice c = 2.
std::vector<Variant> encoder_variants(int core_seeds) {
  const std::string cf = "model.moe.capacity_factor_";
  return {
      {"dense", "dense", {"model.moe.router=dense"}, core_seeds},
      {"top1", "top-1", {"model.moe.router=top1"}, core_seeds},
      {"top2", "top-2", {"model.moe.router=top2"}, core_seeds},
      {"ec-c2", "EC c=2", {"model.moe.router=expert_choice"}, core_seeds},
      {"ec-c1", "EC c=1", {"model.moe.router=expert_choice", cf + "train=1", cf + "eval=1"}, 1},
      {"ec-c0.5",
       "EC c=0.5",
       {"model.moe.router=expert_choice", cf + "train=0.5", cf + "eval=0.5"},
       1},
      {"ec-cap2",
       "EC-CAP b=2",
       {"model.moe.router=expert_choice_capped", "model.moe.capped.max_experts_per_token=2"},
       1},
      {"ec-cap3",
       "EC-CAP b=3",
       {"model.moe.router=expert_choice_capped", "model.moe.capped.max_experts_per_token=3"},
       1},
      {"hash", "hash", {"model.moe.router=hash"}, 1},
  };
}

// The decoder comparison: next-token LM, top-2 against expert choice, and expert choice made
// causal by thresholds (docs/causal.md). Top-2 routes each sequence on its own (group = one
// sequence), which removes leaks between sequences but not within one: first choices are placed
// before second choices, so a later token can take an earlier token's second slot once capacity
// binds (the report measures it). Expert choice keeps the paper's batch-wide group, which leaks
// by design; its checkpoints
// are also evaluated with the thresholds they calibrated while training. The threshold-trained
// variant routes by expert choice for its first quarter (warm-up), then by its cutoffs.
std::vector<Variant> decoder_variants(int core_seeds, int seq_len, int threshold_warmup) {
  const std::string group = "model.moe.group_size=" + std::to_string(seq_len);
  return {
      {"dec-top2",
       "decoder top-2",
       {"model.kind=decoder", "model.moe.router=top2", group},
       core_seeds},
      {"dec-ec-c2",
       "decoder EC c=2",
       {"model.kind=decoder", "model.moe.router=expert_choice"},
       core_seeds,
       {"expert_threshold"}},
      {"dec-thr-c2",
       "decoder EC-threshold-trained c=2",
       {"model.kind=decoder", "model.moe.router=expert_threshold",
        "model.moe.threshold_warmup_steps=" + std::to_string(threshold_warmup)},
       core_seeds},
  };
}

// paper-gpu (issue 17): the paper's core comparison at >= 100x paper-small's tokens per run, on
// the GPU model: two seeds of the four main settings, one of the two cheaper questions (the cap,
// c = 1), and the decoder question: top-2 against expert choice made causal by thresholds.
std::vector<Variant> gpu_encoder_variants() {
  const std::string cf = "model.moe.capacity_factor_";
  return {
      {"dense", "dense", {"model.moe.router=dense"}, 2},
      {"top1", "top-1", {"model.moe.router=top1"}, 2},
      {"top2", "top-2", {"model.moe.router=top2"}, 2},
      {"ec-c2", "EC c=2", {"model.moe.router=expert_choice"}, 2},
      {"ec-cap2",
       "EC-CAP b=2",
       {"model.moe.router=expert_choice_capped", "model.moe.capped.max_experts_per_token=2"},
       1},
      {"ec-c1", "EC c=1", {"model.moe.router=expert_choice", cf + "train=1", cf + "eval=1"}, 1},
  };
}

std::vector<Variant> gpu_decoder_variants(int seq_len, int threshold_warmup) {
  std::vector<Variant> all = decoder_variants(1, seq_len, threshold_warmup);
  return {all[0], all[2]};  // top-2 per sequence, threshold-trained expert choice
}

void add_runs(Suite& suite, const std::string& family, const std::vector<Variant>& variants,
              bool leakage) {
  for (const Variant& v : variants)
    for (int s = 1; s <= v.seeds; ++s)
      suite.runs.push_back({.name = v.slug + "-s" + std::to_string(s),
                            .variant = v.label,
                            .family = family,
                            .seed = uint64_t(s),
                            .sets = v.sets,
                            .measure_leakage = leakage,
                            .eval_routers = v.eval_routers});
}

}  // namespace

std::vector<std::string> suite_names() { return {"paper-small", "paper-gpu", "finetune-small"}; }

namespace {

// The same runs on the tiny model for 40 steps: a CPU plumbing check of a suite's code path.
void set_quick_base(Suite& suite) {
  suite.base_config = "tiny";
  suite.base_sets = {"steps=40",       "schedule.warmup_steps=5", "eval.interval=10",
                     "eval.batches=2", "checkpoint_interval=0",   "log_interval=10"};
}

// Budget: 2,500 steps of 64 x 512 tokens = 81.9M tokens a run, 100x paper-small's 819k. The
// model is configs/gpu-small.json (docs/cuda.md); validation every 100 steps on 16 batches for
// the curves. A checkpoint is 22.5 GB with the AdamW moments, so none is written along the way
// (a `--time-limit` stop and the end of a run write one), and a finished run's is deleted once
// its results are written: twelve would not fit the GPU machine's 64 GB disk.
Suite paper_gpu(bool quick) {
  Suite suite;
  suite.name = "paper-gpu";
  suite.keep_checkpoints = false;
  if (quick) {
    suite.description = "paper-gpu --quick: the tiny model for 40 steps (plumbing check only)";
    set_quick_base(suite);
    add_runs(suite, "encoder", gpu_encoder_variants(), false);
    add_runs(suite, "decoder", gpu_decoder_variants(32, 10), true);
    return suite;
  }
  suite.description =
      "paper-gpu: the `gpu-small` encoder (d 768, 12 layers, 12 heads, 64 experts in every other "
      "layer, seq 512, batch 64) trained for 2,500 steps (81.9M tokens, 100x paper-small) per "
      "run";
  suite.base_config = "gpu-small";
  // english-large (docs/training.md, "Named corpora"): 13.8M training tokens, so a run is ~6
  // epochs of it rather than ~11 of english's 7.3M.
  suite.base_sets = {"steps=2500",
                     "schedule.warmup_steps=200",
                     "eval.interval=100",
                     "eval.batches=16",
                     "checkpoint_interval=0",
                     "log_interval=50",
                     "data.dir=data/english-large"};
  add_runs(suite, "encoder", gpu_encoder_variants(), false);
  add_runs(suite, "decoder", gpu_decoder_variants(512, 625), true);
  return suite;
}

}  // namespace

Suite make_suite(const std::string& name, bool quick) {
  if (name == "paper-gpu") return paper_gpu(quick);
  ECMOE_CHECK(name == "paper-small", "unknown suite '", name,
              "' (known: paper-small, paper-gpu, finetune-small)");
  Suite suite;
  suite.name = name;
  if (quick) {
    suite.description = "paper-small --quick: the tiny model for 40 steps (plumbing check only)";
    set_quick_base(suite);
    add_runs(suite, "encoder", encoder_variants(2), false);
    add_runs(suite, "decoder", decoder_variants(1, 32, 10), true);
    return suite;
  }
  suite.description =
      "paper-small: the `small` encoder (d 256, 4 layers, 8 experts in layers 1 and 3, seq 128, "
      "batch 32) trained for 200 steps (819k tokens) per run";
  suite.base_config = "small";
  suite.base_sets = {"steps=200",      "schedule.warmup_steps=50", "eval.interval=20",
                     "eval.batches=8", "checkpoint_interval=0",    "log_interval=20"};
  add_runs(suite, "encoder", encoder_variants(3), false);
  add_runs(suite, "decoder", decoder_variants(2, 128, 50), true);
  return suite;
}

std::vector<std::string> run_overrides(const Suite& suite, const SuiteRun& run) {
  std::vector<std::string> sets = suite.base_sets;
  sets.insert(sets.end(), run.sets.begin(), run.sets.end());
  sets.push_back("seeds.init=" + std::to_string(run.seed));
  sets.push_back("seeds.data=" + std::to_string(run.seed));
  return sets;
}

}  // namespace ecmoe::compare
