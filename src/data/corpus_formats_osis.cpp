// OSIS markup is read as a stream of tags and text, not parsed as XML: SWORD stores it in pieces
// (one per verse or comment), and an element may open in one entry and close in another.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/clean.h"
#include "data/corpus_formats.h"

namespace ecmoe::data {

namespace {

// The value of attribute `name` in a start tag's text ("chapter osisID=\"Gen.1\" sID=...").
std::optional<std::string_view> attribute(std::string_view tag, std::string_view name) {
  std::size_t at = 0;
  while ((at = tag.find(name, at)) != std::string_view::npos) {
    const std::size_t value = at + name.size();
    const bool whole = at > 0 && (tag[at - 1] == ' ' || tag[at - 1] == '\t' || tag[at - 1] == '\n');
    if (whole && tag.substr(value, 2) == "=\"") {
      const std::size_t end = tag.find('"', value + 2);
      if (end != std::string_view::npos) return tag.substr(value + 2, end - value - 2);
    }
    at = value;
  }
  return std::nullopt;
}

// The element name of a tag's text: "chapter" for "chapter n=\"1\"/", "div" for "/div".
std::string_view element_name(std::string_view tag) {
  if (!tag.empty() && tag[0] == '/') tag.remove_prefix(1);
  std::size_t end = 0;
  while (end < tag.size() && tag[end] != ' ' && tag[end] != '/' && tag[end] != '\t' &&
         tag[end] != '\n')
    ++end;
  return tag.substr(0, end);
}

bool ends_line(std::string_view element) {
  static const std::set<std::string_view> kLineElements = {
      "div",  "p",    "l",   "lg",    "lb",        "title", "chapter",
      "list", "item", "row", "table", "milestone", "head"};
  return kLineElements.count(element) > 0;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | cp >> 6), out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | cp >> 12), out += char(0x80 | (cp >> 6 & 0x3F)),
        out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | cp >> 18), out += char(0x80 | (cp >> 12 & 0x3F)),
        out += char(0x80 | (cp >> 6 & 0x3F)), out += char(0x80 | (cp & 0x3F));
  }
}

// The character an entity stands for ("amp" -> "&", "#8212" -> "—"), or nullopt if unknown.
std::optional<std::string> entity(std::string_view name) {
  if (name == "amp") return "&";
  if (name == "lt") return "<";
  if (name == "gt") return ">";
  if (name == "quot") return "\"";
  if (name == "apos") return "'";
  if (name.size() < 2 || name[0] != '#') return std::nullopt;
  const bool hex = name[1] == 'x' || name[1] == 'X';
  uint32_t cp = 0;
  const std::string_view digits = name.substr(hex ? 2 : 1);
  if (digits.empty() || digits.size() > 6) return std::nullopt;
  for (const char c : digits) {
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (hex && c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (hex && c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    cp = cp * (hex ? 16 : 10) + uint32_t(v);
  }
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
  std::string out;
  append_utf8(out, cp);
  return out;
}

}  // namespace

std::string osis_text(std::string_view markup) {
  const std::string valid = repair_utf8(markup);
  std::string plain;
  plain.reserve(valid.size());
  std::size_t i = 0;
  while (i < valid.size()) {
    const char c = valid[i];
    if (c == '<') {
      const std::size_t end = valid.find('>', i);
      if (end == std::string::npos) break;  // a cut-off tag at the end
      const std::string_view tag = std::string_view(valid).substr(i + 1, end - i - 1);
      const std::string_view name = element_name(tag);
      if (ends_line(name)) plain += '\n';
      if (name == "cell" && tag[0] == '/') plain += ' ';
      i = end + 1;
    } else if (c == '&') {
      const std::size_t end = valid.find(';', i);
      const auto decoded = end == std::string::npos || end - i > 10
                               ? std::nullopt
                               : entity(std::string_view(valid).substr(i + 1, end - i - 1));
      plain += decoded ? *decoded : "&";
      i = decoded ? end + 1 : i + 1;
    } else {
      plain += c;
      ++i;
    }
  }
  return clean_text(plain);
}

std::vector<Document> commentary_documents(const std::vector<std::string>& entries,
                                           std::string_view source) {
  std::string all;
  for (const auto& e : entries) all += e + "\n";
  // Cut the markup at each chapter or book start; a name seen again continues its document.
  std::vector<std::pair<std::string, std::string>> parts;  // (name, markup)
  std::map<std::string, std::size_t> part_of;
  std::string name = "front";
  std::size_t from = 0;
  const auto close = [&](std::size_t to) {
    const auto [it, added] = part_of.emplace(name, parts.size());
    if (added) parts.emplace_back(name, "");
    parts[it->second].second.append(all, from, to - from);
    from = to;
  };
  for (std::size_t at = all.find('<'); at != std::string::npos; at = all.find('<', at + 1)) {
    const std::size_t end = all.find('>', at);
    if (end == std::string::npos) break;
    const std::string_view tag = std::string_view(all).substr(at + 1, end - at - 1);
    const std::string_view element = element_name(tag);
    const auto id = attribute(tag, "osisID");
    const bool book = element == "div" && attribute(tag, "type") == std::string_view("book");
    if (!id || !(element == "chapter" || book) || attribute(tag, "eID")) continue;
    close(at);
    name = std::string(*id);
  }
  close(all.size());
  std::vector<Document> docs;
  for (const auto& [part_name, markup] : parts) {
    std::string text = osis_text(markup);
    if (!text.empty()) docs.push_back({std::string(source), part_name, std::move(text)});
  }
  return docs;
}

}  // namespace ecmoe::data
