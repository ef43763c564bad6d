#include "pipeline/apply_tracker.h"

namespace midflight {

void ApplyTracker::Routed(PartitionId p, ChangePosition pos, int64_t commit_time_us) {
  MutexLock lock(&mu_);
  Part& part = parts_.at(p.value);
  if (!part.pending.empty() && part.pending.back().last.commit_lsn == pos.commit_lsn) {
    part.pending.back().last = pos;
    ++part.pending.back().changes;
  } else {
    part.pending.push_back({pos, commit_time_us, 1});
  }
  ++part.pending_changes;
}

void ApplyTracker::Applied(PartitionId p, ChangePosition pos) {
  MutexLock lock(&mu_);
  Part& part = parts_.at(p.value);
  if (pos > part.applied) part.applied = pos;
  while (!part.pending.empty() && part.pending.front().last <= part.applied) {
    part.pending_changes -= part.pending.front().changes;
    part.pending.pop_front();
  }
  idle_.NotifyAll();
}

ChangePosition ApplyTracker::AppliedOf(PartitionId p) const {
  MutexLock lock(&mu_);
  return parts_.at(p.value).applied;
}

std::optional<ApplyTracker::Pending> ApplyTracker::OldestPending() const {
  MutexLock lock(&mu_);
  std::optional<Pending> oldest;
  for (const Part& part : parts_) {
    if (part.pending.empty()) continue;
    const Txn& t = part.pending.front();
    if (!oldest || t.last.commit_lsn < oldest->commit_lsn) oldest = Pending{t.last.commit_lsn, t.commit_time_us};
  }
  return oldest;
}

ApplyTracker::PartitionPending ApplyTracker::PendingOf(PartitionId p) const {
  MutexLock lock(&mu_);
  const Part& part = parts_.at(p.value);
  if (part.pending.empty()) return {};
  return {part.pending.size(), part.pending_changes, part.pending.front().commit_time_us};
}

bool ApplyTracker::WaitIdle(std::chrono::milliseconds timeout) const {
  MutexLock lock(&mu_);
  return idle_.WaitFor(&mu_, timeout, [&]() REQUIRES(mu_) {
    for (const Part& part : parts_)
      if (!part.pending.empty()) return false;
    return true;
  });
}

}  // namespace midflight
