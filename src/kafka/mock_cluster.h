// librdkafka's mock cluster (rdkafka_mock.h: a Kafka-protocol broker in
// process, on loopback TCP ports) for tests: the closest thing to a broker
// this project can run. Experimental in librdkafka, without an ABI promise:
// used by tests and tests/tools only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"

namespace midflight::kafka {

class MockCluster {
 public:
  // Starts `brokers` brokers.
  static Result<std::unique_ptr<MockCluster>> Start(int brokers);
  ~MockCluster();
  // Creates `topic` with `partitions` partitions (the mock cannot serve
  // CreateTopics and auto-creates topics with 4).
  Status CreateTopic(const std::string& topic, int partitions);
  // "127.0.0.1:port,..."
  std::string bootstraps() const;

 private:
  MockCluster() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace midflight::kafka
