// The MySQL/MariaDB side of the replicate phase and the cutover
// (ReplicationOps, engines/engine.h): the forward binlog flow source ->
// target, the reverse one target -> source primary, positions for the
// switches, AUTO_INCREMENT carried over, clean-up at `complete`.
//
//   forward  binlog of source_replica (or source) ─► MyChangeSink on the target   checkpoints: target midflight.checkpoints, key NAME
//   reverse  binlog of the target                 ─► MyChangeSink on the PRIMARY  checkpoints: source midflight.checkpoints, key NAME/reverse
//
// No loop: every apply session (both directions) runs with MariaDB's
// skip_replication = 1, so its binlog events carry LOG_EVENT_SKIP_REPLICATION_F;
// both readers drop flagged transactions (change_stream.h). The flag survives
// primary -> replica with log_slave_updates as long as the replica keeps
// replicate_events_marked_for_skip = REPLICATE (the default; checked when
// reverse starts), so the forward reader on the replica skips what reverse
// applied on the primary.
//
// Connections: the monitor thread's (CurrentPosition, TablesInScope) are its
// own; the operation's (PrepareSwitch, CommittedPosition, SyncSequences,
// CleanUpOnComplete) and StartFlow's share control_mu_. The primary is
// connected to only for the cutover (CommittedPosition with a replica,
// AUTO_INCREMENT towards the source, reverse replication, clean-up): a
// migration that never switches writes never touches it.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "engines/engine.h"
#include "engines/mysql/binlog_pos.h"
#include "engines/mysql/verify.h"
#include "pipeline/transform_sink.h"

namespace midflight {
struct MigrationSpec;
struct MigrationRuntime;
class StateStore;
}  // namespace midflight

namespace midflight::mysql {

class MyConn;

// SHOW MASTER STATUS on `conn` as a position (binlog_pos.h), or 0 when it
// has none (log_bin off) or cannot be read; the file's base name into *base
// when asked.
uint64_t MasterPosition(MyConn& conn, std::string* base = nullptr);

// The sizes of `conn`'s binlog files (SHOW BINARY LOGS) into `sizes` when
// `current` (its SHOW MASTER STATUS position) is in another file than at the
// last read; a failed read leaves them as they were.
void RefreshBinlogSizes(MyConn& conn, uint64_t current, BinlogSizes& sizes);

struct ReplicationSetup {
  const MigrationSpec* spec = nullptr;
  StateStore* store = nullptr;
  MigrationRuntime* runtime = nullptr;
  std::string reader_uri;          // the server the forward flow reads (the replica when there is one)
  std::string source_db, target_db;
  std::map<TableId, TablePtr> tables;  // the migrated tables as the source has them (after Preflight)
  // The spec's transforms by source table (core/transform.h; never null):
  // the forward flow applies them, the reverse one their inverses
  // (refused, at the switch's gates, for a transform that has none).
  std::shared_ptr<const TransformMap> transforms = std::make_shared<TransformMap>();
  // Verifies the transformed tables through their transforms (verify.h); unset: they are named as not verified.
  VerifyReshaped verify_reshaped;
};

// The ReplicationOps of one run (after Preflight). FormatPosition formats a
// position of the side's binlog ("binlog.000012:4711").
class MyReplicationOps : public ReplicationOps {
 public:
  static std::unique_ptr<MyReplicationOps> New(ReplicationSetup setup);
  virtual std::string FormatPosition(uint64_t pos) const = 0;
};

}  // namespace midflight::mysql
