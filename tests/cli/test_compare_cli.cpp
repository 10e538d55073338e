// `ecmoe compare --quick` end to end on a data folder the test writes: every run trains, the
// report has every table with numbers that obey the routers' invariants, the figures are PNGs,
// the raw metrics are copied, a second invocation keeps the finished runs, and a folder that
// holds a different run is refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "cli_test_util.h"
#include "data/prepare.h"

namespace ecmoe {
namespace {

namespace fs = std::filesystem;
using train_test::read_text;
using train_test::TempDir;

struct Command {
  int status;
  std::string output;  // stdout then stderr
};

Command run(const std::string& args) {
  const auto err = std::filesystem::temp_directory_path() /
                   ("ecmoe-compare-stderr-" + std::to_string(::getpid()));
  const cli_test::CliRun r = cli_test::run_ecmoe(args, err.string());
  std::filesystem::remove(err);
  return {r.status, r.out + r.err};
}

// --device cuda in a build without the CUDA backend: a one-line error naming the build (unused
// in a CUDA build).
[[maybe_unused]] void expect_refused_without_cuda(const std::string& args) {
  const Command gpu = run(args + " --device cuda");
  EXPECT_NE(gpu.status, 0);
  EXPECT_NE(gpu.output.find("--device cuda: this ecmoe was built without the CUDA backend"),
            std::string::npos)
      << gpu.output;
}

// The table row of a variant in the report ("| EC c=2 | ...").
std::string row(const std::string& report, const std::string& variant) {
  const std::size_t at = report.find("\n| " + variant + " |");
  if (at == std::string::npos) return "";
  return report.substr(at + 1, report.find('\n', at + 1) - at - 1);
}

// The numbers in the cells after the variant's name of a "%"-table row.
std::vector<double> percents(const std::string& line) {
  std::vector<double> out;
  static const std::regex number(R"(([0-9]+\.[0-9]+)%)");
  for (auto it = std::sregex_iterator(line.begin(), line.end(), number);
       it != std::sregex_iterator(); ++it)
    out.push_back(std::stod((*it)[1]));
  return out;
}

bool is_png(const std::string& path) {
  const std::string bytes = read_text(path);
  return bytes.size() > 1000 && bytes.compare(1, 3, "PNG") == 0;
}

TEST(CompareCli, QuickSuiteWritesACompleteReport) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    GTEST_FAIL() << "gnuplot is needed for the report's figures (scripts/install-deps.sh)";
  TempDir dir("compare");
  train_test::write_data_folder(dir / "data", 300, 40000, 8000);
  const std::string out = dir / "runs", report = dir / "docs/pretrain.md";
  const std::string args = "--threads 2 compare --quick --out " + out + " --report " + report +
                           " --set data.dir=" + (dir / "data");
  const Command first = run(args);
  ASSERT_EQ(first.status, 0) << first.output;
  const std::string md = read_text(report);

  for (const char* variant :
       {"dense", "top-1", "top-2", "EC c=2", "EC c=1", "EC c=0.5", "EC-CAP b=2", "EC-CAP b=3",
        "hash", "decoder top-2", "decoder EC c=2", "decoder EC-threshold-trained c=2"})
    EXPECT_NE(row(md, variant), "") << "no row for " << variant;
  EXPECT_NE(md.find("did not hold here**") == std::string::npos &&
                md.find("held here**") == std::string::npos,
            true)
      << "no verdict on the 2x claim";
  EXPECT_NE(md.find("steps to top-2's final ppl"), std::string::npos);
  EXPECT_NE(md.find("Made by `ecmoe compare --suite paper-small --quick"), std::string::npos);
  // Seeds: the core routers were run twice in --quick, so they show a spread.
  EXPECT_NE(row(md, "top-2").find(" | 2 | "), std::string::npos);
  EXPECT_NE(row(md, "top-2").find(" ± "), std::string::npos);

  // Decoders: every row has its leakage, exactly 0 for the causal routings and not for batch
  // expert choice; the expert-choice checkpoints are also evaluated with their thresholds.
  const std::string dec = md.substr(md.find("## Decoder"));
  const std::string top2_row = row(dec, "decoder top-2");
  EXPECT_NE(top2_row.find("| top2 | 1 |"), std::string::npos) << top2_row;
  EXPECT_NE(top2_row.find("**0** (exact)"), std::string::npos) << top2_row;
  EXPECT_NE(top2_row.find("tokens/s"), std::string::npos) << top2_row;
  const std::size_t ec_at = dec.find("\n| decoder EC c=2 | expert_choice |");
  ASSERT_NE(ec_at, std::string::npos) << dec;
  const std::string ec_row = dec.substr(ec_at + 1, dec.find('\n', ec_at + 1) - ec_at - 1);
  EXPECT_EQ(ec_row.find("(exact)"), std::string::npos) << "batch expert choice did not leak";
  EXPECT_NE(ec_row.find("not causal per token"), std::string::npos) << ec_row;
  for (const char* causal : {"\n| decoder EC c=2 | expert_threshold |",
                             "\n| decoder EC-threshold-trained c=2 | expert_threshold |"}) {
    const std::size_t at = dec.find(causal);
    ASSERT_NE(at, std::string::npos) << causal;
    const std::string causal_row = dec.substr(at + 1, dec.find('\n', at + 1) - at - 1);
    EXPECT_NE(causal_row.find("**0** (exact)"), std::string::npos) << causal_row;
  }
  EXPECT_NE(md.find("so the leak was worth"), std::string::npos);

  // Experts-per-token histograms: shares sum to 100%, and their mean is the capacity factor
  // exactly (each expert takes exactly k = c·n/e tokens per group), up to the table's rounding.
  const std::string hist_section = md.substr(md.find("### Experts per token"));
  for (const auto& [variant, c] :
       {std::pair{"EC c=2", 2.0}, {"EC c=1", 1.0}, {"EC c=0.5", 0.5}, {"EC-CAP b=3", 2.0}}) {
    const std::vector<double> p = percents(row(hist_section, variant));
    ASSERT_EQ(p.size(), 7u) << row(hist_section, variant);
    double sum = 0, mean = 0;
    for (int b = 0; b < 6; ++b) {
      sum += p[b];
      mean += b * p[b] / 100;
    }
    EXPECT_NEAR(sum, 100.0, 0.3) << variant;
    EXPECT_NEAR(mean, c, 0.02) << variant;
    EXPECT_NEAR(p[6], p[3] + p[4], 0.11) << variant;
  }
  // The cap holds: under b = 2 no token has more than two experts.
  const std::vector<double> capped = percents(row(hist_section, "EC-CAP b=2"));
  ASSERT_EQ(capped.size(), 7u);
  EXPECT_EQ(capped[3] + capped[4] + capped[5], 0.0);
  // Token choice drops something at capacity factor 1.25 with a near-uniform router, never more
  // than all of it; expert choice never drops (it has no such row).
  std::string cap_section = md.substr(md.find("### Capacity in token choice"));
  cap_section = cap_section.substr(0, cap_section.find("\n## "));
  const std::vector<double> top1 = percents(row(cap_section, "top-1"));
  ASSERT_GE(top1.size(), 3u);
  EXPECT_LE(top1[0], 100.0);
  EXPECT_EQ(row(cap_section, "EC c=2"), "");

  // Over training: the speed-up at four points, the last of which is the final speed-up; the
  // experts-per-token shares at several validations, each a histogram whose mean is c; the
  // epochs each run trained and the verdict's sentences on both.
  const std::string over = md.substr(md.find("Over training: at each fraction"));
  const std::string ec_top2 = row(over, "EC c=2 | top-2");
  EXPECT_EQ(std::count(ec_top2.begin(), ec_top2.end(), '|'), 7) << ec_top2;
  const std::string final_cell = row(md, "EC c=2");  // the final speed-up table's row
  if (final_cell.find("steps → **") != std::string::npos) {
    const std::size_t at = final_cell.find("steps → **") + 10;
    const std::string final_ratio = final_cell.substr(at, final_cell.find("**", at) - at);
    EXPECT_NE(ec_top2.rfind("**" + final_ratio + "**"), std::string::npos)
        << "the 100% point is not the final speed-up: " << ec_top2 << " / " << final_cell;
  }
  EXPECT_NE(md.find("- Does the speed-up grow with training? EC c=2's step speed-up over top-2"),
            std::string::npos);
  std::string hist_over = md.substr(md.find("Over training (validation points"));
  hist_over = hist_over.substr(0, hist_over.find("\n\n", hist_over.find("| --- |")));
  int hist_rows = 0;
  for (std::size_t at = hist_over.find("\n| EC-CAP b=2 | "); at != std::string::npos;
       at = hist_over.find("\n| EC-CAP b=2 | ", at + 1)) {
    const std::string line = hist_over.substr(at + 1, hist_over.find('\n', at + 1) - at - 1);
    const std::vector<double> p = percents(line);  // 0, 1, 2, 3-4, >4 experts
    ASSERT_EQ(p.size(), 5u) << line;
    EXPECT_NEAR(p[0] + p[1] + p[2] + p[3] + p[4], 100.0, 0.3) << line;
    EXPECT_EQ(p[3] + p[4], 0.0) << "the cap b = 2 broken during training: " << line;
    ++hist_rows;
  }
  EXPECT_GE(hist_rows, 4);  // validations at steps 10, 20, 30, 40
  const std::string length = md.substr(md.find("## Training length and overfitting"));
  const std::string dense_length = row(length, "dense");
  EXPECT_EQ(dense_length.find("not recorded"), std::string::npos) << dense_length;
  EXPECT_NE(dense_length.find("| 0.0102M |"), std::string::npos) << dense_length;  // 40 x 8 x 32
  EXPECT_NE(md.find("- Budget and overfitting: each run saw its training split"),
            std::string::npos);

  // Figures and raw metrics.
  const fs::path figures = fs::path(dir / "docs") / "pretrain";
  for (const char* png :
       {"perplexity_vs_step.png", "perplexity_vs_step_late.png", "perplexity_vs_time.png",
        "experts_per_token.png", "experts_per_token_over_training.png",
        "decoder_perplexity_vs_step.png"}) {
    EXPECT_TRUE(is_png((figures / png).string())) << png;
    EXPECT_NE(md.find(std::string("pretrain/") + png), std::string::npos) << png;
  }
  EXPECT_TRUE(fs::exists(figures / "plots.gp"));
  for (const char* run : {"ec-c2-s2", "dec-ec-c2-s1", "hash-s1"})
    EXPECT_GT(fs::file_size(figures / "runs" / run / "metrics.jsonl"), 100u) << run;

  // Again: every run is kept, and the report is rewritten from the same runs.
  const Command second = run(args);
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("[1/"), std::string::npos);
  EXPECT_EQ(second.output.find("seed 1)\n"), std::string::npos) << "a finished run was redone";
  EXPECT_EQ(row(read_text(report), "EC c=2"), row(md, "EC c=2"));
#ifndef ECMOE_HAVE_CUDA
  expect_refused_without_cuda(args);  // --device cuda fine-tunes on the GPU
#endif

  // A different budget in the same folder is refused, naming the folder.
  const Command changed = run(args + " --set steps=41");
  EXPECT_NE(changed.status, 0);
  EXPECT_NE(changed.output.find("holds a finished run with a different config"), std::string::npos)
      << changed.output;
  EXPECT_EQ(changed.output.find('\n'), changed.output.size() - 1) << "not one line";

  const Command unknown = run("compare --suite nope --out " + out);
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.output.find("unknown suite 'nope'"), std::string::npos);
}

// paper-gpu's code path on the CPU (issue 17): --quick trains its runs on the tiny model, and
// the report has every variant of the suite and nothing else; --list shows the full budget.
TEST(CompareCli, QuickPaperGpuSuiteRunsOnTheCpu) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    GTEST_FAIL() << "gnuplot is needed for the report's figures (scripts/install-deps.sh)";
  TempDir dir("compare-gpu");
  train_test::write_data_folder(dir / "data", 300, 40000, 8000);
  const std::string out = dir / "runs", report = dir / "pretrain-gpu.md";
  const Command quick = run("--threads 2 compare --suite paper-gpu --quick --out " + out +
                            " --report " + report + " --set data.dir=" + (dir / "data"));
  ASSERT_EQ(quick.status, 0) << quick.output;
  EXPECT_NE(quick.output.find("[12/12] dec-thr-c2-s1"), std::string::npos) << quick.output;
  const std::string md = read_text(report);
  for (const char* variant : {"dense", "top-1", "top-2", "EC c=2", "EC-CAP b=2", "EC c=1",
                              "decoder top-2", "decoder EC-threshold-trained c=2"})
    EXPECT_NE(row(md, variant), "") << "no row for " << variant;
  for (const char* absent : {"EC c=0.5", "EC-CAP b=3", "hash", "decoder EC c=2"})
    EXPECT_EQ(row(md, absent), "") << absent << " is not in paper-gpu";
  EXPECT_NE(row(md, "EC c=2").find(" | 2 | "), std::string::npos);  // two seeds
  EXPECT_NE(md.find("Made by `ecmoe compare --suite paper-gpu --quick"), std::string::npos);
  // Finished runs keep their results, not their checkpoints (they would not fit a GPU machine's
  // disk side by side).
  for (const char* name : {"ec-c2-s1", "top2-s2", "dec-thr-c2-s1"}) {
    const fs::path run_dir = fs::path(out) / name;
    EXPECT_TRUE(fs::exists(run_dir / "result.json")) << name;
    EXPECT_FALSE(fs::exists(run_dir / "checkpoint.safetensors")) << name;
    EXPECT_EQ(nlohmann::json::parse(read_text(run_dir / "result.json"))["checkpoint_kept"], false);
  }

  // The suite in parts, on machines that keep nothing between sessions (the GPU machine): what
  // one session brought back (here the report's raw runs, decoders left out) is imported by the
  // next. A partial report covers the finished runs and says so.
  const fs::path carried = dir / "carried";
  fs::create_directories(carried);
  for (const fs::directory_entry& e : fs::directory_iterator(dir / "pretrain-gpu/runs"))
    if (e.path().filename().string().rfind("dec-", 0) != 0)
      fs::copy(e.path(), carried / e.path().filename(), fs::copy_options::recursive);
  const std::string data_set = " --set data.dir=" + (dir / "data");
  const std::string next = dir / "next", partial_md = dir / "partial.md";
  const Command partial =
      run("compare --suite paper-gpu --quick --report-only --import " + carried.string() +
          " --out " + next + " --report " + partial_md + data_set);
  ASSERT_EQ(partial.status, 0) << partial.output;
  EXPECT_NE(partial.output.find("ec-c2-s2: imported from"), std::string::npos) << partial.output;
  const std::string pmd = read_text(partial_md);
  EXPECT_NE(pmd.find("**Partial: 10 of the suite's 12 runs have finished.**"), std::string::npos);
  EXPECT_NE(row(pmd, "EC c=2").find(" | 2 | "), std::string::npos);
  EXPECT_EQ(row(pmd, "decoder top-2"), "");
  EXPECT_EQ(read_text(fs::path(next) / "top1-s1/result.json"),
            read_text(fs::path(out) / "top1-s1/result.json"));
  // The next session trains only what is missing, and the report is whole again.
  const Command rest =
      run("--threads 2 compare --suite paper-gpu --quick --import " + carried.string() + " --out " +
          next + " --report " + dir / "next.md" + data_set);
  ASSERT_EQ(rest.status, 0) << rest.output;
  EXPECT_NE(rest.output.find("[10/12] ec-c1-s1: done before, kept"), std::string::npos)
      << rest.output;
  EXPECT_NE(rest.output.find("[12/12] dec-thr-c2-s1 ("), std::string::npos) << rest.output;
  EXPECT_EQ(read_text(dir / "next.md").find("Partial"), std::string::npos);
  // A run made with another config is refused, naming its folder; so is a missing folder.
  {
    nlohmann::ordered_json r =
        nlohmann::ordered_json::parse(read_text(carried / "top1-s1/result.json"));
    r["config"]["steps"] = 41;
    train_test::write_text(carried / "top1-s1/result.json", r.dump(2));
  }
  const Command other = run("compare --suite paper-gpu --quick --report-only --import " +
                            carried.string() + " --out " + (dir / "other") + data_set);
  EXPECT_NE(other.status, 0);
  EXPECT_NE(other.output.find("top1-s1 holds a finished run with a different config than "
                              "this suite's top1-s1"),
            std::string::npos)
      << other.output;
  const Command missing = run("compare --suite paper-gpu --quick --report-only --import " +
                              (dir / "nope") + " --out " + next + data_set);
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.output.find("is not a folder"), std::string::npos) << missing.output;

#ifndef ECMOE_HAVE_CUDA
  expect_refused_without_cuda("compare --suite paper-gpu --quick --out " + out + "-gpu");
#endif
  const Command list = run("compare --suite paper-gpu --list");
  ASSERT_EQ(list.status, 0) << list.output;
  for (const char* part : {"base config: gpu-small", "steps=2500", "checkpoint_interval=0",
                           "checkpoint is deleted", "ec-c2-s2", "ec-cap2-s1", "dec-thr-c2-s1"})
    EXPECT_NE(list.output.find(part), std::string::npos) << part << " in " << list.output;
}

// finetune-small --quick on paper-small --quick's checkpoints, with a GLUE SST-2 folder the test
// writes (the built-in tasks need fetched data): every pre-trained variant fine-tunes with three
// seeds, and the report has its Table-2-style rows.
TEST(CompareCli, QuickFinetuneSuiteReportsEveryVariant) {
  TempDir dir("compare-ft");
  for (int i = 0; i < 6; ++i)
    train_test::write_text(dir / ("in/part" + std::to_string(i) + ".txt"),
                           data::test::sample_text(300 + i, 80));
  data::PrepareConfig prep;
  prep.inputs = {dir / "in"};
  prep.out_dir = dir / "data";
  prep.vocab_size = 320;
  prep.val_fraction = 0.2;
  data::prepare(prep);
  const std::string pretrained = dir / "pretrain";
  const Command pre =
      run("compare --quick --out " + pretrained + " --set data.dir=" + (dir / "data") +
          " --report " + (dir / "pretrain.md"));
  ASSERT_EQ(pre.status, 0) << pre.output;

  // SST-2 layout: "sentence<TAB>label"; label 1 when a sea word occurs.
  const Rng rng(5, 0);
  uint64_t k = 0;
  std::string train_tsv = "sentence\tlabel\n", dev_tsv = "sentence\tlabel\n";
  for (int i = 0; i < 260; ++i) {
    const bool sea = rng.below(k++, 2) == 1;
    std::string& file = i < 200 ? train_tsv : dev_tsv;
    file.append(sea ? "the ship was on the sea " : "the king was in the house ");
    file.append(std::to_string(rng.below(k++, 50)));
    file.append(sea ? "\t1\n" : "\t0\n");
  }
  train_test::write_text(dir / "sst2/train.tsv", train_tsv);
  train_test::write_text(dir / "sst2/dev.tsv", dev_tsv);

  const std::string report = dir / "docs/finetune.md";
  const std::string args = "compare --suite finetune-small --quick --pretrained " + pretrained +
                           " --task glue:sst2:" + (dir / "sst2") + " --out " + (dir / "ft") +
                           " --report " + report;
  const Command ft = run(args);
  ASSERT_EQ(ft.status, 0) << ft.output;
  const std::string md = read_text(report);
  EXPECT_NE(md.find("| pre-trained with | glue:sst2 | average |"), std::string::npos) << md;
  for (const char* variant : {"dense", "top-1", "top-2", "EC c=2", "EC-CAP b=2", "EC-CAP b=3"}) {
    const std::string line = row(md, variant);
    ASSERT_NE(line, "") << variant;
    static const std::regex cell(R"(([0-9]+\.[0-9]) ± ([0-9]+\.[0-9]))");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, cell)) << line;
    EXPECT_LE(std::stod(m[1]), 100.0);
  }
  EXPECT_NE(row(md, "majority class"), "");
  EXPECT_NE(md.find("Ranking by average test accuracy: "), std::string::npos);
  int results = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir / "docs/finetune/runs"))
    results += entry.path().filename() == "result.json";
  EXPECT_EQ(results, 6 * 3);

  // Finished runs are kept on a second invocation, also those written before a config key
  // existed (it reads back as its default): dev_fraction is taken out of every saved config.
  int edited = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir / "ft"))
    if (entry.path().filename() == "config.json") {
      auto saved = nlohmann::ordered_json::parse(read_text(entry.path().string()));
      if (saved.erase("dev_fraction") == 0) continue;  // not a fine-tuning config
      train_test::write_text(entry.path().string(), saved.dump(2));
      ++edited;
    }
  EXPECT_EQ(edited, 6 * 3);
  const Command again = run(args);
  ASSERT_EQ(again.status, 0) << again.output;
  int kept = 0;
  for (std::size_t at = again.output.find("done before, kept"); at != std::string::npos;
       at = again.output.find("done before, kept", at + 1))
    ++kept;
  EXPECT_EQ(kept, 6 * 3) << again.output;
  EXPECT_EQ(row(read_text(report), "EC c=2"), row(md, "EC c=2"));
#ifndef ECMOE_HAVE_CUDA
  expect_refused_without_cuda(args);  // --device cuda fine-tunes on the GPU
#endif

  // Without the pre-training runs: a clear one-line error naming the missing checkpoint.
  const Command missing =
      run("compare --suite finetune-small --quick --pretrained " + (dir / "nothing"));
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.output.find("missing pre-trained checkpoint"), std::string::npos)
      << missing.output;
}

}  // namespace
}  // namespace ecmoe
