// MySQL/MariaDB source -> PostgreSQL target (engines/engine.h). The MySQL
// engine's source side (preflight checks, catalog, chunk plan, the per-chunk
// consistent-snapshot reader, the binlog ChangeSource) paired with the
// PostgreSQL engine's target side (bookkeeping schema, COPY, PgChangeSink and
// its checkpoints), with the casting table (my_to_pg_types.h) between them:
//
//   MySQL snapshot SELECT ─► mysql::CopyChunks ─► PgChunkTarget: ToPgText ─► COPY ... FROM STDIN + midflight.chunks
//   binlog ─► mysql::ChangeStream ─► Sequencer ─► partitions ─► CastingSink: ToPgText ─► PgChangeSink
//
// Verification (`verify`, its job, continuous passes, `compare`) through the
// canonical forms of cross/cross_verify.h.
//
// After `switch writes --external` (no proxy: it cannot translate between
// the two wire protocols), reverse replication PostgreSQL -> MySQL primary:
//
//   slot <name>_rev ─► pg::ChangeStream (skips origins midflight_<name>_*) ─► Sequencer ─► partitions
//     ─► pg_to_my CastingSink into the original MySQL tables ─► MyChangeSink (skip_replication; checkpoints
//        <name>/reverse in MySQL's `midflight` database)
//
// The forward appliers apply as replication origins midflight_<name>_f<p>,
// so the reverse stream never sends their rows back; the binlog reader
// skips the reverse appliers' skip_replication-flagged transactions. Both
// flows run from the first write switch (or `switch reads --external`) to
// `complete`, as in a same-engine migration (control/cutover.h). Refused,
// naming the column: transformed tables, geometry, `casting.columns`
// overrides (no way back to the MySQL type). Not yet: a proxy, DDL carried
// while streaming (a DDL statement on a migrated table stops the stream,
// naming it), `verify --repair` after the switch.
#pragma once

#include <string>

#include "engines/engine.h"

namespace midflight {

const EngineKind& MySqlToPostgresEngine();

}  // namespace midflight
