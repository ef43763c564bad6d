#include "pipeline/applier.h"

#include <thread>

#include "base/log.h"
#include "pipeline/batch.h"

namespace midflight {

Applier::Applier(PartitionId p, PartitionLog* log, ChangeSink* sink, ApplyTracker* tracker,
                 ApplierOptions options)
    : p_(p), log_(log), sink_(sink), tracker_(tracker), options_(options) {}

Status Applier::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

void Applier::Run(const std::atomic<bool>& stop) {
  auto fail = [&](Status st) {
    LOG_ERROR("applier {}: {}", p_.value, st.message());
    std::lock_guard lock(mu_);
    status_ = std::move(st);
  };
  auto cp = sink_->LoadCheckpoint();
  while (!cp.ok() && cp.status().code() == StatusCode::kRetryCall && !stop) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    (void)sink_->Reconnect();
    cp = sink_->LoadCheckpoint();
  }
  if (!cp.ok()) return fail(cp.status());
  checkpoint_ = *cp;

  std::vector<Change> taken;
  while (!stop) {
    taken.clear();
    size_t max = options_.batch_size ? options_.batch_size->load() : 1000;
    Status st = log_->Poll(p_, 1, max, std::chrono::milliseconds(50), &taken);
    if (st.code() == StatusCode::kCancelled) return;
    if (!st.ok()) return fail(st);
    if (taken.empty()) continue;
    // A short linger fills the batch: fewer, larger target transactions and
    // more changes collapsed per key, for a few milliseconds of latency.
    if (taken.size() < max) st = log_->Poll(p_, max - taken.size(), max - taken.size(), options_.linger, &taken);
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
    st = ApplyWithRetry(batch, last_taken, stop);
    if (st.code() == StatusCode::kCancelled) return;
    if (!st.ok()) return fail(st);
    checkpoint_ = last_taken;
    tracker_->Applied(p_, last_taken);
  }
}

Status Applier::ApplyWithRetry(std::vector<Change>& batch, ChangePosition checkpoint,
                               const std::atomic<bool>& stop) {
  auto backoff = std::chrono::milliseconds(100);
  while (true) {
    Status st = sink_->ApplyBatch(batch, checkpoint);
    if (st.ok()) return st;
    if (st.code() != StatusCode::kRetryTxn && st.code() != StatusCode::kRetryCall) return st;
    ++stats_.retries;
    LOG_WARN("applier {}: {}; retrying in {} ms", p_.value, st.message(), backoff.count());
    auto until = std::chrono::steady_clock::now() + backoff;
    while (std::chrono::steady_clock::now() < until) {
      if (stop) return Cancelled("stopping");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
    if (st.code() == StatusCode::kRetryCall) {
      Status rc = sink_->Reconnect();
      if (!rc.ok()) LOG_DEBUG("applier {}: reconnect failed: {}", p_.value, rc.message());
    }
  }
}

}  // namespace midflight
