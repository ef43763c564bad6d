// The version midflight was built as (project(VERSION) in CMakeLists.txt) and
// the git commit it was built from, "unknown" outside a git work tree
// (defined in the build directory's version.cc, by cmake/version.cmake).
#pragma once

namespace midflight {

extern const char* const kVersion;
extern const char* const kGitCommit;

}  // namespace midflight
