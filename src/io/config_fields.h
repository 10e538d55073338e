// The JSON form of a config struct from one list of its fields: the struct's visit_fields(v, c)
// calls v.group(key, body) for a nested object and v.field(key, ref) for a value, and is walked by
// ConfigWriter (struct -> JSON) and by ConfigReader (JSON -> struct, strict: unknown keys and
// wrongly typed or out-of-range values are one-line errors naming the dotted key). One list means
// a field cannot be written under one name and read under another; one reader means every config
// (training, fine-tuning) checks its input the same way.
#pragma once
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/json_input.h"

namespace ecmoe {

// An enum stored as a name.
template <typename E>
struct NamedEnum {
  E& value;
  E (*parse)(const std::string&);
  std::string (*name)(E);
};

// A float written as the shortest decimal that reads back as the same float (0.15f is "0.15",
// not 0.15000000596046448), so config files and checkpoint metadata stay readable and exact.
inline double float_for_json(float x) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), x);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

class ConfigWriter {
 public:
  nlohmann::ordered_json result = nlohmann::ordered_json::object();
  template <typename Body>
  void group(const char* key, Body body) {
    nlohmann::ordered_json* outer = cur_;
    cur_ = &(*cur_)[key];
    *cur_ = nlohmann::ordered_json::object();
    body();
    cur_ = outer;
  }
  template <typename T>
  void field(const char* key, const T& value) {
    if constexpr (std::is_same_v<T, float>)
      (*cur_)[key] = float_for_json(value);
    else
      (*cur_)[key] = value;
  }
  template <typename E>
  void field(const char* key, const NamedEnum<E>& e) {
    (*cur_)[key] = e.name(e.value);
  }

 private:
  nlohmann::ordered_json* cur_ = &result;
};

class ConfigReader {
 public:
  // `what` starts every error message ("config", "finetune config").
  ConfigReader(const nlohmann::ordered_json& json, std::string what)
      : cur_(&json), what_(std::move(what)) {}
  template <typename Body>
  void group(const char* key, Body body) {
    seen_.back().insert(key);
    if (!cur_->contains(key)) return;
    const nlohmann::ordered_json& inner = cur_->at(key);
    ECMOE_CHECK(inner.is_object(), what_, ": ", path(key), " must be an object of settings");
    const nlohmann::ordered_json* outer = cur_;
    cur_ = &inner;
    prefix_.push_back(key);
    seen_.emplace_back();
    body();
    check_unknown();
    seen_.pop_back();
    prefix_.pop_back();
    cur_ = outer;
  }
  template <typename T>
  void field(const char* key, T& value) {
    seen_.back().insert(key);
    if (!cur_->contains(key)) return;
    const nlohmann::ordered_json& j = cur_->at(key);
    const std::string name = path(key);
    if constexpr (std::is_same_v<T, bool>) {
      ECMOE_CHECK(j.is_boolean(), what_, ": ", name, " must be true or false, got ",
                  json_excerpt(j));
      value = j.get<bool>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      ECMOE_CHECK(j.is_string(), what_, ": ", name, " must be a string, got ", json_excerpt(j));
      value = j.get<std::string>();
    } else if constexpr (std::is_floating_point_v<T>) {
      ECMOE_CHECK(j.is_number(), what_, ": ", name, " must be a number, got ", json_excerpt(j));
      value = T(j.get<double>());
      ECMOE_CHECK(std::isfinite(value), what_, ": ", name, " must be finite, got ",
                  json_excerpt(j));
    } else {
      static_assert(std::is_integral_v<T>);
      ECMOE_CHECK(j.is_number_integer(), what_, ": ", name, " must be an integer, got ",
                  json_excerpt(j));
      if (j.is_number_unsigned()) {
        const uint64_t u = j.get<uint64_t>();
        ECMOE_CHECK(u <= uint64_t(std::numeric_limits<T>::max()), what_, ": ", name,
                    " is out of range: ", json_excerpt(j));
        value = T(u);
      } else {
        const int64_t s = j.get<int64_t>();
        // Unsigned fields take non-negative signed values too (`--set seeds.init=1` parses as
        // a signed integer).
        const bool in_range =
            std::is_signed_v<T> ? s >= int64_t(std::numeric_limits<T>::min()) &&
                                      s <= int64_t(std::numeric_limits<T>::max())
                                : s >= 0 && uint64_t(s) <= uint64_t(std::numeric_limits<T>::max());
        ECMOE_CHECK(in_range, what_, ": ", name, " is out of range: ", json_excerpt(j));
        value = T(s);
      }
    }
  }
  template <typename E>
  void field(const char* key, NamedEnum<E> e) {
    seen_.back().insert(key);
    if (!cur_->contains(key)) return;
    const nlohmann::ordered_json& j = cur_->at(key);
    ECMOE_CHECK(j.is_string(), what_, ": ", path(key), " must be a string, got ", json_excerpt(j));
    try {
      e.value = e.parse(j.get<std::string>());
    } catch (const Error& err) {
      fail(what_, ": ", path(key), ": ", err.what());
    }
  }
  void check_unknown() const {
    for (const auto& [key, value] : cur_->items()) {
      if (seen_.back().count(key)) continue;
      std::string known;
      for (const auto& k : seen_.back()) known += (known.empty() ? "" : ", ") + k;
      fail(what_, ": unknown key '", path(key.c_str()), "' (keys here: ", known, ")");
    }
  }

 private:
  std::string path(const char* key) const {
    std::string p;
    for (const auto& part : prefix_) p += part + ".";
    return p + key;
  }
  const nlohmann::ordered_json* cur_;
  std::string what_;
  std::vector<std::string> prefix_;
  std::vector<std::set<std::string>> seen_{1};
};

}  // namespace ecmoe
