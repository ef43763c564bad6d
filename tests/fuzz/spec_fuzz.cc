// Fuzzes the migration spec parser (control/spec.h): YAML text an operator
// writes, parsed at the edge into a MigrationSpec.
//
// Properties: no crash, no sanitizer report, no exception (none is caught:
// ParseSpec must turn every malformed document into a Status naming the
// problem); an accepted spec has a name and both URIs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "control/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  midflight::Result<midflight::MigrationSpec> spec = midflight::ParseSpec(text, "fuzz.yaml");
  if (spec.ok()) {
    if (spec->name.empty() || spec->source.empty() || spec->target.empty()) std::abort();
  } else if (spec.status().message().empty()) {
    std::abort();
  }
  return 0;
}
