// One PostgreSQL -> PostgreSQL migration, driven through its phases by
// `midflight run`:
//
//   created ─► preflight ─► schema ─► copying ─► replicating (until stopped)
//
//   preflight   every check that would make the run fail later, one line per problem
//   schema      pg_dump pre-data restored on the target in one transaction
//   copying     publication + slot (exported snapshot) on the source; chunks copied in
//               parallel; then post-data (keys, indexes, constraints) and sequences
//   replicating pgoutput stream -> router -> N partitions -> N appliers
//
// Every phase is persisted (state_store.h) before its work starts and can be
// re-entered after a crash: running again with the same spec resumes where
// it stopped. A failure records the phase it happened in and the reason.
#pragma once

#include <atomic>
#include <memory>

#include "base/status.h"
#include "control/engine.h"
#include "control/spec.h"

namespace midflight {

// Runs (or resumes) the migration until `ctx.stop` is set or a failure.
// Prints phases and progress to stdout.
Status RunPgMigration(RunContext& ctx);

// The proxy of a spec with `proxy:`, routed as the migration's stored phase
// says. The host starts it once; it outlives pauses and failures.
Result<std::unique_ptr<proxy::PgProxy>> StartPgProxy(const MigrationSpec& spec, StateStore& store);

// Abort: removes what midflight created on the source (the slot and the
// publication; with them, the WAL the slot held back) and, when a write
// switch was attempted, the reverse slot and publication on the target. The
// rows already copied to the target stay there.
Status CleanUpPgAbort(const MigrationSpec& spec);

}  // namespace midflight
