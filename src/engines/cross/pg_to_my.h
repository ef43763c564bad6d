// PostgreSQL source -> MySQL/MariaDB target (engines/engine.h). The
// PostgreSQL engine's source side (preflight checks, catalog, chunk plan, the
// parallel copy from the slot's exported snapshot, the pgoutput ChangeSource
// and its slot feedback) paired with the MySQL engine's target side
// (bookkeeping schema, LOAD DATA, MyChangeSink and its checkpoints), with the
// casting table (pg_to_my_types.h) between them:
//
//   COPY (SELECT ..) TO STDOUT ─► pg::CopyChunks ─► MyChunkTarget: [Row] ToMyText ─► LOAD DATA LOCAL + midflight.chunks
//   slot ─► pg::ChangeStream ─► Sequencer ─► partitions ─► [TransformSink] ─► CastingSink: ToMyText ─► MyChangeSink
//   [..]: the spec's transforms (core/transform.h), on PostgreSQL's text forms before the casting
//   table; a transformed table is cast as its transform leaves it
//   feedback to the slot: what every partition committed, held back by the target's
//   log flush interval when innodb_flush_log_at_trx_commit is not 1
//
// Verification (`verify`, its job, `compare`) through the canonical forms of
// cross/cross_verify.h, PostgreSQL the reference.
//
// After `switch writes --external` (no proxy), reverse replication MySQL ->
// PostgreSQL, from the first switch to `complete` (control/cutover.h):
//
//   binlog of the target ─► mysql::ChangeStream (skips skip_replication-flagged transactions) ─► Sequencer
//     ─► partitions ─► my_to_pg CastingSink into the original PostgreSQL tables ─► PgChangeSink (replication
//        origin midflight_<name>_r<p>, which the forward stream skips; checkpoints <name>/reverse on PostgreSQL)
//
// Refused, naming the column: arrays, `casting.columns` overrides,
// `casting.out_of_range: null`. Not yet: a proxy, DDL carried while
// streaming (a column the target lacks stops the stream, naming it),
// `verify --repair` after the switch.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "engines/cross/pg_to_my_types.h"
#include "engines/engine.h"

namespace midflight {

const EngineKind& PostgresToMySqlEngine();

namespace pg {
class PgConn;
}
namespace mysql {
class MyChangeSink;
}

// The pieces of this pairing's stream that the reverse flow of a MySQL ->
// PostgreSQL migration (cross/my_to_pg.cc, after `switch writes`) reuses to
// carry PostgreSQL's changes back into the original MySQL tables.
namespace cross {

// Enum labels, domains, identity/serial columns and secondary unique
// columns of `tables`, from pg_catalog.
Result<std::map<TableId, PgTableFacts>> LoadPgFacts(pg::PgConn& conn, const std::vector<TablePtr>& tables);

// `inner` behind the casting table: each change of a PostgreSQL table (the
// key of `casts`) becomes a change of its cast's `target` with MySQL text
// forms, values in the target's `writable` order (one PgColumnCast each).
// Unchanged TOASTed values of an update are read from `my_uri`'s current row.
std::unique_ptr<ChangeSink> NewCastingSink(std::unique_ptr<mysql::MyChangeSink> inner,
                                           std::shared_ptr<const std::map<TableId, PgTableCast>> casts,
                                           bool out_of_range_null, std::string my_uri);

// The slot feedback's hook (pg::StreamConfig::durable) for a MySQL side that
// flushes its log on a timer: what was committed `delay` ago (0: at once).
std::function<uint64_t(uint64_t)> MySqlDurableHorizon(std::chrono::milliseconds delay);

}  // namespace cross

}  // namespace midflight
