// The report's figures (compare/plots.h) with a hostile output folder and variant labels: gnuplot
// runs without a shell, so a folder name that would break out of shell quotes runs nothing, and
// labels with quotes and backquotes are drawn, not executed. All PNGs are written.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "compare/plots.h"
#include "compare/summary.h"
#include "io/process.h"

namespace fs = std::filesystem;

namespace ecmoe::compare {
namespace {

VariantSummary variant(const std::string& name, const std::string& router, double scale) {
  VariantSummary s;
  s.variant = name;
  s.family = "encoder";
  s.router = router;
  s.seeds = 1;
  for (int i = 1; i <= 4; ++i)
    s.curve.push_back({int64_t(10 * i), 2.0 * i, std::log(scale * 100.0 / i), scale * 100.0 / i});
  s.experts_per_token = {1, 5, 3, 1, 0, 0};
  return s;
}

// Runs in a fresh folder as the current one: where a command injected into a shell would write.
class PlotsInAFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ecmoe_plots_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    fs::create_directory(root_ / "cwd");
    old_cwd_ = fs::current_path();
    fs::current_path(root_ / "cwd");
  }
  void TearDown() override {
    fs::current_path(old_cwd_);
    fs::remove_all(root_);
  }
  fs::path root_, old_cwd_;
};

TEST_F(PlotsInAFolder, HostileFolderAndLabelsRunNothing) {
  if (!on_path("gnuplot")) GTEST_SKIP() << "gnuplot is not installed";
  const std::string dir = (root_ / "x'; touch PWNED; echo '").string();
  const std::vector<VariantSummary> summaries = {
      variant("EC `touch PWNED` it's", "expert_choice", 1.0),
      variant("top2 '$(touch PWNED)'", "top2", 1.2)};
  PlotFiles files;
  std::string error;
  try {
    files = write_plots(dir, summaries);
  } catch (const std::exception& e) {
    error = e.what();
  }
  EXPECT_TRUE(fs::is_empty(root_ / "cwd")) << "a shell ran part of the folder name";
  EXPECT_EQ(error, "");
  EXPECT_FALSE(fs::exists(fs::path(dir) / "PWNED"));
  ASSERT_EQ(files.png.size(), 5u);  // 3 encoder curves, experts per token (final, over training)
  for (const std::string& png : files.png) EXPECT_GT(fs::file_size(fs::path(dir) / png), 1000u);
  EXPECT_TRUE(fs::exists(fs::path(dir) / "plots.gp"));
}

}  // namespace
}  // namespace ecmoe::compare
