// The change stream: pgoutput read over a replication connection from the
// migration's slot, turned into core Changes, filtered (already copied),
// routed to the partition log, and acknowledged to the source only up to the
// position every partition holds durably.
//
//   slot ─► XLogData ─► DecodePgOutput ─► Assemble (relation map, positions)
//        ─► SnapshotFilter ─► Router ─► PartitionLog[p]      (barriers: wait idle, apply once)
//   feedback (1/s): flush = oldest transaction some partition still holds
//
// A lost connection (source restart) is retried with backoff; the server
// resends from the slot's confirmed position and the per-partition "last
// routed" positions drop what was routed already, so nothing is doubled.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "core/change.h"
#include "pipeline/applier.h"
#include "pipeline/apply_tracker.h"
#include "pipeline/partition_log.h"
#include "pipeline/routed_log.h"
#include "pipeline/router.h"
#include "engines/postgres/pgoutput.h"

namespace midflight::pg {

struct StreamStats {
  std::atomic<uint64_t> received_lsn{0};   // all transactions committed before this were received
  std::atomic<uint64_t> confirmed_lsn{0};  // last flush position sent to the source
  std::atomic<uint64_t> changes{0};        // changes routed
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> skipped{0};        // changes dropped as midflight's own (origin filter)
  // Set by another thread to ask the server for a keepalive now (its position
  // shows how far the server has decoded); cleared by the stream.
  std::atomic<bool> poke{false};
  std::atomic<uint64_t> repairs_routed{0};  // repair changes routed so far (QueueRepairs)
};

struct StreamConfig {
  std::string source_uri;
  std::string slot;
  std::string publication;
  std::map<TableId, std::shared_ptr<const TableSchema>> tables;
  // The table's writable columns on the target (name and type), in order.
  // Every column layout the source sends is checked against it before use.
  std::function<Result<std::vector<ColumnSchema>>(const TableId&)> target_columns;
  // Transactions whose replication origin starts with this are midflight's own
  // applied changes (the other direction's appliers) and are skipped, so
  // forward and reverse replication never loop. Empty: skip nothing.
  std::string skip_origin_prefix;
  std::string application_name = "midflight-stream";
};

class ChangeStream {
 public:
  // `checkpoints[p]` is partition p's durable checkpoint at start.
  ChangeStream(StreamConfig config, Router router, SnapshotFilter filter, PartitionLog* log,
               ApplyTracker* tracker, ChangeSink* barrier_sink, std::vector<ChangePosition> checkpoints,
               StreamStats* stats);
  // Streams until `stop` is set (returns Ok) or a persistent error.
  Status Run(const std::atomic<bool>& stop);

  // Queues changes made outside the source's stream (verification repairs:
  // the source's current row image, or a delete by key). The stream thread
  // routes them at the next transaction boundary, after everything it routed
  // before. Thread-safe.
  // Returns the value stats.repairs_routed reaches once these are routed.
  uint64_t QueueRepairs(std::vector<Change> changes);

 private:
  Status StreamOnce(const std::atomic<bool>& stop);
  Status Handle(std::span<const uint8_t> payload);
  Status Emit(Change change);
  Status SendFeedback(bool force);
  Status RouteRepairs();
  // The schema version for a Relation message's column layout, checked
  // against the target's columns the first time it is seen.
  Result<std::shared_ptr<const TableSchema>> LayoutFor(const PgRelation& rel, const TableSchema& base);

  StreamConfig config_;
  SnapshotFilter filter_;
  ApplyTracker* tracker_;
  ChangeSink* barrier_sink_;
  RoutedLog routed_;
  StreamStats* stats_;

  struct Relation {
    std::shared_ptr<const TableSchema> table;  // null: not migrated
  };
  std::map<uint32_t, Relation> relations_;
  std::map<TableId, std::vector<std::shared_ptr<const TableSchema>>> layouts_;
  void* conn_ = nullptr;  // PGconn* of the replication connection
  bool in_txn_ = false;
  bool skip_txn_ = false;  // the current transaction is midflight's own (origin filter)
  std::mutex repairs_mu_;
  std::vector<Change> repairs_;  // GUARDED_BY(repairs_mu_)
  std::atomic<bool> have_repairs_{false};
  uint64_t repairs_queued_ = 0;  // GUARDED_BY(repairs_mu_)
  PgLsn txn_lsn_;
  int64_t txn_time_us_ = 0;
  uint32_t txn_seq_ = 0;
  int64_t last_feedback_ms_ = 0;
  const std::atomic<bool>* stop_ = nullptr;
};

}  // namespace midflight::pg
