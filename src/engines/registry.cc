// The one place an engine is chosen: from a spec's URI scheme, or from the
// engine name stored with a migration.
#include <fmt/format.h>

#include "base/uri.h"
#include "control/spec.h"
#include "engines/engine.h"
#include "engines/mysql/engine.h"
#include "proxy/traffic_switch.h"
#include "engines/postgres/engine.h"

namespace midflight {
namespace {

struct Entry {
  const char* scheme;
  const EngineKind& (*kind)();
};
constexpr Entry kEngines[] = {
    {"postgres", PostgresEngine}, {"postgresql", PostgresEngine}, {"mysql", MySqlEngine}, {"mariadb", MySqlEngine}};

}  // namespace

Result<const EngineKind*> EngineFor(const MigrationSpec& spec) {
  const std::string scheme = UriScheme(spec.source);
  for (const Entry& e : kEngines)
    if (scheme == e.scheme) return &e.kind();
  return InvalidArgument(fmt::format("source: no engine for URI scheme '{}' (postgres://, mysql:// or mariadb://)",
                                     scheme));
}

Result<const EngineKind*> EngineNamed(std::string_view name) {
  for (const Entry& e : kEngines)
    if (e.kind().name() == name) return &e.kind();
  return InvalidArgument(fmt::format("no engine named '{}'", name));
}

}  // namespace midflight
