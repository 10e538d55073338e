#include "train/config_overrides.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include "core/error.h"
#include "core/nearest_name.h"
#include "data/clean.h"
#include "io/input_file.h"
#include "io/json_input.h"
#include "moe/moe_config.h"

namespace fs = std::filesystem;

namespace ecmoe {

namespace {

std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  std::size_t begin = 0;
  while (true) {
    const std::size_t dot = key.find('.', begin);
    parts.push_back(key.substr(begin, dot - begin));
    if (dot == std::string::npos) break;
    begin = dot + 1;
  }
  return parts;
}

std::string keys_of(const ConfigJson& object) {
  std::string keys;
  for (const auto& [k, v] : object.items()) keys += (keys.empty() ? "" : ", ") + k;
  return keys;
}

// Names people type for a key, by meaning (the words of other trainers): an unknown key whose
// last part is an alias suggests the config's key ending in one of its targets, e.g. lr ->
// peak_lr (finetune) or schedule.peak_lr (train). Shared by every config `--set` applies to.
struct KeyAlias {
  const char* alias;
  std::vector<const char*> targets;  // the first that some key ends in is suggested
};
const std::vector<KeyAlias>& key_aliases() {
  static const std::vector<KeyAlias> aliases = {
      {"lr", {"peak_lr"}},
      {"learning_rate", {"peak_lr"}},
      {"max_lr", {"peak_lr"}},
      {"epochs", {"steps"}},
      {"num_epochs", {"steps"}},
      {"max_steps", {"steps"}},
      {"iterations", {"steps"}},
      {"wd", {"weight_decay"}},
      {"clip", {"clip_norm"}},
      {"grad_clip", {"clip_norm"}},
      {"max_grad_norm", {"clip_norm"}},
      {"batch", {"batch_size"}},
      {"bs", {"batch_size"}},
      {"gradient_accumulation_steps", {"grad_accum"}},
      {"accumulate_grad_batches", {"grad_accum"}},
      {"accumulation_steps", {"grad_accum"}},
      {"warmup", {"warmup_steps", "warmup_fraction"}},
      {"max_length", {"max_len", "seq_len"}},
      {"max_seq_length", {"max_len", "seq_len"}},
      {"seq_length", {"seq_len", "max_len"}},
      {"hidden_size", {"d_model"}},
      {"num_layers", {"n_layers"}},
      {"num_heads", {"n_heads"}},
      {"num_experts", {"n_experts"}},
      {"experts", {"n_experts"}},
      {"output_dir", {"out"}},
      {"early_stopping", {"patience"}},
  };
  return aliases;
}

// The key `key` most likely means: by meaning (key_aliases), else the closest by spelling if it
// is close enough to be a likely typo; "" when there is none.
std::string closest_key(const ConfigJson& root, const std::string& key) {
  std::vector<std::string> names;
  for (const auto& [name, value] : flatten_config(root)) names.push_back(name);
  std::string last = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
  for (char& c : last) c = c == '-' ? '_' : char(std::tolower(static_cast<unsigned char>(c)));
  for (const KeyAlias& a : key_aliases()) {
    if (last != a.alias) continue;
    for (const char* target : a.targets) {
      std::string best;  // the shortest key ending in the target: the top-level one first
      for (const std::string& name : names) {
        const bool ends = name == target || name.ends_with(std::string(".") + target);
        if (ends && (best.empty() || name.size() < best.size())) best = name;
      }
      if (!best.empty()) return best;
    }
  }
  return nearest_name(key, names);
}

template <typename T>
bool parse_whole(const std::string& text, T& value) {
  const char* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, value);
  return r.ec == std::errc() && r.ptr == end;
}

// The value of `text` with the JSON type of `current`.
ConfigJson parse_value(const std::string& key, const std::string& text, const ConfigJson& current) {
  if (current.is_boolean()) {
    if (text == "true" || text == "1") return true;
    if (text == "false" || text == "0") return false;
    fail("--set ", key, ": expected true or false, got '", text, "'");
  }
  if (current.is_number_integer()) {
    int64_t s;
    if (parse_whole(text, s)) return s;
    uint64_t u;
    if (parse_whole(text, u)) return u;
    fail("--set ", key, ": expected an integer, got '", text, "'");
  }
  if (current.is_number()) {
    char* end = nullptr;
    const double x = std::strtod(text.c_str(), &end);
    ECMOE_CHECK(!text.empty() && end == text.c_str() + text.size(), "--set ", key,
                ": expected a number, got '", text, "'");
    ECMOE_CHECK(std::isfinite(x), "--set ", key, ": '", text, "' is not a finite number");
    return x;
  }
  if (current.is_string()) {
    const std::optional<std::size_t> bad = data::find_invalid_utf8(text);
    ECMOE_CHECK(!bad, "--set ", key, ": the value is not valid UTF-8 (byte ", *bad + 1, ")");
    return text;
  }
  fail("--set ", key, ": cannot set a value of this kind");
}

// The node at a dotted key, or an error naming the key and what could have been meant.
ConfigJson& find_key(ConfigJson& root, const std::string& key) {
  ConfigJson* node = &root;
  std::string where;
  for (const std::string& part : split_key(key)) {
    if (!node->is_object() || !node->contains(part)) {
      const std::string near = closest_key(root, key);
      if (!node->is_object())
        fail("unknown config key '", key, "': ", where, " is a value, not a group");
      fail("unknown config key '", key, "'", near.empty() ? "" : " (did you mean '" + near + "'?)",
           "; keys in ", where.empty() ? "the top level" : where, ": ", keys_of(*node));
    }
    node = &(*node)[part];
    where += (where.empty() ? "" : ".") + part;
  }
  ECMOE_CHECK(!node->is_object(), "config key '", key,
              "' is a group; set one of its keys: ", keys_of(*node));
  return *node;
}

void collect(const ConfigJson& node, const std::string& prefix,
             std::vector<std::pair<std::string, ConfigJson>>& out) {
  for (const auto& [k, v] : node.items()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object())
      collect(v, key, out);
    else
      out.emplace_back(key, v);
  }
}

}  // namespace

std::vector<std::pair<std::string, ConfigJson>> flatten_config(const ConfigJson& json) {
  std::vector<std::pair<std::string, ConfigJson>> out;
  collect(json, "", out);
  return out;
}

void apply_overrides(ConfigJson& json, const std::vector<std::string>& assignments) {
  std::set<std::string> given;
  for (const std::string& a : assignments) {
    const std::size_t eq = a.find('=');
    ECMOE_CHECK(eq != std::string::npos && eq > 0, "--set expects KEY=VALUE, got '", a, "'");
    const std::string key = a.substr(0, eq);
    ConfigJson& node = find_key(json, key);
    node = parse_value(key, a.substr(eq + 1), node);
    given.insert(key);
  }
  if (!given.count("model.moe.router")) return;
  const MoeConfig defaults =
      default_moe_config(parse_router_kind(json["model"]["moe"]["router"].get<std::string>()));
  // Through config_to_json, so the defaults are written exactly as a config file would be.
  TrainConfig reference;
  reference.model.moe = defaults;
  ConfigJson ref = config_to_json(reference);
  for (const char* key : kRouterDependentKeys)
    if (!given.count(key)) find_key(json, key) = find_key(ref, key);
}

std::string resolve_config_path(const std::string& name_or_path) {
  const bool bare = name_or_path.find('/') == std::string::npos &&
                    !name_or_path.ends_with(".json") && !name_or_path.empty();
  if (!bare) {
    ECMOE_CHECK(fs::is_regular_file(name_or_path), "config file ", name_or_path, " does not exist");
    return name_or_path;
  }
  const std::string file = "configs/" + name_or_path + ".json";
  std::vector<fs::path> tried = {fs::current_path() / file};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path dir = exe.parent_path(); !dir.empty(); dir = dir.parent_path()) {
      tried.push_back(dir / file);
      if (dir == dir.root_path()) break;
    }
  for (const fs::path& p : tried)
    if (fs::is_regular_file(p)) return p.string();
  fail("no config named '", name_or_path, "': ", file,
       " is neither in the current directory nor above the ecmoe executable (give a path to use "
       "another file)");
}

ConfigJson read_config_file(const std::string& path) {
  return read_config_text(read_input_file(path, "config file"), path);
}

ConfigJson read_config_text(const std::string& text, const std::string& path) {
  const ConfigJson json =
      parse_ordered_json(text, "config file " + path, {.ignore_comments = true});
  try {
    return config_to_json(config_from_json(json));
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
}

TrainConfig load_train_config(const std::string& name_or_path,
                              const std::vector<std::string>& assignments) {
  ConfigJson json = read_config_file(resolve_config_path(name_or_path));
  apply_overrides(json, assignments);
  TrainConfig config = config_from_json(json);
  config.validate();
  return config;
}

}  // namespace ecmoe
