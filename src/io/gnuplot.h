// Drawing with gnuplot safely. Scripts name only fixed file names in the folder gnuplot runs in
// (data reach gnuplot through data files), and every text from outside (labels, titles) goes in
// through gnuplot_quote. gnuplot is started with an argument vector (io/process.h), never a shell.
#pragma once
#include <string>
#include <string_view>

namespace ecmoe {

// `text` as a gnuplot single-quoted string literal, quotes included. Inside single quotes gnuplot
// does no backquote command substitution, no @macro expansion and no backslash escapes (checked
// against gnuplot 5.4 in tests/io/test_process.cpp). A quote in the text becomes U+2019: gnuplot
// 5.4 misreads a doubled quote next to another quote or at the start of a string, so the literal
// holds no quote but its two ends. Control characters (a newline would end the command) are
// dropped.
std::string gnuplot_quote(std::string_view text);

// The path of gnuplot on PATH; throws "<purpose>: gnuplot is not installed (...)" without one.
std::string find_gnuplot(const std::string& purpose);

// Runs gnuplot on `script` (a file name relative to `dir`) in the folder `dir`, stdin from
// /dev/null. Throws "<purpose>: gnuplot failed on <dir>/<script> (exit N): <its last lines of
// stderr>" if it fails.
void run_gnuplot(const std::string& dir, const std::string& script, const std::string& purpose);

}  // namespace ecmoe
