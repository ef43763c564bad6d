// The change stream for MySQL/MariaDB sources: the binlog read over a
// replication connection (COM_BINLOG_DUMP through Connector/C's mariadb_rpl
// API, used for transport only), decoded by binlog_event.h, turned into core
// Changes, filtered (already copied), and routed to the partition log.
//
//   binlog ─► ParseEvent ─► GTID (transaction start) / TABLE_MAP / ROWS / XID / QUERY
//          ─► Changes (a key-moving update is a delete plus an insert)
//          ─► SnapshotFilter ─► Router ─► PartitionLog[p]
//
// Positions: a change's ChangePosition::commit_lsn is its transaction's
// starting binlog position (binlog_pos.h); a restart resumes at the start of
// the oldest transaction some partition has not applied (RestartPosition), and
// the per-partition "last routed" positions drop what was applied already.
//
// Schema changes: a DDL statement (QUERY event) naming a migrated table stops
// the stream once everything before it is applied, with the statement in the
// message, unless the target's columns already match the source's (the
// operator applied it, then ran again). TRUNCATE is applied by midflight (as a
// barrier across partitions).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "core/change.h"
#include "pipeline/applier.h"
#include "pipeline/apply_tracker.h"
#include "pipeline/partition_log.h"
#include "pipeline/routed_log.h"
#include "pipeline/router.h"

namespace midflight::mysql {

struct StreamStats {
  std::atomic<uint64_t> received_pos{0};  // every transaction that starts before this was received whole
  std::atomic<uint64_t> changes{0};       // changes routed
  std::atomic<bool> connected{false};
};

struct StreamConfig {
  std::string source_uri;   // the server whose binlog is read (the replica when there is one)
  std::string binlog_base;  // "binlog": file names are <base>.000001 ...
  uint64_t start_pos = 0;   // a transaction start (binlog_pos.h encoding)
  uint32_t server_id = 0;   // the replica server id midflight registers with
  std::map<TableId, std::shared_ptr<const TableSchema>> tables;
  // Whether the target's columns for `table` match the source's current ones
  // (names and types), after a DDL statement. Returns a description of the
  // first difference, or "" when they match.
  std::function<Result<std::string>(const TableId&)> target_differs;
  // Re-reads a table's schema from the source after a DDL statement.
  std::function<Result<std::shared_ptr<const TableSchema>>(const TableId&)> reload_table;
};

class ChangeStream {
 public:
  // `checkpoints[p]` is partition p's durable checkpoint at start.
  ChangeStream(StreamConfig config, Router router, SnapshotFilter filter, PartitionLog* log, ApplyTracker* tracker,
               ChangeSink* barrier_sink, std::vector<ChangePosition> checkpoints, StreamStats* stats);
  ~ChangeStream();

  // Streams until `stop` is set (returns Ok) or a persistent error.
  Status Run(const std::atomic<bool>& stop);

 private:
  struct State;
  Status StreamOnce(const std::atomic<bool>& stop);
  Status HandleEvent(std::string_view bytes);
  Status HandleQuery(const std::string& schema, const std::string& query);
  Status Emit(Change change);
  Status WaitApplied();

  StreamConfig config_;
  SnapshotFilter filter_;
  ApplyTracker* tracker_;
  ChangeSink* barrier_sink_;
  RoutedLog routed_;
  StreamStats* stats_;
  std::unique_ptr<State> state_;
  const std::atomic<bool>* stop_ = nullptr;
};

// Where a restarted stream must begin: the start of the oldest transaction
// some partition still holds, else the end of the last one received.
uint64_t RestartPosition(const ApplyTracker& tracker, uint64_t received_pos);

}  // namespace midflight::mysql
