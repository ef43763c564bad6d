// One direction of PostgreSQL replication inside a migration: a change stream
// from one server's slot, routed to N partitions, applied by N appliers on the
// other server. The forward flow (source -> target) runs from the copy's end to
// `complete`; the reverse flow (target -> source) runs from the first write
// switch to `complete`, so a rollback loses nothing.
//
//   from: slot ─► ChangeStream ─► Router ─► PartitionLog[p] ─► Applier[p] ─► to
//
// Each applier session applies as replication origin `<origin_prefix><p>`, and
// each stream skips transactions whose origin starts with
// `skip_origin_prefix` (midflight_<name>_): what one flow applied is never
// sent back by the other.
//
// Thread-safety: Start/Stop from one thread; the getters and QueueRepairs from
// any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "core/position.h"
#include "core/schema.h"
#include "pipeline/router.h"
#include "control/runtime.h"

namespace midflight {

struct FlowConfig {
  std::string label;     // "forward" or "reverse", for messages
  std::string from_uri;  // server whose slot is read
  std::string to_uri;    // server the changes are applied to
  std::string slot, publication;
  std::string checkpoint_key;      // migration name in the to-side midflight.checkpoints
  std::string origin_prefix;       // appliers' origin names: <prefix><partition>
  std::string skip_origin_prefix;  // stream skips transactions from these origins
  std::map<TableId, std::shared_ptr<const TableSchema>> tables;  // as the from side has them
  uint32_t partitions = 4;
  MigrationRuntime* runtime = nullptr;  // knobs, throttle board, apply rate
  int64_t partition_log_mb = 64;
  SnapshotFilter filter;  // forward: what the copy holds; reverse: empty
};

struct FlowMetrics {
  uint64_t applied_through = 0;  // every from-side transaction committed before this is applied
  uint64_t received = 0, confirmed = 0;
  uint64_t changes_applied = 0, retries = 0, skipped = 0;
  double lag_seconds = 0;  // age of the oldest transaction not applied yet
  bool connected = false;
};

class PgFlow {
 public:
  static Result<std::unique_ptr<PgFlow>> Start(FlowConfig config);
  ~PgFlow();

  // Stops the stream, then the appliers (each finishes its batch). Idempotent.
  void Stop();
  // The first error of the stream or an applier (Ok while healthy).
  Status health() const;
  FlowMetrics metrics() const;
  uint64_t AppliedThrough() const;
  // Asks the from-server for a keepalive now (makes an idle stream's position current).
  void Poke();
  // Changes to apply in key order after everything routed so far (verify
  // --repair). Returns the RepairsRouted() value that means they are routed.
  uint64_t QueueRepairs(std::vector<Change> changes);
  uint64_t RepairsRouted() const;
  const FlowConfig& config() const { return config_; }

 private:
  explicit PgFlow(FlowConfig config);
  struct Impl;
  FlowConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace midflight
