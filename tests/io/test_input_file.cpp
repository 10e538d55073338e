// Inputs must be regular files (io/input_file.h): a FIFO, a device or a directory is refused
// with one line before anything opens it (a FIFO used to block forever, /dev/zero to read until
// memory ran out).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "core/error.h"
#include "io/input_file.h"
#include "io/safetensors.h"
#include "io_test_util.h"
#include "support/core/error_of.h"

using namespace ecmoe;
using ecmoe::testing::error_of;

namespace {

class InputFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ecmoe::testing::make_temp_dir("ecmoe_input");
    fifo_ = (dir_ / "fifo").string();
    ASSERT_EQ(::mkfifo(fifo_.c_str(), 0600), 0);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::string fifo_;
};

}  // namespace

TEST_F(InputFile, ReadsRegularFiles) {
  std::ofstream(dir_ / "a.txt") << "hello";
  EXPECT_EQ(read_input_file((dir_ / "a.txt").string(), "config file"), "hello");
  EXPECT_NO_THROW(require_regular_file((dir_ / "a.txt").string(), "x"));
  std::ofstream(dir_ / "big.txt") << std::string(100, 'x');
  EXPECT_NE(error_of([&] {
              read_input_file((dir_ / "big.txt").string(), "task file", 10);
            }).find("more than the limit of 10"),
            std::string::npos);
}

TEST_F(InputFile, RefusesWhatIsNotARegularFile) {
  EXPECT_EQ(error_of([&] { read_input_file(fifo_, "tokenizer"); }),
            "tokenizer " + fifo_ + " is not a regular file (a FIFO)");
  EXPECT_EQ(error_of([&] { require_regular_file("/dev/zero", "tokenizer"); }),
            "tokenizer /dev/zero is not a regular file (a character device)");
  EXPECT_EQ(error_of([&] { read_input_file(dir_.string(), "config file"); }),
            "config file " + dir_.string() + " is not a regular file (a directory)");
  EXPECT_EQ(error_of([&] { read_input_file((dir_ / "none").string(), "manifest"); }),
            "manifest " + (dir_ / "none").string() + " does not exist");
}

// Opening a FIFO for reading blocks until a writer comes: the reader must refuse it first.
TEST_F(InputFile, SafetensorsRefusesAFifo) {
  const std::string e = error_of([&] { SafetensorsFile::open(fifo_); });
  EXPECT_NE(e.find("is not a regular file (a FIFO)"), std::string::npos) << e;
}
