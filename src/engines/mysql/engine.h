// The MySQL/MariaDB engine (engines/engine.h): catalog and preflight of the
// server read (a replica when source_replica is set), tables created without
// their secondary indexes, the per-chunk consistent-snapshot copy with LOAD
// DATA, the binlog flow restarted from the target's checkpoints when the
// target is lost.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "control/compare.h"
#include "engines/engine.h"
#include "engines/mysql/my_conn.h"
#include "engines/mysql/verify.h"
#include "pipeline/transform_sink.h"

namespace midflight {

const EngineKind& MySqlEngine();

// Checks of the tables a spec transform reshapes, which the same-engine
// verifier and compare cannot make (each side holds another shape): made by
// engines/cross (my_to_my.h, which builds on this engine) and handed in by
// the registry. Unset: such tables are named as not verified / not compared.
struct ReshapedChecks {
  mysql::VerifyReshaped verify;
  // `compare` of the transformed tables: one TableComparison per table, named by its source name.
  std::function<Result<std::vector<TableComparison>>(const MigrationSpec& spec)> compare;
};
// The MySQL/MariaDB engine with those checks (MySqlEngine: without).
std::unique_ptr<EngineKind> NewMySqlEngineKind(ReshapedChecks checks);

namespace mysql {
// The source side of preflight, whatever the target: binlog settings, the
// user's rights, the replica's lag readable. One line per problem added to
// *problems. Returns @@log_bin, @@binlog_format, @@binlog_row_image,
// @@log_slave_updates, @@server_id, @@max_allowed_packet, @@hostname, @@port,
// DATABASE() of the server read.
Result<MyResult> CheckSource(MyConn& src, const MigrationSpec& spec, std::vector<std::string>* problems);
// The spec's transforms bound to `tables` (the source's), by source table,
// each cast or computed column with a MySQL type (CheckTransformedTypes);
// an error names the first transform that does not fit.
Result<TransformMap> BindTransformsForMySql(const MigrationSpec& spec, const std::vector<TablePtr>& tables);
}  // namespace mysql

}  // namespace midflight
