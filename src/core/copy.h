// The snapshot copy's plan and progress, shared by every engine's copier.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "base/status.h"
#include "core/position.h"
#include "core/schema.h"
#include "core/value.h"

namespace midflight {

struct Chunk {
  TableId table;
  int number = 0;
  enum class Kind : uint8_t { kWhole, kIntRange, kPageRange } kind = Kind::kWhole;
  std::optional<int64_t> lo, hi;  // kIntRange: values; kPageRange: pages; nullopt = unbounded
};

// Per-table progress, updated by the workers, read by the status writer.
struct TableProgress {
  std::atomic<int64_t> rows{0};
  std::atomic<int64_t> bytes{0};
  std::atomic<int> chunks_done{0};
  int chunks_total = 0;
};
using CopyProgress = std::map<TableId, std::unique_ptr<TableProgress>>;

// The copy's rows published where others read the stream (Kafka's topics
// with transport.publish_snapshot: kafka/snapshot_publisher.h), so a reader
// can rebuild a target from the beginning. One ChunkPublication per chunk
// attempt, used by the copy worker's thread only; the publisher is shared by
// every worker. THE RULE: a chunk's target transaction (its midflight.chunks
// row) commits only after Flush returned Ok: nothing is recorded copied
// before its records are durable where they are read.
class ChunkPublication {
 public:
  virtual ~ChunkPublication() = default;
  // One row of the chunk, in the table's writable column order, in the
  // source's text form. May block on the producer's memory budget.
  virtual Status Row(std::vector<Datum> values) = 0;
  // Waits until every record of this publication is acknowledged; an error
  // when one failed (the chunk must not commit; a retry begins a new one).
  virtual Status Flush() = 0;
  // The chunk's target transaction committed (its last row may become the
  // snapshot's "last" event: CopyPublisher::Finish).
  virtual void Committed() = 0;
};

class CopyPublisher {
 public:
  virtual ~CopyPublisher() = default;
  // Chunk `c` of `table` is about to be copied from the snapshot at
  // `snapshot`. When the chunk (or, for a table not split by key value, the
  // table) may hold records of an earlier attempt from an older snapshot, a
  // reset record goes first (kafka/README.md says why). Any worker thread.
  virtual Result<std::unique_ptr<ChunkPublication>> Begin(const std::shared_ptr<const TableSchema>& table,
                                                          const Chunk& c, Position snapshot) = 0;
  // Every chunk is copied: marks the end of the snapshot for outside
  // consumers (Debezium's source.snapshot "last") and waits for Kafka.
  virtual Status Finish() = 0;
};

}  // namespace midflight
