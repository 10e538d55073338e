// Training checkpoints: one safetensors file (docs/checkpoint-format.md) holding the parameters,
// the AdamW moments and the step, with the full config and a reference to the data in its
// metadata, and a checksum of all tensor bytes (safetensors itself has none, and a flipped bit in
// a weight would otherwise load silently). Batches and the learning rate are pure functions of
// the step and the seeds, so parameters + moments + step are the whole state of a run: resuming
// continues bit for bit.
#pragma once
#include <cstdint>
#include <string>
#include <utility>

#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "dist/comm.h"
#include "io/safetensors.h"
#include "optim/adamw.h"
#include "train/train_config.h"

namespace ecmoe {

inline constexpr const char* kCheckpointFormat = "ecmoe-train-checkpoint";
// Version 2 added the metadata checksum; version 1 files are still read (with a warning).
inline constexpr int kCheckpointFormatVersion = 2;
// Metadata key of the checksum over all other metadata (metadata_checksum below).
inline constexpr const char* kMetadataChecksumKey = "metadata_checksum";
inline constexpr const char* kCheckpointFile = "checkpoint.safetensors";

// Which data a run was trained on: its tokenizer decides what the ids mean.
struct DataReference {
  std::string dir;
  std::string tokenizer;           // path of the tokenizer model
  std::string tokenizer_checksum;  // "fnv1a64:...", from the data's manifest
  std::string source_id;           // what the data was prepared from
  int vocab_size = 0;
};
DataReference data_reference(const std::string& dir, const data::TokenDataset& dataset);

// "fnv1a64:<16 hex>" over every metadata entry but kMetadataChecksumKey, in key order, each key
// and value preceded by its byte length as 8 little-endian bytes (docs/checkpoint-format.md).
std::string metadata_checksum(const Metadata& metadata);

// "fnv1a64:<16 hex>" over the tensor data of a file as read, tensor after tensor in the file's
// order: what its "tensor_checksum" metadata must say.
std::string tensor_data_checksum(const SafetensorsFile& file);

struct TrainState {
  int64_t step = 0;         // updates done
  int64_t tokens_seen = 0;  // input tokens of those updates
};

// router_state (the model's state_table(), e.g. threshold cutoffs) is stored as "state." + name.
// Under expert parallelism every rank of `comm` calls it and rank 0 writes the one file, the same
// as a single process would: each expert tensor (parameters and moments) is gathered to rank 0 a
// piece at a time, twice (once for the checksum in the header, once into the file), so rank 0
// never holds another rank's experts whole. Without expert shards only rank 0 does anything.
void save_checkpoint(const std::string& path, const TrainConfig& config, const DataReference& data,
                     const FlatBuffer& params, const AdamW& adam, const TrainState& state,
                     const FlatBuffer* router_state = nullptr, const dist::Comm* comm = nullptr);

class Checkpoint {
 public:
  // Opens and validates: a regular file, safetensors structure, format and version, metadata and
  // data checksums, config. Every problem is an ecmoe::Error naming the file.
  static Checkpoint open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const TrainConfig& config() const { return config_; }  // model.vocab_size is resolved
  const DataReference& data() const { return data_; }
  const Metadata& metadata() const { return file_.metadata(); }
  int64_t step() const { return state_.step; }
  const TrainState& state() const { return state_; }

  // Parameters only (evaluation); the optimizer state is skipped. Buffers of a table with expert
  // shards take their own rows of each expert tensor, so any number of ranks can load. A NaN or
  // inf in them is an error naming the first such tensor.
  void load_params(FlatBuffer& params) const;
  // The router state ("state." tensors). False, leaving the buffer as it was, when the file has
  // none of them (a checkpoint from before they existed); a partial or misshapen set is an error.
  bool load_router_state(FlatBuffer& state) const;
  // Everything a resumed run needs (the router state separately, above); parameters and moments
  // must be finite.
  void load_training_state(FlatBuffer& params, AdamW& adam, TrainState& state) const;

 private:
  explicit Checkpoint(SafetensorsFile file) : file_(std::move(file)) {}
  SafetensorsFile file_;
  TrainConfig config_;
  DataReference data_;
  TrainState state_;
};

// A resumed run may change only how long it runs and what it logs (steps, out, log_interval,
// eval.*, checkpoint_interval), where the data lives (data.dir) and the GEMMs' precision (fp32 and
// bf16 runs share fp32 parameters and moments); any other difference from the
// checkpoint's config would make it a different run. Throws, listing every differing key.
void check_resume_config(const Checkpoint& checkpoint, const TrainConfig& run);
// Resuming or evaluating needs the same data (same tokenizer and vocabulary), wherever it lives
// now: other ids would mean other tokens.
void check_same_data(const Checkpoint& checkpoint, const DataReference& run);

// Paths recorded in a checkpoint are relative to the directory training ran in. These find them
// from anywhere: as recorded when that exists from the current directory, else relative to the
// checkpoint's folder or a folder above it; otherwise the error names the option to pass.
// The data folder: `given` (from --data) when not empty, else the recorded one.
std::string checkpoint_data_dir(const Checkpoint& checkpoint, const std::string& given);
// The tokenizer the checkpoint was trained with: `given` (from `option`, e.g. "--tokenizer PATH")
// when not empty, else the recorded one. Its file checksum must be the recorded one (another
// tokenizer with as many pieces would give the ids other meanings) and its size the model's
// vocabulary.
data::Tokenizer load_checkpoint_tokenizer(const Checkpoint& checkpoint, const std::string& given,
                                          const std::string& option);
// The path of that tokenizer, found and checksum-checked the same way (without loading it).
std::string checkpoint_tokenizer_path(const Checkpoint& checkpoint, const std::string& given,
                                      const std::string& option);
// The same for any file that recorded a DataReference (`file`, e.g. a fine-tuned classifier,
// finetune/saved_model.h) for a model of `vocab_size` pieces.
data::Tokenizer load_recorded_tokenizer(const DataReference& saved, int vocab_size,
                                        const std::string& file, const std::string& given,
                                        const std::string& option);

}  // namespace ecmoe
