// The PostgreSQL change source: pgoutput read over a replication connection
// from the migration's slot, decoded into core Changes and handed to the
// pipeline's Sequencer (pipeline/sequencer.h), which filters, routes and runs
// barriers. The source is acknowledged only up to Sequencer::Confirmable():
// the position every partition holds durably.
//
//   slot ─► XLogData ─► DecodePgOutput ─► Relation layouts, origin filter ─► Sequencer
//   feedback (1/s): flush = Sequencer::Confirmable()
//
// A lost connection (source restart) returns RetryCall and the Flow streams
// again; the server resends from the slot's confirmed position and the
// sequencer drops what was routed already, so nothing is doubled.
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
#include "engines/postgres/pgoutput.h"

namespace midflight::pg {

class PgConn;

struct StreamConfig {
  std::string source_uri;
  std::string slot;
  std::string publication;
  std::map<TableId, std::shared_ptr<const TableSchema>> tables;
  // The table's writable columns on the target (name and type), in order.
  // Every column layout the source sends is checked against it before use.
  std::function<Result<std::vector<ColumnSchema>>(const TableId&)> target_columns;
  // Transactions whose replication origin starts with this are midflight's own
  // applied changes (the other direction's appliers) and are skipped, so
  // forward and reverse replication never loop. Empty: skip nothing.
  std::string skip_origin_prefix;
  std::string application_name = "midflight-stream";
  // Set for a target whose commits are not flushed at once (engines/cross):
  // the position the feedback may confirm, given what the appliers have
  // committed (Sequencer::Confirmable()). Empty: that position itself.
  std::function<uint64_t(uint64_t committed)> durable;
};

class ChangeStream final : public ChangeSource {
 public:
  explicit ChangeStream(StreamConfig config);
  ~ChangeStream() override;
  Status Stream(Sequencer& seq, StopRef stop) override;
  void Prepare() override;
  void Poke() override { poke_ = true; }

 private:
  Status Handle(Sequencer& seq, std::span<const uint8_t> payload);
  Status SendFeedback(Sequencer& seq, bool force);
  // The schema version for a Relation message's column layout, checked
  // against the target's columns the first time it is seen.
  Result<std::shared_ptr<const TableSchema>> LayoutFor(const PgRelation& rel, const TableSchema& base);

  StreamConfig config_;
  struct Relation {
    std::shared_ptr<const TableSchema> table;  // null: not migrated
  };
  // Stream thread only.
  std::map<uint32_t, Relation> relations_;
  std::map<TableId, std::vector<std::shared_ptr<const TableSchema>>> layouts_;
  void* conn_ = nullptr;  // PGconn* of the replication connection
  std::unique_ptr<PgConn> prepared_;  // Prepare's connection, taken by the first Stream
  bool skip_txn_ = false;  // the current transaction is midflight's own (origin filter)
  PgLsn txn_lsn_;
  int64_t last_feedback_ms_ = 0;
  // Set by any thread to ask the server for a keepalive now (its position
  // shows how far the server has decoded).
  std::atomic<bool> poke_{false};
};

}  // namespace midflight::pg
