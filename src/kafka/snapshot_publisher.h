// The snapshot copy's rows published to Kafka (transport.publish_snapshot):
// a CopyPublisher (core/copy.h) the copy workers feed, so a reader of the
// change topic from offset zero (`midflight replay --from-offset earliest`)
// rebuilds a target, and outside consumers of the table topics get
// Debezium's read events.
//
//   copy worker ─Begin(chunk)─► [reset record in every partition, when re-copied] ─┐
//               ─Row(values)──► change topic, partition Route(key): "read" record  ├─► idempotent producer
//                               table topic (registry), same partition: op r event ┘   (acks=all, gapless)
//               ─Flush()──────► waits for the chunk's acknowledgements; only then
//                               the copier commits the chunk's target transaction
//
// Ordering (why a replay from zero rebuilds the target; src/kafka/README.md
// says it at length): a row copied from a snapshot at S holds every change
// before S and the stream's changes of its key before S are dropped by the
// snapshot filter; the stream is produced only after the copy, so in the
// key's partition its read record precedes each of its changes. A chunk
// copied again from a newer snapshot after a crash (its records were
// acknowledged, its target commit was lost) is preceded by a reset record in
// every partition: the reader deletes the rows of the chunk's range that
// route to its partition, so a row the older attempt carried and the source
// deleted between the two snapshots does not survive the replay. A table not
// split by key value is copied again whole: one reset of the whole table per
// run, before any of its rows.
//
// Thread-safety: Begin and Finish from any thread; a ChunkPublication from
// the thread that began it. mu_ guards the byte budget, the chunks'
// acknowledgement counts and errors, the table topics and the last row.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "base/status.h"
#include "control/transport_spec.h"
#include "core/copy.h"

namespace midflight::kafka {

struct SnapshotPublisherOptions {
  std::string brokers;
  std::string topic;        // the change topic, with `partitions` partitions
  std::string source_name;  // the migration's name
  std::string topic_prefix = "midflight";
  std::string schema_registry;  // empty: no table topics
  uint32_t partitions = 1;
  size_t max_message_bytes = 1000000;
  size_t producer_budget_bytes = 64u << 20;
  std::map<std::string, std::string> settings;
  std::chrono::milliseconds open_timeout{15000};
  // An earlier run of this migration may have published chunks it did not
  // commit: every chunk (every table not split by key value) gets a reset first.
  bool republish = false;
};

// Connects and checks the change topic's partition count (errors as
// OpenKafkaPartitionLog's).
Result<std::unique_ptr<CopyPublisher>> OpenSnapshotPublisher(SnapshotPublisherOptions options);

SnapshotPublisherOptions SnapshotPublisherOptionsOf(const TransportSpec& transport, const std::string& migration,
                                                    uint32_t partitions, bool republish);

}  // namespace midflight::kafka
