// Self-throttling: what the appliers and copiers do when the target shows
// distress, and how the operator sees it.
//
//   error ─► ClassifyDistress ─► ThrottleBoard::Report (visible in the API,
//   the dashboard and /metrics) ─► back off (doubling, up to the
//   throttle_max_backoff_ms knob) ─► retry ─► success: Clear, full speed.
//   An error still there after fail_after_seconds is persistent: the
//   migration moves to failed with it, and resume continues from the
//   checkpoint.
//
// RateLimiter is the token bucket behind the copy and apply rate knobs.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "base/status.h"
#include "base/stop.h"
#include "base/thread_annotations.h"

namespace midflight {

enum class Distress {
  kLockTimeout,         // SQLSTATE 55P03 (PostgreSQL), 1205 (MySQL)
  kDeadlock,            // 40P01, 40001 / 1213
  kTooManyConnections,  // 53300 / 1040, "too many clients"
  kReplicaLag,          // a replica of the target lags over the threshold
  kConnection,          // connection lost, server restarting
  kApplyError,          // any other error a retry may fix (statement timeout, ...)
  kCount,
};

const char* DistressName(Distress d);
Distress ClassifyDistress(const Status& st);

// Every method may be called from any thread. Self-synchronised: errors_,
// replica_lag_paused_. mu_ guards the rest.
class ThrottleBoard {
 public:
  // `where`: "apply partition 3", "copy worker 1", "reverse apply partition 0".
  // `partition` is the apply partition, or -1.
  void Report(const std::string& where, int partition, Distress kind, const std::string& message,
              std::chrono::milliseconds backoff);
  void Clear(const std::string& where);
  bool active() const;
  uint64_t errors(Distress d) const { return errors_[static_cast<size_t>(d)].load(); }
  // {"active": [{"where", "partition", "kind", "message", "since", "retries", "backoff_ms"}],
  //  "errors": {"lock_timeout": n, ...}}
  std::string ToJson() const;

  // Apply latency: one target transaction of `changes` took `seconds`.
  static constexpr std::array<double, 11> kLatencyBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                             0.5,   1,    2.5,   5,    10};
  void RecordBatch(double seconds, size_t changes);
  struct Latency {
    std::array<uint64_t, kLatencyBuckets.size() + 1> buckets{};  // cumulative counts, last = +Inf
    double sum = 0;
    uint64_t count = 0, changes = 0;
  };
  Latency latency() const;

  // Replica lag gate: while set, appliers wait before each batch.
  void SetReplicaLagPause(bool paused, const std::string& message);
  bool replica_lag_paused() const { return replica_lag_paused_.load(); }

 private:
  struct Entry {
    int partition = -1;
    Distress kind = Distress::kApplyError;
    std::string message, since;
    uint64_t retries = 0;
    int64_t backoff_ms = 0;
  };
  mutable Mutex mu_;
  std::map<std::string, Entry> active_ GUARDED_BY(mu_);
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Distress::kCount)> errors_{};
  std::atomic<bool> replica_lag_paused_{false};
  Latency latency_ GUARDED_BY(mu_);
};

// Token bucket. `rate` is read at each Acquire (units per second; <= 0 means
// unlimited), so a knob change takes effect at once. Burst: one second's worth.
class RateLimiter {
 public:
  explicit RateLimiter(std::function<double()> rate) : rate_(std::move(rate)) {}
  // Waits until `n` units may pass, or `stop` is set (a StopSource wakes the
  // wait at once).
  void Acquire(int64_t n, StopRef stop) EXCLUDES(mu_);

 private:
  std::function<double()> rate_;
  Mutex mu_;
  double tokens_ GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point last_ GUARDED_BY(mu_){};
};

}  // namespace midflight
