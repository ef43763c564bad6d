// Applier: the consumer of one partition. It takes changes from its
// partition, drops those at or below the partition's checkpoint (they were
// applied before a restart), collapses the rest per key, and hands each batch
// to its ChangeSink, which applies it and the new checkpoint in one target
// transaction (invariant 3, effectively-once).
//
//   PartitionLog[p] ─► skip <= checkpoint ─► CollapseBatch ─► ChangeSink::ApplyBatch ─► ApplyTracker
//
// Failures: kRetryTxn (deadlock, lock timeout) retries the batch after a
// backoff; kRetryCall (connection lost, target restarting) reconnects with a
// backoff, reloads the partition's checkpoint from the target (it must hold
// at least what this applier committed before: a target that lost commits it
// had acknowledged fails with kDataLoss) and retries; each retry is reported on the ThrottleBoard and
// cleared once the batch goes through. A retried error still there after
// the fail_after_seconds knob, or any other error, stops this applier and is
// reported by status() — the migration fails, nothing is skipped.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include <fmt/format.h>

#include "base/status.h"
#include "base/stop.h"
#include "base/thread_annotations.h"
#include "core/change.h"
#include "pipeline/apply_tracker.h"
#include "pipeline/conflicts.h"
#include "pipeline/partition_log.h"
#include "pipeline/throttle.h"

namespace midflight {

// The target side of one partition: one connection, used by one applier thread.
class ChangeSink {
 public:
  virtual ~ChangeSink() = default;
  // The position of the last change this partition applied, or zero.
  virtual Result<ChangePosition> LoadCheckpoint() = 0;
  // Applies `changes` in order and records `checkpoint`, in one transaction.
  // On failure the transaction is rolled back: nothing of the batch is applied.
  // Adds to `conflicts->found` every change whose ConflictCheck the target
  // contradicted (pipeline/conflicts.h), found by the apply statements
  // themselves (no extra round trip). With `conflicts->stop` a conflict rolls
  // the batch back and returns ConflictStopError of the first one.
  virtual Status ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint,
                            BatchConflicts* conflicts) = 0;
  // Applies a change that spans partitions (a truncate, or a key-moving update
  // that carries unchanged TOAST values) and sets every partition's checkpoint
  // to its position, in one transaction. The caller has waited until every
  // partition applied everything before it.
  virtual Status ApplyBarrier(const Change& change, uint32_t partitions) = 0;
  // Drops and re-opens the connection.
  virtual Status Reconnect() = 0;
  // A replay's chunk reset (kafka/snapshot_publisher.h): deletes, in one
  // transaction, the rows of `table` whose integer `column` lies in [lo, hi)
  // (nullopt: unbounded; `column` empty: every row) and for which `mine`
  // holds (given an insert whose image carries the row's key columns in the
  // source's text form, others null). Returns how many it deleted. Sinks
  // that cannot answer OperatorError.
  virtual Result<int64_t> DeleteRows(const std::shared_ptr<const TableSchema>& table, const std::string& column,
                                     std::optional<int64_t> lo, std::optional<int64_t> hi,
                                     const std::function<bool(const Change&)>& mine) {
    (void)column, (void)lo, (void)hi, (void)mine;
    return OperatorError(fmt::format("table {}: this target cannot replay a chunk reset", table->id.ToString()));
  }
  // Whether the target's copy of `table` holds a row (a replay from the
  // topic's beginning refuses an emptied target when the topic holds no
  // snapshot: kafka/apply_worker.h). Sinks that cannot tell answer OperatorError.
  virtual Result<bool> HoldsRows(const TableSchema& table) {
    return OperatorError(fmt::format("table {}: this target cannot tell whether it holds rows", table.id.ToString()));
  }
  // For a partition log that can be read again from an offset (Kafka apply
  // workers, kafka/apply_worker.h): ApplyBatch records the batch's highest
  // Change::log_offset with the checkpoint, and the worker's name when set;
  // LoadLogOffset returns the recorded offset, or -1 when there is none.
  // Sinks that do not record them answer OperatorError.
  virtual Result<int64_t> LoadLogOffset() { return OperatorError("this target does not record log offsets"); }
  // The checkpoint row with what apply workers record (for status).
  struct CheckpointRow {
    ChangePosition pos;
    int64_t log_offset = -1;
    std::string worker;      // empty: none recorded
    double age_seconds = 0;  // since the row was last written
  };
  virtual Result<CheckpointRow> LoadCheckpointRow() {
    ASSIGN_OR_RETURN(ChangePosition pos, LoadCheckpoint());
    CheckpointRow row;
    row.pos = pos;
    return row;
  }
  virtual void SetWorker(std::string worker) { (void)worker; }
  // Fencing, for the apply workers of a consumer group: from now on
  // ApplyBatch first locks the partition's checkpoint row (creating it when
  // missing) and, when the batch's highest Change::log_offset is at or below
  // the offset recorded there, rolls back having applied nothing and returns
  // Ok, counting the batch in batches_refused() and logging one line: another
  // worker applied past it (this one lost the partition in a rebalance, a
  // pause or a network split, and does not know yet). A batch above the
  // recorded offset is applied: each worker reads its partition contiguously
  // from one past an offset that was recorded, and recorded offsets only
  // grow, so the batch covers everything between the recorded offset and its
  // own, whoever wrote it (upserts of whole images, invariant 2). A batch
  // without log offsets (the takeover mark) records the worker only, never
  // moving the position. Sinks that cannot fence answer OperatorError.
  virtual Status EnableFencing() { return OperatorError("this target cannot fence apply workers"); }
  virtual uint64_t batches_refused() const { return 0; }
};

// What an applier reads before each batch and each retry, so an operator's
// change takes effect at once (the runtime knobs of control/knobs.h:
// apply_batch_size, apply_commit_ms, throttle_max_backoff_ms,
// fail_after_seconds, stop_on_conflict).
struct ApplySettings {
  size_t batch_size = 1000;
  std::chrono::milliseconds linger{10};  // how long to wait for a full batch
  std::chrono::milliseconds max_backoff{5000};
  double fail_after_seconds = 300;
  bool stop_on_conflict = false;
};

struct ApplierOptions {
  // The live settings; without them, `defaults`.
  std::function<ApplySettings()> settings;
  ApplySettings defaults;
  ThrottleBoard* throttle = nullptr;  // where distress is shown; optional
  RateLimiter* rate = nullptr;        // apply_changes_per_s; optional
  // Where apply conflicts are counted; optional (none: found, not counted).
  // The stop_on_conflict knob decides whether one stops the migration.
  ConflictBoard* conflicts = nullptr;
  std::string label = "apply";        // "apply" or "reverse apply", for the board and logs
  // Called on the applier's thread once a batch and its checkpoint have
  // committed on the target, before the applier reports them applied (so
  // before the source hears they are consumed), with the number of changes
  // this applier has committed so far. A crash point for tests; optional.
  std::function<void(uint64_t committed)> on_committed;
};

struct ApplierStats {
  std::atomic<uint64_t> received{0};  // changes taken from the log (applied, or found applied before a restart)
  std::atomic<uint64_t> retries{0};
};

// Threads: Run is the applier's own thread; status() and stats() may be
// called from any thread. Constant after construction: p_, log_, sink_,
// tracker_, options_. Self-synchronised: stats_. Only the Run thread touches
// checkpoint_ (and the sink). mu_ guards status_.
class Applier {
 public:
  Applier(PartitionId p, PartitionLog* log, ChangeSink* sink, ApplyTracker* tracker, ApplierOptions options);
  // Thread body: runs until the log is closed and drained, `stop` is set, or a
  // persistent error. Loads the checkpoint first. With a StopSource every
  // wait (a backoff, the wait for a reachable target) ends at once on Stop;
  // with an atomic within StopRef::kAtomicSlice.
  void Run(const StopSource& stop) { RunUntil(stop); }
  void Run(const std::atomic<bool>& stop) { RunUntil(stop); }
  Status status() const;
  const ApplierStats& stats() const { return stats_; }

 private:
  ApplySettings Settings() const { return options_.settings ? options_.settings() : options_.defaults; }
  void RunUntil(StopRef stop);
  Status ApplyWithRetry(std::vector<Change>& batch, ChangePosition checkpoint, StopRef stop);
  // After a reconnect: DataLoss when the target's checkpoint of this
  // partition is behind what was committed there before.
  // Returns the target's checkpoint (zero when it cannot be read yet).
  Result<ChangePosition> CheckTargetCheckpoint(const std::string& where);

  PartitionId p_;
  PartitionLog* log_;
  ChangeSink* sink_;
  ApplyTracker* tracker_;
  ApplierOptions options_;
  ApplierStats stats_;
  ChangePosition checkpoint_;
  mutable Mutex mu_;
  Status status_ GUARDED_BY(mu_);
};

}  // namespace midflight
