// Cleaning rules, written as single passes over the bytes (the corpora are ~35 MB in all).
#include "data/clean.h"

#include <cstdint>
#include <vector>

namespace ecmoe::data {

namespace {

// Length of the well-formed UTF-8 sequence starting at text[i] and its code point, or length 0.
std::size_t decode_utf8(std::string_view text, std::size_t i, uint32_t& cp) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  std::size_t len;
  uint32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Invisible characters that only get in the tokenizer's way. ZWJ/ZWNJ stay: some scripts and
// emoji sequences need them.
bool is_dropped(uint32_t cp) {
  return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x200B || cp == 0x2060 ||
         cp == 0xFEFF;
}

bool is_utf8_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

bool is_transcript_note(std::string_view inside) {
  const std::string note = lower_ascii(trim(inside));
  if (note == "applause" || note == "laughter" || note == "missing text") return true;
  // Page markers: p.7, p. 12
  if (note.size() < 3 || note[0] != 'p' || note[1] != '.') return false;
  std::string_view digits = trim(std::string_view(note).substr(2));
  if (digits.empty()) return false;
  for (char c : digits)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace

std::optional<std::size_t> find_invalid_utf8(std::string_view text) {
  uint32_t cp;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t len = decode_utf8(text, i, cp);
    if (len == 0) return i;
    i += len;
  }
  return std::nullopt;
}

std::string repair_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  uint32_t cp;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t len = decode_utf8(text, i, cp);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.substr(i, len));
      i += len;
    }
  }
  return out;
}

std::string normalize_whitespace(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  bool pending_space = false;
  uint32_t cp;
  for (std::size_t i = 0; i < line.size();) {
    std::size_t len = decode_utf8(line, i, cp);
    if (len == 0) {  // not expected; keep the byte rather than lose text silently
      len = 1;
      cp = 0xFFFD;
    }
    if (is_space(cp)) {
      pending_space = true;
    } else if (!is_dropped(cp)) {
      if (pending_space && !out.empty()) out += ' ';
      pending_space = false;
      out.append(line.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string clean_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string line = normalize_whitespace(text.substr(start, end - start));
    if (!line.empty()) {
      if (!out.empty()) out += '\n';
      out += line;
    }
    start = end + 1;
  }
  return out;
}

std::string strip_transcript_notes(std::string_view text) {
  constexpr std::size_t kLongestNote = 40;
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t open = text.find('[', i);
    if (open == std::string_view::npos) break;
    const std::size_t close = text.find(']', open + 1);
    if (close != std::string_view::npos && close - open <= kLongestNote &&
        is_transcript_note(text.substr(open + 1, close - open - 1))) {
      out.append(text.substr(i, open - i));
      out += ' ';  // keeps the words on either side apart; clean_text collapses doubles
      i = close + 1;
    } else {
      out.append(text.substr(i, open + 1 - i));
      i = open + 1;
    }
  }
  out.append(text.substr(i));
  return out;
}

std::string strip_brown_tags(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  bool glue_next = true;  // no space before the next word (start of line, after an opener)
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_ascii_space(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !is_ascii_space(line[i])) ++i;
    if (start == i) break;
    std::string_view token = line.substr(start, i - start);
    const std::size_t slash = token.rfind('/');
    if (slash != std::string_view::npos && slash > 0) token = token.substr(0, slash);

    const bool opener = token == "``" || token == "(" || token == "[";
    const bool closer = token == "''" || token == "," || token == "." || token == ";" ||
                        token == ":" || token == "?" || token == "!" || token == ")" ||
                        token == "]";
    if (!glue_next && !closer) out += ' ';
    out += (token == "``" || token == "''") ? std::string_view("\"") : token;
    glue_next = opener;
  }
  return out;
}

std::optional<std::string> wordnet_gloss(std::string_view line) {
  if (line.substr(0, 2) == "  ") return std::nullopt;
  const std::size_t bar = line.find('|');
  if (bar == std::string_view::npos) return std::nullopt;
  const std::string_view gloss = trim(line.substr(bar + 1));
  if (gloss.empty()) return std::nullopt;
  return std::string(gloss);
}

std::vector<std::string_view> cut_long_line(std::string_view line, std::size_t max_bytes) {
  std::vector<std::string_view> pieces;
  while (line.size() > max_bytes) {
    const std::string_view window = line.substr(0, max_bytes + 1);
    std::size_t cut = std::string_view::npos;
    for (const char* end : {". ", "? ", "! "}) {
      const std::size_t at = window.rfind(end);
      if (at != std::string_view::npos && (cut == std::string_view::npos || at + 1 > cut))
        cut = at + 1;
    }
    if (cut == std::string_view::npos || cut < max_bytes / 4) {
      const std::size_t space = window.rfind(' ');
      if (space != std::string_view::npos && space > 0) cut = space;
    }
    if (cut == std::string_view::npos || cut == 0) {
      cut = max_bytes;
      while (cut > 0 && is_utf8_continuation(line[cut])) --cut;
      if (cut == 0) cut = max_bytes;  // not UTF-8 at all; any cut will do
    }
    pieces.push_back(line.substr(0, cut));
    line.remove_prefix(cut);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    while (!pieces.back().empty() && pieces.back().back() == ' ') pieces.back().remove_suffix(1);
  }
  if (!line.empty()) pieces.push_back(line);
  return pieces;
}

}  // namespace ecmoe::data
