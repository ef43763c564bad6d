// ReplicationStatus::FromStore (a template: the lookup is the caller's map).
#pragma once

#include <cstdlib>

#include "base/parse.h"

namespace midflight {

template <typename Lookup>
ReplicationStatus ReplicationStatus::FromStore(const Lookup& get) {
  auto u64 = [&](const char* k) {
    uint64_t v = 0;
    return ParseU64(get(k), &v) ? v : 0;
  };
  auto i64 = [&](const char* k) {
    int64_t v = 0;
    return ParseI64(get(k), &v) ? v : 0;
  };
  auto real = [&](const char* k) {
    const std::string s = get(k);
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    return end && *end == '\0' && !s.empty() ? v : 0.0;
  };
  ReplicationStatus r;
  r.source_position = get("source_lsn");
  r.applied_position = get("applied_lsn");
  r.confirmed_position = get("confirmed_lsn");
  r.received_position = get("received_lsn");
  r.restart_position = u64("restart_pos");
  r.lag_bytes = u64("lag_bytes");
  r.lag_seconds = real("lag_seconds");
  r.changes_applied = u64("changes_applied");
  r.changes_per_s = real("changes_per_s");
  r.apply_retries = u64("apply_retries");
  r.stream_connected = get("stream_connected") == "true";
  r.reverse_applied_position = get("reverse_applied_lsn");
  r.reverse_running = !r.reverse_applied_position.empty();
  r.reverse_lag_bytes = u64("reverse_lag_bytes");
  r.reverse_lag_seconds = real("reverse_lag_seconds");
  r.reverse_changes_applied = u64("reverse_changes_applied");
  r.partitions_json = get("partition_status");
  r.old_side_writes = u64("old_side_writes");
  r.proxy_clients = i64("proxy_clients");
  r.proxy_transactions_source = i64("proxy_transactions_source");
  r.proxy_transactions_target = i64("proxy_transactions_target");
  r.published_us = i64("heartbeat");
  return r;
}

}  // namespace midflight
