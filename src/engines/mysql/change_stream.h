// The MySQL/MariaDB change source: the binlog read over a replication
// connection (COM_BINLOG_DUMP through Connector/C's mariadb_rpl API, used for
// transport only), decoded by binlog_event.h into core Changes and handed to
// the pipeline's Sequencer (pipeline/sequencer.h), which filters and routes.
//
//   binlog ─► ParseEvent ─► GTID (Begin) / TABLE_MAP / ROWS (Emit) / XID (Commit) / QUERY
//          ─► Sequencer
//
// Positions: a change's ChangePosition::commit_lsn is its transaction's
// starting binlog position (binlog_pos.h); a restart resumes at the start of
// the oldest transaction some partition has not applied
// (Sequencer::Confirmable), and the sequencer drops what was applied already.
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
#include "pipeline/change_source.h"
#include "pipeline/sequencer.h"

namespace midflight::mysql {

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

class ChangeStream final : public ChangeSource {
 public:
  explicit ChangeStream(StreamConfig config);
  ~ChangeStream() override;
  // Streams from seq.Confirmable() (the start of the oldest transaction some
  // partition has not applied), which is config.start_pos at first.
  Status Stream(Sequencer& seq, StopRef stop) override;

 private:
  struct State;
  Status HandleEvent(Sequencer& seq, std::string_view bytes);
  Status HandleQuery(Sequencer& seq, const std::string& schema, const std::string& query);

  StreamConfig config_;
  std::unique_ptr<State> state_;  // stream thread only
};

}  // namespace midflight::mysql
