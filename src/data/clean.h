// Text cleaning rules shared by every corpus and by user files. Input and output are UTF-8; a
// cleaned text is a list of non-empty lines joined by '\n', each with single spaces between words
// and none at either end.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ecmoe::data {

// Offset of the first byte that is not part of a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF count as malformed), or nullopt if there is none.
std::optional<std::size_t> find_invalid_utf8(std::string_view text);
// Replaces each malformed byte with U+FFFD; for corpora whose files we do not control.
std::string repair_utf8(std::string_view text);

// One line: every run of white space (ASCII and Unicode spaces, tabs, CR, form feeds) becomes a
// single space, ends are trimmed, other control characters, zero-width characters and byte order
// marks are dropped. Expects valid UTF-8.
std::string normalize_whitespace(std::string_view line);

// Whole text: normalize_whitespace on each line, empty lines dropped, joined by '\n'. Empty if
// nothing is left.
std::string clean_text(std::string_view text);

// Removes transcribers' notes from speeches: [Applause], [Laughter], [missing text] and page
// markers such as [p.7], in any letter case. Other bracketed text (editorial insertions that are
// part of a sentence) stays.
std::string strip_transcript_notes(std::string_view text);

// One Brown corpus line ("The/at jury/nn said/vbd ``/`` no/at ''/'' ./."): drops each token's
// /TAG (after its last '/'), maps `` and '' to '"', and rejoins punctuation to its word, giving
// 'The jury said "no".'. Not normalised further; run clean_text after.
std::string strip_brown_tags(std::string_view line);

// One line of WordNet's data.noun/verb/adj/adv: the gloss after '|', trimmed. nullopt for the
// license header (lines starting with two spaces) and for lines without a gloss.
std::optional<std::string> wordnet_gloss(std::string_view line);

// Cuts a line into pieces of at most max_bytes: after the last ". ", "? " or "! " that fits
// (unless that leaves a piece under a quarter of max_bytes), else at the last space, else at a
// UTF-8 character boundary. Pieces have no space at either end. SentencePiece skips sentences
// longer than its limit in training; in encoding, a cut at a space changes no ids (no piece spans
// a space) and saves time on speech-long lines.
std::vector<std::string_view> cut_long_line(std::string_view line, std::size_t max_bytes);

}  // namespace ecmoe::data
