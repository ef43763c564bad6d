// One direction of PostgreSQL replication inside a migration: the pipeline's
// Flow (pipeline/flow.h) with a pgoutput change source reading one server's
// slot and PgChangeSinks applying on the other server. The forward flow (source -> target) runs from the copy's end to
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
#include "control/runtime.h"
#include "pipeline/flow.h"
#include "pipeline/router.h"
#include "pipeline/transform_sink.h"

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
  // Forward: the spec's transforms by source table; each sink rewrites their
  // changes into the target's shape (pipeline/transform_sink.h). Null: none.
  std::shared_ptr<const TransformMap> transforms;
  uint32_t partitions = 4;
  MigrationRuntime* runtime = nullptr;  // knobs, throttle board, apply rate
  int64_t partition_log_mb = 64;
  SnapshotFilter filter;  // forward: what the copy holds; reverse: empty
  PartitionLogFactory log_factory;  // empty: in memory
  bool external_apply = false;      // apply workers apply (FlowOptions::external_apply)
};

// Starts the flow `config` describes.
Result<std::unique_ptr<Flow>> StartPgFlow(const FlowConfig& config);

}  // namespace midflight
