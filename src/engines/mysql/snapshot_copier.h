// The snapshot copy for MySQL/MariaDB sources: chunks of every table, copied
// in parallel, each from its own consistent snapshot with a known binlog
// position, into the target with LOAD DATA LOCAL INFILE fed from the source's
// row stream (no file, no global lock).
//
// Per chunk, a worker:
//   source  START TRANSACTION WITH CONSISTENT SNAPSHOT; SHOW STATUS LIKE 'binlog_snapshot_%'
//           -> the binlog position S this snapshot corresponds to (MariaDB keeps
//              the two consistent); SELECT the chunk's rows, streamed (mysql_use_result)
//   target  LOAD DATA LOCAL INFILE from a handler that formats the streamed rows;
//           INSERT the chunk, S and its row count into midflight.chunks; COMMIT
// so a chunk is either wholly there and recorded with its own S, or absent.
// The change stream later starts at the smallest S and skips, per chunk, the
// transactions its snapshot already holds (pipeline/router.h SnapshotFilter).
// Memory per worker is one row plus a buffer, whatever the table size.
//
// Chunks: a table whose first key column is an integer is split into value
// ranges ([lo, hi), open at both ends); any other table is one chunk. The
// largest tables are planned first.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "core/copy.h"
#include "core/schema.h"
#include "engines/mysql/my_conn.h"
#include "pipeline/throttle.h"
#include "pipeline/transform_sink.h"

namespace midflight {
class Knobs;
}

namespace midflight::mysql {

// The target side of a chunk copy into another engine (engines/cross): the
// copier keeps the source side (workers, knobs, the chunk's consistent
// snapshot and its binlog position, the row stream, the replica's lag); a
// ChunkTarget writes the rows and records the chunk. One per worker thread.
class ChunkTarget {
 public:
  virtual ~ChunkTarget() = default;
  // The SELECT list `t`'s rows are read with (the source session runs with
  // time_zone '+00:00').
  virtual std::string SelectList(const TableSchema& t) const = 0;
  // Writes `rows` and records chunk `c` with `snapshot`, its row and byte
  // counts in one target transaction; adds to `progress` while it reads and
  // takes its additions back when it fails. Cancelled when `stop` is set.
  virtual Status Load(const TableSchema& t, const Chunk& c, uint64_t snapshot, MyConn::Stream& rows,
                      TableProgress& progress, RateLimiter* rate, const std::atomic<bool>& stop) = 0;
};

Result<std::vector<Chunk>> PlanChunks(MyConn& source, const std::vector<std::shared_ptr<const TableSchema>>& tables,
                                      int64_t chunk_rows);

struct CopyJob {
  std::string source_uri;  // the replica when the migration reads from one
  std::string target_uri, target_db, migration;
  int workers = 2;  // without knobs: fixed
  // Runtime knobs, all optional: `parallelism` (workers are added, or retire
  // after their chunk), `copy_rows_per_s` through `rate` (checked every 1,024
  // rows), `replica_max_lag_seconds` (while the server read, when it is a
  // replica, lags more, no new chunk starts; shown on `throttle`).
  const Knobs* knobs = nullptr;
  RateLimiter* rate = nullptr;
  ThrottleBoard* throttle = nullptr;
  std::map<TableId, std::shared_ptr<const TableSchema>> tables;
  // The spec's transforms by source table (core/transform.h), or null. A
  // transformed table's rows are read in the binlog's text form too (what
  // the stream hands the transform, catalog.h BinlogFormSelect), go through
  // the transform (a row its filter drops is read and counted, not loaded;
  // one it cannot apply to fails the copy, naming table, key, column and
  // value) and are loaded under the target's names; the columns it keeps as
  // they are travel in LOAD DATA's form, as an untransformed table's do.
  std::shared_ptr<const TransformMap> transforms;
  std::vector<Chunk> chunks;  // the chunks still to copy
  int64_t max_row_bytes = 0;  // a row larger than this fails the copy, naming table and key (0: no limit)
  bool log_bin = true;        // false: the target sessions load with sql_log_bin = 0 (spec copy_binlog)
  // Called after each chunk's target transaction committed, with the number
  // committed so far in this call (any worker thread).
  std::function<void(int)> on_chunk_committed;
  // Called once a table's last chunk of `chunks` has committed (any worker
  // thread, after on_chunk_committed): its indexes may be built.
  std::function<void(const TableId&)> on_table_copied;
  // transport.publish_snapshot: every copied row is published too (in the
  // binlog's text form, catalog.h BinlogFormSelect), and a chunk commits only
  // once Kafka acknowledged its rows (core/copy.h); on_chunk_flushed is called
  // then, before the commit, with the number flushed so far (a crash point).
  // Not with open_target.
  CopyPublisher* publisher = nullptr;
  std::function<void(int)> on_chunk_flushed;
  // Set for a target that is not MySQL: each worker opens one instead of
  // LOAD DATA into target_uri (which is then unused).
  std::function<Result<std::unique_ptr<ChunkTarget>>()> open_target;
};

// Copies every chunk of the job. Stops early (Cancelled) when `stop` is set;
// chunks finished until then stay recorded. `progress` grows every 1,024
// rows while a chunk is read (and shrinks back if the chunk fails).
Status CopyChunks(const CopyJob& job, CopyProgress& progress, const std::atomic<bool>& stop);

// A replica's SHOW SLAVE STATUS, as far as its lag goes.
struct ReplicaLag {
  bool sql_running = false, io_running = false;
  std::optional<double> seconds_behind;  // Seconds_Behind_Master; NULL while the SQL thread is stopped
  std::string executed;                  // Relay_Master_Log_File:Exec_Master_Log_Pos
  bool pending = false;                  // received events not executed yet
};
// Nothing when `conn`'s server is not a replica. With `master_port`, its
// replication connection (SHOW ALL SLAVES STATUS: a replica may have several)
// from the primary on that port; nothing when it has none.
Result<std::optional<ReplicaLag>> ReadReplicaLag(MyConn& conn, std::optional<unsigned> master_port = std::nullopt);

// Turns successive samples into a lag in seconds: Seconds_Behind_Master
// while the SQL thread runs; while it is stopped with events waiting, the
// time since it last executed one (at least the lag it last reported); 0
// when nothing waits. One thread.
class ReplicaLagTracker {
 public:
  double Observe(const ReplicaLag& sample, std::chrono::steady_clock::time_point now);

 private:
  std::string last_executed_;
  std::chrono::steady_clock::time_point last_progress_{};
  double last_reported_ = 0;
};

}  // namespace midflight::mysql
