// Bounded JSON parsing (io/json_input.h): nesting beyond the limit and duplicate keys are one-line
// errors naming the input; dumps in messages are cut short.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "io/json_input.h"

using namespace ecmoe;

namespace {

std::string error_of(const std::string& text, const JsonParseOptions& options = {}) {
  try {
    parse_json(text, "config file x.json", options);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string deep_objects(int depth) {
  std::string text;
  for (int i = 0; i < depth; ++i) text += "{\"a\": ";
  return text + "1" + std::string(depth, '}');
}

}  // namespace

TEST(JsonInput, ParsesOrdinaryJson) {
  const auto j = parse_json(R"({"a": [1, {"b": "c"}], "d": null})", "x");
  EXPECT_EQ(j["a"][1]["b"], "c");
  const auto o = parse_ordered_json(R"({"z": 1, "a": 2})", "x");
  EXPECT_EQ(o.begin().key(), "z");  // order kept
  EXPECT_EQ(parse_json(nested(kMaxJsonDepth), "x").size(), 1u);
}

TEST(JsonInput, RefusesDeepNestingInOneLine) {
  // 70,000 levels crashed `train` (a recursive dump for the error message overflowed the stack).
  for (const std::string& text :
       {nested(kMaxJsonDepth + 1), nested(70000), std::string(70000, '['), deep_objects(70000)}) {
    const std::string e = error_of(text);
    EXPECT_NE(e.find("config file x.json nests deeper than 64 levels"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos);
  }
  EXPECT_NE(error_of(nested(4), {.max_depth = 3}).find("deeper than 3"), std::string::npos);
  EXPECT_EQ(error_of(nested(3), {.max_depth = 3}), "(no error)");
  // Brackets inside strings are not nesting.
  EXPECT_EQ(error_of("[\"" + std::string(1000, '[') + "\"]"), "(no error)");
}

TEST(JsonInput, RefusesDuplicateKeysAtAnyLevel) {
  EXPECT_NE(error_of(R"({"steps": 1, "steps": 2})").find("has the key 'steps' twice"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"d_model": 1, "d_model": 2}})").find("'d_model' twice"),
            std::string::npos);
  // The same key in two different objects is fine.
  EXPECT_EQ(error_of(R"({"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 1}, {"k": 2}]})"), "(no error)");
}

TEST(JsonInput, InvalidJsonAndComments) {
  const std::string e = error_of("{\"a\":\n}");
  EXPECT_NE(e.find("config file x.json is not valid JSON"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos);
  EXPECT_NE(error_of("{/* c */ \"a\": 1}").find("not valid JSON"), std::string::npos);
  EXPECT_EQ(error_of("{/* c */ \"a\": 1} // end", {.ignore_comments = true}), "(no error)");
}

TEST(JsonInput, ExcerptsAreBounded) {
  EXPECT_EQ(json_excerpt(nlohmann::json(12)), "12");
  const std::string long_text = json_excerpt(nlohmann::json(std::string(10000, 'x')), 80);
  EXPECT_LT(long_text.size(), 120u);
  EXPECT_NE(long_text.find("... (10002 characters)"), std::string::npos) << long_text;
}
