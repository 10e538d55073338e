// The held-out text a command evaluates a checkpoint on (eval, calibrate): the options that pick
// it and the fixed windows they give, checked against the checkpoint's tokenizer. The text is a
// split of a prepared data folder, or (eval --text) raw text files encoded on the fly exactly as
// `prepare --input FILES --tokenizer ... --val-fraction 1` would encode its validation split.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "data/document_cut.h"
#include "data/token_dataset.h"
#include "train/batches.h"
#include "train/checkpoint.h"
#include "train/train_device.h"

namespace ecmoe::cli {

struct HeldOutArgs {
  std::string split = "val";
  int batches = 0;     // 0: the run's eval.batches, else 8
  int batch_size = 0;  // 0: the run's evaluation batch size
  std::string data;    // "": the folder recorded in the checkpoint's config
};

// Adds --split, --batches, --batch-size and --data to `cmd`.
void add_held_out_options(CLI::App* cmd, HeldOutArgs& args);

// eval --text: raw text files instead of a data folder.
struct TextArgs {
  std::vector<std::string> files;  // files or folders (data/input_files.h)
  std::vector<std::string> include;
  int64_t document_bytes = data::kDefaultDocumentBytes;
  std::string tokenizer;  // "": the one recorded in the checkpoint
};

struct HeldOut {
  std::string dir;  // the data folder used ("" for text files)
  data::TokenDataset dataset;
  int batches = 0;  // capped at what the split holds (train/eval_batches.h)
  BatchSpec spec;
  BatchSource source() const { return BatchSource::fixed(dataset, spec, batches); }
};

// Opens the split and resolves the defaults; the data must have the checkpoint's tokenizer. More
// batches than the split holds are capped, with a note on stderr (rank 0). The evaluation's
// memory is checked first where it will run: on `device` (nullptr: the host).
HeldOut open_held_out(const Checkpoint& checkpoint, const HeldOutArgs& args,
                      const TrainDevice* device = nullptr);

// The text files cut into documents (as prepare --input does), encoded with the checkpoint's
// tokenizer, as one split named "text" (args.split unused). Without --batches, enough batches to
// cover every token; --batches beyond that is capped as above.
HeldOut open_held_out_text(const Checkpoint& checkpoint, const HeldOutArgs& args,
                           const TextArgs& text, const TrainDevice* device = nullptr);

}  // namespace ecmoe::cli
