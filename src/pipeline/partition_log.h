// The partition log: N ordered, bounded queues of changes between the router
// and the appliers. The router appends each change to the partition its key
// hashes to; applier p reads partition p only. Implementations: in memory
// (NewMemoryPartitionLog, the embedded default) and a Kafka topic with N
// partitions (kafka/kafka_partition_log.h). Router and appliers see only
// this interface; a Flow gets its log from a PartitionLogFactory.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "base/status.h"
#include "core/change.h"

namespace midflight {

struct PartitionId {
  uint32_t value = 0;
  auto operator<=>(const PartitionId&) const = default;
};

// Whether the sequencer applies this change at a barrier (AppendBarrier
// below) rather than through a partition: a truncate, or a key move that
// carries unchanged TOAST values (pipeline/sequencer.h). Readers of a log
// that records barriers (Kafka's change topic) skip these records.
inline bool IsBarrierChange(const Change& c) {
  return c.kind == ChangeKind::kTruncate ||
         (c.kind == ChangeKind::kUpdate && c.MovesKey() && c.HasUnchangedValues());
}

class PartitionLog {
 public:
  virtual ~PartitionLog() = default;
  virtual uint32_t partitions() const = 0;
  // Appends in order. Blocks while partition p is full (bounded memory).
  // Thread: the router only. Returns Cancelled once Close() was called.
  virtual Status Append(PartitionId p, Change change) = 0;
  // Waits up to `wait` until partition p holds at least `min` changes (or
  // until it holds any, once `wait` has passed), then moves up to `max`
  // changes, in order, to the end of *out; may move none. Thread: applier p
  // only. Returns Cancelled once closed and drained.
  virtual Status Poll(PartitionId p, size_t min, size_t max, std::chrono::milliseconds wait,
                      std::vector<Change>* out) = 0;
  // A barrier (a truncate, a key move carrying unchanged TOAST values: the
  // sequencer applies it once across every partition, outside the log), given
  // after every partition applied what came before it and before it is
  // applied. `route` is the router's partition for a row change. A log that
  // others read (Kafka: src/kafka/README.md) records it there and returns
  // once it is durable, so the source is never told a barrier is consumed
  // before its readers can see it; the appliers never receive it. Default:
  // nothing. Thread: the router only.
  virtual Status AppendBarrier(const Change& barrier, const std::function<PartitionId(const Change&)>& route) {
    (void)barrier;
    (void)route;
    return Status::Ok();
  }
  // Wakes every waiter; later calls return Cancelled.
  virtual void Close() = 0;

  // Producer side of partition p, for status (a log outside the process:
  // Kafka). end_offset: the offset after the last message acknowledged (-1:
  // not known); unacked: messages handed over, not acknowledged yet;
  // oldest_unacked_s: how long the oldest of them has waited.
  struct ProducerStats {
    int64_t end_offset = -1;
    uint64_t unacked = 0;
    double oldest_unacked_s = 0;
  };
  virtual ProducerStats Stats(PartitionId p) const {
    (void)p;
    return {};
  }
};

// In-memory log: each partition holds at most `max_bytes_per_partition` of
// changes (Change::ByteSize); Append blocks above that.
std::unique_ptr<PartitionLog> NewMemoryPartitionLog(uint32_t partitions, size_t max_bytes_per_partition);

// Builds a flow's log of `partitions` partitions, `bytes_per_partition` being
// its memory budget per partition.
using PartitionLogFactory =
    std::function<Result<std::unique_ptr<PartitionLog>>(uint32_t partitions, size_t bytes_per_partition)>;

}  // namespace midflight
