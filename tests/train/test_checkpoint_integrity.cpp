// What a checkpoint must not load silently: metadata (the config included) changed after saving,
// non-finite parameters or moments under a valid checksum, a FIFO in place of the file, another
// tokenizer than the one it was trained with; and the paths it records, found from elsewhere.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "support/core/error_of.h"
#include "train/checkpoint.h"
#include "train_test_util.h"

using namespace ecmoe;
using ecmoe::train_test::TempDir;

namespace fs = std::filesystem;
using ecmoe::testing::error_of;

namespace {

constexpr int kVocab = 64;

class CheckpointIntegrity : public ::testing::Test {
 protected:
  void SetUp() override {
    train_test::write_data_folder(dir / "data", kVocab, 2000, 500);
    config = train_test::tiny_config(dir / "data", dir / "run");
    config.model.vocab_size = kVocab;
    data = {dir / "data", dir / "data/tokenizer.model",
            data::checksum_to_string(data::checksum_file(dir / "data/tokenizer.model")), "pattern",
            kVocab};
  }

  // A checkpoint of the tiny model; `edit` may change its buffers before saving.
  std::string save(const std::string& name,
                   const std::function<void(FlatBuffer&, AdamW&)>& edit = {}) {
    const Transformer model(config.model);
    FlatBuffer params(model.table());
    AdamW adam(model.table(), config.optimizer);
    for (int64_t i = 0; i < params.size(); ++i) params.data()[i] = 0.01f * float(i % 7);
    if (edit) edit(params, adam);
    const std::string path = dir / (name + ".safetensors");
    save_checkpoint(path, config, data, params, adam, TrainState{});
    return path;
  }

  // The same tensors under other metadata, as a hand edit of the header would leave them: the
  // tensor checksum still matches.
  std::string resave(const std::string& from, const std::string& name,
                     const std::function<void(Metadata&)>& edit) {
    const SafetensorsFile file = SafetensorsFile::open(from);
    std::vector<TensorRef> tensors;
    for (const TensorInfo& t : file.tensors())
      tensors.push_back({t.name, t.dtype, t.shape, file.bytes(t.name).data()});
    Metadata m = file.metadata();
    edit(m);
    const std::string path = dir / (name + ".safetensors");
    save_safetensors(path, tensors, m);
    return path;
  }

  void load_params(const std::string& path) {
    const Checkpoint ck = Checkpoint::open(path);
    const Transformer model(ck.config().model);
    FlatBuffer params(model.table());
    ck.load_params(params);
  }

  void replace(std::string& text, const std::string& from, const std::string& to) {
    const auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from << " not in " << text;
    text.replace(at, from.size(), to);
  }

  TempDir dir{"checkpoint-integrity"};
  TrainConfig config;
  DataReference data;
};

}  // namespace

TEST_F(CheckpointIntegrity, MetadataIsCoveredByAChecksum) {
  const std::string good = save("good");
  EXPECT_NO_THROW(load_params(good));
  EXPECT_EQ(Checkpoint::open(good).metadata().at("format_version"), "2");
  EXPECT_EQ(Checkpoint::open(good).metadata().at("metadata_checksum").rfind("fnv1a64:", 0), 0u);

  // One flipped digit in the config, the router switched by hand, another data reference: each
  // loaded with exit 0 before.
  for (const auto& [from, to] :
       {std::pair{"\"capacity_factor_eval\":2.0", "\"capacity_factor_eval\":3.0"},
        std::pair{"\"router\":\"expert_choice\"", "\"router\":\"top2\""}}) {
    const std::string edited =
        // Init-captures: clang 14 cannot capture a structured binding.
        resave(good, "edited",
               [&, from = from, to = to](Metadata& m) { replace(m["config"], from, to); });
    const std::string e = error_of([&] { Checkpoint::open(edited); });
    EXPECT_NE(e.find("its metadata (config included) does not match the metadata_checksum"),
              std::string::npos)
        << from << ": " << e;
    EXPECT_NE(e.find(edited), std::string::npos) << e;
  }
  const std::string moved = resave(good, "moved", [](Metadata& m) { m["data.dir"] = "elsewhere"; });
  EXPECT_NE(error_of([&] { Checkpoint::open(moved); }).find("does not match"), std::string::npos);
  // The checksum itself damaged, or removed from a version-2 file.
  const std::string damaged =
      resave(good, "damaged", [](Metadata& m) { m["metadata_checksum"][10] ^= 1; });
  EXPECT_NE(error_of([&] { Checkpoint::open(damaged); }).find("does not match"), std::string::npos);
  const std::string stripped =
      resave(good, "stripped", [](Metadata& m) { m.erase("metadata_checksum"); });
  EXPECT_NE(error_of([&] { Checkpoint::open(stripped); }).find("has no metadata_checksum"),
            std::string::npos);
}

TEST_F(CheckpointIntegrity, VersionOneFilesStillLoad) {
  // Written before metadata checksums: accepted (with a warning on stderr), unverified.
  const std::string v1 = resave(save("good"), "v1", [](Metadata& m) {
    m.erase("metadata_checksum");
    m["format_version"] = "1";
  });
  EXPECT_NO_THROW(load_params(v1));
  const std::string v3 = resave(v1, "v3", [](Metadata& m) { m["format_version"] = "3"; });
  EXPECT_NE(error_of([&] { Checkpoint::open(v3); }).find("format version 3"), std::string::npos);
}

TEST_F(CheckpointIntegrity, NonFiniteParametersAndMomentsAreRefused) {
  const std::string nan = save(
      "nan", [](FlatBuffer& p, AdamW&) { p.get("layers.0.ffn.experts.w1")[5] = std::nanf(""); });
  const std::string e = error_of([&] { load_params(nan); });
  EXPECT_NE(e.find("holds a non-finite parameter: layers.0.ffn.experts.w1 (element 5 is nan)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find(nan), std::string::npos) << e;

  const std::string inf =
      save("inf", [](FlatBuffer&, AdamW& adam) { adam.v().get("embed.tokens")[0] = INFINITY; });
  EXPECT_NO_THROW(load_params(inf));  // evaluation reads only the parameters
  const Checkpoint ck = Checkpoint::open(inf);
  const Transformer model(ck.config().model);
  FlatBuffer params(model.table());
  AdamW adam(model.table(), ck.config().optimizer);
  TrainState state;
  const std::string r = error_of([&] { ck.load_training_state(params, adam, state); });
  EXPECT_NE(r.find("non-finite optimizer moment (adam_v.): embed.tokens (element 0 is inf)"),
            std::string::npos)
      << r;
}

TEST_F(CheckpointIntegrity, OnlyRegularFiles) {
  const std::string fifo = dir / "fifo.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(error_of([&] { Checkpoint::open(fifo); }),
            "checkpoint " + fifo + " is not a regular file (a FIFO)");
  EXPECT_EQ(error_of([&] { Checkpoint::open(dir.str()); }),
            "checkpoint " + dir.str() + " is not a regular file (a directory)");
  const Checkpoint ck = Checkpoint::open(save("good"));
  EXPECT_EQ(error_of([&] { load_checkpoint_tokenizer(ck, fifo, "--tokenizer PATH"); }),
            "tokenizer " + fifo + " is not a regular file (a FIFO)");
  EXPECT_EQ(error_of([&] { load_checkpoint_tokenizer(ck, "/dev/zero", "--tokenizer PATH"); }),
            "tokenizer /dev/zero is not a regular file (a character device)");
  EXPECT_NE(error_of([&] {
              load_checkpoint_tokenizer(ck, dir / "data", "--tokenizer PATH");
            }).find("is not a regular file (a directory)"),
            std::string::npos);
}

TEST_F(CheckpointIntegrity, TokenizerMustBeTheOneTrainedWith) {
  const Checkpoint ck = Checkpoint::open(save("good"));
  // Same size, other content: another tokenizer with as many pieces.
  std::string other = train_test::read_text(dir / "data/tokenizer.model");
  other[0] ^= 1;
  train_test::write_text(dir / "other.model", other);
  const std::string e =
      error_of([&] { load_checkpoint_tokenizer(ck, dir / "other.model", "--tokenizer PATH"); });
  EXPECT_NE(e.find("is not the one checkpoint"), std::string::npos) << e;
  // The recorded one passes the checksum (the placeholder then fails as a SentencePiece model).
  const std::string recorded =
      error_of([&] { load_checkpoint_tokenizer(ck, "", "--tokenizer PATH"); });
  EXPECT_EQ(recorded.find("is not the one"), std::string::npos) << recorded;
  EXPECT_NE(recorded.find("cannot load tokenizer"), std::string::npos) << recorded;
}

TEST_F(CheckpointIntegrity, RecordedRelativePathsAreFoundFromElsewhere) {
  // Trained in `dir` with relative paths, the checkpoint in dir/runs/a; read from dir/elsewhere.
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir.str());
  config.data.dir = "data";
  data.dir = "data";
  data.tokenizer = "data/tokenizer.model";
  fs::create_directories("runs/a");
  const Transformer model(config.model);
  FlatBuffer params(model.table());
  AdamW adam(model.table(), config.optimizer);
  save_checkpoint("runs/a/checkpoint.safetensors", config, data, params, adam, TrainState{});
  fs::create_directories("elsewhere");
  fs::current_path("elsewhere");
  const Checkpoint ck = Checkpoint::open("../runs/a/checkpoint.safetensors");
  EXPECT_EQ(fs::canonical(checkpoint_data_dir(ck, "")), fs::canonical(dir / "data"));
  EXPECT_EQ(checkpoint_data_dir(ck, "given"), "given");
  // The tokenizer is found too (then fails as the placeholder it is, not as a missing file).
  const std::string found =
      error_of([&] { load_checkpoint_tokenizer(ck, "", "--tokenizer PATH"); });
  EXPECT_NE(found.find("cannot load tokenizer " + (dir / "data/tokenizer.model")),
            std::string::npos)
      << found;
  // Gone from everywhere: the errors name the option to pass.
  fs::rename(dir / "data", dir / "moved");
  EXPECT_NE(error_of([&] { checkpoint_data_dir(ck, ""); }).find("pass --data DIR"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              load_checkpoint_tokenizer(ck, "", "--tokenizer PATH");
            }).find("pass --tokenizer PATH"),
            std::string::npos);
  fs::current_path(old_cwd);
}
