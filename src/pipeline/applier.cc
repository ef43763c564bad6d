#include "pipeline/applier.h"

#include <thread>

#include "base/log.h"
#include "pipeline/batch.h"
#include <fmt/format.h>

namespace midflight {

Applier::Applier(PartitionId p, PartitionLog* log, ChangeSink* sink, ApplyTracker* tracker,
                 ApplierOptions options)
    : p_(p), log_(log), sink_(sink), tracker_(tracker), options_(options) {}

Status Applier::status() const {
  MutexLock lock(&mu_);
  return status_;
}

void Applier::RunUntil(StopRef stop) {
  auto fail = [&](Status st) {
    LOG_ERROR("applier {}: {}", p_.value, st.message());
    MutexLock lock(&mu_);
    status_ = std::move(st);
  };
  auto cp = sink_->LoadCheckpoint();
  while (!cp.ok() && cp.status().code() == StatusCode::kRetryCall) {
    if (stop.WaitFor(std::chrono::seconds(1))) return;
    // A failed reconnect shows in the LoadCheckpoint that follows.
    if (Status rc = sink_->Reconnect(); !rc.ok()) LOG_DEBUG("applier {}: reconnect: {}", p_.value, rc.message());
    cp = sink_->LoadCheckpoint();
  }
  if (!cp.ok()) return fail(cp.status());
  checkpoint_ = *cp;

  std::vector<Change> taken;
  uint64_t committed = 0;  // changes this applier committed (for on_committed)
  while (!stop) {
    taken.clear();
    const ApplySettings set = Settings();
    const size_t max = set.batch_size;
    const auto linger = set.linger;
    Status st = log_->Poll(p_, 1, max, std::chrono::milliseconds(50), &taken);
    if (st.code() == StatusCode::kCancelled) return;
    if (!st.ok()) return fail(st);
    if (taken.empty()) continue;
    // A short linger fills the batch: fewer, larger target transactions and
    // more changes collapsed per key, for a few milliseconds of latency.
    if (taken.size() < max) st = log_->Poll(p_, max - taken.size(), max - taken.size(), linger, &taken);
    if (st.code() == StatusCode::kCancelled) return;
    stats_.received += taken.size();
    // Changes at or below the checkpoint were applied before a restart.
    std::vector<Change> fresh;
    fresh.reserve(taken.size());
    ChangePosition last_taken = taken.back().pos;
    for (Change& c : taken)
      if (c.pos > checkpoint_) fresh.push_back(std::move(c));
    if (fresh.empty()) {
      tracker_->Applied(p_, last_taken);
      continue;
    }
    std::vector<Change> batch = CollapseBatch(std::move(fresh));
    // The target's replicas lag: wait (the board shows why) until they catch up.
    // (The gate has no notification: it is looked at every 100 ms.)
    while (options_.throttle && options_.throttle->replica_lag_paused())
      if (stop.WaitFor(std::chrono::milliseconds(100))) return;
    if (options_.rate) options_.rate->Acquire(static_cast<int64_t>(batch.size()), stop);
    st = ApplyWithRetry(batch, last_taken, stop);
    if (st.code() == StatusCode::kCancelled) return;
    if (!st.ok()) return fail(st);
    checkpoint_ = last_taken;
    // A resumed run's start-up ends here (bench/README.md measures it).
    if (committed == 0)
      LOG_INFO("{} partition {}: first batch committed ({} changes, through {})", options_.label, p_.value,
               batch.size(), last_taken.ToString());
    committed += batch.size();
    if (options_.on_committed) options_.on_committed(committed);
    tracker_->Applied(p_, last_taken);
  }
}

Result<ChangePosition> Applier::CheckTargetCheckpoint(const std::string& where) {
  auto cp = sink_->LoadCheckpoint();
  if (!cp.ok()) return ChangePosition{};  // still unreachable: the next attempt fails and retries
  const ChangePosition expected = std::max(checkpoint_, tracker_->AppliedOf(p_));
  if (*cp >= expected) return *cp;
  return DataLoss(fmt::format(
      "{}: the target lost changes it had acknowledged: its checkpoint is {} after a reconnect, but {} had been "
      "committed there (a target crash with fsync or full_page_writes off, or restored from a backup); the stream "
      "cannot be read again from there: verify with midflight compare, and copy again if the tables differ",
      where, cp->ToString(), expected.ToString()));
}

Status Applier::ApplyWithRetry(std::vector<Change>& batch, ChangePosition checkpoint,
                               StopRef stop) {
  const std::string where = fmt::format("{} partition {}", options_.label, p_.value);
  auto backoff = std::chrono::milliseconds(100);
  std::chrono::steady_clock::time_point first_failure{};
  while (true) {
    auto started = std::chrono::steady_clock::now();
    BatchConflicts conflicts;
    conflicts.stop = options_.conflicts && Settings().stop_on_conflict;
    Status st = sink_->ApplyBatch(batch, checkpoint, &conflicts);
    // Counted once: for the attempt that committed, or the one that stopped.
    if (options_.conflicts && (st.ok() || !conflicts.found.empty())) options_.conflicts->Record(conflicts.found);
    if (st.ok() && options_.throttle)
      options_.throttle->RecordBatch(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), batch.size());
    if (st.ok()) {
      if (first_failure != std::chrono::steady_clock::time_point{}) {
        if (options_.throttle) options_.throttle->Clear(where);
        LOG_INFO("{}: recovered; applying at full speed again", where);
      }
      return st;
    }
    if (st.code() != StatusCode::kRetryTxn && st.code() != StatusCode::kRetryCall) return st;
    auto now = std::chrono::steady_clock::now();
    if (first_failure == std::chrono::steady_clock::time_point{}) first_failure = now;
    const ApplySettings set = Settings();
    const double fail_after = set.fail_after_seconds;
    double failing_for = std::chrono::duration<double>(now - first_failure).count();
    if (failing_for >= fail_after) {
      if (options_.throttle) options_.throttle->Clear(where);
      return OperatorError(fmt::format("{}: {}; still failing after {:.0f} s of retries (knob fail_after_seconds); "
                                       "fix the cause, then resume",
                                       where, st.message(), failing_for));
    }
    ++stats_.retries;
    Distress kind = ClassifyDistress(st);
    if (options_.throttle) options_.throttle->Report(where, static_cast<int>(p_.value), kind, st.message(), backoff);
    LOG_WARN("{}: {} ({}); backing off {} ms", where, st.message(), DistressName(kind), backoff.count());
    if (stop.WaitFor(backoff)) {
      if (options_.throttle) options_.throttle->Clear(where);
      return Cancelled("stopping");
    }
    backoff = std::min(backoff * 2, set.max_backoff);
    if (st.code() == StatusCode::kRetryCall) {
      Status rc = sink_->Reconnect();
      if (!rc.ok()) {
        LOG_DEBUG("{}: reconnect failed: {}", where, rc.message());
        continue;
      }
      // The target may have restarted and lost commits it had acknowledged:
      // its checkpoint is the truth, whatever this applier remembers.
      ASSIGN_OR_RETURN(ChangePosition on_target, CheckTargetCheckpoint(where));
      // The connection broke after the batch's COMMIT reached the target:
      // it is applied. Applying it again would be harmless (idempotent) but
      // would report its changes as conflicts.
      if (on_target >= checkpoint) {
        if (options_.throttle) options_.throttle->Clear(where);
        LOG_INFO("{}: the batch up to {} was committed before the connection broke", where, checkpoint.ToString());
        return Status::Ok();
      }
    }
  }
}

}  // namespace midflight
