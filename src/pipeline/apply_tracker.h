// ApplyTracker: what has been routed to each partition and what each applier
// has durably applied, so the stream can tell the source which position is
// consumed (only positions every partition holds durably: invariant 3) and
// status can report lag.
//
// Routed() is called by the stream thread, Applied() by applier threads; all
// methods are thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "base/thread_annotations.h"
#include "core/position.h"
#include "pipeline/partition_log.h"

namespace midflight {

class ApplyTracker {
 public:
  explicit ApplyTracker(uint32_t partitions) : parts_(partitions) {}

  // A change at `pos` (source commit time `commit_time_us`) went to partition p.
  void Routed(PartitionId p, ChangePosition pos, int64_t commit_time_us);
  // Partition p's target transaction holding everything up to `pos` committed.
  void Applied(PartitionId p, ChangePosition pos);
  // The highest position Applied() was told of for partition p (what the
  // target's checkpoint of p must hold at least), or zero.
  ChangePosition AppliedOf(PartitionId p) const;

  struct Pending {
    Position commit_lsn;     // oldest transaction not applied everywhere
    int64_t commit_time_us;  // its source commit time
  };
  // The oldest transaction some partition has not applied yet, or nullopt.
  std::optional<Pending> OldestPending() const;
  // What partition p has been routed and not applied yet (status: the lag
  // of one partition).
  struct PartitionPending {
    size_t transactions = 0;       // source transactions with a change of p not applied
    uint64_t changes = 0;          // their changes routed to p
    int64_t oldest_commit_us = 0;  // the oldest one's source commit time (0: none waits)
  };
  PartitionPending PendingOf(PartitionId p) const;
  // Blocks until nothing is pending or `timeout` passes; returns true when idle.
  bool WaitIdle(std::chrono::milliseconds timeout) const;

 private:
  struct Txn {
    ChangePosition last;  // last change of the transaction in this partition
    int64_t commit_time_us;
    uint64_t changes;  // routed to this partition
  };
  struct Part {
    std::deque<Txn> pending;
    uint64_t pending_changes = 0;  // the sum of pending[].changes
    ChangePosition applied;
  };
  mutable Mutex mu_;
  mutable CondVar idle_;
  std::vector<Part> parts_ GUARDED_BY(mu_);
};

}  // namespace midflight
