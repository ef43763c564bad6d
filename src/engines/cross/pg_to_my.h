// PostgreSQL source -> MySQL/MariaDB target (engines/engine.h). The
// PostgreSQL engine's source side (preflight checks, catalog, chunk plan, the
// parallel copy from the slot's exported snapshot, the pgoutput ChangeSource
// and its slot feedback) paired with the MySQL engine's target side
// (bookkeeping schema, LOAD DATA, MyChangeSink and its checkpoints), with the
// casting table (pg_to_my_types.h) between them:
//
//   COPY (SELECT ..) TO STDOUT ─► pg::CopyChunks ─► MyChunkTarget: ToMyText ─► LOAD DATA LOCAL + midflight.chunks
//   slot ─► pg::ChangeStream ─► Sequencer ─► partitions ─► CastingSink: ToMyText ─► MyChangeSink
//   feedback to the slot: what every partition committed, held back by the target's
//   log flush interval when innodb_flush_log_at_trx_commit is not 1
//
// Not yet: a traffic plane (proxy, switches), verification across engines,
// reverse replication MySQL -> PostgreSQL, DDL carried while streaming (a
// column the target lacks stops the stream, naming it).
#pragma once

#include "engines/engine.h"

namespace midflight {

const EngineKind& PostgresToMySqlEngine();

}  // namespace midflight
