// The snapshot copy: chunks of every table, copied in parallel with COPY from
// one consistent source snapshot to the target.
//
// Each worker holds one source transaction that imported the snapshot exported
// with the replication slot (SET TRANSACTION SNAPSHOT) and one target
// connection. Per chunk it runs COPY (SELECT .. WHERE <range>) TO STDOUT on
// the source and pipes every buffer straight into COPY .. FROM STDIN on the
// target, then records the chunk in midflight.chunks in the same target
// transaction, so a chunk is either wholly there and recorded or absent.
// Memory per worker is one COPY buffer, whatever the table size.
//
// Chunks: a table whose first key column is an integer is split into value
// ranges ([lo, hi), open at both ends); any other table into ctid page ranges.
// The largest tables are planned first so one big table keeps every worker busy.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "core/copy.h"
#include "core/position.h"
#include "core/schema.h"
#include "core/transform.h"
#include "pipeline/throttle.h"

namespace midflight {
class Knobs;
}

namespace midflight::pg {

class PgConn;

using midflight::Chunk;
using midflight::ChunkPublication;
using midflight::CopyPublisher;
using midflight::CopyProgress;
using midflight::TableProgress;

// Splits every table into chunks of about `chunk_rows` rows (by key value or by pages).
Result<std::vector<Chunk>> PlanChunks(PgConn& source, const std::vector<std::shared_ptr<const TableSchema>>& tables,
                                      int64_t chunk_rows);

// One chunk's rows as the source sends them: COPY's text format, one row a
// line (tab-separated fields, backslash escapes, \N for NULL), in the
// table's writable column order.
class CopyRows {
 public:
  virtual ~CopyRows() = default;
  // The next row without its newline (valid until the next call); false at the end.
  virtual Result<bool> Next(std::string_view* line) = 0;
};

// The target side of a chunk copy into another engine (engines/cross): the
// copier keeps the source side (workers, knobs, the imported snapshot, the
// chunk's COPY out, retries); a ChunkTarget writes the rows and records the
// chunk. One per worker thread.
class ChunkTarget {
 public:
  virtual ~ChunkTarget() = default;
  // Writes `rows` and records chunk `c` with `snapshot`, its row and byte
  // counts in one target transaction; adds to `progress` while it reads and
  // takes its additions back when it fails. Cancelled when `stop` is set.
  // *rows_written: the rows it wrote (checked against the source's count).
  virtual Status Load(const TableSchema& t, const Chunk& c, PgLsn snapshot, CopyRows& rows, TableProgress& progress,
                      RateLimiter* rate, const std::atomic<bool>& stop, int64_t* rows_written) = 0;
};

struct CopyJob {
  std::string source_uri, target_uri, migration;
  std::string snapshot_name;  // exported snapshot every worker imports
  PgLsn snapshot_lsn;         // its position, recorded with every chunk
  int workers = 2;            // without knobs: fixed
  // Runtime knobs: `parallelism` (workers are added or retired between
  // chunks), `copy_rows_per_s` through `rate`, throttle and fail_after_seconds
  // for retried chunks. All optional.
  const Knobs* knobs = nullptr;
  RateLimiter* rate = nullptr;
  ThrottleBoard* throttle = nullptr;
  std::map<TableId, std::shared_ptr<const TableSchema>> tables;
  // Transformed tables (by source table): copied in text form through the
  // transform into the target's table (core/transform.h).
  std::map<TableId, std::shared_ptr<const TableTransform>> transforms;
  std::vector<Chunk> chunks;  // the chunks still to copy
  // Called after each chunk's target transaction committed, with the number
  // committed so far in this call (any worker thread).
  std::function<void(int)> on_chunk_committed;
  // Called once per table when the last of its chunks in `chunks` has
  // committed (any worker thread, after on_chunk_committed).
  std::function<void(const TableId&)> on_table_copied;
  // transport.publish_snapshot: every copied row is published too (as text
  // COPY, decoded), and a chunk commits only after Flush (core/copy.h).
  // `on_chunk_flushed` is called with the count flushed so far in this call,
  // between the flush and the commit (a crash point for tests).
  CopyPublisher* publisher = nullptr;
  std::function<void(int)> on_chunk_flushed;
  // Set for a target that is not PostgreSQL: each worker opens one instead
  // of COPY into target_uri (which is then unused), and reads in text format.
  std::function<Result<std::unique_ptr<ChunkTarget>>()> open_target;
};

// Copies every chunk of the job. Stops early (Cancelled) when `stop` is set;
// chunks finished until then stay recorded. The exporting connection must
// stay open until this returns: a worker added by the parallelism knob, or
// one retrying a chunk after a lost connection, imports the snapshot then.
// A chunk that fails with a retryable error (lock timeout, deadlock, too
// many connections, lost connection) is rolled back and retried after a
// backoff, shown on the throttle board, until fail_after_seconds.
// `on_imported` is called when the copy no longer needs the snapshot.
Status CopyChunks(const CopyJob& job, CopyProgress& progress, const std::atomic<bool>& stop,
                  const std::function<void()>& on_imported);

}  // namespace midflight::pg
