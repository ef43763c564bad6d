// The MySQL/MariaDB target side of a partition: applies change batches with
// their checkpoint in one transaction over one connection, sending the whole
// transaction as multi-statement packets (one round trip per few MB).
//
// Apply sessions run with skip_replication = 1 (their binlog events carry
// LOG_EVENT_SKIP_REPLICATION_F: the reader of the other direction skips
// them, engines/mysql/replication_ops.h), foreign_key_checks = 0 (the source already checked
// every replicated row; rows of two tables may arrive on different partitions
// in either order) and the session settings of engines/mysql/my_conn.h (UTC
// time_zone, binary results, no strict-mode rewriting of values).
//
// Statements, per table and batch:
//   inserts and updates   INSERT INTO t (cols) VALUES (..), (..) ON DUPLICATE KEY UPDATE c = VALUES(c), ..
//                         an idempotent upsert of the whole new image (binlog_row_image=FULL)
//   deletes               DELETE FROM t WHERE (k1, k2) IN ((..), (..))
//   conflict probes       before each of them, in the same packet, for changes the stream routed
//                         (pipeline/conflicts.h): WITH mf_v (mf_n, k0) AS (VALUES (1, ..), ..) SELECT mf_n
//                         FROM mf_v WHERE [NOT] EXISTS (row with that key): the changes that conflict.
//                         (Affected-row counts cannot tell: with CLIENT_FOUND_ROWS an upsert counts 1
//                         for an inserted row and for an unchanged existing one.)
// Restart marker: every batch also records, in its partition's checkpoint
// row, a binlog position R below which every change was committed on the
// target before this batch (the oldest transaction some partition had not
// applied when the batch was built). InnoDB's redo log is written in commit
// order, so if a batch survives a target crash (even with
// innodb_flush_log_at_trx_commit = 0), every commit below its R survived too:
// the largest R on the target is where a restarted stream may begin.
//
// Connection loss: a target that went away may have lost commits it had
// acknowledged (innodb_flush_log_at_trx_commit != 1), and the binlog reader
// has moved past them. With a target-lost flag set, a sink never reconnects
// by itself: it raises the flag and fails, and the owner restarts the whole
// flow from the target's checkpoints and restart marker.
//
// Apply workers (kafka/apply_worker.h): with SetWorker each batch also
// records its highest Change::log_offset and the worker in the checkpoint
// row (kafka_offset, worker), and with EnableFencing the row is locked and
// checked before anything of the batch is sent (ChangeSink::EnableFencing).
// The run process, which then only watches the rows (SetWatchOnly), keeps
// the restart marker: each LoadCheckpointRow raises the row's restart_pos to
// the restart source's value, in its own transaction after the reads that
// showed every partition had committed what lies below it.
//
// Generated columns are never written. Values are written as numbers,
// quoted temporal text, or hex strings with the column's charset introducer
// (_utf8mb4 X'..'), so any bytes travel unchanged and key lookups use the index.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "pipeline/applier.h"

namespace midflight::mysql {

class MyConn;

class MyChangeSink final : public ChangeSink {
 public:
  static Result<std::unique_ptr<MyChangeSink>> Open(const std::string& target_uri, const std::string& target_db,
                                                    const std::string& migration, PartitionId partition);
  ~MyChangeSink() override;

  Result<ChangePosition> LoadCheckpoint() override;
  Status ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint, BatchConflicts* conflicts) override;
  Status ApplyBarrier(const Change& change, uint32_t partitions) override;
  Status Reconnect() override;
  // A replay's chunk reset: the rows are read with their key columns in the
  // binlog's text form (catalog.h BinlogFormSelect, as `mine` routes them),
  // locked, and deleted by key in the same transaction.
  Result<int64_t> DeleteRows(const std::shared_ptr<const TableSchema>& table, const std::string& column,
                             std::optional<int64_t> lo, std::optional<int64_t> hi,
                             const std::function<bool(const Change&)>& mine) override;
  Result<bool> HoldsRows(const TableSchema& table) override;
  Result<int64_t> LoadLogOffset() override;
  Result<CheckpointRow> LoadCheckpointRow() override;
  void SetWorker(std::string worker) override { worker_ = std::move(worker); }
  Status EnableFencing() override {
    fenced_ = true;
    return Status::Ok();
  }
  uint64_t batches_refused() const override { return refused_.load(); }
  // Other processes apply this partition (transport apply: workers): this
  // sink reads the checkpoint row and records the restart marker only.
  void SetWatchOnly() { watch_only_ = true; }

  // Where each batch's restart marker comes from (see above); 0 = none.
  void SetRestartSource(std::function<uint64_t()> source) { restart_source_ = std::move(source); }
  // Once set, a lost connection raises *flag instead of reconnecting.
  void SetTargetLostFlag(std::atomic<bool>* flag) { target_lost_ = flag; }

 private:
  MyChangeSink(std::string uri, std::string db, std::string migration, PartitionId p);
  Status Connect();
  // What a probe statement answered: on_answer(statement index, ordinal) per row.
  struct ProbeAnswers {
    std::function<void(size_t, long long)> on_answer;
  };
  // `commit`: end with COMMIT; else leave the transaction open for the caller.
  // `begun`: the transaction was started by the caller (Fence).
  Status Execute(const std::vector<std::string>& statements, const std::vector<std::string>& what,
                 const ProbeAnswers& probes, bool commit, bool begun = false);
  // Fencing: starts the transaction and locks the partition's row; true
  // (rolled back) when the target records an offset at or above `top`.
  Result<bool> Fence(int64_t top);

  std::string uri_, db_, migration_;
  PartitionId partition_;
  std::function<uint64_t()> restart_source_;
  std::atomic<bool>* target_lost_ = nullptr;
  std::unique_ptr<MyConn> conn_;
  size_t max_packet_ = 4 << 20;
  std::string worker_;  // recorded with each checkpoint; empty: not recorded
  bool fenced_ = false, watch_only_ = false;
  std::atomic<uint64_t> refused_{0};
  uint64_t marker_written_ = 0;  // watch only: the last restart marker recorded
};

struct RestartMarker {
  uint64_t position = 0;     // the largest marker any partition recorded; 0: none yet
  bool any_applied = false;  // some partition committed a change (a checkpoint past zero)
};
// What the target holds of `migration`'s stream.
Result<RestartMarker> LoadRestartMarker(MyConn& target, const std::string& migration);

}  // namespace midflight::mysql
