#include "kafka/mock_cluster.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

namespace midflight::kafka {

struct MockCluster::Impl {
  rd_kafka_t* rk = nullptr;
  rd_kafka_mock_cluster_t* mc = nullptr;
};

Result<std::unique_ptr<MockCluster>> MockCluster::Start(int brokers) {
  std::unique_ptr<MockCluster> m(new MockCluster());
  m->impl_ = std::make_unique<Impl>();
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  m->impl_->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!m->impl_->rk) {
    rd_kafka_conf_destroy(conf);
    return Internal(fmt::format("kafka mock cluster: {}", err));
  }
  m->impl_->mc = rd_kafka_mock_cluster_new(m->impl_->rk, brokers);
  if (!m->impl_->mc) return Internal("kafka mock cluster: cannot start");
  return m;
}

MockCluster::~MockCluster() {
  if (impl_->mc) rd_kafka_mock_cluster_destroy(impl_->mc);
  if (impl_->rk) rd_kafka_destroy(impl_->rk);
}

Status MockCluster::CreateTopic(const std::string& topic, int partitions) {
  rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(impl_->mc, topic.c_str(), partitions, 1);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return Internal(fmt::format("kafka mock cluster: topic {}: {}", topic, rd_kafka_err2str(e)));
  return Status::Ok();
}

std::string MockCluster::bootstraps() const {
  return rd_kafka_mock_cluster_bootstraps(impl_->mc);
}

}  // namespace midflight::kafka
