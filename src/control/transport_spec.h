// The spec's `transport:` section: where the partition logs between the
// router and the appliers live.
//
//   transport:
//     kind: kafka                # or memory (the default: in-process queues)
//     brokers: "host:port,..."   # bootstrap servers
//     topic_prefix: midflight    # the change topic is <prefix>.<migration name>.changes
//     partitions: 8              # optional; the migration's partitions (they must agree)
//     max_message_bytes: 1000000 # a larger encoded change stops the stream, naming it
//     schema_registry: http://registry:8081  # optional: also publish every table's changes as
//                                # Debezium Avro events to <prefix>.<schema>.<table>, with
//                                # their schemas registered there (kafka/README.md)
//     publish_snapshot: false    # true: the copy also produces every copied row (change
//                                # topic: an upsert record; table topics: Debezium's op r
//                                # event), so a reader can rebuild a target from offset zero
//                                # (kafka/snapshot_publisher.h)
//     apply: run                 # or workers: the run process only produces, and
//                                # `midflight apply-worker SPEC` processes (a consumer
//                                # group, any number, any machine) apply (kafka/apply_worker.h)
//     settings:                  # librdkafka properties, passed through (TLS, SASL, ...)
//       security.protocol: SASL_SSL
//       sasl.password: ${KAFKA_PASSWORD}
//
// Secrets stay out of the spec: `${VAR}` in any value (settings included) is
// replaced by the environment variable VAR when the spec is loaded
// (control/spec.h), so `sasl.password: ${KAFKA_PASSWORD}` keeps the password
// in the environment.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"

namespace YAML {
class Node;
}

namespace midflight {

struct TransportSpec {
  enum class Kind : uint8_t { kMemory, kKafka };
  Kind kind = Kind::kMemory;
  std::string brokers;
  std::string topic_prefix = "midflight";
  int partitions = 0;  // 0: the migration's partitions
  int64_t max_message_bytes = 1000000;
  std::string schema_registry;  // empty: no per-table Avro topics
  bool apply_by_workers = false;  // apply: workers (the run process does not apply)
  bool publish_snapshot = false;  // the copy's rows are produced too (op r)
  std::map<std::string, std::string> settings;

  // Preflight refuses a row whose values, as text, exceed this: the change
  // topic's message carries each value twice (the envelope's "after" and
  // midflight's own copy), so half of max_message_bytes (kafka/README.md).
  int64_t max_row_text_bytes() const { return max_message_bytes / 2; }
  // The preflight problem for such a row of `table` ("schema.name").
  std::string OversizedRow(const std::string& table, const std::string& key, int64_t bytes) const;

  // The topic the migration `name`'s changes go to.
  std::string Topic(const std::string& name) const { return topic_prefix + "." + name + ".changes"; }
};

// Parses root["transport"] (absent: memory) into *out. Errors name the field
// ("transport.brokers"). `origin` names the spec file in messages.
Status ParseTransport(const YAML::Node& root, const std::string& origin, TransportSpec* out);

}  // namespace midflight
