// The partition log as a Kafka topic: partition p of the log is partition p
// of the migration's change topic (<topic_prefix>.<name>.changes), which
// must have exactly the migration's partition count. The router and the
// appliers see only PartitionLog (pipeline/partition_log.h).
//
//   Router ─Append(p)─► idempotent producer ─► topic partition p ─► consumer p ─Poll(p)─► Applier p
//                       (acks=all, gapless;    (key: the key columns;      (assigned, no group;
//                        Append blocks while    value: change_codec.h,      starts at the end offset
//                        unacknowledged bytes   tombstone after a delete)   the partition had at Open)
//                        exceed the budget)
//
// THE CORRECTNESS RULE. The source is told a position is consumed only when
// every change up to it is durable where it will be read from. Here that
// place is the target, not Kafka:
//  - The Flow confirms to the source only what every applier has committed
//    on the target with its checkpoint, in one transaction (unchanged from
//    the memory log). A change an applier committed was read from Kafka, so
//    Kafka had acknowledged it; nothing the source forgets is only in Kafka.
//  - On a restart the source resends from its confirmed position, which is at
//    or before the lowest checkpoint; the router appends again every change
//    past each partition's checkpoint (pipeline/routed_log.h). So every change
//    the appliers still need is produced again by this run, after the end
//    offset the consumers start from: each partition is read from an offset
//    no later than the first change after its checkpoint.
//  - What the earlier run left in the topic past that point is never read
//    (it is produced again). A message of the earlier run that lands after
//    the end offset was taken (in flight when the process died) carries the
//    earlier run's id and Poll drops it. Within a run, Poll drops a change at
//    or below the last position it delivered for the partition, and the
//    applier one at or below its checkpoint.
//  - A message Kafka fails to take (an error after retries) stops the log:
//    Append and Poll return the error from then on, so no applier commits a
//    change that follows a lost one (enable.gapless.guarantee makes
//    librdkafka fail the producer rather than leave a gap). The flow stops,
//    and a restart resends from the target's checkpoints.
// The topic is therefore a durable, inspectable copy of the stream for other
// consumers, not yet the point of recovery.
//
// TABLE TOPICS (with a schema registry). Each change is also produced, as
// Debezium's Avro event (kafka/avro_codec.h), to its table's topic
// <prefix>.<schema>.<table>, partition p for router partition p, before its
// change-topic message. Partition p of a table topic thus holds a key's
// changes in the source's order, as the change topic does (a key change
// is a delete and an insert, each routed by its own key: the Sequencer).
// The same rule covers them: Poll does not deliver a change while the
// table-topic message of its partition at or before it is unacknowledged,
// so nothing the source is told to forget is missing from a table topic; a
// failed one stops the log like a failed change-topic message. After a
// restart the changes past the target's checkpoints are produced again:
// outside consumers see at-least-once, in order per key (as from Debezium).
// BARRIERS (a truncate; a key move carrying unchanged TOAST values) are
// applied by the sequencer outside the log; AppendBarrier publishes them
// first and waits for Kafka's acknowledgement: a record in every partition
// of the change topic (Poll drops it; a replay applies it once every
// partition reached it), and on the table topics a truncate event in every
// partition, a key move as delete + tombstone + create (src/kafka/README.md).
// Why not let the appliers read the table topics: an applier would have to
// merge partition p of every table topic by source position, and a quiet
// table's partition would hold the merge back with no way to tell "nothing
// yet" from "not yet fetched"; the change topic keeps one ordered stream per
// applier, and the table topics are the format for everyone else. Replaying from any offset and
// apply workers on other machines need the (topic, partition, offset) kept in
// the target's checkpoint instead (issue 12; src/kafka/README.md).
//
// Thread-safety: Append from the router thread only, Poll(p) from applier p
// only, Close from any thread. Constant after Open: the options, the client
// handles, the partition count. mu_ guards the table refs, the unacknowledged
// byte count and the first error; last_[p] belongs to applier p.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "base/status.h"
#include "control/transport_spec.h"
#include "pipeline/partition_log.h"

typedef struct rd_kafka_s rd_kafka_t;  // librdkafka/rdkafka.h
typedef struct rd_kafka_conf_s rd_kafka_conf_t;

namespace midflight::kafka {

struct KafkaLogOptions {
  std::string brokers;      // bootstrap.servers
  std::string topic;        // must exist with `partitions` partitions (or be auto-created so)
  std::string source_name;  // source.name of every envelope: the migration's name
  std::string topic_prefix = "midflight";  // table topics: <prefix>.<schema>.<table>
  std::string schema_registry;             // empty: no table topics
  uint32_t partitions = 1;
  size_t max_message_bytes = 1000000;             // a larger encoded change stops the stream, naming it
  size_t producer_budget_bytes = 64u << 20;       // Append blocks while this much is unacknowledged
  size_t consumer_buffer_bytes = 16u << 20;       // prefetched per partition
  std::map<std::string, std::string> settings;    // librdkafka properties for every client
  std::chrono::milliseconds open_timeout{15000};  // metadata and offsets at Open
  // transport apply: workers: no consumer here (Poll is never called); the
  // apply workers read the topic (kafka/apply_worker.h).
  bool produce_only = false;
};

// Connects, checks the topic's partition count and takes each partition's
// end offset, where its consumer starts. Errors: RetryCall when the brokers
// do not answer within open_timeout; OperatorError for a bad setting or a
// topic whose partition count differs (naming both counts).
Result<std::unique_ptr<PartitionLog>> OpenKafkaPartitionLog(KafkaLogOptions options);

// Sets every setting of `kv` on `conf`, and midflight's log callback
// (librdkafka's messages in midflight's log); OperatorError naming a setting
// librdkafka refuses.
Status SetAll(rd_kafka_conf_t* conf, const std::map<std::string, std::string>& kv);
// Flushes a producer for up to 2 s, drops what is left and destroys it.
void DestroyProducer(rd_kafka_t* producer);
// `name` must exist with exactly `partitions` partitions (one topic partition
// per applier keeps each key's order): OperatorError naming both counts, or
// the topic's error; RetryCall when the brokers give no metadata in `timeout`.
Status CheckTopicPartitions(rd_kafka_t* producer, const std::string& name, uint32_t partitions,
                            const std::string& brokers, std::chrono::milliseconds timeout);

// The factory a Flow uses for `transport: kafka` (FlowOptions::log_factory).
PartitionLogFactory KafkaLogFactory(const TransportSpec& transport, const std::string& migration_name);

}  // namespace midflight::kafka
