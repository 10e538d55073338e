// Inputs that used to crash, hang or load silently, through the real binary: deeply nested and
// duplicate-key configs, a FIFO or directory in place of a checkpoint or tokenizer, a config digit
// changed by hand in a checkpoint, another tokenizer of the same size, and a checkpoint read from
// another directory than the one it was trained in.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "io/safetensors.h"

using ecmoe::train_test::TempDir;

namespace fs = std::filesystem;

namespace {

using ecmoe::cli_test::CliRun;
using ecmoe::cli_test::contains;

class IntegrityCli : public ecmoe::cli_test::CliDataTest {
 protected:
  IntegrityCli() : CliDataTest("integrity-cli") {}
  // Runs ecmoe in `cwd` (the test's folder by default), killed after 60 s so that a hang fails.
  CliRun run(const std::string& args, const std::string& cwd = "") {
    return ecmoe::cli_test::run_command(
        "cd " + (cwd.empty() ? dir.str() : cwd) + " && timeout 60 " + ECMOE_BINARY + " " + args,
        dir / "stderr.txt");
  }
  void expect_error(const std::string& args, const std::string& fragment,
                    const std::string& cwd = "") {
    const CliRun r = run(args, cwd);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.err, fragment)) << "expected '" << fragment << "' in: " << r.err;
    const auto at = r.err.rfind("ecmoe: error: ");
    ASSERT_NE(at, std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\n', at), r.err.size() - 1) << "not one line: " << r.err;
  }
  // A tiny decoder trained in the test's folder with relative paths: runs/a/checkpoint.safetensors.
  std::string train_decoder() {
    const CliRun r =
        run("train --config tiny --set data.dir=data --set model.kind=decoder --set steps=2 "
            "--set eval.interval=0 --out runs/a");
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    return dir / "runs/a/checkpoint.safetensors";
  }
};

}  // namespace

TEST_F(IntegrityCli, DeepOrDuplicateConfigsAreOneLineErrors) {
  // 70,000 levels crashed train (a stack overflow while quoting the value in the error).
  ecmoe::train_test::write_text(
      dir / "deep.json", "{\"steps\": " + std::string(70000, '[') + std::string(70000, ']') + "}");
  expect_error("train --config deep.json", "nests deeper than 64 levels");
  ecmoe::train_test::write_text(dir / "twice.json", R"({"steps": 3, "steps": 4})");
  expect_error("train --config twice.json", "has the key 'steps' twice");
}

TEST_F(IntegrityCli, CheckpointsFromElsewhereAndNotRegularFiles) {
  const std::string ck = train_decoder();
  // From another directory: the recorded relative data path is found beside the checkpoint.
  fs::create_directories(dir / "elsewhere");
  const CliRun far =
      run("eval --checkpoint ../runs/a/checkpoint.safetensors --batches 1", dir / "elsewhere");
  EXPECT_EQ(far.status, 0) << far.err;

  // A FIFO blocked for ever; a directory failed inside the library.
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  expect_error("eval --checkpoint fifo", "checkpoint fifo is not a regular file (a FIFO)");
  fs::create_directories(dir / "runs/b");
  ASSERT_EQ(::mkfifo((dir / "runs/b/checkpoint.safetensors").c_str(), 0600), 0);
  expect_error("train --resume --out runs/b", "is not a regular file (a FIFO)");
  expect_error("generate --checkpoint " + ck + " --prompt x --tokenizer fifo",
               "tokenizer fifo is not a regular file (a FIFO)");
  expect_error("inspect --checkpoint " + ck + " --text x --tokenizer data",
               "tokenizer data is not a regular file (a directory)");

  // Another tokenizer of the same size is not the one the model was trained with.
  std::string other = ecmoe::train_test::read_text(dir / "data/tokenizer.model");
  other[0] ^= 1;
  ecmoe::train_test::write_text(dir / "other.model", other);
  expect_error("generate --checkpoint " + ck + " --prompt x --tokenizer other.model",
               "is not the one checkpoint");
  expect_error("inspect --checkpoint " + ck + " --text x --tokenizer other.model",
               "is not the one checkpoint");

  // The data gone from everywhere: the error says what to pass.
  fs::rename(dir / "data", dir / "moved");
  expect_error("eval --checkpoint ../runs/a/checkpoint.safetensors", "pass --data DIR",
               dir / "elsewhere");
  expect_error("generate --checkpoint ../runs/a/checkpoint.safetensors --prompt x",
               "pass --tokenizer PATH", dir / "elsewhere");
  EXPECT_EQ(run("eval --checkpoint runs/a/checkpoint.safetensors --data moved --batches 1").status,
            0);
}

TEST_F(IntegrityCli, AConfigDigitChangedByHandIsRefused) {
  const std::string ck = train_decoder();
  std::string bytes = ecmoe::train_test::read_text(ck);
  const std::string from = "capacity_factor_eval\\\":2.0";
  const auto at = bytes.find(from);
  ASSERT_NE(at, std::string::npos);
  bytes[at + from.size() - 3] = '3';  // 2.0 -> 3.0: same length, same tensors
  ecmoe::train_test::write_text(ck, bytes);
  expect_error("eval --checkpoint " + ck + " --batches 1", "does not match the metadata_checksum");
}

// NaN weights under a valid checksum evaluated to "loss nan" with exit 0. The file is written as
// format version 1 (no metadata checksum), which must still load, so only the NaN is refused.
TEST_F(IntegrityCli, NonFiniteWeightsAreRefused) {
  const std::string ck = train_decoder();
  const std::string nan = dir / "nan.safetensors";
  {
    const ecmoe::SafetensorsFile file = ecmoe::SafetensorsFile::open(ck);
    std::vector<std::vector<std::byte>> copies;
    std::vector<ecmoe::TensorRef> tensors;
    for (const ecmoe::TensorInfo& t : file.tensors()) {
      const auto bytes = file.bytes(t.name);
      copies.emplace_back(bytes.begin(), bytes.end());
      tensors.push_back({t.name, t.dtype, t.shape, copies.back().data()});
    }
    // Every weight of layer 0's experts becomes NaN; the tensor checksum is made to match.
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].name == "layers.0.ffn.experts.w1") {
        const float value = std::nanf("");
        for (std::size_t b = 0; b < copies[i].size(); b += sizeof(float))
          std::memcpy(copies[i].data() + b, &value, sizeof(float));
      }
    ecmoe::data::Fnv1a64 hash;
    for (const auto& c : copies) hash.update(c.data(), c.size());
    ecmoe::Metadata m = file.metadata();
    m.erase("metadata_checksum");
    m["format_version"] = "1";
    m["tensor_checksum"] = ecmoe::data::checksum_to_string(hash.value());
    ecmoe::save_safetensors(nan, tensors, m);
  }
  expect_error("eval --checkpoint " + nan + " --batches 1",
               "holds a non-finite parameter: layers.0.ffn.experts.w1 (element 0 is nan)");
  EXPECT_TRUE(contains(run("eval --checkpoint " + nan + " --batches 1").err,
                       "warning: checkpoint '" + nan + "' is format version 1"));
}
