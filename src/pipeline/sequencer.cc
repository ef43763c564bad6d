#include "pipeline/sequencer.h"

#include <fmt/format.h>

#include "base/clock.h"
#include "base/log.h"

namespace midflight {

Sequencer::Sequencer(uint32_t partitions, SnapshotFilter filter, PartitionLog* log, ApplyTracker* tracker,
                     ChangeSink* barrier_sink, std::vector<ChangePosition> checkpoints, uint64_t received,
                     StopRef stop)
    : filter_(std::move(filter)),
      tracker_(tracker),
      barrier_sink_(barrier_sink),
      routed_(Router(partitions), log, tracker, std::move(checkpoints)),
      stop_(stop) {
  stats_.received = received;
}

bool Sequencer::Begin(Position pos, int64_t commit_time_us) {
  in_txn_ = true;
  txn_pos_ = pos;
  txn_time_us_ = commit_time_us;
  txn_seq_ = 0;
  return ChangePosition{pos, UINT32_MAX} <= routed_.lowest();
}

Status Sequencer::Emit(Change change) {
  if (!in_txn_) return Internal("change stream: a change outside a transaction");
  change.pos = ChangePosition{txn_pos_, ++txn_seq_};
  change.commit_time_us = txn_time_us_;
  bool toast_move = false;
  if (change.kind == ChangeKind::kUpdate) {
    const bool moves = change.MovesKey();
    toast_move = moves && change.HasUnchangedValues();
    if (moves && !toast_move) {
      // A key change is a delete of the old key and an insert of the new
      // one, each routed (and judged by the snapshot filter) by its own key.
      Change del;
      del.kind = ChangeKind::kDelete;
      del.table = change.table;
      del.pos = change.pos;
      del.commit_time_us = change.commit_time_us;
      del.old = std::move(change.old);
      Change ins;
      ins.kind = ChangeKind::kInsert;
      ins.table = std::move(change.table);
      ins.pos = ChangePosition{txn_pos_, ++txn_seq_};
      ins.commit_time_us = change.commit_time_us;
      ins.values = std::move(change.values);
      RETURN_IF_ERROR(Route(std::move(del)));
      return Route(std::move(ins));
    }
    // The old image is only needed to find a row whose key moved, or a row
    // of a table without a key.
    if (!moves && change.table && change.table->key_kind != KeyKind::kFullRow) change.old.clear();
  }
  return Route(std::move(change), toast_move);
}

Status Sequencer::Route(Change change, bool toast_move) {
  if (change.pos.commit_lsn < filter_.horizon()) {
    if (filter_.AlreadyCopied(change)) return Status::Ok();
    if (toast_move) {
      // A key move applied at a barrier (it cannot be split: the new row
      // takes its unchanged values from the old one). When the copy already
      // holds the new key's row, from a snapshot after this change, applying
      // the move would put that row back to this older image, and the changes
      // between here and that snapshot are dropped by the filter: only the
      // removal of the old key is left to do.
      Change moved_in;
      moved_in.kind = ChangeKind::kInsert;
      moved_in.table = change.table;
      moved_in.pos = change.pos;
      moved_in.values = change.values;
      if (filter_.AlreadyCopied(moved_in)) {
        Change del;
        del.kind = ChangeKind::kDelete;
        del.table = std::move(change.table);
        del.pos = change.pos;
        del.commit_time_us = change.commit_time_us;
        del.old = std::move(change.old);
        change = std::move(del);
        toast_move = false;  // a plain delete, routed by its key
      }
    }
  }
  // A truncate spans tables and partitions; a key move that leaves TOASTed
  // values unchanged needs the old row to build the new one.
  const bool barrier = change.kind == ChangeKind::kTruncate || toast_move;
  if (barrier) {
    if (change.pos <= routed_.lowest()) return Status::Ok();
    // Everything before the barrier must be applied first, in every partition.
    RETURN_IF_ERROR(WaitApplied());
    RETURN_IF_ERROR(routed_.AppendBarrier(change));
    LOG_INFO("change stream: applying {} of {} at {} across all partitions", ChangeKindName(change.kind),
             change.table->id.ToString(), change.pos.ToString());
    RETURN_IF_ERROR(barrier_sink_->ApplyBarrier(change, routed_.partitions()));
    routed_.BarrierApplied(change.pos);
    stats_.changes.fetch_add(1, std::memory_order_relaxed);
    return Status::Ok();
  }
  bool routed = false;
  RETURN_IF_ERROR(routed_.Append(std::move(change), &routed));
  if (routed) stats_.changes.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status Sequencer::Commit(uint64_t end) {
  in_txn_ = false;
  committed_ = std::max(committed_, txn_pos_.value());
  if (end > stats_.received) stats_.received = end;
  return MaybeRouteRepairs();
}

Status Sequencer::Idle(uint64_t pos) {
  if (in_txn_) return Status::Ok();
  if (pos > stats_.received) stats_.received = pos;
  return MaybeRouteRepairs();
}

Status Sequencer::MaybeRouteRepairs() {
  if (!have_repairs_) return Status::Ok();
  // A repair takes the position just after its partition's last change. If
  // that change's transaction was not received whole (the connection dropped
  // inside it; after a restart, a checkpoint inside it), the source resends
  // it, and its next change in that partition would have the repair's
  // position and be dropped as routed already: wait until it is whole.
  const uint64_t last = routed_.highest().commit_lsn.value();
  if (committed_ < last && stats_.received <= last) return Status::Ok();
  return RouteRepairs();
}

void Sequencer::Reset() { in_txn_ = false; }

Status Sequencer::WaitApplied() {
  while (!tracker_->WaitIdle(std::chrono::milliseconds(200)))
    if (stop_) return Cancelled("stopping while waiting for every partition to apply");
  return Status::Ok();
}

uint64_t Sequencer::AppliedThrough() const {
  // Received first, then pending: every transaction received by then is
  // either still pending below or applied.
  uint64_t received = stats_.received.load();
  auto pending = tracker_->OldestPending();
  return pending ? std::min<uint64_t>(pending->commit_lsn.value(), received) : received;
}

uint64_t Sequencer::Confirmable() const { return std::max(AppliedThrough(), stats_.confirmed.load()); }

void Sequencer::Confirmed(uint64_t pos) {
  if (pos > stats_.confirmed) stats_.confirmed = pos;
}

uint64_t Sequencer::QueueRepairs(std::vector<Change> changes) {
  MutexLock lock(&repairs_mu_);
  repairs_queued_ += changes.size();
  for (auto& c : changes) repairs_.push_back(std::move(c));
  have_repairs_ = true;
  return repairs_queued_;
}

Status Sequencer::RouteRepairs() {
  std::vector<Change> todo;
  {
    MutexLock lock(&repairs_mu_);
    todo.swap(repairs_);
    have_repairs_ = false;
  }
  for (auto& c : todo) {
    c.commit_time_us = NowUnixMicros();
    RETURN_IF_ERROR(routed_.Inject(std::move(c)));
    stats_.repairs_routed.fetch_add(1);
  }
  return Status::Ok();
}

}  // namespace midflight
