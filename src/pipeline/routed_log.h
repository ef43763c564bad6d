// The change stream's side of the partitions, shared by every engine: routes
// each change to its partition's log and tells the tracker, dropping what a
// partition already holds (its checkpoint at start, or what was routed before
// the stream reconnected and the source resent it).
#pragma once

#include <algorithm>
#include <vector>

#include "base/status.h"
#include "core/change.h"
#include "pipeline/apply_tracker.h"
#include "pipeline/partition_log.h"
#include "pipeline/router.h"

namespace midflight {

class RoutedLog {
 public:
  // `checkpoints[p]` is partition p's durable checkpoint at start.
  RoutedLog(Router router, PartitionLog* log, ApplyTracker* tracker, std::vector<ChangePosition> checkpoints)
      : router_(router), log_(log), tracker_(tracker), last_(std::move(checkpoints)) {
    lowest_ = *std::min_element(last_.begin(), last_.end());
  }

  // Appends `change` to its partition unless that partition has it already.
  // Returns true in `*routed` when it was appended.
  Status Append(Change change, bool* routed = nullptr) {
    PartitionId p = router_.Route(change);
    if (routed) *routed = false;
    if (change.pos <= last_[p.value]) return Status::Ok();
    last_[p.value] = change.pos;
    tracker_->Routed(p, change.pos, change.commit_time_us);
    if (routed) *routed = true;
    switch (change.kind) {
      case ChangeKind::kInsert: change.check = ConflictCheck::kInsert; break;
      case ChangeKind::kUpdate: change.check = ConflictCheck::kUpdate; break;
      case ChangeKind::kDelete: change.check = ConflictCheck::kDelete; break;
      case ChangeKind::kTruncate: break;
    }
    return log_->Append(p, std::move(change));
  }

  // Appends a change made outside the source's stream (a verification
  // repair) to its key's partition, ordered after everything routed there so
  // far. It takes that partition's last position plus one sequence number, so
  // the partition's checkpoint never moves past what the stream has routed.
  Status Inject(Change change) {
    PartitionId p = router_.Route(change);
    change.pos = ChangePosition{last_[p.value].commit_lsn, last_[p.value].seq + 1};
    last_[p.value] = change.pos;
    tracker_->Routed(p, change.pos, change.commit_time_us);
    return log_->Append(p, std::move(change));
  }

  // Every partition holds everything up to here: a change at or below it is
  // applied already (a barrier need not run again; a transaction can be skipped).
  ChangePosition lowest() const { return lowest_; }
  // The last position some partition holds (what Inject's positions follow).
  ChangePosition highest() const { return *std::max_element(last_.begin(), last_.end()); }

  // A barrier about to be applied: the log records it where others read it.
  Status AppendBarrier(const Change& barrier) {
    return log_->AppendBarrier(barrier, [this](const Change& c) { return router_.Route(c); });
  }

  // A change applied across every partition at `pos` (a barrier): it set
  // every partition's checkpoint on the target to `pos`.
  void BarrierApplied(ChangePosition pos) {
    for (uint32_t p = 0; p < last_.size(); ++p) tracker_->Applied(PartitionId{p}, pos);
    for (auto& p : last_) p = std::max(p, pos);
    lowest_ = *std::min_element(last_.begin(), last_.end());
  }

  uint32_t partitions() const { return router_.partitions(); }

 private:
  Router router_;
  PartitionLog* log_;
  ApplyTracker* tracker_;
  std::vector<ChangePosition> last_;
  ChangePosition lowest_;
};

}  // namespace midflight
