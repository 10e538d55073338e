#include "cli/usage.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/nearest_name.h"

namespace ecmoe::cli {

namespace {

bool has_subcommands(const CLI::App& app) {
  return !app.get_subcommands([](const CLI::App*) { return true; }).empty();
}

std::vector<std::string> subcommand_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    names.push_back(sub->get_name());
  return names;
}

// Whether option `word` (e.g. "--threads" or "--threads=4") of `app` takes the next word as its
// value.
bool takes_next_word(const CLI::App& app, const std::string& word) {
  if (word.find('=') != std::string::npos) return false;
  const CLI::Option* option = app.get_option_no_throw(word);
  return option != nullptr && option->get_items_expected_max() > 0;
}

// A number as printf's %g would print it.
std::string compact(double x) {
  if (x == std::numeric_limits<double>::max()) return "1.8e308";
  char text[32];
  std::snprintf(text, sizeof(text), "%g", x);
  return text;
}

// Replaces every run of more than 12 digits (with an optional fraction) by its compact form.
std::string compact_numbers(const std::string& message) {
  std::string out;
  for (std::size_t i = 0; i < message.size();) {
    std::size_t j = i;
    while (j < message.size() && std::isdigit(static_cast<unsigned char>(message[j]))) ++j;
    if (j - i > 12) {
      if (j < message.size() && message[j] == '.')
        for (++j; j < message.size() && std::isdigit(static_cast<unsigned char>(message[j]));) ++j;
      out += compact(std::strtod(message.substr(i, j - i).c_str(), nullptr));
      i = j;
    } else if (j > i) {
      out.append(message, i, j - i);
      i = j;
    } else {
      out += message[i++];
    }
  }
  return out;
}

// Whether the option `name` ("--batch-size") of `app` or of any of its subcommands has a
// CLI::PositiveNumber check.
bool checks_positive(const CLI::App& app, const std::string& name) {
  // A Range validator keeps its name ("POSITIVE") as its description.
  if (const CLI::Option* found = app.get_option_no_throw(name)) {
    CLI::Option* option = const_cast<CLI::Option*>(found);  // get_validator is not const
    try {
      for (int i = 0;; ++i)
        if (option->get_validator(i)->get_description() == "POSITIVE") return true;
    } catch (const CLI::OptionNotFound&) {  // past the last validator
    }
  }
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (checks_positive(*sub, name)) return true;
  return false;
}

// CLI::NonNegativeNumber and CLI::PositiveNumber say "NAME: Value V not in range 0.000000 to
// <max>" (PositiveNumber's minimum, the smallest positive double, printed as 0.000000 too).
std::string reword_range(const CLI::App& app, std::string message) {
  const std::string max_text = std::to_string(std::numeric_limits<double>::max());
  const std::size_t at = message.find(" not in range 0.000000 to " + max_text);
  if (at == std::string::npos) return message;
  const std::size_t value = message.rfind("Value ", at);
  if (value == std::string::npos) return message;
  const std::string given = message.substr(value + 6, at - value - 6);
  const std::size_t colon = message.find(':');
  const bool positive =
      colon != std::string::npos && colon < value && checks_positive(app, message.substr(0, colon));
  const std::string rule = positive ? "must be positive" : "must be >= 0";
  return message.substr(0, value) + rule + ", got " + given +
         message.substr(at + 26 + max_text.size());
}

}  // namespace

void check_command_names(const CLI::App& app, int argc, const char* const* argv) {
  const CLI::App* level = &app;
  for (int i = 1; i < argc && has_subcommands(*level); ++i) {
    const std::string word = argv[i];
    if (word == "--") return;
    if (word.size() > 1 && word[0] == '-') {
      if (takes_next_word(*level, word)) ++i;
      continue;
    }
    const CLI::App* sub = nullptr;
    for (const CLI::App* candidate : level->get_subcommands([](const CLI::App*) { return true; }))
      if (candidate->check_name(word)) sub = candidate;
    if (sub == nullptr) {
      const std::vector<std::string> names = subcommand_names(*level);
      std::string list;
      for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
      const std::string near = nearest_name(word, names);
      const std::string where = level == &app ? "" : level->get_name() + " ";
      fail("unknown command '", where, word, "'",
           near.empty() ? "" : " (did you mean '" + near + "'?)", "; ",
           level == &app ? "commands" : "subcommands of " + level->get_name(), ": ", list);
    }
    level = sub;
  }
}

std::string usage_message(const CLI::App& app, const CLI::Error& error) {
  std::string message = compact_numbers(reword_range(app, error.what()));
  for (char& c : message)
    if (c == '\n') c = ' ';
  while (!message.empty() && message.back() == ' ') message.pop_back();
  return message;
}

}  // namespace ecmoe::cli
