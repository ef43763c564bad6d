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
// canonical forms of cross/cross_verify.h. Not yet: a traffic plane (proxy,
// switches), reverse replication PostgreSQL -> MySQL, DDL carried while streaming (a DDL
// statement on a migrated table stops the stream, naming it).
#pragma once

#include <string>

#include "engines/engine.h"

namespace midflight {

const EngineKind& MySqlToPostgresEngine();

}  // namespace midflight
