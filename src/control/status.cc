#include "control/status.h"

#include <fmt/format.h>

namespace midflight {

std::vector<std::pair<std::string, std::string>> ReplicationStatus::ToStore() const {
  std::vector<std::pair<std::string, std::string>> kv = {
      {"source_lsn", source_position},
      {"applied_lsn", applied_position},
      {"confirmed_lsn", confirmed_position},
      {"received_lsn", received_position},
      {"restart_pos", std::to_string(restart_position)},
      {"lag_bytes", std::to_string(lag_bytes)},
      {"lag_seconds", fmt::format("{:.3f}", lag_seconds)},
      {"changes_applied", std::to_string(changes_applied)},
      {"changes_per_s", fmt::format("{:.0f}", changes_per_s)},
      {"apply_retries", std::to_string(apply_retries)},
      {"stream_connected", stream_connected ? "true" : "false"}};
  if (reverse_running) {
    kv.push_back({"reverse_applied_lsn", reverse_applied_position});
    kv.push_back({"reverse_lag_bytes", std::to_string(reverse_lag_bytes)});
    kv.push_back({"reverse_lag_seconds", fmt::format("{:.3f}", reverse_lag_seconds)});
    kv.push_back({"reverse_changes_applied", std::to_string(reverse_changes_applied)});
  }
  if (!partitions_json.empty()) kv.push_back({"partition_status", partitions_json});
  kv.push_back({"old_side_writes", std::to_string(old_side_writes)});
  kv.push_back({"proxy_clients", std::to_string(proxy_clients)});
  kv.push_back({"proxy_transactions_source", std::to_string(proxy_transactions_source)});
  kv.push_back({"proxy_transactions_target", std::to_string(proxy_transactions_target)});
  return kv;
}

}  // namespace midflight
