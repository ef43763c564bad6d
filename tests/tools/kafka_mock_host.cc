// Serves librdkafka's mock cluster (kafka/mock_cluster.h) to other processes
// over TCP, for tests on a machine without Kafka.
//
//   kafka_mock_host BROKERS [TOPIC:PARTITIONS]...
//
// Starts BROKERS mock brokers on loopback, creates each topic with its
// partition count, prints the bootstrap address on one line and stays up
// until stdin closes or it is killed. The mock keeps about 5 MiB per
// partition in memory: keep test messages small.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kafka/mock_cluster.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: kafka_mock_host BROKERS [TOPIC:PARTITIONS]...\n");
    return 2;
  }
  auto mc = midflight::kafka::MockCluster::Start(std::atoi(argv[1]));
  if (!mc.ok()) {
    std::fprintf(stderr, "kafka_mock_host: %s\n", mc.status().ToString().c_str());
    return 1;
  }
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    size_t colon = arg.rfind(':');
    if (colon == std::string::npos) {
      std::fprintf(stderr, "kafka_mock_host: '%s' is not TOPIC:PARTITIONS\n", argv[i]);
      return 2;
    }
    if (auto st = (*mc)->CreateTopic(arg.substr(0, colon), std::atoi(arg.c_str() + colon + 1)); !st.ok()) {
      std::fprintf(stderr, "kafka_mock_host: %s\n", st.ToString().c_str());
      return 1;
    }
  }
  std::printf("%s\n", (*mc)->bootstraps().c_str());
  std::fflush(stdout);
  char buf[256];
  while (std::fgets(buf, sizeof buf, stdin)) {
  }
  return 0;
}
