// Fetch failures through a fake `npm` on PATH (a script this test writes, acting like npm on a
// network that fails: it says why on stderr, except under --silent, and exits 1): the error shows
// npm's last lines, the log holds them, and a progress line came before the wait. A pinned Debian
// package through fake `apt-get` and `dpkg`: the version is asked for, the unpacked folder is
// reused, and a version apt does not offer is apt's one-line error.
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

TEST(Fetch, PinnedDebianPackageIsDownloadedOnceAtItsVersion) {
  TempDir dir("fetch-deb");
  const std::string bin = dir / "bin";
  const std::string calls = dir / "calls";
  std::filesystem::create_directories(bin);
  // apt-get offers dict-x 1.2-3 only; dpkg -x DEB DIR unpacks one file.
  ecmoe::data::test::write_text(
      bin + "/apt-get",
      "#!/bin/sh\n"
      "echo \"$*\" >> " +
          calls +
          "\n"
          "if [ \"$2\" != dict-x=1.2-3 ]; then\n"
          "  echo \"E: Version '${2#dict-x=}' for 'dict-x' was not found\" >&2; exit 100\n"
          "fi\n"
          ": > dict-x_1.2-3_all.deb\n");
  ecmoe::data::test::write_text(bin + "/dpkg",
                                "#!/bin/sh\n"
                                "/bin/mkdir -p \"$3/usr/share/dictd\"\n"
                                "echo entries > \"$3/usr/share/dictd/x.index\"\n");
  ::chmod((bin + "/apt-get").c_str(), 0755);
  ::chmod((bin + "/dpkg").c_str(), 0755);

  std::vector<std::string> progress;
  ecmoe::data::FetchConfig config;
  config.cache_dir = dir / "cache";
  config.log = [&](const std::string& line) { progress.push_back(line); };
  std::string root, again, error;
  {
    const PathOverride path(bin);
    root = ecmoe::data::fetch_pinned_debian_package({"dict-x", "1.2-3"}, config);
    again = ecmoe::data::fetch_pinned_debian_package({"dict-x", "1.2-3"}, config);
    try {
      ecmoe::data::fetch_pinned_debian_package({"dict-x", "9"}, config);
    } catch (const ecmoe::Error& e) {
      error = e.what();
    }
  }
  EXPECT_EQ(root, config.cache_dir + "/deb-dict-x-1.2-3");
  EXPECT_EQ(again, root);
  EXPECT_EQ(ecmoe::data::test::read_text(root + "/usr/share/dictd/x.index"), "entries\n");
  EXPECT_EQ(ecmoe::data::test::read_text(calls), "download dict-x=1.2-3\ndownload dict-x=9\n");
  ASSERT_FALSE(progress.empty());
  EXPECT_NE(progress[0].find("fetching dict-x=1.2-3 (apt-get download)"), std::string::npos)
      << progress[0];
  EXPECT_NE(error.find("`apt-get download dict-x=9` failed (exit 100)"), std::string::npos)
      << error;
  EXPECT_NE(error.find("E: Version '9' for 'dict-x' was not found"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_FALSE(std::filesystem::exists(config.cache_dir + "/deb-dict-x-9"));
}

}  // namespace
