#include "pipeline/throttle.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "base/clock.h"

namespace midflight {

const char* DistressName(Distress d) {
  switch (d) {
    case Distress::kLockTimeout: return "lock_timeout";
    case Distress::kDeadlock: return "deadlock";
    case Distress::kTooManyConnections: return "too_many_connections";
    case Distress::kReplicaLag: return "replica_lag";
    case Distress::kConnection: return "connection";
    case Distress::kApplyError: return "apply_error";
    case Distress::kCount: break;
  }
  return "unknown";
}

Distress ClassifyDistress(const Status& st) {
  const std::string& m = st.message();
  auto has = [&](const char* s) { return m.find(s) != std::string::npos; };
  if (has("SQLSTATE 55P03") || has("lock timeout") || has("Lock wait timeout") || has("(1205)"))
    return Distress::kLockTimeout;
  if (has("SQLSTATE 40P01") || has("SQLSTATE 40001") || has("deadlock") || has("Deadlock") || has("(1213)"))
    return Distress::kDeadlock;
  if (has("SQLSTATE 53300") || has("too many clients") || has("Too many connections") || has("(1040)") ||
      has("remaining connection slots"))
    return Distress::kTooManyConnections;
  if (st.code() == StatusCode::kRetryCall) return Distress::kConnection;
  return Distress::kApplyError;
}

void ThrottleBoard::Report(const std::string& where, int partition, Distress kind, const std::string& message,
                           std::chrono::milliseconds backoff) {
  ++errors_[static_cast<size_t>(kind)];
  MutexLock lock(&mu_);
  auto [it, fresh] = active_.try_emplace(where);
  Entry& e = it->second;
  if (fresh) e.since = NowIsoUtc();
  e.partition = partition;
  e.kind = kind;
  e.message = message;
  ++e.retries;
  e.backoff_ms = backoff.count();
}

void ThrottleBoard::Clear(const std::string& where) {
  MutexLock lock(&mu_);
  active_.erase(where);
}

bool ThrottleBoard::active() const {
  MutexLock lock(&mu_);
  return !active_.empty() || replica_lag_paused_;
}

void ThrottleBoard::SetReplicaLagPause(bool paused, const std::string& message) {
  if (paused) {
    if (!replica_lag_paused_.exchange(true)) ++errors_[static_cast<size_t>(Distress::kReplicaLag)];
    MutexLock lock(&mu_);
    auto [it, fresh] = active_.try_emplace("target replicas");
    if (fresh) it->second.since = NowIsoUtc();
    it->second.kind = Distress::kReplicaLag;
    it->second.message = message;
  } else if (replica_lag_paused_.exchange(false)) {
    Clear("target replicas");
  }
}

std::string ThrottleBoard::ToJson() const {
  nlohmann::json j;
  j["active"] = nlohmann::json::array();
  {
    MutexLock lock(&mu_);
    for (const auto& [where, e] : active_)
      j["active"].push_back({{"where", where}, {"partition", e.partition}, {"kind", DistressName(e.kind)},
                             {"message", e.message}, {"since", e.since}, {"retries", e.retries},
                             {"backoff_ms", e.backoff_ms}});
  }
  j["errors"] = nlohmann::json::object();
  for (size_t i = 0; i < errors_.size(); ++i) j["errors"][DistressName(static_cast<Distress>(i))] = errors_[i].load();
  return j.dump();
}

void ThrottleBoard::RecordBatch(double seconds, size_t changes) {
  MutexLock lock(&mu_);
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i)
    if (seconds <= kLatencyBuckets[i]) ++latency_.buckets[i];
  ++latency_.buckets.back();
  latency_.sum += seconds;
  ++latency_.count;
  latency_.changes += changes;
}

ThrottleBoard::Latency ThrottleBoard::latency() const {
  MutexLock lock(&mu_);
  return latency_;
}

void RateLimiter::Acquire(int64_t n, StopRef stop) {
  while (!stop) {
    double rate = rate_();
    std::chrono::microseconds wait{0};
    {
      MutexLock lock(&mu_);
      auto now = std::chrono::steady_clock::now();
      if (rate <= 0) {
        tokens_ = 0;
        last_ = now;
        return;
      }
      if (last_ == std::chrono::steady_clock::time_point{}) {
        last_ = now;
      }
      tokens_ = std::min(rate, tokens_ + rate * std::chrono::duration<double>(now - last_).count());
      last_ = now;
      // A request larger than the burst passes once the bucket is full.
      if (tokens_ >= static_cast<double>(n) || tokens_ >= rate) {
        tokens_ -= static_cast<double>(n);
        return;
      }
      double need = std::min(static_cast<double>(n), rate) - tokens_;
      wait = std::chrono::microseconds(static_cast<int64_t>(need / rate * 1e6) + 1);
    }
    // At most 100 ms: the rate knob is read again after it.
    if (stop.WaitFor(std::min(wait, std::chrono::microseconds(100000)))) return;
  }
}

}  // namespace midflight
