#include "kafka/snapshot_publisher.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "base/log.h"
#include "base/thread_annotations.h"
#include "kafka/avro_codec.h"
#include "kafka/change_codec.h"
#include "kafka/kafka_partition_log.h"
#include "kafka/schema_registry.h"
#include "pipeline/router.h"

namespace midflight::kafka {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One chunk attempt's records not acknowledged yet, and the first failure.
struct Outstanding {
  uint64_t count = 0;
  Status error;
};

struct Pending {
  size_t size = 0;
  std::shared_ptr<Outstanding> owner;
};

class Publisher;

class Publication final : public ChunkPublication {
 public:
  Publication(Publisher* pub, std::shared_ptr<const TableSchema> table, Chunk chunk, Position snapshot,
              std::shared_ptr<Outstanding> out)
      : pub_(pub), table_(std::move(table)), chunk_(std::move(chunk)), snapshot_(snapshot), out_(std::move(out)) {}
  Status Row(std::vector<Datum> values) override;
  Status Flush() override;
  void Committed() override;

 private:
  Publisher* pub_;
  std::shared_ptr<const TableSchema> table_;
  Chunk chunk_;
  Position snapshot_;
  std::shared_ptr<Outstanding> out_;
  std::optional<Change> last_;  // the chunk's last row so far
};

class Publisher final : public CopyPublisher {
 public:
  explicit Publisher(SnapshotPublisherOptions o) : o_(std::move(o)), router_(o_.partitions) {
    if (!o_.schema_registry.empty()) registry_ = std::make_unique<SchemaRegistry>(o_.schema_registry);
  }

  ~Publisher() override {
    closed_ = true;
    {
      MutexLock lock(&mu_);
      space_.NotifyAll();
    }
    if (poller_.joinable()) poller_.join();
    // What is not acknowledged was not committed on the target either: the
    // chunk is copied (and published) again by the next run.
    if (producer_) DestroyProducer(producer_);
  }

  Status Open() {
    char err[512];
    std::map<std::string, std::string> set = {{"bootstrap.servers", o_.brokers},
                                              {"client.id", "midflight-snapshot-" + o_.source_name},
                                              {"message.timeout.ms", "0"},
                                              {"linger.ms", "5"}};
    set["message.max.bytes"] = std::to_string(std::min<size_t>(o_.max_message_bytes + 65536, 1000000000));
    set["queue.buffering.max.kbytes"] = std::to_string(std::max<size_t>(o_.producer_budget_bytes / 1024 * 2, 1024));
    for (const auto& kv : o_.settings) set[kv.first] = kv.second;
    set["enable.idempotence"] = "true";
    set["acks"] = "all";
    set["enable.gapless.guarantee"] = "true";
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    if (Status st = SetAll(conf, set); !st.ok()) {
      rd_kafka_conf_destroy(conf);
      return st;
    }
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, &Publisher::OnDelivery);
    rd_kafka_conf_set_error_cb(conf, &Publisher::OnError);
    producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!producer_) {
      rd_kafka_conf_destroy(conf);
      return OperatorError(fmt::format("kafka producer: {}", err));
    }
    poller_ = std::thread([this] {
      while (!closed_) rd_kafka_poll(producer_, 100);
    });
    return CheckPartitions(o_.topic);
  }

  Result<std::unique_ptr<ChunkPublication>> Begin(const std::shared_ptr<const TableSchema>& table, const Chunk& c,
                                                  Position snapshot) override {
    auto out = std::make_shared<Outstanding>();
    if (o_.republish) {
      // One reset per chunk range; for a table not split by value, one for
      // the whole table, before any of its chunks' rows (all of them are
      // copied again in this run: PrepareCopy).
      const bool by_value = c.kind == Chunk::Kind::kIntRange && table->IntegerChunkColumn();
      const std::string what = by_value ? fmt::format("{}#{}", table->id.ToString(), c.number) : table->id.ToString();
      MutexLock lock(&reset_mu_);  // one reset at a time: the same order in every partition
      if (!reset_.count(what)) {
        ChunkReset r;
        r.table = table->id;
        r.chunk = by_value ? c.number : -1;
        if (by_value) {
          r.column = table->columns[*table->IntegerChunkColumn()].name;
          r.lo = c.lo;
          r.hi = c.hi;
        }
        r.snapshot = snapshot.value();
        EncodedChange m = EncodeChunkReset(r, run_, o_.source_name);
        for (uint32_t p = 0; p < o_.partitions; ++p) RETURN_IF_ERROR(Produce(o_.topic, p, &m.key, &m.value, out));
        reset_.insert(what);
        LOG_INFO("kafka: {} copied again from the snapshot at {}: reset record{} in every partition of {}", what,
                 snapshot.ToString(), by_value ? " of its range" : " of the whole table", o_.topic);
      }
    }
    return std::unique_ptr<ChunkPublication>(std::make_unique<Publication>(this, table, c, snapshot, std::move(out)));
  }

  Status Finish() override {
    std::optional<Change> last;
    {
      MutexLock lock(&mu_);
      RETURN_IF_ERROR(error_);
      last = last_;
    }
    auto out = std::make_shared<Outstanding>();
    if (last && registry_) {
      // Debezium marks the snapshot's final event "last"; chunks end in any
      // order here, so the last row committed is sent once more so marked
      // (a reader sees that row's read event twice, as after any restart).
      RETURN_IF_ERROR(ProduceTableEvent(*last, router_.Route(*last).value, /*last=*/true, out));
    }
    RETURN_IF_ERROR(Wait(out));
    rd_kafka_resp_err_t e = rd_kafka_flush(producer_, 30000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
      return RetryCall(fmt::format("kafka topic {}: flushing the snapshot's records: {}", o_.topic, rd_kafka_err2str(e)));
    return Status::Ok();
  }

  // A copied row: its table-topic event (registry) and its change-topic
  // record, both in its key's partition.
  Status ProduceRow(const Change& row, int chunk, const std::shared_ptr<Outstanding>& out) {
    const uint32_t p = router_.Route(row).value;
    EncodedChange m = EncodeSnapshotRow(row, run_, o_.source_name, chunk);
    if (m.value.size() > o_.max_message_bytes)
      return OperatorError(fmt::format("table {} key {}: the copied row is {} bytes encoded, over "
                                       "transport.max_message_bytes {}",
                                       row.table->id.ToString(), row.KeyText(), m.value.size(), o_.max_message_bytes));
    if (registry_) RETURN_IF_ERROR(ProduceTableEvent(row, p, /*last=*/false, out));
    return Produce(o_.topic, p, &m.key, &m.value, out);
  }

  Status Wait(const std::shared_ptr<Outstanding>& out) {
    MutexLock lock(&mu_);
    space_.Wait(&mu_, [&]() REQUIRES(mu_) { return closed_ || out->count == 0 || !out->error.ok(); });
    RETURN_IF_ERROR(out->error);
    if (closed_) return Cancelled("snapshot publisher closed");
    return Status::Ok();
  }

  void Committed(const std::optional<Change>& last) {
    if (!last) return;
    MutexLock lock(&mu_);
    last_ = last;
  }

 private:
  Status CheckPartitions(const std::string& name) {
    return CheckTopicPartitions(producer_, name, o_.partitions, o_.brokers, o_.open_timeout);
  }

  struct TableTopic {
    std::string topic;
    std::shared_ptr<const DebeziumAvroTable> avro;
    int32_t key_id = -1, value_id = -1;
  };

  // `engine`: the snapshot position's kind picks the source record's fields
  // (MySQL's file/pos, PostgreSQL's lsn).
  Result<TableTopic> TopicOf(const std::shared_ptr<const TableSchema>& table, PositionKind engine) {
    MutexLock lock(&topics_mu_);
    auto it = topics_.find(table.get());
    if (it == topics_.end()) {
      TableTopic tt;
      tt.topic = DebeziumTopic(o_.topic_prefix, table->id);
      ASSIGN_OR_RETURN(tt.avro, DebeziumAvroTable::Build(table, tt.topic, engine));
      RETURN_IF_ERROR(CheckPartitions(tt.topic));
      if (tt.avro->has_key()) {
        ASSIGN_OR_RETURN(tt.key_id, registry_->Register(tt.topic + "-key", tt.avro->key_schema()));
      }
      ASSIGN_OR_RETURN(tt.value_id, registry_->Register(tt.topic + "-value", tt.avro->value_schema()));
      it = topics_.emplace(table.get(), std::move(tt)).first;
    }
    return it->second;
  }

  Status ProduceTableEvent(const Change& row, uint32_t p, bool last, const std::shared_ptr<Outstanding>& out) {
    ASSIGN_OR_RETURN(TableTopic tt, TopicOf(row.table, row.pos.commit_lsn.kind()));
    std::string key;
    if (tt.avro->has_key()) {
      ASSIGN_OR_RETURN(std::string body, tt.avro->EncodeKey(row));
      key = ConfluentFrame(tt.key_id, body);
    }
    ASSIGN_OR_RETURN(std::string body, tt.avro->EncodeValue(row, o_.source_name, NowMs(), /*snapshot=*/true, last));
    std::string value = ConfluentFrame(tt.value_id, body);
    if (value.size() > o_.max_message_bytes)
      return OperatorError(fmt::format("table {} key {}: the copied row is {} bytes as Avro, over "
                                       "transport.max_message_bytes {}",
                                       row.table->id.ToString(), row.KeyText(), value.size(), o_.max_message_bytes));
    return Produce(tt.topic, p, tt.avro->has_key() ? &key : nullptr, &value, out);
  }

  Status Produce(const std::string& topic, uint32_t p, const std::string* key, const std::string* value,
                 const std::shared_ptr<Outstanding>& out) {
    const size_t size = (key ? key->size() : 0) + (value ? value->size() : 0);
    MutexLock lock(&mu_);
    space_.Wait(&mu_, [&]() REQUIRES(mu_) {
      return closed_ || !error_.ok() || unacked_ == 0 || unacked_ + size <= o_.producer_budget_bytes;
    });
    if (closed_) return Cancelled("snapshot publisher closed");
    RETURN_IF_ERROR(error_);
    auto pending = std::make_unique<Pending>();
    pending->size = size;
    pending->owner = out;
    for (;;) {
      rd_kafka_resp_err_t e = rd_kafka_producev(
          producer_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(static_cast<int32_t>(p)),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key ? key->data() : nullptr, key ? key->size() : 0),
          RD_KAFKA_V_VALUE(value ? const_cast<char*>(value->data()) : nullptr, value ? value->size() : 0),
          RD_KAFKA_V_OPAQUE(pending.get()), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return Internal(fmt::format("kafka topic {} partition {}: produce: {}", topic, p, rd_kafka_err2str(e)));
      space_.WaitFor(&mu_, std::chrono::milliseconds(50), [&]() REQUIRES(mu_) { return closed_.load(); });
      if (closed_) return Cancelled("snapshot publisher closed");
    }
    unacked_ += size;
    ++out->count;
    pending.release();  // the delivery report frees it
    return Status::Ok();
  }

  // librdkafka callbacks on the poller thread: no exception leaves them.
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) noexcept {
    auto* self = static_cast<Publisher*>(opaque);
    std::unique_ptr<Pending> pending(static_cast<Pending*>(m->_private));
    MutexLock lock(&self->mu_);
    self->unacked_ -= std::min(pending->size, self->unacked_);
    if (pending->owner->count > 0) --pending->owner->count;
    if (m->err && pending->owner->error.ok())
      pending->owner->error = RetryCall(fmt::format("kafka topic {} partition {}: a copied row was not delivered: {}; "
                                                    "the chunk is not committed and is copied again",
                                                    rd_kafka_topic_name(m->rkt), m->partition,
                                                    rd_kafka_err2str(m->err)));
    self->space_.NotifyAll();
  }

  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque) noexcept {
    auto* self = static_cast<Publisher*>(opaque);
    char buf[512];
    if (err == RD_KAFKA_RESP_ERR__FATAL && rd_kafka_fatal_error(rk, buf, sizeof buf) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      MutexLock lock(&self->mu_);
      if (self->error_.ok())
        self->error_ = RetryCall(fmt::format("kafka: fatal error: {}; the copy stops and resumes from the target's "
                                             "chunks",
                                             buf));
      self->space_.NotifyAll();
      return;
    }
    LOG_WARN("kafka {}: {}", rd_kafka_name(rk), reason);
  }

  const SnapshotPublisherOptions o_;
  const Router router_;
  const uint64_t run_ = std::random_device{}() * uint64_t{0x100000001} ^
                        static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  rd_kafka_t* producer_ = nullptr;
  std::thread poller_;
  std::atomic<bool> closed_{false};
  std::unique_ptr<SchemaRegistry> registry_;

  Mutex reset_mu_;
  std::set<std::string> reset_ GUARDED_BY(reset_mu_);
  Mutex topics_mu_;
  std::map<const TableSchema*, TableTopic> topics_ GUARDED_BY(topics_mu_);

  mutable Mutex mu_;
  CondVar space_;
  size_t unacked_ GUARDED_BY(mu_) = 0;
  Status error_ GUARDED_BY(mu_);
  std::optional<Change> last_ GUARDED_BY(mu_);
};

Status Publication::Row(std::vector<Datum> values) {
  if (values.size() != table_->writable.size())
    return Internal(fmt::format("copy of {} chunk {}: a row of {} values, the table has {} columns",
                                table_->id.ToString(), chunk_.number, values.size(), table_->writable.size()));
  Change row;
  row.kind = ChangeKind::kInsert;
  row.table = table_;
  row.pos = ChangePosition{snapshot_, 0};
  row.commit_time_us = NowMs() * 1000;
  row.values = std::move(values);
  RETURN_IF_ERROR(pub_->ProduceRow(row, chunk_.number, out_));
  last_ = std::move(row);
  return Status::Ok();
}

Status Publication::Flush() {
  return pub_->Wait(out_);
}

void Publication::Committed() {
  pub_->Committed(last_);
}

}  // namespace

Result<std::unique_ptr<CopyPublisher>> OpenSnapshotPublisher(SnapshotPublisherOptions options) {
  auto p = std::make_unique<Publisher>(std::move(options));
  RETURN_IF_ERROR(p->Open());
  return std::unique_ptr<CopyPublisher>(std::move(p));
}

SnapshotPublisherOptions SnapshotPublisherOptionsOf(const TransportSpec& transport, const std::string& migration,
                                                    uint32_t partitions, bool republish) {
  SnapshotPublisherOptions o;
  o.brokers = transport.brokers;
  o.topic = transport.Topic(migration);
  o.source_name = migration;
  o.topic_prefix = transport.topic_prefix;
  o.schema_registry = transport.schema_registry;
  o.partitions = partitions;
  o.max_message_bytes = static_cast<size_t>(transport.max_message_bytes);
  o.settings = transport.settings;
  o.republish = republish;
  return o;
}

}  // namespace midflight::kafka
