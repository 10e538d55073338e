#include "finetune/saved_model.h"

#include <cstddef>
#include <exception>
#include <map>

#include "core/error.h"
#include "data/checksum.h"
#include "io/input_file.h"
#include "io/json_input.h"
#include "train/nonfinite.h"

namespace ecmoe::finetune {

namespace {

// Metadata of the file at `path`, with errors that name it.
std::string meta(const Metadata& m, const std::string& key, const std::string& path) {
  return metadata_value(m, key, "fine-tuned model '" + path + "'");
}
int64_t meta_int(const Metadata& m, const std::string& key, const std::string& path) {
  return metadata_int(m, key, "fine-tuned model '" + path + "'");
}

}  // namespace

void save_classifier(const std::string& path, const ClassifierInfo& info, const FlatBuffer& params,
                     const FlatBuffer& head) {
  ECMOE_CHECK(!params.table().has_shards(), "cannot write '", path,
              "': a fine-tuned model is written by one process");
  // The checksum covers the tensor bytes in file order: save_flat_buffers writes each slot's
  // tensors in table order.
  data::Fnv1a64 hash;
  for (const FlatBuffer* buffer : {&params, &head})
    for (const TensorSpec& spec : buffer->table().specs())
      hash.update(buffer->get(spec.name), std::size_t(spec.numel()) * sizeof(float));
  ConfigJson labels = ConfigJson::array();
  for (const std::string& l : info.labels) labels.push_back(l);
  Metadata metadata = {
      {"format", kClassifierFormat},
      {"format_version", std::to_string(kClassifierFormatVersion)},
      {"ecmoe_version", ECMOE_VERSION},
      {"pretrain_config", config_to_json(info.pretrain).dump()},
      {"finetune_config", finetune_config_to_json(info.finetune).dump()},
      {"labels", labels.dump()},
      {"pooling", pooling_name(info.pooling)},
      {"max_len", std::to_string(info.max_len)},
      {"pairs", info.pairs ? "true" : "false"},
      {"pretrain_checkpoint", info.pretrain_checkpoint},
      {"pretrain_step", std::to_string(info.pretrain_step)},
      {"data.dir", info.data.dir},
      {"data.tokenizer", info.data.tokenizer},
      {"data.tokenizer_checksum", info.data.tokenizer_checksum},
      {"data.source_id", info.data.source_id},
      {"data.vocab_size", std::to_string(info.data.vocab_size)},
      {"tensor_checksum", data::checksum_to_string(hash.value())},
  };
  metadata[kMetadataChecksumKey] = metadata_checksum(metadata);
  save_flat_buffers(path, {{"", &params}, {kHeadPrefix, &head}}, metadata);
}

SavedClassifier SavedClassifier::open(const std::string& path) {
  require_regular_file(path, "fine-tuned model");
  SavedClassifier c(SafetensorsFile::open(path));
  const Metadata& m = c.file_.metadata();
  const auto format = m.find("format");
  ECMOE_CHECK(format == m.end() || format->second != kCheckpointFormat, "'", path,
              "' is a pre-training checkpoint, not a fine-tuned classifier: fine-tune it with "
              "`ecmoe finetune --checkpoint ",
              path, " --task ... --out DIR` and pass DIR/", kClassifierFile);
  ECMOE_CHECK(format != m.end() && format->second == kClassifierFormat, "'", path,
              "' is not a fine-tuned ecmoe classifier (its metadata has no format \"",
              kClassifierFormat, "\"; `ecmoe finetune --out DIR` writes DIR/", kClassifierFile,
              ")");
  const int64_t version = meta_int(m, "format_version", path);
  ECMOE_CHECK(version == kClassifierFormatVersion, "fine-tuned model '", path,
              "' has format version ", version, "; this build reads version ",
              kClassifierFormatVersion);
  ECMOE_CHECK(meta(m, kMetadataChecksumKey, path) == metadata_checksum(m), "fine-tuned model '",
              path, "' is damaged: its metadata does not match the ", kMetadataChecksumKey,
              " in its header");
  ECMOE_CHECK(tensor_data_checksum(c.file_) == meta(m, "tensor_checksum", path),
              "fine-tuned model '", path,
              "' is damaged: its tensor data does not match the checksum in its header");
  ClassifierInfo& info = c.info_;
  const std::string what = "fine-tuned model '" + path + "'";
  try {
    info.pretrain =
        config_from_json(parse_ordered_json(meta(m, "pretrain_config", path), what + " metadata"));
    info.pretrain.validate();
    info.finetune = finetune_config_from_json(
        parse_ordered_json(meta(m, "finetune_config", path), what + " metadata"));
    const ConfigJson labels = parse_ordered_json(meta(m, "labels", path), what + " labels");
    ECMOE_CHECK(labels.is_array() && labels.size() >= 2, "labels must be a list of 2 or more");
    for (const ConfigJson& l : labels) {
      ECMOE_CHECK(l.is_string(), "labels must be strings");
      info.labels.push_back(l.get<std::string>());
    }
    info.pooling = parse_pooling(meta(m, "pooling", path));
  } catch (const Error& e) {
    fail(what, ": its metadata is unusable: ", e.what());
  }
  info.max_len = int(meta_int(m, "max_len", path));
  ECMOE_CHECK(info.max_len >= 2 && info.max_len <= info.pretrain.model.seq_len, what, ": max_len ",
              info.max_len, " is outside [2, seq_len]");
  info.pairs = meta(m, "pairs", path) == "true";
  info.pretrain_checkpoint = meta(m, "pretrain_checkpoint", path);
  info.pretrain_step = meta_int(m, "pretrain_step", path);
  info.data = {meta(m, "data.dir", path), meta(m, "data.tokenizer", path),
               meta(m, "data.tokenizer_checksum", path), meta(m, "data.source_id", path),
               int(meta_int(m, "data.vocab_size", path))};
  return c;
}

void SavedClassifier::load(FlatBuffer& params, FlatBuffer& head) const {
  load_flat_buffers(file_, {{"", &params}, {kHeadPrefix, &head}});
  for (const FlatBuffer* b : {&params, &head})
    if (const auto bad = first_nonfinite(*b))
      fail("fine-tuned model '", path(), "' holds a non-finite parameter: ", describe(*bad));
}

data::Tokenizer SavedClassifier::tokenizer(const std::string& given) const {
  return load_recorded_tokenizer(info_.data, info_.pretrain.model.vocab_size, path(), given,
                                 "--tokenizer PATH");
}

}  // namespace ecmoe::finetune
