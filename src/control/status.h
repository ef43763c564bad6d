// What a running migration's replication reports: one typed struct,
// published by the replicate phase (control/cutover.cc) every 200 ms and read
// by the API, /metrics, the dashboard (through the API) and the CLI (through
// the API while the migration runs). Positions are in the engine's own text
// form; every other field says its unit in its name.
//
// The state store keeps a copy, written every few seconds (StatusBoard's
// caller decides), for `status` when no process runs the migration and for
// the restart position a MySQL target without a restart marker needs; the
// live values never wait for SQLite.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/thread_annotations.h"

namespace midflight {

struct ReplicationStatus {
  // Forward (source -> target).
  std::string source_position;     // the source's write position now
  std::string applied_position;    // every source transaction before it is applied
  std::string confirmed_position;  // what the source was last told is consumed
  std::string received_position;   // every source transaction before it was received
  uint64_t restart_position = 0;   // encoded: where a restarted stream may begin (applied_position)
  uint64_t lag_bytes = 0;
  double lag_seconds = 0;
  uint64_t changes_applied = 0;
  double changes_per_s = 0;
  uint64_t apply_retries = 0;
  bool stream_connected = false;
  // One JSON object per apply partition, as a JSON array (empty before the
  // stream starts): {"partition", "queued_changes" (routed, not applied),
  // "lag_seconds" (its oldest source transaction not applied; 0: none)};
  // through Kafka also "end_offset", "producer_lag_messages",
  // "producer_lag_seconds"; with apply workers also "worker",
  // "worker_seen_s", "applied_offset", "consumer_lag_messages",
  // "consumer_lag_seconds".
  std::string partitions_json;
  // Reverse (target -> source), once a write switch started it.
  bool reverse_running = false;
  std::string reverse_applied_position;
  uint64_t reverse_lag_bytes = 0;
  double reverse_lag_seconds = 0;
  uint64_t reverse_changes_applied = 0;
  // Changes that arrived on the side the applications no longer write to
  // (not midflight's own), since the first write switch: an application
  // instance still writes there.
  uint64_t old_side_writes = 0;
  // The proxy, when there is one.
  int64_t proxy_clients = 0;
  int64_t proxy_transactions_source = 0, proxy_transactions_target = 0;
  int64_t published_us = 0;  // when it was published (Unix microseconds); 0: never

  // The state store's keys and values for this status (what older readers
  // and `status` without a running process read).
  std::vector<std::pair<std::string, std::string>> ToStore() const;
  // Back from the state store's key-value map (missing or malformed keys
  // stay zero).
  template <typename Lookup>
  static ReplicationStatus FromStore(const Lookup& get);
};

// The latest status of one migration. Thread-safe.
class StatusBoard {
 public:
  void Publish(ReplicationStatus status) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    latest_ = std::move(status);
  }
  // The latest status published, if one was published at or after
  // `since_us` (Unix microseconds).
  std::optional<ReplicationStatus> Latest(int64_t since_us) const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (!latest_ || latest_->published_us < since_us) return std::nullopt;
    return latest_;
  }

 private:
  mutable Mutex mu_;
  std::optional<ReplicationStatus> latest_ GUARDED_BY(mu_);
};

}  // namespace midflight

#include "control/status_inl.h"
