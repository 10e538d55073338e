// `ecmoe prepare --input ... --out ...` end to end through the real binary: exit codes, the one
// line of a user error, a second run that reuses the folder, and the old folder surviving a
// failed, refused or killed rebuild.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "data/token_dataset.h"
#include "test_util.h"

using ecmoe::data::test::TempDir;

namespace {

struct CliRun {
  int status;
  std::string output;  // stdout and stderr together
};

CliRun run_ecmoe(const std::string& args) {
  const std::string command = std::string(ECMOE_BINARY) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  std::string output;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

class PrepareCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(ECMOE_BINARY))
        << ECMOE_BINARY << " is missing: build the ecmoe target before the tests";
    for (int i = 0; i < 5; ++i)
      ecmoe::data::test::write_text(dir / ("docs/f" + std::to_string(i) + ".txt"),
                                    ecmoe::data::test::sample_text(7 * i, 50));
  }
  TempDir dir{"cli"};
};

}  // namespace

TEST_F(PrepareCli, PreparesFilesThenReuses) {
  const std::string args = "prepare --input " + (dir / "docs") + " " + (dir / "docs/f0.txt") +
                           " --out " + (dir / "out") + " --vocab-size 300 --val-fraction 0.3";
  const CliRun first = run_ecmoe(args);
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("trained a 300-piece BPE tokenizer"), std::string::npos);
  EXPECT_NE(first.output.find("train"), std::string::npos);
  for (const char* file : {"manifest.json", "tokenizer.model", "train.bin", "val.bin"})
    EXPECT_TRUE(std::filesystem::exists(dir / ("out/" + std::string(file)))) << file;
  const auto train = ecmoe::data::TokenDataset::open(dir / "out", "train");
  const auto val = ecmoe::data::TokenDataset::open(dir / "out", "val");
  EXPECT_EQ(train.documents() + val.documents(), 6);  // f0.txt is given twice
  EXPECT_GT(train.size(), 1000);

  const CliRun second = run_ecmoe(args);
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("reusing"), std::string::npos);
  EXPECT_EQ(second.output.find("trained"), std::string::npos);
}

TEST_F(PrepareCli, UserErrorsExitOneWithOneLine) {
  const auto expect_error = [&](const std::string& args, const std::string& fragment) {
    const CliRun r = run_ecmoe(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("ecmoe: error: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << r.output;
    const std::string last_line = r.output.substr(r.output.rfind("ecmoe: error: "));
    EXPECT_EQ(last_line.find('\n'), last_line.size() - 1) << "not one line: " << last_line;
  };
  expect_error("prepare --input " + (dir / "missing.txt") + " --out " + (dir / "o"),
               "does not exist");
  expect_error("prepare --input " + (dir / "docs") + " --out " + (dir / "o") + " --vocab-size 10",
               "vocab size 10 is too small");
  expect_error("prepare --corpus klingon --out " + (dir / "o"), "unknown corpus 'klingon'");
  expect_error("prepare --input " + (dir / "docs"), "--input needs --out");
  ecmoe::data::test::write_text(dir / "empty/blank.txt", "\n   \n");
  expect_error("prepare --input " + (dir / "empty") + " --out " + (dir / "o"),
               "no text after cleaning");
}

namespace {

// The folder's manifest as text, and whether both splits open (checksums verified).
std::string manifest_text(const std::string& dir) {
  return ecmoe::data::test::read_text(dir + "/manifest.json");
}
bool splits_open(const std::string& dir) {
  try {
    ecmoe::data::TokenDataset::open(dir, "train");
    ecmoe::data::TokenDataset::open(dir, "val");
    return true;
  } catch (const std::exception&) {
    return false;
  }
}
// Entries of `dir` whose names start with `prefix` (the staging folders of prepare).
int count_entries(const std::string& dir, const std::string& prefix) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().rfind(prefix, 0) == 0) ++n;
  return n;
}

}  // namespace

TEST_F(PrepareCli, FailedRebuildLeavesTheOldFolderUsable) {
  const std::string out = dir / "out";
  const std::string args = "prepare --input " + (dir / "docs") + " --out " + out;
  ASSERT_EQ(run_ecmoe(args + " --vocab-size 300 --val-fraction 0.3").status, 0);
  const std::string before = manifest_text(out);
  ASSERT_TRUE(splits_open(out));

  // SentencePiece refuses a vocabulary larger than the text allows: the error names the option,
  // and the old manifest and shards are still there and whole.
  const CliRun r = run_ecmoe(args + " --vocab-size 20000 --val-fraction 0.3 --force");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("too small for a 20000-piece vocabulary: pass --vocab-size "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(" or less\n"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Vocabulary size too high"), std::string::npos) << r.output;
  EXPECT_EQ(manifest_text(out), before);
  EXPECT_TRUE(splits_open(out));
  EXPECT_EQ(count_entries(dir.str(), ".out.prepare-"), 0);  // no staging folder left
}

TEST_F(PrepareCli, OtherInputsAreRefusedWithoutForceAndTheSameAreReused) {
  const std::string out = dir / "out";
  const std::string common = " --out " + out + " --vocab-size 300 --val-fraction 0.3";
  ASSERT_EQ(run_ecmoe("prepare --input " + (dir / "docs") + common).status, 0);
  const std::string before = manifest_text(out);

  for (int i = 0; i < 5; ++i)
    ecmoe::data::test::write_text(dir / ("docs2/g" + std::to_string(i) + ".txt"),
                                  ecmoe::data::test::sample_text(100 + i, 50));
  const CliRun other = run_ecmoe("prepare --input " + (dir / "docs2") + common);
  EXPECT_EQ(other.status, 1) << other.output;
  EXPECT_NE(other.output.find("ecmoe: error: " + out +
                              " holds data prepared from other text or settings (source files "),
            std::string::npos)
      << other.output;
  EXPECT_NE(other.output.find("pass --force to replace it"), std::string::npos) << other.output;
  EXPECT_EQ(manifest_text(out), before);

  const CliRun vocab = run_ecmoe("prepare --input " + (dir / "docs") + " --out " + out +
                                 " --vocab-size 310 --val-fraction 0.3");
  EXPECT_EQ(vocab.status, 1) << vocab.output;
  EXPECT_NE(vocab.output.find("(vocab size 310 (was 300))"), std::string::npos) << vocab.output;

  const CliRun same = run_ecmoe("prepare --input " + (dir / "docs") + common);
  EXPECT_EQ(same.status, 0) << same.output;
  EXPECT_NE(same.output.find("reusing " + out), std::string::npos) << same.output;

  const CliRun forced = run_ecmoe("prepare --input " + (dir / "docs2") + common + " --force");
  EXPECT_EQ(forced.status, 0) << forced.output;
  EXPECT_NE(manifest_text(out), before);
  EXPECT_TRUE(splits_open(out));
}

TEST_F(PrepareCli, RebuildNeverTakesOtherFilesAlong) {
  const std::string out = dir / "mine";
  ecmoe::data::test::write_text(out + "/notes.txt", "my notes\n");
  const CliRun r = run_ecmoe("prepare --input " + (dir / "docs") + " --out " + out +
                             " --vocab-size 300 --val-fraction 0.3");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("holds 'notes.txt', which prepare did not write"), std::string::npos)
      << r.output;
  EXPECT_EQ(ecmoe::data::test::read_text(out + "/notes.txt"), "my notes\n");
}

TEST_F(PrepareCli, KilledRunLeavesOldOrNewFolderNeverNone) {
  const std::string out = dir / "out";
  const std::string common =
      "--input " + (dir / "docs") + " --out " + out + " --vocab-size 300 --val-fraction 0.3";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_ecmoe("prepare " + common).status, 0);
  const double full = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string before = manifest_text(out);
  // kill -9 at spread moments of a forced rebuild (the same data, so old and new agree).
  for (const double fraction : {0.1, 0.3, 0.5, 0.7, 0.9}) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      std::freopen("/dev/null", "w", stdout);
      std::freopen("/dev/null", "w", stderr);
      ::execl(ECMOE_BINARY, ECMOE_BINARY, "prepare", "--input", (dir / "docs").c_str(), "--out",
              out.c_str(), "--vocab-size", "300", "--val-fraction", "0.3", "--force",
              (char*)nullptr);
      ::_exit(127);
    }
    ::usleep(useconds_t(fraction * full * 1e6));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(splits_open(out)) << "killed at " << fraction << " of " << full << " s";
    EXPECT_EQ(manifest_text(out), before);
  }
  // The next run cleans up whatever staging folder a kill left, and reuses the folder.
  const CliRun again = run_ecmoe("prepare " + common);
  EXPECT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("reusing " + out), std::string::npos) << again.output;
  EXPECT_EQ(count_entries(dir.str(), ".out.prepare-"), 0);
}

TEST_F(PrepareCli, InterruptedSwapIsRecoveredAtTheNextRun) {
  const std::string out = dir / "out";
  const std::string args = "prepare --input " + (dir / "docs") + " --out " + out +
                           " --vocab-size 300 --val-fraction 0.3";
  ASSERT_EQ(run_ecmoe(args).status, 0);
  const std::string before = manifest_text(out);
  // A kill between the two renames of a swap without exchange: the old folder is aside, a
  // half-built one in staging.
  std::filesystem::rename(out, dir / ".out.prepare-old");
  ecmoe::data::test::write_text(dir / ".out.prepare-new/train.bin", "half");
  const CliRun r = run_ecmoe(args);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("restored"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("reusing " + out), std::string::npos) << r.output;
  EXPECT_EQ(manifest_text(out), before);
  EXPECT_EQ(count_entries(dir.str(), ".out.prepare-"), 0);
}

TEST_F(PrepareCli, OutputProblemsAndTheNextCommand) {
  ecmoe::data::test::write_text(dir / "a-file", "x");
  const CliRun file = run_ecmoe("prepare --input " + (dir / "docs") + " --out " + (dir / "a-file"));
  EXPECT_EQ(file.status, 1) << file.output;
  EXPECT_NE(file.output.find("ecmoe: error: --out '" + (dir / "a-file") +
                             "' exists and is not a folder: choose another path\n"),
            std::string::npos)
      << file.output;
  const CliRun empty = run_ecmoe("prepare --input " + (dir / "docs") + " --out ''");
  EXPECT_EQ(empty.status, 1) << empty.output;
  EXPECT_NE(empty.output.find("ecmoe: error: --out is empty"), std::string::npos) << empty.output;

  const CliRun ok = run_ecmoe("prepare --input " + (dir / "docs") + " --out " + (dir / "d7/") +
                              " --vocab-size 300 --val-fraction 0.3");
  ASSERT_EQ(ok.status, 0) << ok.output;
  EXPECT_NE(ok.output.find("next: ecmoe train --config small --set data.dir=" + (dir / "d7/") +
                           " --out runs/d7\n"),
            std::string::npos)
      << ok.output;
}

using ecmoe::data::test::paragraph_text;

TEST_F(PrepareCli, TwoFilesAreSplitByDocumentAtTheRequestedFraction) {
  // Two long files, cut into documents of ~1 KB: the validation share is near 0.1 of documents
  // and of tokens, not one whole file (0.5).
  ecmoe::data::test::write_text(dir / "two/a.txt", paragraph_text(1, 400));
  ecmoe::data::test::write_text(dir / "two/b.txt", paragraph_text(2, 400));
  const CliRun r =
      run_ecmoe("prepare --input " + (dir / "two/a.txt") + " " + (dir / "two/b.txt") + " --out " +
                (dir / "out") + " --vocab-size 300 --val-fraction 0.1 --doc-bytes 1000");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto train = ecmoe::data::TokenDataset::open(dir / "out", "train");
  const auto val = ecmoe::data::TokenDataset::open(dir / "out", "val");
  const double docs = double(train.documents() + val.documents());
  EXPECT_GT(docs, 150);
  EXPECT_NEAR(double(val.documents()) / docs, 0.1, 0.04) << r.output;
  EXPECT_NEAR(double(val.size()) / double(train.size() + val.size()), 0.1, 0.04) << r.output;
  // The per-file summary: each file's documents on each side and its tokens.
  for (const char* file : {"  a.txt: ", "  b.txt: "}) {
    const std::size_t at = r.output.find(file);
    ASSERT_NE(at, std::string::npos) << r.output;
    const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
    EXPECT_NE(line.find(" documents ("), std::string::npos) << line;
    EXPECT_NE(line.find(" val), "), std::string::npos) << line;
    EXPECT_NE(line.find(" tokens"), std::string::npos) << line;
  }
}

TEST_F(PrepareCli, FolderFilesAreChosenByIncludeOrByDefault) {
  const std::string in = dir / "mixed";
  for (const char* name : {"a.txt", "b.txt", "sub/c.txt", "d.md"})
    ecmoe::data::test::write_text(in + "/" + name, ecmoe::data::test::sample_text(name[0], 40));
  ecmoe::data::test::write_text(in + "/a.json", "{\"text\": \"the same text again\"}\n");
  ecmoe::data::test::write_text(in + "/e.txt", std::string("caf\xe9 latin-1\n"));
  const std::string common = " --vocab-size 300 --val-fraction 0.3";
  // Default: the JSON file and the non-UTF-8 file are skipped, counted and named.
  const CliRun all = run_ecmoe("prepare --input " + in + " --out " + (dir / "all") + common);
  ASSERT_EQ(all.status, 0) << all.output;
  EXPECT_NE(all.output.find("skipped 2 files that are not plain text ("), std::string::npos)
      << all.output;
  EXPECT_NE(all.output.find("a.json"), std::string::npos) << all.output;
  const auto documents = [&](const std::string& out) {
    return ecmoe::data::TokenDataset::open(out, "train").documents() +
           ecmoe::data::TokenDataset::open(out, "val").documents();
  };
  EXPECT_EQ(documents(dir / "all"), 4);
  // A glob on the name matches in subfolders too; one with '/' matches the relative path.
  const CliRun txt =
      run_ecmoe("prepare --input " + in + " --include '*.txt' --out " + (dir / "txt") + common);
  EXPECT_EQ(txt.status, 1) << txt.output;  // e.txt is chosen, and is not UTF-8
  EXPECT_NE(txt.output.find("e.txt is not UTF-8 text"), std::string::npos) << txt.output;
  const CliRun ab = run_ecmoe("prepare --input " + in + " --include '[ab].txt' --include 'sub/*' " +
                              "--out " + (dir / "ab") + common);
  ASSERT_EQ(ab.status, 0) << ab.output;
  EXPECT_EQ(documents(dir / "ab"), 3);
  EXPECT_EQ(ab.output.find("skipped"), std::string::npos) << ab.output;
  const CliRun none =
      run_ecmoe("prepare --input " + in + " --include '*.rst' --out " + (dir / "none") + common);
  EXPECT_EQ(none.status, 1) << none.output;
  EXPECT_NE(none.output.find("holds no file matching --include '*.rst'"), std::string::npos)
      << none.output;
}

TEST_F(PrepareCli, ExistingTokenizerGivesTheSameIdsAndIsRecorded) {
  const std::string first = dir / "first";
  ASSERT_EQ(run_ecmoe("prepare --input " + (dir / "docs") + " --out " + first +
                      " --vocab-size 300 --val-fraction 0.3")
                .status,
            0);
  const auto original = ecmoe::data::read_manifest(first);
  // The same text with the folder's tokenizer (given as the folder, then as the model file): the
  // same shards, byte for byte, and the same tokenizer checksum.
  for (const std::string& given : {first, first + "/tokenizer.model"}) {
    const std::string again = dir / "again";
    const CliRun r = run_ecmoe("prepare --input " + (dir / "docs") + " --out " + again +
                               " --val-fraction 0.3 --force --tokenizer " + given);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(r.output.find("trained a"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("encoding with the existing tokenizer"), std::string::npos) << r.output;
    const auto m = ecmoe::data::read_manifest(again);
    EXPECT_EQ(m.tokenizer.checksum, original.tokenizer.checksum);
    EXPECT_EQ(m.vocab_size, original.vocab_size);
    for (const char* file : {"train.bin", "val.bin", "tokenizer.model"})
      EXPECT_EQ(ecmoe::data::test::read_text(again + "/" + file),
                ecmoe::data::test::read_text(first + "/" + file))
          << file;
  }
  // The tokenizer is part of the recorded settings: the trained folder is not silently replaced.
  const CliRun refused = run_ecmoe("prepare --input " + (dir / "docs") + " --out " + first +
                                   " --val-fraction 0.3 --tokenizer " + first + "/tokenizer.model");
  EXPECT_EQ(refused.status, 1) << refused.output;
  EXPECT_NE(refused.output.find("other text or settings (tokenizer fnv1a64:"), std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find(" (was trained)"), std::string::npos) << refused.output;
  // Everything in validation: new text to evaluate on.
  ecmoe::data::test::write_text(dir / "new.txt", ecmoe::data::test::sample_text(99, 30));
  const std::string eval_dir = dir / "eval";
  const std::string eval_args = "prepare --input " + (dir / "new.txt") + " --out " + eval_dir +
                                " --val-fraction 1 --tokenizer " + first;
  const CliRun all_val = run_ecmoe(eval_args);
  ASSERT_EQ(all_val.status, 0) << all_val.output;
  EXPECT_EQ(ecmoe::data::TokenDataset::open(eval_dir, "train").size(), 0);
  EXPECT_EQ(ecmoe::data::TokenDataset::open(eval_dir, "val").documents(), 1);
  EXPECT_NE(all_val.output.find("next: ecmoe eval --checkpoint CHECKPOINT --data " + eval_dir),
            std::string::npos)
      << all_val.output;
  const CliRun reused = run_ecmoe(eval_args);
  EXPECT_NE(reused.output.find("reusing " + eval_dir), std::string::npos) << reused.output;
}

TEST_F(PrepareCli, BadTokenizersAreOneLineErrors) {
  const auto expect_error = [&](const std::string& args, const std::string& fragment) {
    const CliRun r =
        run_ecmoe("prepare --input " + (dir / "docs") + " --out " + (dir / "o") + " " + args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << r.output;
    const std::size_t at = r.output.rfind("ecmoe: error: ");
    ASSERT_NE(at, std::string::npos) << r.output;
    EXPECT_EQ(r.output.find('\n', at), r.output.size() - 1) << "not one line: " << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "o/manifest.json"));
  };
  expect_error("--tokenizer " + (dir / "nothing.model"), "does not exist");
  expect_error("--tokenizer " + (dir / "docs"), "is a folder without manifest.json");
  expect_error("--tokenizer " + (dir / "docs/f1.txt"), "cannot load tokenizer");
  expect_error("--val-fraction 1", "validation fraction 1 leaves no text to train a tokenizer");
  expect_error("--tokenizer " + (dir / "docs/f1.txt") + " --vocab-size 300", "excludes");
}
