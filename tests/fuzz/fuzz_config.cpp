// Fuzz target: a config file's text and `--set` overrides through what `ecmoe train` does with
// them (read_config_text, apply_overrides, config_from_json, validate, then config_to_json().dump()
// as written to config.json and the checkpoint), and the text as a checkpoint's config metadata
// (Checkpoint::open: ConfigJson::parse, config_from_json, validate). Input: the config text, then
// optionally NUL-separated KEY=VALUE overrides. Rejections are ecmoe::Error (and nlohmann's
// exceptions from parsing, where Checkpoint::open expects them); anything else is a finding.
// docs/fuzzing.md.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/json_input.h"
#include "train/config_overrides.h"
#include "train/train_config.h"

namespace {

// As `ecmoe train --config FILE --set ...` reads its config.
void train_cli_path(const std::string& text, const std::vector<std::string>& sets) {
  ecmoe::ConfigJson json = ecmoe::read_config_text(text, "fuzz.json");
  ecmoe::apply_overrides(json, sets);
  const ecmoe::TrainConfig config = ecmoe::config_from_json(json);
  config.validate();
  // Written to <out>/config.json and the checkpoint's metadata, and read back on resume: the
  // round trip must give the same config.
  const std::string written = ecmoe::config_to_json(config).dump();
  const ecmoe::TrainConfig back = ecmoe::config_from_json(ecmoe::ConfigJson::parse(written));
  if (ecmoe::config_to_json(back) != ecmoe::config_to_json(config)) __builtin_trap();
}

// As Checkpoint::open reads the "config" metadata (train/checkpoint.cpp).
void checkpoint_metadata_path(const std::string& text) {
  ecmoe::config_from_json(ecmoe::parse_ordered_json(text, "config metadata")).validate();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::size_t end = input.find('\0');
  const std::string text = input.substr(0, end);
  std::vector<std::string> sets;
  while (end != std::string::npos && sets.size() < 16) {
    const std::size_t next = input.find('\0', end + 1);
    sets.push_back(input.substr(end + 1, next == std::string::npos ? next : next - end - 1));
    end = next;
  }
  try {
    train_cli_path(text, sets);
  } catch (const ecmoe::Error&) {
  }
  try {
    checkpoint_metadata_path(text);
  } catch (const ecmoe::Error&) {
  }
  return 0;
}
