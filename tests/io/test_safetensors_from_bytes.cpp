// SafetensorsFile::from_bytes (the fuzz targets' entry, tests/fuzz): the same validation and the
// same contents as opening the file, from a copy that outlives the caller's bytes.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "io_test_util.h"

using namespace ecmoe;
namespace fs = std::filesystem;

namespace {

std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

TEST(SafetensorsFromBytes, SameContentsAsTheFile) {
  const fs::path dir = ecmoe::testing::make_temp_dir("ecmoe_stb");
  ASSERT_FALSE(dir.empty());
  const std::string path = (dir / "x.safetensors").string();
  const float w[6] = {1, 2, 3, 4, 5, 6};
  const int64_t step = 42;
  save_safetensors(path, {{"w", DType::F32, {2, 3}, w}, {"step", DType::I64, {}, &step}},
                   {{"format", "test"}});
  std::string bytes = ecmoe::testing::slurp(path);
  fs::remove_all(dir);

  SafetensorsFile moved = SafetensorsFile::from_bytes("mem", as_bytes(bytes));
  bytes.assign(bytes.size(), '\0');  // the file keeps its own copy
  const SafetensorsFile f = std::move(moved);
  EXPECT_EQ(f.path(), "mem");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"w", "step"}));
  EXPECT_EQ(f.metadata().at("format"), "test");
  float back[6] = {};
  f.read_f32("w", back, {2, 3});
  EXPECT_EQ(std::memcmp(back, w, sizeof(w)), 0);
  int64_t s = 0;
  f.read_i64("step", &s, {});
  EXPECT_EQ(s, 42);
}

TEST(SafetensorsFromBytes, RejectsWhatOpenRejects) {
  for (const std::string& bad : {std::string("\x02\0\0", 3), std::string(8, '\xff') + "{}",
                                 std::string("\x02\0\0\0\0\0\0\0[]", 10)}) {
    try {
      SafetensorsFile::from_bytes("mem", as_bytes(bad));
      ADD_FAILURE() << "accepted " << bad.size() << " bad bytes";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("corrupt safetensors file 'mem'"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
