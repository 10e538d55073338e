// Loading a run's configuration: a config file (by name or path) and `--set KEY=VALUE` overrides
// on top of it, applied to the JSON form (train_config.h) so that every field can be set the same
// way and a value is parsed by the type the field already has.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "train/train_config.h"

namespace ecmoe {

// The fields that depend on the router: when `--set model.moe.router=R` is given, each of these
// that is not itself given with --set (in any order) takes R's default (default_moe_config(R)),
// so switching a run to top2 also switches it to top2's capacity factors and load-balancing loss.
inline constexpr const char* kRouterDependentKeys[] = {
    "model.moe.capacity_factor_train", "model.moe.capacity_factor_eval",
    "model.moe.load_balance_weight", "model.moe.z_loss_weight"};

// Applies "key=value" overrides to a complete config JSON (config_to_json's shape). The value is
// read by the existing value's type: integer, number, true/false, or a string taken as is. An
// unknown key is an error that lists the valid keys at that level and suggests the key it likely
// means, by meaning (lr, learning_rate -> peak_lr; epochs -> steps; wd -> weight_decay; clip ->
// clip_norm; batch -> batch_size; ...) or else by spelling.
void apply_overrides(ConfigJson& json, const std::vector<std::string>& assignments);

// Every leaf key as a dotted path with its value, in file order ("model.moe.router", ...).
std::vector<std::pair<std::string, ConfigJson>> flatten_config(const ConfigJson& json);

// A bare name (no '/', no ".json") is configs/NAME.json, looked up in the current directory and
// then in each folder above the running executable (so a build folder inside the source tree
// finds the source tree's configs/); anything else is a path. Throws if nothing is found.
std::string resolve_config_path(const std::string& name_or_path);

// Reads a config file into a complete JSON: the file's keys over the defaults (strictly: an
// unknown key or a wrongly typed value is an error naming the file and the key).
ConfigJson read_config_file(const std::string& path);
// The same from the file's text (`path` names it in errors), e.g. for fuzzing.
ConfigJson read_config_text(const std::string& text, const std::string& path);

// read_config_file(resolve_config_path(name)) with the overrides applied, parsed and validated.
TrainConfig load_train_config(const std::string& name_or_path,
                              const std::vector<std::string>& assignments);

}  // namespace ecmoe
