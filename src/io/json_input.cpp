// Bounded JSON parsing: nlohmann's parser is iterative, and its parse callback sees every object,
// array and key with its depth, so one callback enforces both the depth limit and unique keys.
#include "io/json_input.h"

#include <cstddef>
#include <set>
#include <vector>

#include "core/error.h"

namespace ecmoe {

namespace {

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

template <typename Json>
Json parse_bounded(std::string_view text, const std::string& what,
                   const JsonParseOptions& options) {
  using Event = typename Json::parse_event_t;
  std::vector<std::set<std::string>> open_objects;  // the keys seen in each open object
  auto callback = [&](int depth, Event event, Json& parsed) {
    // `depth` counts the containers around the event; a new container is one level deeper.
    if ((event == Event::object_start || event == Event::array_start) &&
        depth + 1 > options.max_depth)
      fail(what, " nests deeper than ", options.max_depth, " levels (the limit for JSON input)");
    if (event == Event::object_start) open_objects.emplace_back();
    if (event == Event::object_end) open_objects.pop_back();
    if (event == Event::key &&
        !open_objects.back().insert(parsed.template get<std::string>()).second)
      fail(what, " has the key '", one_line(parsed.template get<std::string>()),
           "' twice in one object");
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                       options.ignore_comments);
  } catch (const nlohmann::json::exception& e) {
    fail(what, " is not valid JSON (", one_line(e.what()), ")");
  }
}

template <typename Json>
std::string excerpt(const Json& value, std::size_t max_chars) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() <= max_chars) return text;
  const std::size_t full = text.size();
  text.resize(max_chars);
  return text + "... (" + std::to_string(full) + " characters)";
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& what,
                          const JsonParseOptions& options) {
  return parse_bounded<nlohmann::json>(text, what, options);
}

nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& what,
                                          const JsonParseOptions& options) {
  return parse_bounded<nlohmann::ordered_json>(text, what, options);
}

std::string json_excerpt(const nlohmann::json& value, std::size_t max_chars) {
  return excerpt(value, max_chars);
}

std::string json_excerpt(const nlohmann::ordered_json& value, std::size_t max_chars) {
  return excerpt(value, max_chars);
}

}  // namespace ecmoe
