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
  // Partition p's oldest transaction not applied yet: (its source commit
  // time, how many transactions of p wait), or nullopt.
  std::optional<std::pair<int64_t, size_t>> PendingOf(PartitionId p) const;
  // Blocks until nothing is pending or `timeout` passes; returns true when idle.
  bool WaitIdle(std::chrono::milliseconds timeout) const;

 private:
  struct Txn {
    ChangePosition last;  // last change of the transaction in this partition
    int64_t commit_time_us;
  };
  struct Part {
    std::deque<Txn> pending;
    ChangePosition applied;
  };
  mutable Mutex mu_;
  mutable CondVar idle_;
  std::vector<Part> parts_ GUARDED_BY(mu_);
};

}  // namespace midflight
