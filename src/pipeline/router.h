// Router: which partition a change goes to, and whether the snapshot copy
// already holds it.
//
//   change ──► SnapshotFilter: copied already? ──yes──► dropped
//                    │ no
//                    ▼
//              Router::Route ──► hash(table, key) % N   (RoutingMode::kByKey)
//                            └─► hash(table) % N        (RoutingMode::kByTable)
//
// Every change of one key (and, for kByTable tables, of one table) lands on
// one partition, in stream order: invariant 1 of DESIGN.md. N is fixed for a
// migration run.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "core/change.h"
#include "pipeline/partition_log.h"

namespace midflight {

class Router {
 public:
  explicit Router(uint32_t partitions) : partitions_(partitions) {}
  PartitionId Route(const Change& change) const;
  uint32_t partitions() const { return partitions_; }

 private:
  uint32_t partitions_;
};

// Which changes the snapshot copy already contains. A chunk copied from a
// snapshot taken at LSN S contains every transaction that committed before S
// (commit LSN < S) and none after. Normally every chunk shares the one
// snapshot of the replication slot, so the filter drops nothing: the stream
// starts exactly there. After a crash during the copy, the remaining chunks
// are copied from a newer snapshot, and the stream (which restarts at the
// slot's position) must skip, for rows in those chunks, the transactions the
// newer snapshot already holds.
class SnapshotFilter {
 public:
  // Every row of `table` was copied from a snapshot at `snapshot`.
  void AddTable(const TableId& table, Position snapshot);
  // Rows of `table` whose integer chunk column lies in [lo, hi) (nullopt: unbounded)
  // were copied from a snapshot at `snapshot`.
  void AddRange(const TableId& table, std::optional<int64_t> lo, std::optional<int64_t> hi,
                Position snapshot);
  // True when the copy already holds this change (the applier must not apply it).
  bool AlreadyCopied(const Change& change) const;
  // Past this LSN no change is filtered: the caller may stop consulting the filter.
  Position horizon() const { return horizon_; }

 private:
  struct Range {
    std::optional<int64_t> lo, hi;
    Position snapshot;
  };
  Position SnapshotFor(const TableSchema& table, const std::vector<Datum>& image) const;
  // The oldest snapshot any row of `table` was copied from (zero if unknown).
  Position OldestSnapshot(const TableId& table) const;
  std::map<TableId, Position> tables_;
  std::map<TableId, std::vector<Range>> ranges_;
  Position horizon_;
};

}  // namespace midflight
