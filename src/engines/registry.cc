// The one place an engine is chosen: from a spec's URI scheme, or from the
// engine name stored with a migration.
#include <fmt/format.h>

#include "base/uri.h"
#include "control/spec.h"
#include "engines/engine.h"
#include "engines/cross/my_to_my.h"
#include "engines/cross/my_to_pg.h"
#include "engines/cross/pg_to_my.h"
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
    {"postgres", PostgresEngine}, {"postgresql", PostgresEngine}, {"mysql", MySqlEngineWithReshapedChecks}, {"mariadb", MySqlEngineWithReshapedChecks}};

// Pairs across engines: (source engine, target engine) -> the engine that moves between them.
struct Pair {
  const char* source;
  const char* target;
  const EngineKind& (*kind)();
};
constexpr Pair kPairs[] = {{"mysql", "postgres", MySqlToPostgresEngine},
                           {"postgres", "mysql", PostgresToMySqlEngine}};

Result<const EngineKind*> KindOfScheme(const std::string& uri, const char* side) {
  const std::string scheme = UriScheme(uri);
  for (const Entry& e : kEngines)
    if (scheme == e.scheme) return &e.kind();
  return InvalidArgument(fmt::format("{}: no engine for URI scheme '{}' (postgres://, mysql:// or mariadb://)", side,
                                     scheme));
}

}  // namespace

Result<const EngineKind*> EngineFor(const MigrationSpec& spec) {
  ASSIGN_OR_RETURN(const EngineKind* source, KindOfScheme(spec.source, "source"));
  // A spec without a target (some unit tests, `compare` of old specs) is read as same-engine.
  if (spec.target.empty()) return source;
  ASSIGN_OR_RETURN(const EngineKind* target, KindOfScheme(spec.target, "target"));
  if (source == target) return source;
  for (const Pair& p : kPairs)
    if (source->name() == p.source && target->name() == p.target) return &p.kind();
  return InvalidArgument(fmt::format("source {} and target {}: migrating from {} to {} is not supported yet (same "
                                     "engine on both sides, mysql -> postgres or postgres -> mysql)",
                                     source->name(), target->name(), source->name(), target->name()));
}

Result<const EngineKind*> EngineNamed(std::string_view name) {
  for (const Entry& e : kEngines)
    if (e.kind().name() == name) return &e.kind();
  for (const Pair& p : kPairs)
    if (p.kind().name() == name) return &p.kind();
  return InvalidArgument(fmt::format("no engine named '{}'", name));
}

}  // namespace midflight
