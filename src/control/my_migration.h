// One MySQL/MariaDB -> MySQL/MariaDB migration, driven through its phases by
// `midflight run`:
//
//   created ─► preflight ─► schema ─► copying ─► replicating (until stopped)
//
//   preflight   binlog settings and privileges of the server read from (the
//               replica when source_replica is set), keys, target empty, limits
//   schema      tables created on the target without secondary indexes and FKs
//   copying     chunks copied in parallel, each from its own consistent snapshot
//               with its binlog position; then the deferred indexes and FKs
//   replicating binlog stream -> router -> N partitions -> N appliers
//
// With source_replica set, nothing of midflight's connects to the primary.
// Every phase is persisted before its work starts and re-entered after a crash.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "base/status.h"
#include "control/compare.h"
#include "control/engine.h"
#include "control/spec.h"

namespace midflight {

// Runs (or resumes) the migration until `ctx.stop` is set or a failure.
// The apply knobs and the throttle board work as for PostgreSQL; copy
// parallelism and the copy rate are fixed at the start of a copy run.
Status RunMyMigration(RunContext& ctx);

// `midflight compare` for MySQL: per table, COUNT(*) and an ordered hash
// (MD5 of the concatenated per-row MD5s in key order), computed by each server.
Result<std::vector<TableComparison>> CompareMyTables(const MigrationSpec& spec);

}  // namespace midflight
