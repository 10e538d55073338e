// Tab-separated files with a header line, shared by the GLUE layouts (glue_tsv.h), the generic
// `tsv:` task (tsv_task.h) and `ecmoe predict`. Fields are taken as is: no quoting, a field holds
// no tab and no newline; a trailing '\r' (a Windows line end) is dropped. Header problems each get
// their own one-line error naming the file and the columns found:
//   train.tsv:1: the file starts with a UTF-8 byte-order mark (columns found: 'text', 'label'); ...
//   train.tsv:1: no column 'sentence' (columns found: 'text', 'label'); ...
//   train.tsv:1: no column 'text' (columns found: 'text,label'): the file looks comma-separated;
//   ...
#pragma once
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

namespace ecmoe::finetune {

std::vector<std::string> split_tabs(const std::string& line);

// Reads one line (without its '\n' and a trailing '\r'); false at the end. Throws, naming
// path:line, when it is not UTF-8.
bool read_tsv_line(std::istream& in, std::string& line, int64_t& line_no, const std::string& path);

struct TsvHeader {
  std::string path;
  std::vector<std::string> columns;
  // "'text', 'label'", for errors.
  std::string columns_found() const;
};

// Reads the header (the first line) of `in`: an empty file, a UTF-8 byte-order mark or a line that
// is not UTF-8 is an error naming `path`.
TsvHeader read_tsv_header(std::istream& in, const std::string& path);

// The index of column `name`, or an error naming the file and the columns found, pointing out a
// comma-separated header; `hint` (e.g. "choose one with --text-column") ends the message.
int tsv_column(const TsvHeader& header, const std::string& name, const std::string& hint);

// A field for one TSV or text cell of output: tabs, newlines and carriage returns become spaces.
std::string tsv_cell(const std::string& text);

}  // namespace ecmoe::finetune
