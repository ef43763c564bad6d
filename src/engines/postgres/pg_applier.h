// The PostgreSQL target side of a partition: applies change batches with
// their checkpoint in one transaction, over one connection in libpq pipeline
// mode (no round trip per statement). The session runs with
// session_replication_role = replica, so foreign keys and user triggers on the
// target do not fire for replicated rows (the source already checked them).
//
// Statements, per table (prepared once per connection):
//   insert / full update   INSERT .. OVERRIDING SYSTEM VALUE .. ON CONFLICT (key) DO UPDATE  (idempotent upsert),
//                          many rows of a table at once: .. SELECT .. FROM unnest($1::text[], ..)
//   deletes                DELETE .. USING unnest($1::text[], ..) WHERE key = ..
//   update with unchanged TOAST values   UPDATE .. SET <sent columns> WHERE key = ..
//   delete                 DELETE .. WHERE key = ..
//   conflicts (pipeline/conflicts.h), found by the same statements: bulk upserts
//                          and deletes of rows sharing a ConflictCheck run inside a CTE that answers
//                          the ordinals of the rows that conflict (RETURNING xmax <> 0 tells an
//                          ON CONFLICT update from an insert); single statements by their row count
//   keyless (REPLICA IDENTITY FULL) tables match one row on every column:
//                          .. WHERE (tableoid, ctid) = (SELECT tableoid, ctid .. LIMIT 1)
#pragma once

#include <atomic>
#include <map>
#include <functional>
#include <memory>
#include <string>

#include "pipeline/applier.h"

namespace midflight::pg {

class PgConn;

// midflight's bookkeeping schema on the target: checkpoints and copied chunks.
Status EnsureBookkeeping(PgConn& target);

class PgChangeSink final : public ChangeSink {
 public:
  // `origin`, when set, names the PostgreSQL replication origin this session
  // applies as (created when missing): the changes it commits are marked with
  // it, so a change stream reading this server can skip them (no loops between
  // forward and reverse replication). One session per origin.
  static Result<std::unique_ptr<PgChangeSink>> Open(const std::string& target_uri, const std::string& migration,
                                                    PartitionId partition, std::string origin = "");
  // Apply sessions' lock_timeout follows this (milliseconds; the lock_timeout_ms
  // knob), set again before a batch when it changed. Unset: 10 s.
  void SetLockTimeoutSource(std::function<int64_t()> ms) { lock_timeout_ms_ = std::move(ms); }
  ~PgChangeSink() override;

  Result<ChangePosition> LoadCheckpoint() override;
  Result<bool> HoldsRows(const TableSchema& table) override;
  Result<int64_t> LoadLogOffset() override;
  Result<CheckpointRow> LoadCheckpointRow() override;
  void SetWorker(std::string worker) override { worker_ = std::move(worker); }
  Status EnableFencing() override {
    fenced_ = true;
    return Status::Ok();
  }
  uint64_t batches_refused() const override { return refused_.load(); }
  Status ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint, BatchConflicts* conflicts) override;
  Status ApplyBarrier(const Change& change, uint32_t partitions) override;
  Status Reconnect() override;
  Result<int64_t> DeleteRows(const std::shared_ptr<const TableSchema>& table, const std::string& column,
                             std::optional<int64_t> lo, std::optional<int64_t> hi,
                             const std::function<bool(const Change&)>& mine) override;

 private:
  PgChangeSink(std::string uri, std::string migration, PartitionId p, std::string origin);
  Status Abort(Status cause);
  // After `changes` failed on a value PostgreSQL refused (its type's input,
  // length or domain): an OperatorError naming the table, the key and the
  // column with the server's message, or `cause` when no single value fails
  // alone. Runs and rolls back its own transaction on an idle connection.
  Status FindRejectedValue(std::span<const Change> changes, Status cause);
  // Fencing: BEGIN, lock the partition's row; true (rolled back) when the
  // target records an offset at or above `top`, else the transaction is open.
  Result<bool> Fence(int64_t top);

  std::string uri_;
  std::string migration_;
  PartitionId partition_;
  std::string origin_;
  std::string worker_;  // recorded with each checkpoint; empty: left as it is
  bool fenced_ = false;
  std::atomic<uint64_t> refused_{0};
  std::function<int64_t()> lock_timeout_ms_;
  int64_t lock_timeout_set_ = 0;
  std::unique_ptr<PgConn> conn_;
  std::map<std::string, std::string> prepared_;  // shape -> statement name
  int next_statement_ = 0;
};

}  // namespace midflight::pg
