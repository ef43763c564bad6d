// The MySQL/MariaDB target side of a partition: applies change batches with
// their checkpoint in one transaction over one connection, sending the whole
// transaction as multi-statement packets (one round trip per few MB).
//
// Apply sessions run with foreign_key_checks = 0 (the source already checked
// every replicated row; rows of two tables may arrive on different partitions
// in either order) and the session settings of mysql/my_conn.h (UTC
// time_zone, binary results, no strict-mode rewriting of values).
//
// Statements, per table and batch:
//   inserts and updates   INSERT INTO t (cols) VALUES (..), (..) ON DUPLICATE KEY UPDATE c = VALUES(c), ..
//                         an idempotent upsert of the whole new image (binlog_row_image=FULL)
//   deletes               DELETE FROM t WHERE (k1, k2) IN ((..), (..))
// Generated columns are never written. Values are written as numbers,
// quoted temporal text, or hex strings with the column's charset introducer
// (_utf8mb4 X'..'), so any bytes travel unchanged and key lookups use the index.
#pragma once

#include <memory>
#include <string>

#include "pipeline/applier.h"

namespace midflight::mysql {

class MyConn;

class MyChangeSink final : public ChangeSink {
 public:
  static Result<std::unique_ptr<MyChangeSink>> Open(const std::string& target_uri, const std::string& target_db,
                                                    const std::string& migration, PartitionId partition);
  ~MyChangeSink() override;

  Result<ChangePosition> LoadCheckpoint() override;
  Status ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint) override;
  Status ApplyBarrier(const Change& change, uint32_t partitions) override;
  Status Reconnect() override;

 private:
  MyChangeSink(std::string uri, std::string db, std::string migration, PartitionId p);
  Status Execute(const std::vector<std::string>& statements, const std::vector<std::string>& what);

  std::string uri_, db_, migration_;
  PartitionId partition_;
  std::unique_ptr<MyConn> conn_;
  size_t max_packet_ = 4 << 20;
};

}  // namespace midflight::mysql
