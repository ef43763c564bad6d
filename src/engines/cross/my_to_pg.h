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

#include <map>
#include <memory>
#include <string>

#include "engines/cross/my_to_pg_types.h"
#include "engines/engine.h"

namespace midflight {

const EngineKind& MySqlToPostgresEngine();

// The piece of this pairing's stream that the reverse flow of a PostgreSQL
// -> MySQL migration (cross/pg_to_my.cc, after `switch writes`) reuses to
// carry MySQL's changes back into the original PostgreSQL tables.
namespace cross {

// `inner` (a PgChangeSink) behind the casting table: each change of a MySQL
// table (the key of `casts`, as the binlog reader has it) becomes a change of
// its cast's `target` with PostgreSQL text forms (ToPgText), the values in
// the same order (one ColumnCast each). A value that cannot cross stops the
// flow, naming table, key and column.
std::unique_ptr<ChangeSink> NewPgCastingSink(std::unique_ptr<ChangeSink> inner,
                                             std::shared_ptr<const std::map<TableId, TableCast>> casts);

}  // namespace cross

}  // namespace midflight
