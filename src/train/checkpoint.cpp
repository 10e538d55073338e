#include "train/checkpoint.h"

#include <cstddef>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

#include "core/error.h"
#include "data/checksum.h"
#include "io/input_file.h"
#include "io/json_input.h"
#include "train/config_overrides.h"
#include "train/nonfinite.h"

namespace fs = std::filesystem;

namespace ecmoe {

namespace {

// Bookkeeping tensors (I64 scalars), after the flat buffers.
constexpr const char* kStepTensor = "train.step";
constexpr const char* kTokensTensor = "train.tokens_seen";
constexpr const char* kAdamStepTensor = "optim.adam_step";

// Non-trainable router state (threshold cutoffs), after the optimizer moments.
constexpr const char* kRouterStatePrefix = "state.";

const std::vector<std::string> kBookkeeping = {kStepTensor, kTokensTensor, kAdamStepTensor};

// Config keys a resumed run may change (see check_resume_config).
const std::set<std::string> kResumeMayChange = {
    "steps",           "out",        "log_interval",        "eval.interval", "eval.batches",
    "eval.batch_size", "grad_accum", "checkpoint_interval", "data.dir",      "precision"};

// Metadata of the file at `path`, with errors that name it.
std::string meta(const Metadata& m, const std::string& key, const std::string& path) {
  return metadata_value(m, key, "checkpoint '" + path + "'");
}
int64_t meta_int(const Metadata& m, const std::string& key, const std::string& path) {
  return metadata_int(m, key, "checkpoint '" + path + "'");
}

// Parameters or optimizer moments holding NaN or inf: a checkpoint with a valid checksum can still
// carry them (a run saved after it diverged, a hand-made file); evaluating them prints "loss nan".
void require_finite(const FlatBuffer& buffer, const std::string& what, const std::string& path) {
  if (const auto bad = first_nonfinite(buffer))
    fail("checkpoint '", path, "' holds a non-finite ", what, ": ", describe(*bad));
}

// A path the checkpoint recorded (relative to the directory training ran in): as is when it
// exists from here, else found relative to the checkpoint's folder or a folder above it (the run
// folder usually sits inside the directory training ran in); as is when neither exists.
std::string resolve_recorded_path(const std::string& recorded, const std::string& checkpoint) {
  std::error_code ec;
  if (recorded.empty() || fs::path(recorded).is_absolute() || fs::exists(recorded, ec))
    return recorded;
  const fs::path start = fs::absolute(checkpoint, ec).parent_path();
  if (ec) return recorded;
  for (fs::path dir = start; !dir.empty(); dir = dir.parent_path()) {
    if (fs::exists(dir / recorded, ec)) return (dir / recorded).lexically_normal().string();
    if (dir == dir.root_path()) break;
  }
  return recorded;
}

}  // namespace

std::string tensor_data_checksum(const SafetensorsFile& file) {
  data::Fnv1a64 hash;
  for (const TensorInfo& t : file.tensors()) {
    const auto bytes = file.bytes(t.name);
    hash.update(bytes.data(), bytes.size());
  }
  return data::checksum_to_string(hash.value());
}

std::string metadata_checksum(const Metadata& metadata) {
  // Each key and value with its length before it (8 bytes, little-endian), in key order, so that
  // no two different metadata give the same byte stream.
  data::Fnv1a64 hash;
  auto add = [&](const std::string& s) {
    uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(s.size()) >> (8 * i));
    hash.update(length, sizeof(length));
    hash.update(s.data(), s.size());
  };
  for (const auto& [key, value] : metadata) {
    if (key == kMetadataChecksumKey) continue;
    add(key);
    add(value);
  }
  return data::checksum_to_string(hash.value());
}

DataReference data_reference(const std::string& dir, const data::TokenDataset& dataset) {
  const auto& m = dataset.manifest();
  return {dir, dataset.tokenizer_path(), data::checksum_to_string(m.tokenizer.checksum),
          m.source_id, m.vocab_size};
}

void save_checkpoint(const std::string& path, const TrainConfig& config, const DataReference& data,
                     const FlatBuffer& params, const AdamW& adam, const TrainState& state,
                     const FlatBuffer* router_state, const dist::Comm* comm) {
  const bool root = comm == nullptr || comm->is_root();
  const bool gather = params.table().has_shards();
  ECMOE_CHECK(!gather || comm != nullptr, "cannot write '", path,
              "': a model with expert shards needs its communicator to gather them");
  if (!root && !gather) return;
  const int64_t adam_step = adam.step_count();
  std::vector<FlatBufferSlot> slots = {
      {"", &params}, {"adam_m.", &adam.m()}, {"adam_v.", &adam.v()}};
  if (router_state && !router_state->table().specs().empty())
    slots.push_back({kRouterStatePrefix, router_state});
  // Every tensor as it appears in the file: whole shapes, shards gathered in rank order.
  std::vector<TensorSource> sources;
  for (const FlatBufferSlot& slot : slots) {
    for (const TensorSpec& spec : slot.buffer->table().specs()) {
      const std::span<const float> mine(slot.buffer->get(spec.name), size_t(spec.numel()));
      std::function<void(const ByteSink&)> produce = [mine](const ByteSink& sink) {
        sink(mine.data(), mine.size_bytes());
      };
      if (spec.sharded())
        produce = [mine, comm](const ByteSink& sink) {
          comm->gather_to_root(
              mine, [&](std::span<const float> piece) { sink(piece.data(), piece.size_bytes()); });
        };
      sources.push_back({slot.prefix + spec.name, DType::F32, spec.model_shape(), produce});
    }
  }
  for (const auto& [name, value] :
       {std::pair{kStepTensor, &state.step}, std::pair{kTokensTensor, &state.tokens_seen},
        std::pair{kAdamStepTensor, &adam_step}})
    // An init-capture: clang before 16 cannot capture a structured binding.
    sources.push_back({name, DType::I64, {}, [value = value](const ByteSink& sink) {
                         sink(value, sizeof(int64_t));
                       }});
  // The checksum covers the bytes in file order, which is the data order Checkpoint::open walks.
  data::Fnv1a64 hash;
  for (const TensorSource& t : sources)
    t.produce([&](const void* bytes, std::size_t n) {
      if (root) hash.update(bytes, n);
    });
  if (!root) {  // the second gather, for the file
    for (const TensorSource& t : sources) t.produce([](const void*, std::size_t) {});
    return;
  }

  Metadata metadata = {
      {"format", kCheckpointFormat},
      {"format_version", std::to_string(kCheckpointFormatVersion)},
      {"ecmoe_version", ECMOE_VERSION},
      {"config", config_to_json(config).dump()},
      {"step", std::to_string(state.step)},
      {"data.dir", data.dir},
      {"data.tokenizer", data.tokenizer},
      {"data.tokenizer_checksum", data.tokenizer_checksum},
      {"data.source_id", data.source_id},
      {"data.vocab_size", std::to_string(data.vocab_size)},
      {"tensor_checksum", data::checksum_to_string(hash.value())},
  };
  metadata[kMetadataChecksumKey] = metadata_checksum(metadata);
  save_safetensors_streamed(path, sources, metadata);
}

Checkpoint Checkpoint::open(const std::string& path) {
  require_regular_file(path, "checkpoint");
  Checkpoint c(SafetensorsFile::open(path));
  const Metadata& m = c.file_.metadata();
  const auto format = m.find("format");
  ECMOE_CHECK(format != m.end() && format->second == kCheckpointFormat, "'", path,
              "' is not an ecmoe training checkpoint (its metadata has no format \"",
              kCheckpointFormat, "\")");
  const int64_t version = meta_int(m, "format_version", path);
  ECMOE_CHECK(version == kCheckpointFormatVersion || version == 1, "checkpoint '", path,
              "' has format version ", version, "; this build reads versions 1 and ",
              kCheckpointFormatVersion);
  // Version 2 covers the metadata (config included) by a checksum; version 1 files predate it and
  // are read with a warning. A version-1 file that has the key anyway is checked all the same.
  const auto stored = m.find(kMetadataChecksumKey);
  if (stored != m.end() || version >= 2) {
    ECMOE_CHECK(stored != m.end(), "checkpoint '", path, "' is damaged: its metadata has no ",
                kMetadataChecksumKey);
    ECMOE_CHECK(stored->second == metadata_checksum(m), "checkpoint '", path,
                "' is damaged: its metadata (config included) does not match the ",
                kMetadataChecksumKey, " in its header");
  } else {
    std::fprintf(stderr,
                 "ecmoe: warning: checkpoint '%s' is format version 1, written before metadata "
                 "checksums: its config and data references are not verified\n",
                 path.c_str());
  }

  ECMOE_CHECK(tensor_data_checksum(c.file_) == meta(m, "tensor_checksum", path), "checkpoint '",
              path, "' is damaged: its tensor data does not match the checksum in its header");

  const ConfigJson config_json =
      parse_ordered_json(meta(m, "config", path), "checkpoint '" + path + "': its config metadata");
  try {
    c.config_ = config_from_json(config_json);
    c.config_.validate();
  } catch (const Error& e) {
    fail("checkpoint '", path, "': its config metadata is unusable: ", e.what());
  }
  ECMOE_CHECK(c.config_.model.vocab_size > 0, "checkpoint '", path,
              "': its config has no vocabulary size");
  c.data_ = {meta(m, "data.dir", path), meta(m, "data.tokenizer", path),
             meta(m, "data.tokenizer_checksum", path), meta(m, "data.source_id", path),
             int(meta_int(m, "data.vocab_size", path))};
  c.file_.read_i64(kStepTensor, &c.state_.step, {});
  c.file_.read_i64(kTokensTensor, &c.state_.tokens_seen, {});
  ECMOE_CHECK(c.state_.step >= 0, "checkpoint '", path, "': negative step");
  return c;
}

void Checkpoint::load_params(FlatBuffer& params) const {
  load_flat_buffers(file_, {{"", &params}},
                    {.other_tensors = kBookkeeping,
                     .ignored_prefixes = {"adam_m.", "adam_v.", kRouterStatePrefix}});
  require_finite(params, "parameter", path());
}

bool Checkpoint::load_router_state(FlatBuffer& state) const {
  int present = 0;
  const auto& specs = state.table().specs();
  for (const TensorSpec& spec : specs) present += file_.contains(kRouterStatePrefix + spec.name);
  if (present == 0) return false;
  ECMOE_CHECK(present == int(specs.size()), "checkpoint '", path(), "' has ", present, " of the ",
              specs.size(), " router state tensors");
  for (const TensorSpec& spec : specs) {
    const std::string name = kRouterStatePrefix + spec.name;
    const TensorInfo& t = file_.info(name);
    ECMOE_CHECK(t.dtype == DType::F32 && t.shape == spec.shape, "checkpoint '", path(),
                "': tensor '", name, "' is not F32 of shape ", spec.shape_string());
    file_.read_f32(name, state.get(spec.name), spec.shape);
  }
  return true;
}

void Checkpoint::load_training_state(FlatBuffer& params, AdamW& adam, TrainState& state) const {
  load_flat_buffers(file_, {{"", &params}, {"adam_m.", &adam.m()}, {"adam_v.", &adam.v()}},
                    {.other_tensors = kBookkeeping, .ignored_prefixes = {kRouterStatePrefix}});
  int64_t adam_step = 0;
  file_.read_i64(kAdamStepTensor, &adam_step, {});
  ECMOE_CHECK(adam_step == state_.step, "checkpoint '", path(), "': optimizer step ", adam_step,
              " differs from training step ", state_.step);
  require_finite(params, "parameter", path());
  require_finite(adam.m(), "optimizer moment (adam_m.)", path());
  require_finite(adam.v(), "optimizer moment (adam_v.)", path());
  adam.set_step_count(adam_step);
  state = state_;
}

void check_resume_config(const Checkpoint& checkpoint, const TrainConfig& run) {
  std::map<std::string, ConfigJson> now;
  for (auto& [key, value] : flatten_config(config_to_json(run))) now[key] = value;
  std::string differences;
  for (const auto& [key, value] : flatten_config(config_to_json(checkpoint.config()))) {
    const auto it = now.find(key);
    if (kResumeMayChange.count(key) || (it != now.end() && it->second == value)) continue;
    differences += (differences.empty() ? "" : "; ") + key + " is " + json_excerpt(value) +
                   " in the checkpoint, " +
                   (it == now.end() ? std::string("unknown") : json_excerpt(it->second)) +
                   " in this run";
  }
  std::string may_change;
  for (const auto& k : kResumeMayChange) may_change += (may_change.empty() ? "" : ", ") + k;
  ECMOE_CHECK(differences.empty(), "checkpoint '", checkpoint.path(),
              "' does not match the config: ", differences, " (a resumed run may change only ",
              may_change, ")");
}

void check_same_data(const Checkpoint& checkpoint, const DataReference& run) {
  const DataReference& saved = checkpoint.data();
  ECMOE_CHECK(
      saved.tokenizer_checksum == run.tokenizer_checksum && saved.vocab_size == run.vocab_size,
      "checkpoint '", checkpoint.path(), "' was trained on data with tokenizer ",
      saved.tokenizer_checksum, " (vocab ", saved.vocab_size, ", from ", saved.dir, "), but ",
      run.dir, " has tokenizer ", run.tokenizer_checksum, " (vocab ", run.vocab_size, ")");
}

std::string checkpoint_data_dir(const Checkpoint& checkpoint, const std::string& given) {
  if (!given.empty()) return given;
  const std::string recorded = checkpoint.config().data.dir;
  const std::string dir = resolve_recorded_path(recorded, checkpoint.path());
  std::error_code ec;
  ECMOE_CHECK(fs::is_directory(dir, ec), "the data folder ", recorded, " recorded in checkpoint '",
              checkpoint.path(),
              "' is not found here nor beside the checkpoint: pass --data DIR (a folder from "
              "`ecmoe prepare` with the same tokenizer)");
  return dir;
}

// The recorded tokenizer's path (or `given`), checked against the recorded checksum.
static std::string recorded_tokenizer_path(const DataReference& saved, const std::string& file,
                                           const std::string& given, const std::string& option) {
  const std::string path = given.empty() ? resolve_recorded_path(saved.tokenizer, file) : given;
  std::error_code ec;
  ECMOE_CHECK(!given.empty() || fs::exists(path, ec), "the tokenizer ", saved.tokenizer,
              " recorded in checkpoint '", file,
              "' is not found here nor beside the checkpoint: pass ", option);
  require_regular_file(path, "tokenizer");
  const std::string sum = data::checksum_to_string(data::checksum_file(path));
  ECMOE_CHECK(sum == saved.tokenizer_checksum, "tokenizer ", path, " (", sum,
              ") is not the one checkpoint '", file, "' was trained with (",
              saved.tokenizer_checksum, ")");
  return path;
}

std::string checkpoint_tokenizer_path(const Checkpoint& checkpoint, const std::string& given,
                                      const std::string& option) {
  return recorded_tokenizer_path(checkpoint.data(), checkpoint.path(), given, option);
}

data::Tokenizer load_checkpoint_tokenizer(const Checkpoint& checkpoint, const std::string& given,
                                          const std::string& option) {
  return load_recorded_tokenizer(checkpoint.data(), checkpoint.config().model.vocab_size,
                                 checkpoint.path(), given, option);
}

data::Tokenizer load_recorded_tokenizer(const DataReference& saved, int vocab_size,
                                        const std::string& file, const std::string& given,
                                        const std::string& option) {
  const std::string path = recorded_tokenizer_path(saved, file, given, option);
  data::Tokenizer tokenizer = data::Tokenizer::load(path);
  ECMOE_CHECK(tokenizer.vocab_size() == vocab_size, "tokenizer ", path, " has ",
              tokenizer.vocab_size(), " pieces but the model of checkpoint '", file, "' has ",
              vocab_size);
  return tokenizer;
}

}  // namespace ecmoe
