// The sequencer: everything between a change source's decoder and the
// partition logs, written once for every engine and both directions.
//
//   ChangeSource (decode only) ── Begin / Emit / Commit / Idle ──► Sequencer
//     numbers each change of a transaction:        ChangePosition{txn position, 1, 2, ...}
//     splits a key-moving update:                  delete(old key) + insert(new key)
//     drops what the snapshot copy holds:          SnapshotFilter
//     runs barriers (truncate; a key move that     wait until every partition is idle,
//       carries unchanged TOAST values):           apply once through the barrier sink
//     routes the rest, dropping what a partition   RoutedLog ─► PartitionLog[p]
//       holds already (checkpoint, resent after a reconnect)
//     routes queued verification repairs at transaction boundaries
//   and keeps the positions the source reports back or restarts from:
//     received:  every source transaction before it was received whole
//     Confirmable(): min(received, oldest transaction some partition has not applied)
//
// Positions are the source's own ordered 64-bit values (core/position.h): a
// PostgreSQL commit LSN, a MySQL binlog transaction start. A transaction's
// position is what Begin() is given, and changes are ordered by
// (transaction position, ordinal).
//
// Threads: Begin/Emit/Commit/Idle/Reset and WaitApplied are called by the
// stream thread only. QueueRepairs and the stats are safe from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "base/status.h"
#include "base/stop.h"
#include "base/thread_annotations.h"
#include "core/change.h"
#include "pipeline/applier.h"
#include "pipeline/apply_tracker.h"
#include "pipeline/partition_log.h"
#include "pipeline/routed_log.h"
#include "pipeline/router.h"

namespace midflight {

struct SequencerStats {
  std::atomic<uint64_t> received{0};       // every transaction before this was received whole
  std::atomic<uint64_t> confirmed{0};      // the last position the source was told is consumed
  std::atomic<uint64_t> changes{0};        // changes routed (and barriers applied)
  std::atomic<uint64_t> skipped{0};        // changes the source dropped as midflight's own (origin filter)
  std::atomic<uint64_t> repairs_routed{0}; // repair changes routed so far (QueueRepairs)
  std::atomic<bool> connected{false};      // the source's stream is connected
};

class Sequencer {
 public:
  // `checkpoints[p]` is partition p's durable checkpoint at start; `received`
  // the position the stream starts from (every transaction before it is held
  // by the target, or zero when unknown). `barrier_sink` applies barriers
  // with every partition's checkpoint; `stop` cancels a barrier's wait.
  Sequencer(uint32_t partitions, SnapshotFilter filter, PartitionLog* log, ApplyTracker* tracker,
            ChangeSink* barrier_sink, std::vector<ChangePosition> checkpoints, uint64_t received, StopRef stop);

  // A transaction at source position `pos` starts. Returns true when every
  // partition already applied all of it (before a restart): its changes will
  // all be dropped, so the source may skip decoding them.
  bool Begin(Position pos, int64_t commit_time_us);
  // One change of the current transaction, in source order. Its `pos` and
  // `commit_time_us` are set here. An update carries `old` only when its key
  // changed or its table matches on the whole row (or it may carry the whole
  // old image: it is dropped here when not needed).
  Status Emit(Change change);
  // The transaction ended; `end` (if not zero) is the position after it.
  Status Commit(uint64_t end);
  // Between transactions, with nothing to read: `pos` (if not zero) is a
  // position the source reported past every transaction sent (a keepalive,
  // a heartbeat). Routes queued repairs.
  Status Idle(uint64_t pos);
  // The connection was lost: a transaction in progress is abandoned (the
  // source resends it; what was routed of it is dropped as a duplicate).
  void Reset();
  // Blocks until every partition applied everything routed (a source that
  // must look at the target before going on: a DDL statement). Cancelled
  // when `stop` is set.
  Status WaitApplied();

  // What the source may be told is consumed, or restart from: the oldest
  // transaction some partition still holds, else `received`; never below
  // what was confirmed before.
  uint64_t Confirmable() const;
  void Confirmed(uint64_t pos);
  // Every source transaction before this is applied on the target.
  uint64_t AppliedThrough() const;
  // Every partition holds everything up to here.
  ChangePosition lowest() const { return routed_.lowest(); }
  bool in_transaction() const { return in_txn_; }

  // Changes made outside the source (verification repairs: a source row's
  // current image, or a delete by key), routed after everything routed so
  // far, at the next transaction boundary where every partition's last
  // transaction was received whole (not after a reconnect or a restart that
  // left one in the middle: the source resends it first). Returns the
  // repairs_routed value that means they are all routed. Any thread.
  uint64_t QueueRepairs(std::vector<Change> changes);

  SequencerStats& stats() { return stats_; }
  const SequencerStats& stats() const { return stats_; }

 private:
  // `toast_move`: an update whose key moved and that carries unchanged
  // TOAST values (decided once, in Emit).
  Status Route(Change change, bool toast_move = false);
  // Routes queued repairs, once every partition's last change belongs to a
  // transaction received whole (see RouteRepairs).
  Status MaybeRouteRepairs();
  Status RouteRepairs();

  SnapshotFilter filter_;
  ApplyTracker* tracker_;
  ChangeSink* barrier_sink_;
  RoutedLog routed_;
  StopRef stop_;
  SequencerStats stats_;
  // Stream thread only.
  bool in_txn_ = false;
  Position txn_pos_;
  int64_t txn_time_us_ = 0;
  uint32_t txn_seq_ = 0;
  uint64_t committed_ = 0;  // the last transaction whose Commit the stream saw
  // Repairs: queued by any thread, routed by the stream thread.
  Mutex repairs_mu_;
  std::vector<Change> repairs_ GUARDED_BY(repairs_mu_);
  uint64_t repairs_queued_ GUARDED_BY(repairs_mu_) = 0;
  std::atomic<bool> have_repairs_{false};
};

}  // namespace midflight
