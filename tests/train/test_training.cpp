// The training loop end to end on a tiny model and a data folder the test writes: resuming is
// bit-exact, checkpoints that do not fit or are damaged are refused with a clear error, and a
// diverging run stops at once naming the step and a tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "train_test_util.h"

using namespace ecmoe;
using ecmoe::train_test::TempDir;

namespace {

constexpr int kVocab = 64;

class Training : public ::testing::Test {
 protected:
  void SetUp() override { train_test::write_data_folder(dir / "data", kVocab, 20000, 3000); }

  TrainResult run(TrainConfig config, bool resume = false) {
    return train_test::train_quietly(config, resume);
  }

  std::string error_of(const TrainConfig& config, bool resume = false) {
    try {
      run(config, resume);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }

  TrainConfig tiny(const std::string& out) {
    return train_test::tiny_config(dir / "data", dir / out);
  }

  TempDir dir{"train-loop"};
};

}  // namespace

TEST_F(Training, ResumeIsBitwiseIdentical) {
  for (const char* router : {"expert_choice", "top2"}) {
    SCOPED_TRACE(router);
    TrainConfig straight = tiny(std::string("straight-") + router);
    straight.model.moe = default_moe_config(parse_router_kind(router));
    straight.model.moe.n_experts = 4;
    straight.model.moe.jitter = router == std::string("top2") ? 0.1f : 0.f;  // noise is replayed
    straight.checkpoint_interval = 0;
    run(straight);

    TrainConfig first = straight;
    first.out = dir / (std::string("resumed-") + router);
    first.steps = 3;
    run(first);
    TrainConfig second = first;
    second.steps = 6;
    const TrainResult r = run(second, /*resume=*/true);
    EXPECT_EQ(r.first_step, 3);
    EXPECT_EQ(r.last_step, 6);

    const auto a = train_test::train_lines(straight.out + "/metrics.jsonl");
    const auto b = train_test::train_lines(second.out + "/metrics.jsonl");
    ASSERT_EQ(a.size(), 6u);
    ASSERT_EQ(b.size(), 6u);
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i]["step"], b[i]["step"]);
      // Exact equality of the doubles, not a tolerance.
      EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
      EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>());
      EXPECT_EQ(a[i]["moe_layers"], b[i]["moe_layers"]);
    }
    // And the final parameters and moments are the same bytes.
    FlatBuffer pa, pb;
    const Checkpoint ca = Checkpoint::open(straight.out + "/checkpoint.safetensors");
    const Checkpoint cb = Checkpoint::open(second.out + "/checkpoint.safetensors");
    EXPECT_EQ(ca.step(), 6);
    EXPECT_EQ(cb.step(), 6);
    const auto ta = SafetensorsFile::open(ca.path()), tb = SafetensorsFile::open(cb.path());
    ASSERT_EQ(ta.names(), tb.names());
    for (const auto& name : ta.names()) {
      const auto x = ta.bytes(name), y = tb.bytes(name);
      ASSERT_EQ(x.size(), y.size());
      EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << name;
    }
  }
}

// --time-limit: a run stopped by its time limit leaves a checkpoint and a "stop" line, and runs
// continued from it (again limited, then not) end bit-identical to a run never stopped.
TEST_F(Training, TimeLimitStopsAtACheckpointAndResumesBitwise) {
  TrainConfig straight = tiny("limit-straight");
  straight.checkpoint_interval = 0;
  run(straight);

  TrainConfig limited = straight;
  limited.out = dir / "limit-stopped";
  std::FILE* sink = std::fopen("/dev/null", "w");
  auto run_limited = [&](bool resume) {
    return train(limited, {.resume = resume,
                           .terminal = false,
                           .progress = sink,
                           .time_limit_seconds = 1e-9});  // up at the first step boundary
  };
  const TrainResult first = run_limited(false);
  EXPECT_TRUE(first.stopped);
  EXPECT_EQ(first.last_step, 1);
  EXPECT_FALSE(first.final_eval.has_value());
  EXPECT_EQ(Checkpoint::open(first.checkpoint).step(), 1);
  const TrainResult second = run_limited(true);
  EXPECT_TRUE(second.stopped);
  EXPECT_EQ(second.first_step, 1);
  EXPECT_EQ(second.last_step, 2);
  std::fclose(sink);
  const TrainResult rest = run(limited, /*resume=*/true);
  EXPECT_FALSE(rest.stopped);
  EXPECT_EQ(rest.last_step, straight.steps);
  ASSERT_TRUE(rest.final_eval.has_value());

  const auto a = train_test::train_lines(straight.out + "/metrics.jsonl");
  const auto b = train_test::train_lines(limited.out + "/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
  std::ifstream metrics(limited.out + "/metrics.jsonl");
  int stops = 0;
  for (std::string line; std::getline(metrics, line);)
    stops += line.find("\"type\":\"stop\"") != std::string::npos;
  EXPECT_EQ(stops, 2);
  const auto ta = SafetensorsFile::open(straight.out + "/checkpoint.safetensors"),
             tb = SafetensorsFile::open(limited.out + "/checkpoint.safetensors");
  for (const auto& name : ta.names()) {
    const auto x = ta.bytes(name), y = tb.bytes(name);
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << name;
  }
}

TEST_F(Training, ResumeDropsMetricsTheCheckpointLost) {
  TrainConfig c = tiny("lost");
  c.steps = 4;
  c.checkpoint_interval = 2;
  run(c);
  // Pretend the run died after logging step 4 but with the checkpoint of step 2 on disk: write a
  // step-2 checkpoint by rerunning 2 steps elsewhere and copying it in.
  TrainConfig two = tiny("two");
  two.steps = 2;
  run(two);
  std::filesystem::copy_file(two.out + "/checkpoint.safetensors", c.out + "/checkpoint.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  {
    std::ofstream torn(c.out + "/metrics.jsonl", std::ios::app);
    torn << R"({"type":"train","step":5,"lo)";  // a line cut by the kill
  }
  run(c, /*resume=*/true);
  const auto lines = train_test::train_lines(c.out + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  for (std::size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i]["step"], i + 1);
}

TEST_F(Training, LearnsThePattern) {
  TrainConfig c = tiny("learn");
  // Next-token prediction of the pattern needs only the current token, so a tiny model learns
  // it in a few hundred steps (masked LM needs attention to the neighbours and takes longer).
  c.model.kind = ModelKind::kDecoder;
  c.steps = 200;
  c.batch_size = 8;
  c.schedule.peak_lr = 1e-2f;
  c.eval.interval = 0;
  c.checkpoint_interval = 0;
  const TrainResult r = run(c);
  ASSERT_TRUE(r.final_eval.has_value());
  const auto lines = train_test::train_lines(c.out + "/metrics.jsonl");
  const double initial = lines.front()["lm_loss"];
  EXPECT_NEAR(initial, std::log(double(kVocab)), 0.5);
  EXPECT_LT(r.final_eval->loss, initial - 1.0);
  EXPECT_NEAR(r.final_eval->perplexity, std::exp(r.final_eval->loss), 1e-9);
  EXPECT_EQ(r.config.model.vocab_size, kVocab);  // taken from the data
  // Routing statistics of the MoE layer (layer 1) are reported; expert choice fills every expert.
  ASSERT_EQ(r.final_eval->layers.size(), 2u);
  const RoutingStats& s = r.final_eval->layers[1];
  EXPECT_EQ(s.tokens_per_expert.size(), 4u);
  for (int64_t load : s.tokens_per_expert) EXPECT_EQ(load, s.tokens_per_expert[0]);
  EXPECT_NEAR(s.mean_experts_per_token(), 2.0, 1e-9);
}

TEST_F(Training, MetricsLinesHaveTheDocumentedFields) {
  TrainConfig c = tiny("metrics");
  c.model.moe = default_moe_config(RouterKind::kTop1);
  c.model.moe.n_experts = 4;
  c.steps = 2;
  run(c);
  std::ifstream in(c.out + "/metrics.jsonl");
  std::string line;
  int train = 0, eval = 0, start = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j["type"] == "start") ++start;
    if (j["type"] == "train") {
      ++train;
      for (const char* key :
           {"step", "loss", "lm_loss", "aux", "lr", "grad_norm", "tokens_per_second", "moe_layers"})
        EXPECT_TRUE(j.contains(key)) << key;
      EXPECT_GT(j["aux"]["load_balance"].get<double>(), 0.0);
      ASSERT_EQ(j["moe_layers"].size(), 1u);
      const auto& layer = j["moe_layers"][0];
      EXPECT_EQ(layer["layer"], 1);
      for (const char* key : {"tokens_per_expert", "experts_per_token", "dropped_fraction",
                              "max_demand_over_capacity", "router_entropy"})
        EXPECT_TRUE(layer.contains(key)) << key;
      EXPECT_EQ(layer["experts_per_token"].size(), 6u);
    }
    if (j["type"] == "eval") {
      ++eval;
      EXPECT_GT(j["perplexity"].get<double>(), 1.0);
      EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(j["loss"].get<double>()), 1e-6);
    }
  }
  EXPECT_EQ(start, 1);
  EXPECT_EQ(train, 2);
  EXPECT_EQ(eval, 1);  // interval 2 = the last step: only the final evaluation
  EXPECT_TRUE(std::filesystem::exists(c.out + "/config.json"));
}

TEST_F(Training, CheckpointMetadata) {
  TrainConfig c = tiny("meta");
  c.steps = 2;
  run(c);
  const Checkpoint ck = Checkpoint::open(c.out + "/checkpoint.safetensors");
  EXPECT_EQ(ck.step(), 2);
  EXPECT_EQ(ck.state().tokens_seen, 2 * 4 * 16);
  EXPECT_EQ(ck.config().model.vocab_size, kVocab);
  EXPECT_EQ(ck.config().model.d_model, 16);
  EXPECT_EQ(ck.data().vocab_size, kVocab);
  EXPECT_EQ(ck.data().tokenizer, dir / "data/tokenizer.model");
  EXPECT_EQ(ck.data().tokenizer_checksum.rfind("fnv1a64:", 0), 0u);
  const auto& m = ck.metadata();
  EXPECT_EQ(m.at("format"), "ecmoe-train-checkpoint");
  EXPECT_EQ(m.at("format_version"), "2");
  EXPECT_EQ(m.at("ecmoe_version"), ECMOE_VERSION);
  EXPECT_EQ(m.at("step"), "2");
  const auto file = SafetensorsFile::open(ck.path());
  EXPECT_TRUE(file.contains("embed.tokens"));
  EXPECT_TRUE(file.contains("adam_m.embed.tokens"));
  EXPECT_TRUE(file.contains("adam_v.embed.tokens"));
  EXPECT_TRUE(file.contains("train.step"));
  EXPECT_TRUE(file.contains("optim.adam_step"));
}

TEST_F(Training, RefusesAMismatchedCheckpoint) {
  TrainConfig c = tiny("mismatch");
  c.steps = 2;
  run(c);
  TrainConfig wider = c;
  wider.model.d_model = 32;
  wider.model.moe.router = RouterKind::kTop1;
  const std::string e = error_of(wider, /*resume=*/true);
  EXPECT_NE(e.find("does not match the config"), std::string::npos) << e;
  EXPECT_NE(e.find("model.d_model is 16 in the checkpoint, 32 in this run"), std::string::npos)
      << e;
  EXPECT_NE(e.find("model.moe.router"), std::string::npos) << e;
  // What a resumed run may change is fine.
  TrainConfig longer = c;
  longer.steps = 3;
  longer.eval.batches = 1;
  EXPECT_EQ(run(longer, true).last_step, 3);

  // Other data (another tokenizer) is refused too.
  train_test::write_data_folder(dir / "other", kVocab + 1, 20000, 3000);
  TrainConfig other = longer;
  other.data.dir = dir / "other";
  other.steps = 4;
  EXPECT_NE(error_of(other, true).find("model.vocab_size is 64 in the checkpoint, 65"),
            std::string::npos);
  train_test::write_data_folder(dir / "retokenized", kVocab, 20000, 3000, /*seed=*/8);
  other.data.dir = dir / "retokenized";
  EXPECT_NE(error_of(other, true).find("was trained on data with tokenizer"), std::string::npos);
  // Not resuming into a folder with a checkpoint, and resuming from nothing, are errors.
  EXPECT_NE(error_of(c).find("already holds a checkpoint"), std::string::npos);
  EXPECT_NE(error_of(tiny("empty"), true).find("nothing to resume"), std::string::npos);
}

TEST_F(Training, RefusesADamagedCheckpoint) {
  TrainConfig c = tiny("damaged");
  c.steps = 2;
  run(c);
  const std::string path = c.out + "/checkpoint.safetensors";
  const std::string good = train_test::read_text(path);
  const auto expect_refused = [&](const std::string& bytes, const std::string& fragment) {
    train_test::write_text(path, bytes);
    const std::string e = error_of(c, /*resume=*/true);
    EXPECT_NE(e.find(fragment), std::string::npos) << e;
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  };
  std::string flipped = good;
  flipped[flipped.size() - 100] ^= 0x10;  // a weight or moment bit
  expect_refused(flipped, "damaged");
  expect_refused(good.substr(0, good.size() / 2), "");  // truncated: safetensors' own message
  std::string header = good;
  header[12] = '#';  // inside the JSON header
  expect_refused(header, "");
  expect_refused("not a checkpoint", "");
  // A valid safetensors file that is no training checkpoint.
  save_safetensors(path, {{"x", DType::F32, {1}, &c.clip_norm}});
  expect_refused(train_test::read_text(path), "not an ecmoe training checkpoint");
  // The good bytes still resume.
  train_test::write_text(path, good);
  c.steps = 3;
  EXPECT_EQ(run(c, true).last_step, 3);
}

TEST_F(Training, DivergenceNamesTheStepAndATensor) {
  TrainConfig c = tiny("nan");
  c.schedule.peak_lr = 1e30f;
  c.schedule.warmup_steps = 0;
  c.steps = 5;
  const std::string e = error_of(c);
  EXPECT_TRUE(std::regex_search(e, std::regex("training diverged at step [0-9]+: "))) << e;
  EXPECT_TRUE(std::regex_search(
      e, std::regex("first non-finite (parameter|gradient): [a-z_]+(\\.[a-z0-9_]+)* \\(element")))
      << e;
  // The run died before its first checkpoint: nothing non-finite was written.
  EXPECT_FALSE(std::filesystem::exists(c.out + "/checkpoint.safetensors"));
}

TEST_F(Training, MissingDataAndWrongVocabulary) {
  TrainConfig c = tiny("nodata");
  c.data.dir = dir / "no-such-folder";
  EXPECT_NE(error_of(c).find("does not exist"), std::string::npos);
  c = tiny("vocab");
  c.model.vocab_size = 100;
  EXPECT_NE(error_of(c).find("model.vocab_size is 100 but the data"), std::string::npos);
}
