// The one way JSON input is parsed (configs, checkpoint headers and metadata, manifests, task
// files, result and metrics files): nesting deeper than a limit is refused before it can exhaust
// the stack of anything that later walks the tree, and a key given twice in one object is refused
// instead of silently keeping the last. Errors are one line naming the input.
#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace ecmoe {

// Deeper than any file we read needs (a config is 3 levels, a safetensors header 3).
inline constexpr int kMaxJsonDepth = 64;

struct JsonParseOptions {
  int max_depth = kMaxJsonDepth;  // levels of nested objects and arrays; a scalar is 0
  bool ignore_comments = false;   // configs may hold // and /* */ comments
};

// Parses `text`; `what` names it in errors ("config file runs/a.json"), e.g.
// "config file runs/a.json nests deeper than 64 levels (the limit for JSON input)".
nlohmann::json parse_json(std::string_view text, const std::string& what,
                          const JsonParseOptions& options = {});
// The same, keeping the objects' key order.
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& what,
                                          const JsonParseOptions& options = {});

// A JSON value for an error message: its dump, cut to `max_chars` (with "..." and the full
// length) so that a huge value cannot flood the one line.
std::string json_excerpt(const nlohmann::json& value, std::size_t max_chars = 80);
std::string json_excerpt(const nlohmann::ordered_json& value, std::size_t max_chars = 80);

}  // namespace ecmoe
