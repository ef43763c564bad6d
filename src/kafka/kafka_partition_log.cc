#include "kafka/kafka_partition_log.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "base/log.h"
#include "base/thread_annotations.h"
#include "kafka/avro_codec.h"
#include "kafka/change_codec.h"
#include "kafka/schema_registry.h"

namespace midflight::kafka {
namespace {

using Clock = std::chrono::steady_clock;

// librdkafka's log lines go to midflight's log. The warning that
// enable.gapless.guarantee is experimental is dropped: it is set on purpose.
void OnLog(const rd_kafka_t* rk, int level, const char* fac, const char* buf) noexcept {
  if (std::strcmp(fac, "CONFWARN") == 0 && std::strstr(buf, "enable.gapless.guarantee")) return;
  if (level <= 3)
    LOG_ERROR("kafka {} {}: {}", rd_kafka_name(rk), fac, buf);
  else if (level <= 5)
    LOG_WARN("kafka {} {}: {}", rd_kafka_name(rk), fac, buf);
  else
    LOG_DEBUG("kafka {} {}: {}", rd_kafka_name(rk), fac, buf);
}


// What a produced message's delivery report needs (its opaque): the bytes
// it holds against the budget and, for a table-topic message, the change it
// carries (Poll waits for it: the rule in the header).
struct Pending {
  size_t size = 0;
  bool side = false;
  uint32_t partition = 0;
  ChangePosition pos;
};

class KafkaPartitionLog final : public PartitionLog {
 public:
  explicit KafkaPartitionLog(KafkaLogOptions o)
      : o_(std::move(o)), last_(o_.partitions), side_pending_(o_.partitions), inflight_(o_.partitions),
        end_(o_.partitions, -1) {
    if (!o_.schema_registry.empty()) registry_ = std::make_unique<SchemaRegistry>(o_.schema_registry);
  }

  ~KafkaPartitionLog() override {
    Close();
    if (poller_.joinable()) poller_.join();
    for (rd_kafka_t* c : consumers_) rd_kafka_destroy_flags(c, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    // What is not acknowledged yet need not be: a restart produces it again
    // (the correctness rule in the header).
    if (producer_) DestroyProducer(producer_);
  }

  Status Open() {
    char err[512];
    std::map<std::string, std::string> common = {{"bootstrap.servers", o_.brokers},
                                                 {"client.id", "midflight-" + o_.source_name}};
    // Producer: idempotent, acknowledged by every in-sync replica, and
    // failing rather than leaving a gap; messages wait for a broker that is
    // away rather than expire (Append blocks on the budget meanwhile).
    rd_kafka_conf_t* pc = rd_kafka_conf_new();
    std::map<std::string, std::string> pset = common;
    pset["message.timeout.ms"] = "0";
    pset["linger.ms"] = "5";
    pset["message.max.bytes"] = std::to_string(std::min<size_t>(o_.max_message_bytes + 65536, 1000000000));
    pset["queue.buffering.max.kbytes"] = std::to_string(std::max<size_t>(o_.producer_budget_bytes / 1024 * 2, 1024));
    for (const auto& kv : o_.settings) pset[kv.first] = kv.second;
    pset["enable.idempotence"] = "true";
    pset["acks"] = "all";
    pset["enable.gapless.guarantee"] = "true";
    if (Status st = SetAll(pc, pset); !st.ok()) {
      rd_kafka_conf_destroy(pc);
      return st;
    }
    rd_kafka_conf_set_opaque(pc, this);
    rd_kafka_conf_set_dr_msg_cb(pc, &KafkaPartitionLog::OnDelivery);
    rd_kafka_conf_set_error_cb(pc, &KafkaPartitionLog::OnError);
    producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
    if (!producer_) {
      rd_kafka_conf_destroy(pc);
      return OperatorError(fmt::format("kafka producer: {}", err));
    }
    poller_ = std::thread([this] {
      // librdkafka's own wait: delivery reports and errors are served here.
      while (!closed_) rd_kafka_poll(producer_, 100);
    });

    // The topic must have one partition per applier.
    RETURN_IF_ERROR(CheckPartitions(o_.topic));
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;

    // One consumer per partition, assigned (no group, no rebalancing),
    // starting at the partition's end offset now: everything the appliers
    // still need is produced again by this run (the rule in the header).
    for (uint32_t p = 0; p < o_.partitions; ++p) {
      int64_t lo = 0, hi = 0;
      e = rd_kafka_query_watermark_offsets(producer_, o_.topic.c_str(), static_cast<int32_t>(p), &lo, &hi,
                                           static_cast<int>(o_.open_timeout.count()));
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return RetryCall(fmt::format("kafka topic {} partition {}: end offset: {}", o_.topic, p, rd_kafka_err2str(e)));
      {
        MutexLock lock(&mu_);
        end_[p] = std::max(end_[p], hi);
      }
      if (o_.produce_only) continue;
      rd_kafka_conf_t* cc = rd_kafka_conf_new();
      std::map<std::string, std::string> cset = common;
      cset["group.id"] = "midflight." + o_.source_name;
      cset["fetch.wait.max.ms"] = "20";
      cset["queued.max.messages.kbytes"] = std::to_string(std::max<size_t>(o_.consumer_buffer_bytes / 1024, 1024));
      cset["auto.offset.reset"] = "error";
      for (const auto& kv : o_.settings) cset[kv.first] = kv.second;
      cset["enable.auto.commit"] = "false";
      cset["enable.auto.offset.store"] = "false";
      if (Status st = SetAll(cc, cset); !st.ok()) {
        rd_kafka_conf_destroy(cc);
        return st;
      }
      rd_kafka_conf_set_opaque(cc, this);
      rd_kafka_conf_set_error_cb(cc, &KafkaPartitionLog::OnError);
      rd_kafka_t* c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof err);
      if (!c) {
        rd_kafka_conf_destroy(cc);
        return OperatorError(fmt::format("kafka consumer: {}", err));
      }
      consumers_.push_back(c);
      rd_kafka_poll_set_consumer(c);
      rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(list, o_.topic.c_str(), static_cast<int32_t>(p))->offset = hi;
      e = rd_kafka_assign(c, list);
      rd_kafka_topic_partition_list_destroy(list);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return Internal(fmt::format("kafka topic {} partition {}: assign: {}", o_.topic, p, rd_kafka_err2str(e)));
      LOG_INFO("kafka: {} partition {} read from offset {}", o_.topic, p, hi);
    }
    return Status::Ok();
  }

  // `topic` must exist with exactly the migration's partition count.
  Status CheckPartitions(const std::string& name) {
    return CheckTopicPartitions(producer_, name, o_.partitions, o_.brokers, o_.open_timeout);
  }

  uint32_t partitions() const override { return o_.partitions; }

  Status Append(PartitionId p, Change change) override {
    if (closed_) return Cancelled("partition log closed");
    uint32_t ref = 0;
    std::vector<uint32_t> truncated;
    {
      MutexLock lock(&mu_);
      RETURN_IF_ERROR(error_);
      ref = RefOf(change.table);
      for (const auto& t : change.truncated) truncated.push_back(RefOf(t));
    }
    EncodedChange m = EncodeChange(change, run_, ref, truncated, o_.source_name);
    if (m.value.size() > o_.max_message_bytes)
      return OperatorError(fmt::format(
          "table {} key {}: the change at {} is {} bytes encoded, over transport.max_message_bytes {}",
          change.table->id.ToString(), change.KeyText(), change.pos.ToString(), m.value.size(), o_.max_message_bytes));
    if (registry_ && change.kind != ChangeKind::kTruncate) {
      // First the table topic, so that its pending entry exists before the
      // change-topic message can be read (the rule in the header). An error
      // here stops the log for good, as a failed delivery does.
      Status st = ProduceTableEvent(p, change);
      if (!st.ok()) {
        MutexLock lock(&mu_);
        if (error_.ok()) error_ = st;
        space_.NotifyAll();
        return st;
      }
    }
    RETURN_IF_ERROR(Produce(o_.topic, p, &m.key, &m.value, nullptr));
    // Debezium's tombstone: log compaction may then drop the key.
    if (change.kind == ChangeKind::kDelete) RETURN_IF_ERROR(Produce(o_.topic, p, &m.key, nullptr, nullptr));
    return Status::Ok();
  }

  Status Poll(PartitionId p, size_t min, size_t max, std::chrono::milliseconds wait,
              std::vector<Change>* out) override {
    if (o_.produce_only) return Internal("kafka log: produce only (apply: workers)");
    rd_kafka_t* c = consumers_.at(p.value);
    min = std::clamp<size_t>(min, 1, std::max<size_t>(max, 1));
    const auto deadline = Clock::now() + wait;
    size_t got = 0;
    while (got < max) {
      if (closed_) return got ? Status::Ok() : Cancelled("partition log closed");
      {
        MutexLock lock(&mu_);
        RETURN_IF_ERROR(error_);
      }
      const auto now = Clock::now();
      int timeout_ms = 0;
      if (got < min && now < deadline)
        timeout_ms = static_cast<int>(
            std::min<int64_t>(100, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1));
      rd_kafka_message_t* msg = rd_kafka_consumer_poll(c, timeout_ms);
      if (!msg) {
        if (timeout_ms == 0) break;
        continue;
      }
      Status st = Take(p, msg, out, &got);
      rd_kafka_message_destroy(msg);
      RETURN_IF_ERROR(st);
    }
    return Status::Ok();
  }

  Status AppendBarrier(const Change& barrier, const std::function<PartitionId(const Change&)>& route) override {
    if (closed_) return Cancelled("partition log closed");
    {
      MutexLock lock(&mu_);
      RETURN_IF_ERROR(error_);
    }
    Status st = ProduceBarrier(barrier, route);
    MutexLock lock(&mu_);
    if (!st.ok()) {
      if (error_.ok()) error_ = st;
      space_.NotifyAll();
      return st;
    }
    // Durable in Kafka before the sequencer applies it (after which the
    // source may be told it is consumed).
    const ChangePosition pos = barrier.pos;
    space_.Wait(&mu_, [&]() REQUIRES(mu_) {
      if (closed_ || !error_.ok()) return true;
      for (const auto& pending : side_pending_)
        if (pending.count(pos)) return false;
      return true;
    });
    if (closed_) return Cancelled("partition log closed");
    return error_;
  }

  ProducerStats Stats(PartitionId p) const override {
    MutexLock lock(&mu_);
    ProducerStats s;
    if (p.value >= end_.size()) return s;
    s.end_offset = end_[p.value];
    s.unacked = inflight_[p.value].size();
    if (!inflight_[p.value].empty())
      s.oldest_unacked_s = std::chrono::duration<double>(Clock::now() - inflight_[p.value].front()).count();
    return s;
  }

  void Close() override {
    closed_ = true;
    MutexLock lock(&mu_);
    space_.NotifyAll();
  }

 private:
  // One consumed message: a change to deliver, a tombstone or a duplicate to
  // drop, or an error.
  Status Take(PartitionId p, rd_kafka_message_t* msg, std::vector<Change>* out, size_t* got) {
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return Status::Ok();
    if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || msg->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
      return DataLoss(fmt::format("kafka topic {} partition {}: the messages to read are gone (retention?): {}",
                                  o_.topic, p.value, rd_kafka_message_errstr(msg)));
    if (msg->err) {
      LOG_WARN("kafka topic {} partition {}: {}", o_.topic, p.value, rd_kafka_message_errstr(msg));
      return Status::Ok();
    }
    if (!msg->payload) return Status::Ok();  // a tombstone
    Result<std::optional<Change>> c = DecodeChange(std::string_view(static_cast<const char*>(msg->payload), msg->len),
                                                   run_, [this](uint32_t ref) { return Lookup(ref); });
    if (!c.ok())
      return DataLoss(fmt::format("kafka topic {} partition {} offset {}: {}", o_.topic, p.value, msg->offset,
                                  c.status().message()));
    if (!c->has_value()) return Status::Ok();              // an earlier run's (see the header)
    if (IsBarrierChange(**c)) return Status::Ok();         // applied by the sequencer (AppendBarrier)
    if ((*c)->pos <= last_[p.value]) return Status::Ok();  // produced twice
    if (registry_) {
      // Not before its table-topic message (and every earlier one of this
      // partition) is acknowledged.
      MutexLock lock(&mu_);
      const std::multiset<ChangePosition>& pending = side_pending_[p.value];
      const ChangePosition pos = (*c)->pos;
      space_.Wait(&mu_, [&]() REQUIRES(mu_) {
        return closed_ || !error_.ok() || pending.empty() || *pending.begin() > pos;
      });
      if (closed_) return Cancelled("partition log closed");
      RETURN_IF_ERROR(error_);
    }
    last_[p.value] = (*c)->pos;
    out->push_back(std::move(**c));
    ++*got;
    return Status::Ok();
  }

  // The Debezium Avro event of `change` (and a tombstone after a delete) to
  // its table's topic, partition p.
  Status ProduceTableEvent(PartitionId p, const Change& change) {
    ASSIGN_OR_RETURN(const TableTopic* ttp, TopicOf(change.table, change.pos.commit_lsn.kind()));
    const TableTopic& tt = *ttp;
    std::string key;
    if (tt.avro->has_key()) {
      ASSIGN_OR_RETURN(std::string body, tt.avro->EncodeKey(change));
      key = ConfluentFrame(tt.key_id, body);
    }
    ASSIGN_OR_RETURN(std::string body, tt.avro->EncodeValue(change, o_.source_name, NowMs(), /*snapshot=*/false));
    std::string value = ConfluentFrame(tt.value_id, body);
    if (value.size() > o_.max_message_bytes)
      return OperatorError(fmt::format(
          "table {} key {}: the change at {} is {} bytes as Avro, over transport.max_message_bytes {}",
          change.table->id.ToString(), change.KeyText(), change.pos.ToString(), value.size(), o_.max_message_bytes));
    const std::string* k = tt.avro->has_key() ? &key : nullptr;
    RETURN_IF_ERROR(Produce(tt.topic, p, k, &value, &change.pos));
    if (change.kind == ChangeKind::kDelete) RETURN_IF_ERROR(Produce(tt.topic, p, k, nullptr, &change.pos));
    return Status::Ok();
  }

  // The table's topic and Avro layout (schemas registered and the topic
  // checked the first time the table's layout is met).
  struct TableTopic;
  Result<const TableTopic*> TopicOf(const std::shared_ptr<const TableSchema>& table, PositionKind engine) {
    auto it = table_topics_.find(table.get());
    if (it == table_topics_.end()) {
      TableTopic tt;
      tt.topic = DebeziumTopic(o_.topic_prefix, table->id);
      ASSIGN_OR_RETURN(tt.avro, DebeziumAvroTable::Build(table, tt.topic, engine));
      if (!checked_topics_.count(tt.topic)) {
        RETURN_IF_ERROR(CheckPartitions(tt.topic));
        checked_topics_.insert(tt.topic);
      }
      if (tt.avro->has_key()) {
        ASSIGN_OR_RETURN(tt.key_id, registry_->Register(tt.topic + "-key", tt.avro->key_schema()));
      }
      ASSIGN_OR_RETURN(tt.value_id, registry_->Register(tt.topic + "-value", tt.avro->value_schema()));
      LOG_INFO("kafka: table {} to topic {} (Avro, schema ids key {} value {})", table->id.ToString(), tt.topic,
               tt.key_id, tt.value_id);
      it = table_topics_.emplace(table.get(), std::move(tt)).first;
    }
    return &it->second;
  }

  static int64_t NowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // A barrier's messages (AppendBarrier): in every partition of the change
  // topic; on the table topics, a truncate event in every partition of each
  // truncated table's topic, a key move as the delete (and tombstone) of the
  // old key and the create of the new one, each in its key's partition.
  Status ProduceBarrier(const Change& b, const std::function<PartitionId(const Change&)>& route) {
    const PositionKind engine = b.pos.commit_lsn.kind();
    if (registry_ && b.kind == ChangeKind::kTruncate) {
      std::vector<std::shared_ptr<const TableSchema>> tables = b.truncated;
      if (tables.empty()) tables.push_back(b.table);
      for (const auto& t : tables) {
        ASSIGN_OR_RETURN(const TableTopic* tt, TopicOf(t, engine));
        ASSIGN_OR_RETURN(std::string body, tt->avro->EncodeTruncate(b, o_.source_name, NowMs()));
        for (uint32_t p = 0; p < o_.partitions; ++p) {
          std::string value = ConfluentFrame(tt->value_id, body);
          RETURN_IF_ERROR(Produce(tt->topic, PartitionId{p}, nullptr, &value, &b.pos));
        }
      }
    } else if (registry_ && b.kind == ChangeKind::kUpdate) {
      // Debezium's key change: delete + tombstone + create. The unchanged
      // TOASTed values are not in the source's record: the create carries
      // Debezium's placeholder for them, as Debezium's own does.
      Change del;
      del.kind = ChangeKind::kDelete;
      del.table = b.table;
      del.pos = b.pos;
      del.commit_time_us = b.commit_time_us;
      del.old = b.old;
      Change ins;
      ins.kind = ChangeKind::kInsert;
      ins.table = b.table;
      ins.pos = b.pos;
      ins.commit_time_us = b.commit_time_us;
      ins.values = b.values;
      RETURN_IF_ERROR(ProduceTableEvent(route(del), del));
      RETURN_IF_ERROR(ProduceTableEvent(route(ins), ins));
    }
    uint32_t ref = 0;
    std::vector<uint32_t> truncated;
    {
      MutexLock lock(&mu_);
      ref = RefOf(b.table);
      for (const auto& t : b.truncated) truncated.push_back(RefOf(t));
    }
    EncodedChange m = EncodeChange(b, run_, ref, truncated, o_.source_name);
    for (uint32_t p = 0; p < o_.partitions; ++p) {
      std::string value = m.value;
      RETURN_IF_ERROR(Produce(o_.topic, PartitionId{p}, &m.key, &value, &b.pos));
    }
    return Status::Ok();
  }

  // `key` null: no key; `value` null: a tombstone; `side_pos` set: a
  // table-topic message carrying the change at that position.
  Status Produce(const std::string& topic, PartitionId p, const std::string* key, std::string* value,
                 const ChangePosition* side_pos) {
    const size_t size = (key ? key->size() : 0) + (value ? value->size() : 0);
    MutexLock lock(&mu_);
    // A message larger than the whole budget still goes through, alone.
    space_.Wait(&mu_, [&]() REQUIRES(mu_) {
      return closed_ || !error_.ok() || unacked_ == 0 || unacked_ + size <= o_.producer_budget_bytes;
    });
    if (closed_) return Cancelled("partition log closed");
    RETURN_IF_ERROR(error_);
    auto pending = std::make_unique<Pending>();
    pending->size = size;
    pending->partition = p.value;
    if (side_pos) {
      pending->side = true;
      pending->pos = *side_pos;
    }
    for (;;) {
      rd_kafka_resp_err_t e = rd_kafka_producev(
          producer_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(static_cast<int32_t>(p.value)),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key ? key->data() : nullptr, key ? key->size() : 0),
          RD_KAFKA_V_VALUE(value ? value->data() : nullptr, value ? value->size() : 0),
          RD_KAFKA_V_OPAQUE(pending.get()), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return Internal(fmt::format("kafka topic {} partition {}: produce: {}", topic, p.value, rd_kafka_err2str(e)));
      // librdkafka's own queue is full: wait for deliveries.
      space_.WaitFor(&mu_, std::chrono::milliseconds(50), [&]() REQUIRES(mu_) { return closed_.load(); });
      if (closed_) return Cancelled("partition log closed");
    }
    unacked_ += size;
    if (side_pos)
      side_pending_[p.value].insert(*side_pos);
    else
      inflight_[p.value].push_back(Clock::now());
    pending.release();  // the delivery report frees it
    return Status::Ok();
  }

  uint32_t RefOf(const std::shared_ptr<const TableSchema>& t) REQUIRES(mu_) {
    auto [it, fresh] = refs_.try_emplace(t.get(), static_cast<uint32_t>(tables_.size()));
    if (fresh) tables_.push_back(t);
    return it->second;
  }

  std::shared_ptr<const TableSchema> Lookup(uint32_t ref) {
    MutexLock lock(&mu_);
    return ref < tables_.size() ? tables_[ref] : nullptr;
  }

  // librdkafka callbacks, on the poller thread (or a consumer's Poll): no
  // exception leaves them.
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) noexcept {
    auto* self = static_cast<KafkaPartitionLog*>(opaque);
    std::unique_ptr<Pending> pending(static_cast<Pending*>(m->_private));
    MutexLock lock(&self->mu_);
    self->unacked_ -= std::min(pending->size, self->unacked_);
    if (pending->side) {
      auto& set = self->side_pending_[pending->partition];
      if (auto it = set.find(pending->pos); it != set.end()) set.erase(it);
    } else {
      // One partition's reports come in the order it was produced.
      auto& inflight = self->inflight_[pending->partition];
      if (!inflight.empty()) inflight.pop_front();
      if (!m->err && m->offset + 1 > self->end_[pending->partition]) self->end_[pending->partition] = m->offset + 1;
    }
    if (m->err && self->error_.ok() && !self->closed_)
      self->error_ =
          RetryCall(fmt::format("kafka topic {} partition {}: a change was not delivered: {}; the stream "
                                "stops and resumes from the target's checkpoints",
                                rd_kafka_topic_name(m->rkt), m->partition, rd_kafka_err2str(m->err)));
    self->space_.NotifyAll();
  }

  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque) noexcept {
    auto* self = static_cast<KafkaPartitionLog*>(opaque);
    char buf[512];
    if (err == RD_KAFKA_RESP_ERR__FATAL && rd_kafka_fatal_error(rk, buf, sizeof buf) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      MutexLock lock(&self->mu_);
      if (self->error_.ok())
        self->error_ =
            RetryCall(fmt::format("kafka: fatal error: {}; the stream stops and resumes from the "
                                  "target's checkpoints",
                                  buf));
      self->space_.NotifyAll();
      return;
    }
    LOG_WARN("kafka {}: {}", rd_kafka_name(rk), reason);
  }

  const KafkaLogOptions o_;
  const uint64_t run_ = std::random_device{}() * uint64_t{0x100000001} ^
                        static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  rd_kafka_t* producer_ = nullptr;
  std::vector<rd_kafka_t*> consumers_;
  std::thread poller_;
  std::atomic<bool> closed_{false};
  std::vector<ChangePosition> last_;  // last_[p]: applier p's thread only

  // Table topics: the router thread's only.
  struct TableTopic {
    std::string topic;
    std::shared_ptr<const DebeziumAvroTable> avro;  // holds the TableSchema the map's key points to
    int32_t key_id = -1, value_id = -1;
  };
  std::unique_ptr<SchemaRegistry> registry_;  // null: no table topics
  std::map<const TableSchema*, TableTopic> table_topics_;
  std::set<std::string> checked_topics_;

  mutable Mutex mu_;
  CondVar space_;  // unacked_ fell, an error came, or the log closed
  size_t unacked_ GUARDED_BY(mu_) = 0;
  Status error_ GUARDED_BY(mu_);
  std::map<const TableSchema*, uint32_t> refs_ GUARDED_BY(mu_);
  std::vector<std::shared_ptr<const TableSchema>> tables_ GUARDED_BY(mu_);
  // Per partition, the positions of its table-topic messages not yet acknowledged.
  std::vector<std::multiset<ChangePosition>> side_pending_ GUARDED_BY(mu_);
  // Per partition, change-topic messages not acknowledged yet (when each was
  // handed over) and the offset after the last one acknowledged (status).
  std::vector<std::deque<Clock::time_point>> inflight_ GUARDED_BY(mu_);
  std::vector<int64_t> end_ GUARDED_BY(mu_);
};

}  // namespace

Status SetAll(rd_kafka_conf_t* conf, const std::map<std::string, std::string>& kv) {
  rd_kafka_conf_set_log_cb(conf, &OnLog);
  char err[512];
  for (const auto& [k, v] : kv)
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
      return OperatorError(fmt::format("kafka setting {}: {}", k, err));
  return Status::Ok();
}

void DestroyProducer(rd_kafka_t* producer) {
  // What is not acknowledged yet need not be: its sender produces it again
  // after a restart (a short flush, then it is dropped).
  rd_kafka_flush(producer, 2000);
  rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(producer, 0);
  rd_kafka_destroy(producer);
}

Status CheckTopicPartitions(rd_kafka_t* producer, const std::string& name, uint32_t partitions,
                            const std::string& brokers, std::chrono::milliseconds timeout) {
  rd_kafka_topic_t* topic = rd_kafka_topic_new(producer, name.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t e = rd_kafka_metadata(producer, 0, topic, &md, static_cast<int>(timeout.count()));
  rd_kafka_topic_destroy(topic);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return RetryCall(fmt::format("kafka brokers {}: no metadata for topic {}: {}", brokers, name, rd_kafka_err2str(e)));
  int count = -1;
  rd_kafka_resp_err_t terr = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (md->topic_cnt == 1) {
    count = md->topics[0].partition_cnt;
    terr = md->topics[0].err;
  }
  rd_kafka_metadata_destroy(md);
  if (terr != RD_KAFKA_RESP_ERR_NO_ERROR || count <= 0)
    return OperatorError(
        fmt::format("kafka topic {}: {}; create it with {} partitions", name, rd_kafka_err2str(terr), partitions));
  if (static_cast<uint32_t>(count) != partitions)
    return OperatorError(fmt::format(
        "kafka topic {} has {} partitions but the migration has {}: one topic partition per applier keeps each "
        "key's order; recreate the topic with {} partitions or use another topic_prefix",
        name, count, partitions, partitions));
  return Status::Ok();
}

Result<std::unique_ptr<PartitionLog>> OpenKafkaPartitionLog(KafkaLogOptions options) {
  auto log = std::make_unique<KafkaPartitionLog>(std::move(options));
  RETURN_IF_ERROR(log->Open());
  return std::unique_ptr<PartitionLog>(std::move(log));
}

PartitionLogFactory KafkaLogFactory(const TransportSpec& transport, const std::string& migration_name) {
  return [transport, migration_name](uint32_t partitions, size_t bytes) -> Result<std::unique_ptr<PartitionLog>> {
    KafkaLogOptions o;
    o.brokers = transport.brokers;
    o.topic = transport.Topic(migration_name);
    o.source_name = migration_name;
    o.topic_prefix = transport.topic_prefix;
    o.schema_registry = transport.schema_registry;
    o.partitions = partitions;
    o.max_message_bytes = static_cast<size_t>(transport.max_message_bytes);
    o.producer_budget_bytes = bytes * partitions;
    o.consumer_buffer_bytes = bytes;
    o.settings = transport.settings;
    o.produce_only = transport.apply_by_workers;
    return OpenKafkaPartitionLog(std::move(o));
  };
}

}  // namespace midflight::kafka
