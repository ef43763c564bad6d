#include "kafka/apply_worker.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/log.h"
#include "base/thread_annotations.h"
#include "kafka/change_codec.h"
#include "pipeline/apply_tracker.h"
#include "pipeline/partition_log.h"
#include "pipeline/router.h"

namespace midflight::kafka {
namespace {

using Clock = std::chrono::steady_clock;

void OnLog(const rd_kafka_t* rk, int level, const char* fac, const char* buf) noexcept {
  // "allow.auto.create.topics=false not supported by broker" (the mock
  // cluster): the topic check lists topics and never names one.
  if (level <= 4 && std::strcmp(fac, "AUTOCREATE") != 0 && std::strcmp(fac, "CONFWARN") != 0)
    LOG_WARN("kafka {} {}: {}", rd_kafka_name(rk), fac, buf);
  else
    LOG_DEBUG("kafka {} {}: {}", rd_kafka_name(rk), fac, buf);
}

// The target side of one partition as the worker uses it: records the highest
// topic offset it committed (for the group offsets monitoring tools read),
// and, for a replay, starts from nothing rather than from the checkpoint.
class WorkerSink final : public ChangeSink {
 public:
  WorkerSink(std::unique_ptr<ChangeSink> inner, bool replay) : inner_(std::move(inner)), replay_(replay) {}
  Result<ChangePosition> LoadCheckpoint() override {
    // A replay skips nothing: its own rows (<name>/replay) are only what it
    // committed itself (the Applier checks them after a reconnect).
    if (replay_) return committed_;
    return inner_->LoadCheckpoint();
  }
  Status ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint, BatchConflicts* conflicts) override {
    RETURN_IF_ERROR(inner_->ApplyBatch(changes, checkpoint, conflicts));
    committed_ = checkpoint;
    int64_t top = -1;
    for (const Change& c : changes) top = std::max(top, c.log_offset);
    if (top > applied_offset_.load()) applied_offset_ = top;
    applied_changes_ += changes.size();
    return Status::Ok();
  }
  Status ApplyBarrier(const Change& change, uint32_t partitions) override {
    return inner_->ApplyBarrier(change, partitions);
  }
  Status Reconnect() override { return inner_->Reconnect(); }
  Result<int64_t> DeleteRows(const std::shared_ptr<const TableSchema>& table, const std::string& column,
                             std::optional<int64_t> lo, std::optional<int64_t> hi,
                             const std::function<bool(const Change&)>& mine) override {
    return inner_->DeleteRows(table, column, lo, hi, mine);
  }
  Result<bool> HoldsRows(const TableSchema& table) override { return inner_->HoldsRows(table); }
  Result<int64_t> LoadLogOffset() override { return inner_->LoadLogOffset(); }
  void SetWorker(std::string worker) override { inner_->SetWorker(std::move(worker)); }
  Status EnableFencing() override { return inner_->EnableFencing(); }
  uint64_t batches_refused() const override { return inner_->batches_refused(); }

  int64_t applied_offset() const { return applied_offset_.load(); }
  uint64_t applied_changes() const { return applied_changes_.load(); }

 private:
  std::unique_ptr<ChangeSink> inner_;
  const bool replay_;
  ChangePosition committed_;  // the applier thread's only
  std::atomic<int64_t> applied_offset_{-1};
  std::atomic<uint64_t> applied_changes_{0};
};

// The change topic as a PartitionLog for the Appliers of the partitions this
// process holds: partition p is read from its own librdkafka queue (not
// forwarded to the consumer's main queue, which the group thread polls for
// rebalances), decoded by table name.
//
// Thread-safety: Poll(p) from applier p only, while it holds p; the group
// thread sets a partition up (Hold) before its applier starts and clears it
// (Release) after the applier stopped. mu_ guards the tables.
class WorkerLog final : public PartitionLog {
 public:
  WorkerLog(const ApplyWorkerOptions& o, rd_kafka_t* rk, bool replay)
      : o_(o), rk_(rk), replay_(replay), topic_(o.transport.Topic(o.migration)), parts_(o.partitions) {}
  ~WorkerLog() override {
    for (uint32_t p = 0; p < parts_.size(); ++p) Release(p);
  }

  Status LoadTables() {
    ASSIGN_OR_RETURN(auto tables, o_.load_tables());
    MutexLock lock(&mu_);
    tables_.clear();
    for (auto& t : tables) {
      const TableId id = t->id;
      tables_[id] = std::move(t);
    }
    return Status::Ok();
  }

  // Partition p's messages go to its own queue from now on, read from `next`.
  Status Hold(uint32_t p, int64_t next) {
    Part& part = parts_[p];
    part.queue = rd_kafka_queue_get_partition(rk_, topic_.c_str(), static_cast<int32_t>(p));
    if (!part.queue) return Internal(fmt::format("kafka topic {} partition {}: no partition queue", topic_, p));
    rd_kafka_queue_forward(part.queue, nullptr);
    part.last = ChangePosition{};
    part.next = next;
    part.from = next;
    return Status::Ok();
  }
  void Release(uint32_t p) {
    Part& part = parts_[p];
    if (part.queue) rd_kafka_queue_destroy(part.queue);
    part.queue = nullptr;
  }
  // A replay's chunk resets are applied through this, on applier p's thread
  // between two of its batches (the table is the one the reset names).
  using ResetFn = std::function<Status(PartitionId, const ChunkReset&, const std::shared_ptr<const TableSchema>&)>;
  void SetResetHandler(ResetFn fn) { on_reset_ = std::move(fn); }
  uint64_t snapshot_rows(uint32_t p) const { return parts_[p].snapshot_rows; }
  uint64_t resets(uint32_t p) const { return parts_[p].resets; }
  int64_t next_offset(uint32_t p) const { return parts_[p].next; }
  int64_t from_offset(uint32_t p) const { return parts_[p].from; }

  uint32_t partitions() const override { return static_cast<uint32_t>(parts_.size()); }
  Status Append(PartitionId, Change) override { return Internal("an apply worker's log is read only"); }
  void Close() override { closed_ = true; }

  Status Poll(PartitionId p, size_t min, size_t max, std::chrono::milliseconds wait,
              std::vector<Change>* out) override {
    Part& part = parts_.at(p.value);
    const bool first = out->empty();
    // A chunk reset met before: once the batch in progress is committed
    // (the Applier's next batch starts with an empty `out`), it is applied.
    if (part.reset) {
      if (!out->empty()) return Status::Ok();
      RETURN_IF_ERROR(ApplyReset(p, part));
    }
    min = std::clamp<size_t>(min, 1, std::max<size_t>(max, 1));
    const auto deadline = Clock::now() + wait;
    size_t got = 0;
    while (got < max) {
      if (closed_ || !part.queue) return got ? Status::Ok() : Cancelled("partition released");
      if (part.reset) {
        // Everything before it in the partition is applied first.
        if (!out->empty()) break;
        RETURN_IF_ERROR(ApplyReset(p, part));
      }
      const auto now = Clock::now();
      int timeout_ms = 0;
      if (got < min && now < deadline)
        timeout_ms = static_cast<int>(
            std::min<int64_t>(100, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1));
      rd_kafka_message_t* msg = rd_kafka_consume_queue(part.queue, timeout_ms);
      if (!msg) {
        if (timeout_ms == 0) break;
        continue;
      }
      Status st = Take(p, part, msg, out, &got);
      rd_kafka_message_destroy(msg);
      RETURN_IF_ERROR(st);
    }
    // A replay ends once, after its last commit, nothing newer is in the partition.
    if (replay_ && first && got == 0) {
      int64_t lo = 0, hi = 0;
      rd_kafka_resp_err_t e =
          rd_kafka_query_watermark_offsets(rk_, topic_.c_str(), static_cast<int32_t>(p.value), &lo, &hi, 5000);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR && hi <= part.next) return Cancelled("replay reached the end");
    }
    return Status::Ok();
  }

 private:
  struct Part {
    rd_kafka_queue_t* queue = nullptr;
    ChangePosition last;  // the last position delivered
    // A replay: the chunk reset read and not applied yet; the snapshot rows
    // delivered (their positions {0, n}: below every change, in topic
    // order, so the Applier's checkpoint never passes a change); resets applied.
    std::optional<std::pair<ChunkReset, std::shared_ptr<const TableSchema>>> reset;
    uint64_t snapshot_rows = 0;
    uint64_t resets = 0;
    int64_t next = 0;     // the offset after the last message read
    int64_t from = 0;
  };

  Status Take(PartitionId p, Part& part, rd_kafka_message_t* msg, std::vector<Change>* out, size_t* got) {
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return Status::Ok();
    if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || msg->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
      return DataLoss(fmt::format("kafka topic {} partition {}: the messages to read are gone (retention?): {}",
                                  topic_, p.value, rd_kafka_message_errstr(msg)));
    if (msg->err) {
      LOG_WARN("kafka topic {} partition {}: {}", topic_, p.value, rd_kafka_message_errstr(msg));
      return Status::Ok();
    }
    part.next = msg->offset + 1;
    if (!msg->payload) return Status::Ok();  // a tombstone
    std::string_view value(static_cast<const char*>(msg->payload), msg->len);
    auto lookup = [this](const TableId& id) -> std::shared_ptr<const TableSchema> {
      MutexLock lock(&mu_);
      auto it = tables_.find(id);
      return it == tables_.end() ? nullptr : it->second;
    };
    Result<LogRecord> rec = DecodeRecordAnyRun(value, lookup);
    if (!rec.ok()) {
      // A table's layout may have changed on the source since the tables
      // were loaded: load them once more before giving up.
      LOG_INFO("kafka topic {} partition {} offset {}: {}; loading the tables again", topic_, p.value, msg->offset,
               rec.status().message());
      RETURN_IF_ERROR(LoadTables());
      rec = DecodeRecordAnyRun(value, lookup);
    }
    if (!rec.ok())
      return DataLoss(fmt::format("kafka topic {} partition {} offset {}: {}", topic_, p.value, msg->offset,
                                  rec.status().message()));
    // Snapshot records (transport.publish_snapshot): the run's copy wrote
    // those rows to the target itself, so only a replay applies them.
    if (rec->kind != LogRecord::Kind::kChange && !replay_) return Status::Ok();
    if (rec->kind == LogRecord::Kind::kChunkReset) {
      auto table = lookup(rec->reset.table);
      if (!table) return DataLoss(fmt::format("kafka topic {} partition {} offset {}: table {} is not known", topic_,
                                              p.value, msg->offset, rec->reset.table.ToString()));
      if (table->key_writable.empty()) return Status::Ok();  // a keyless table is not replayed
      part.reset.emplace(rec->reset, std::move(table));
      return Status::Ok();
    }
    std::optional<Change>* c = &rec->change;
    if (rec->kind == LogRecord::Kind::kSnapshotRow) {
      if ((*c)->table->key_writable.empty()) {
        MutexLock lock(&mu_);
        ++not_replayed_[(*c)->table->id.ToString()];
        return Status::Ok();
      }
      (*c)->pos = ChangePosition{Position(), static_cast<uint32_t>(++part.snapshot_rows)};
      (*c)->log_offset = msg->offset;
      out->push_back(std::move(**c));
      ++*got;
      return Status::Ok();
    }
    if (!c->has_value()) return Status::Ok();          // a truncate: applied by the run at a barrier
    if (IsBarrierChange(**c)) return Status::Ok();     // a key move with unchanged TOAST values: likewise
    if ((*c)->pos <= part.last) return Status::Ok();  // produced again by a restarted run
    part.last = (*c)->pos;
    if (replay_ && (*c)->table->key_writable.empty()) {
      // A table without a key: its inserts cannot be applied twice without
      // duplicating rows (nothing to upsert on), so a replay leaves it.
      MutexLock lock(&mu_);
      ++not_replayed_[(*c)->table->id.ToString()];
      return Status::Ok();
    }
    (*c)->log_offset = msg->offset;
    out->push_back(std::move(**c));
    ++*got;
    return Status::Ok();
  }

  Status ApplyReset(PartitionId p, Part& part) {
    auto [reset, table] = std::move(*part.reset);
    part.reset.reset();
    if (!on_reset_) return Internal("a chunk reset with no handler");
    RETURN_IF_ERROR(on_reset_(p, reset, table));
    ++part.resets;
    return Status::Ok();
  }

  const ApplyWorkerOptions& o_;
  rd_kafka_t* rk_;
  ResetFn on_reset_;
  const bool replay_;
  const std::string topic_;
  std::vector<Part> parts_;
  std::atomic<bool> closed_{false};
  Mutex mu_;
  std::map<TableId, std::shared_ptr<const TableSchema>> tables_ GUARDED_BY(mu_);
  std::map<std::string, uint64_t> not_replayed_ GUARDED_BY(mu_);

 public:
  std::map<std::string, uint64_t> not_replayed() {
    MutexLock lock(&mu_);
    return not_replayed_;
  }
};

// One consumer handle: in the migration's group for a worker, assigned
// (no group membership) for a replay.
// `reset`: what to do when the offset to read is gone (retention): "error"
// (the reader stops: a change would be lost) or "earliest" (a replay from the
// earliest offset kept follows the retention).
Result<rd_kafka_t*> NewConsumer(const ApplyWorkerOptions& o, const std::string& group, void* opaque,
                                void (*rebalance)(rd_kafka_t*, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*,
                                                  void*),
                                const std::string& reset) {
  std::map<std::string, std::string> set = {{"bootstrap.servers", o.transport.brokers},
                                            {"client.id", "midflight-worker-" + o.worker},
                                            {"group.id", group},
                                            {"session.timeout.ms", "6000"},
                                            {"heartbeat.interval.ms", "1000"},
                                            {"fetch.wait.max.ms", "20"}};
  for (const auto& kv : o.transport.settings) set[kv.first] = kv.second;
  set["auto.offset.reset"] = reset;
  set["enable.auto.commit"] = "false";
  set["enable.auto.offset.store"] = "false";
  set["enable.partition.eof"] = "false";
  set["allow.auto.create.topics"] = "false";
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, &OnLog);
  char err[512];
  for (const auto& [k, v] : set)
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return OperatorError(fmt::format("kafka setting {}: {}", k, err));
    }
  rd_kafka_conf_set_opaque(conf, opaque);
  if (rebalance) rd_kafka_conf_set_rebalance_cb(conf, rebalance);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return OperatorError(fmt::format("kafka consumer: {}", err));
  }
  rd_kafka_poll_set_consumer(rk);
  return rk;
}

// The topic must exist with exactly the migration's partition count.
Status CheckTopic(rd_kafka_t* rk, const ApplyWorkerOptions& o) {
  const std::string topic = o.transport.Topic(o.migration);
  // Every topic's metadata, not the one topic's: a request naming a topic
  // lets a broker that auto-creates topics create it (an old broker, or the
  // mock cluster, ignores allow.auto.create.topics=false), and a worker
  // started for a migration that does not exist must not make its topic.
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, nullptr, &md, static_cast<int>(o.open_timeout.count()));
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return RetryCall(fmt::format("kafka brokers {}: no answer for topic {} within {} ms: {}", o.transport.brokers,
                                 topic, o.open_timeout.count(), rd_kafka_err2str(e)));
  int count = -1;
  rd_kafka_resp_err_t terr = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
  for (int i = 0; i < md->topic_cnt; ++i)
    if (topic == md->topics[i].topic) {
      count = md->topics[i].partition_cnt;
      terr = md->topics[i].err;
    }
  rd_kafka_metadata_destroy(md);
  if (terr != RD_KAFKA_RESP_ERR_NO_ERROR || count <= 0)
    return OperatorError(fmt::format(
        "migration {}: kafka topic {} does not exist on {} ({}): is the migration's name right, and does `midflight "
        "run` use transport kind kafka with topic_prefix {}?",
        o.migration, topic, o.transport.brokers, rd_kafka_err2str(terr), o.transport.topic_prefix));
  if (static_cast<uint32_t>(count) != o.partitions)
    return OperatorError(fmt::format(
        "migration {}: kafka topic {} has {} partitions but the spec has partitions: {}; give the worker the spec the "
        "migration runs with (partitions: {})",
        o.migration, topic, count, o.partitions, count));
  return Status::Ok();
}

std::string Held(const std::vector<bool>& held) {
  std::string out;
  for (size_t p = 0; p < held.size(); ++p)
    if (held[p]) out += (out.empty() ? "" : ", ") + std::to_string(p);
  return "[" + out + "]";
}

// The partitions this worker holds, each with its sink and Applier thread.
// Everything here runs on the group thread (rebalance callbacks are served
// inside rd_kafka_consumer_poll), so it needs no lock.
class Worker {
 public:
  Worker(const ApplyWorkerOptions& o, bool replay, bool follow_retention = false)
      : o_(o), replay_(replay), follow_retention_(follow_retention), tracker_(o.partitions), slots_(o.partitions) {}

  ~Worker() {
    StopAll();
    if (rk_) {
      // Leaves the group at once (the others take the partitions now, not
      // after a session timeout); the revoke callback finds nothing running.
      if (!replay_) rd_kafka_consumer_close(rk_);
      rd_kafka_destroy(rk_);
    }
    log_.reset();
  }

  Status Open() {
    const std::string group = replay_ ? "midflight." + o_.migration + ".replay" : "midflight." + o_.migration;
    ASSIGN_OR_RETURN(rk_, NewConsumer(o_, group, this, replay_ ? nullptr : &Worker::OnRebalance,
                                      follow_retention_ ? "earliest" : "error"));
    RETURN_IF_ERROR(CheckTopic(rk_, o_));
    log_ = std::make_unique<WorkerLog>(o_, rk_, replay_);
    log_->SetResetHandler([this](PartitionId p, const ChunkReset& r, const std::shared_ptr<const TableSchema>& t) {
      return ApplyReset(p, r, t);
    });
    return log_->LoadTables();
  }

  Status Run(const StopSource& stop) {
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, o_.transport.Topic(o_.migration).c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk_, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return Internal(fmt::format("kafka subscribe: {}", rd_kafka_err2str(e)));
    LOG_INFO("apply worker {}: joined group midflight.{} on {}", o_.worker, o_.migration, o_.transport.Topic(o_.migration));
    auto last_commit = Clock::now();
    while (!stop.stop_requested() && error_.ok()) {
      // Serves rebalances; partition messages never come here (own queues).
      rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk_, 200);
      if (msg) {
        if (msg->err && msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
          LOG_WARN("apply worker {}: {}", o_.worker, rd_kafka_message_errstr(msg));
        else if (!msg->err)
          error_ = Internal(fmt::format("kafka topic {} partition {}: a message reached the group's queue",
                                        o_.transport.Topic(o_.migration), msg->partition));
        rd_kafka_message_destroy(msg);
      }
      for (uint32_t p = 0; p < slots_.size(); ++p)
        if (slots_[p].applier)
          if (Status st = slots_[p].applier->status(); !st.ok() && error_.ok())
            error_ = st.WithContext(fmt::format("partition {}", p));
      if (Clock::now() - last_commit > std::chrono::seconds(1)) {
        CommitOffsets(/*async=*/true);
        last_commit = Clock::now();
      }
    }
    CommitOffsets(/*async=*/false);
    return error_;
  }

  Result<ReplayReport> Replay(ReplayFrom from, const StopSource& stop) {
    const std::string topic = o_.transport.Topic(o_.migration);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(o_.partitions));
    for (uint32_t p = 0; p < o_.partitions; ++p) {
      int64_t lo = 0, hi = 0;
      rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk_, topic.c_str(), static_cast<int32_t>(p), &lo, &hi,
                                                               static_cast<int>(o_.open_timeout.count()));
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(list);
        return RetryCall(fmt::format("kafka topic {} partition {}: offsets: {}", topic, p, rd_kafka_err2str(e)));
      }
      const int64_t offset = from.offset == ReplayFrom::kEarliest ? lo : from.offset;
      int64_t start = offset >= 0 ? offset : from.time_ms;
      if (offset >= 0 && offset < lo) {
        rd_kafka_topic_partition_list_destroy(list);
        return OperatorError(fmt::format("kafka topic {} partition {}: offset {} is gone (retention), the first one kept "
                                         "is {}; replay from a later offset, or --from-offset earliest",
                                         topic, p, offset, lo));
      }
      if (offset >= 0) start = std::min(offset, hi);
      rd_kafka_topic_partition_list_add(list, topic.c_str(), static_cast<int32_t>(p))->offset = start;
    }
    if (from.time_ms >= 0) {
      // Each partition's first offset at or after the time (-1: none, its end).
      rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk_, list, static_cast<int>(o_.open_timeout.count()));
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(list);
        return RetryCall(fmt::format("kafka topic {}: offsets for time {}: {}", topic, from.time_ms, rd_kafka_err2str(e)));
      }
      for (int i = 0; i < list->cnt; ++i)
        if (list->elems[i].offset < 0) {
          int64_t lo = 0, hi = 0;
          (void)rd_kafka_query_watermark_offsets(rk_, topic.c_str(), list->elems[i].partition, &lo, &hi, 5000);
          list->elems[i].offset = hi;
        }
    }
    for (int i = 0; i < list->cnt; ++i) {
      const uint32_t p = static_cast<uint32_t>(list->elems[i].partition);
      if (Status st = OpenSlot(p, o_.migration + "/replay"); !st.ok()) {
        rd_kafka_topic_partition_list_destroy(list);
        return st;
      }
      if (Status st = log_->Hold(p, list->elems[i].offset); !st.ok()) {
        rd_kafka_topic_partition_list_destroy(list);
        return st;
      }
      LOG_INFO("replay: {} partition {} from offset {}", topic, p, list->elems[i].offset);
    }
    bool from_zero = true;
    for (int i = 0; i < list->cnt; ++i) from_zero = from_zero && list->elems[i].offset == 0;
    if (from_zero && !o_.transport.publish_snapshot) {
      if (Status st = RefuseEmptiedTarget(topic); !st.ok()) {
        rd_kafka_topic_partition_list_destroy(list);
        return st;
      }
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(rk_, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return Internal(fmt::format("kafka assign: {}", rd_kafka_err2str(e)));
    for (uint32_t p = 0; p < o_.partitions; ++p) StartApplier(p);
    // Each applier ends when its partition is replayed to the end.
    for (uint32_t p = 0; p < o_.partitions; ++p) {
      while (slots_[p].thread.joinable() && !slots_[p].done) {
        if (stop.WaitFor(std::chrono::milliseconds(100))) {
          StopAll();
          return Cancelled("replay stopped");
        }
      }
    }
    ReplayReport report;
    Status first;
    for (uint32_t p = 0; p < o_.partitions; ++p) {
      Slot& s = slots_[p];
      if (s.thread.joinable()) s.thread.join();
      if (Status st = s.applier->status(); !st.ok() && first.ok()) first = st.WithContext(fmt::format("partition {}", p));
      report.parts.push_back({log_->from_offset(p), log_->next_offset(p), s.sink->applied_changes(),
                              log_->snapshot_rows(p), log_->resets(p)});
    }
    report.not_replayed = log_->not_replayed();
    StopAll();
    RETURN_IF_ERROR(first);
    return report;
  }

 private:
  struct Slot {
    std::unique_ptr<WorkerSink> sink;
    std::unique_ptr<Applier> applier;
    std::unique_ptr<StopSource> stop;
    std::thread thread;
    std::atomic<bool> done{false};
    int64_t committed_offset = -1;  // what the group offsets say
  };

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                          void* opaque) noexcept {
    auto* self = static_cast<Worker*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      Status st = self->Assign(list);
      if (!st.ok()) {
        LOG_ERROR("apply worker {}: taking partitions: {}", self->o_.worker, st.message());
        if (self->error_.ok()) self->error_ = st;
      }
    } else {
      self->Revoke(list);
      rd_kafka_assign(rk, nullptr);
    }
  }

  // A replay from offset zero of a topic without the snapshot (the spec does
  // not set transport.publish_snapshot) into a target whose every table is
  // empty would apply only the changes made after the copy: refused, saying
  // why. A target that holds the copy converges (replay over a live target).
  Status RefuseEmptiedTarget(const std::string& topic) {
    ASSIGN_OR_RETURN(auto tables, o_.load_tables());
    ChangeSink& sink = *slots_.at(0).sink;
    for (const auto& t : tables) {
      auto holds = sink.HoldsRows(*t);
      if (!holds.ok() && holds.status().code() == StatusCode::kOperator) return Status::Ok();  // cannot tell
      RETURN_IF_ERROR(holds.status());
      if (*holds) return Status::Ok();
    }
    if (tables.empty()) return Status::Ok();
    return OperatorError(fmt::format(
        "replay: topic {} holds no snapshot (migration {} does not set transport.publish_snapshot) and every table of "
        "the migration is empty on the target: a replay from offset zero would apply only the changes made after the "
        "copy, not rebuild the rows it copied; copy the target again (run the migration into it), or start a new "
        "migration with publish_snapshot: true",
        topic, o_.migration));
  }

  // A chunk reset in partition p (apply_worker.h): the rows of the chunk's
  // range that route to p go; the rows that follow it in p copy it again.
  // Runs on applier p's thread, between its batches (its sink is idle).
  Status ApplyReset(PartitionId p, const ChunkReset& r, const std::shared_ptr<const TableSchema>& table) {
    const Router router(o_.partitions);
    auto remove = [&] {
      return slots_.at(p.value).sink->DeleteRows(table, r.column, r.lo, r.hi,
                                                 [&](const Change& c) { return router.Route(c) == p; });
    };
    // Every partition resets the same range at about the same time, each
    // locking it (MariaDB: SELECT .. FOR UPDATE, with gap locks), so two can
    // deadlock; the loser's transaction was rolled back whole and runs again.
    auto removed = remove();
    auto backoff = std::chrono::milliseconds(50);
    for (int attempt = 1; !removed.ok() && removed.status().code() == StatusCode::kRetryTxn && attempt < 20; ++attempt) {
      LOG_INFO("replay: partition {}: {}; trying again in {} ms", p.value, removed.status().message(), backoff.count());
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      removed = remove();
    }
    ASSIGN_OR_RETURN(int64_t n, std::move(removed));
    LOG_INFO("replay: partition {}: reset of {} {} (copied again from the snapshot at {}): {} rows of the partition "
             "deleted",
             p.value, r.table.ToString(), r.column.empty() ? std::string("(whole table)") : fmt::format("chunk {}", r.chunk),
             Position::Of(o_.positions, r.snapshot).ToString(), n);
    return Status::Ok();
  }

  Status OpenSlot(uint32_t p, const std::string& key) {
    Slot& s = slots_.at(p);
    ASSIGN_OR_RETURN(auto inner, o_.open_sink(PartitionId{p}, key));
    inner->SetWorker(o_.worker);
    // A group member may lose p without knowing it yet (a pause, a network
    // split): its batches must not land over the new holder's. A replay is
    // no member and applies under its own rows.
    if (!replay_) RETURN_IF_ERROR(inner->EnableFencing());
    s.sink = std::make_unique<WorkerSink>(std::move(inner), replay_);
    ApplierOptions ao;
    ao.defaults = o_.apply;
    ao.label = replay_ ? "replay" : "apply";
    s.applier = std::make_unique<Applier>(PartitionId{p}, log_.get(), s.sink.get(), &tracker_, ao);
    s.stop = std::make_unique<StopSource>();
    s.done = false;
    return Status::Ok();
  }

  void StartApplier(uint32_t p) {
    Slot& s = slots_[p];
    Applier* a = s.applier.get();
    StopSource* stop = s.stop.get();
    std::atomic<bool>* done = &s.done;
    const std::string context = CurrentLogContext();
    s.thread = std::thread([a, stop, done, context] {
      ScopedLogContext log_context(context);
      a->Run(*stop);
      *done = true;
    });
  }

  // Takes the partitions: each starts at the target's checkpoint.
  Status Assign(rd_kafka_topic_partition_list_t* list) {
    for (int i = 0; i < list->cnt; ++i) {
      const uint32_t p = static_cast<uint32_t>(list->elems[i].partition);
      if (p >= slots_.size()) return Internal(fmt::format("assigned partition {} of {}", p, slots_.size()));
      RETURN_IF_ERROR(OpenSlot(p, o_.migration));
      Slot& s = slots_[p];
      ASSIGN_OR_RETURN(ChangePosition cp, s.sink->LoadCheckpoint());
      ASSIGN_OR_RETURN(int64_t offset, s.sink->LoadLogOffset());
      // Marks the partition as this worker's on the target at once (status
      // shows the holder before its first batch): an empty batch at the
      // checkpoint it has.
      BatchConflicts none;
      RETURN_IF_ERROR(s.sink->ApplyBatch({}, cp, &none));
      const int64_t next = offset >= 0 ? offset + 1 : RD_KAFKA_OFFSET_BEGINNING;
      list->elems[i].offset = next;
      s.committed_offset = offset;
      RETURN_IF_ERROR(log_->Hold(p, offset >= 0 ? offset + 1 : 0));
      held_[p] = true;
      LOG_INFO("apply worker {}: took partition {} at checkpoint {}, reading from offset {}", o_.worker, p,
               cp.ToString(), offset >= 0 ? std::to_string(offset + 1) : std::string("0 (no offset recorded)"));
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(rk_, list);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return Internal(fmt::format("kafka assign: {}", rd_kafka_err2str(e)));
    for (int i = 0; i < list->cnt; ++i) StartApplier(static_cast<uint32_t>(list->elems[i].partition));
    Report();
    return Status::Ok();
  }

  // Gives partitions up: each applier finishes (or abandons, when it is
  // backing off) its batch first; what it committed is on the target.
  void Revoke(rd_kafka_topic_partition_list_t* list) {
    for (int i = 0; i < list->cnt; ++i) {
      const uint32_t p = static_cast<uint32_t>(list->elems[i].partition);
      if (p < slots_.size()) StopSlot(p);
    }
    CommitOffsets(/*async=*/false);
    for (int i = 0; i < list->cnt; ++i) {
      const uint32_t p = static_cast<uint32_t>(list->elems[i].partition);
      if (p >= slots_.size()) continue;
      slots_[p].sink.reset();  // closes its session (and its replication origin)
      slots_[p].applier.reset();
      if (log_) log_->Release(p);
      held_[p] = false;
    }
    Report();
  }

  void StopSlot(uint32_t p) {
    Slot& s = slots_[p];
    if (s.stop) s.stop->Stop();
    if (s.thread.joinable()) s.thread.join();
  }

  void StopAll() {
    for (uint32_t p = 0; p < slots_.size(); ++p) StopSlot(p);
    for (uint32_t p = 0; p < slots_.size(); ++p) {
      slots_[p].sink.reset();
      slots_[p].applier.reset();
      if (log_) log_->Release(p);
    }
  }

  // Kafka's group offsets: what the target holds, for monitoring tools.
  void CommitOffsets(bool async) {
    if (replay_) return;
    const std::string topic = o_.transport.Topic(o_.migration);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(slots_.size()));
    for (uint32_t p = 0; p < slots_.size(); ++p) {
      Slot& s = slots_[p];
      if (!s.sink) continue;
      const int64_t applied = s.sink->applied_offset();
      if (applied < 0 || applied <= s.committed_offset) continue;
      rd_kafka_topic_partition_list_add(list, topic.c_str(), static_cast<int32_t>(p))->offset = applied + 1;
      s.committed_offset = applied;
    }
    if (list->cnt > 0) {
      rd_kafka_resp_err_t e = rd_kafka_commit(rk_, list, async ? 1 : 0);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        LOG_DEBUG("apply worker {}: committing group offsets: {}", o_.worker, rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(list);
  }

  void Report() {
    std::vector<bool> held(slots_.size());
    for (const auto& [p, h] : held_) held[p] = h;
    const std::string line = fmt::format("apply worker {} holds partitions {}", o_.worker, Held(held));
    LOG_INFO("{}", line);
    if (o_.on_assignment) o_.on_assignment(line);
  }

  const ApplyWorkerOptions& o_;
  const bool replay_;
  const bool follow_retention_;
  rd_kafka_t* rk_ = nullptr;
  std::unique_ptr<WorkerLog> log_;
  ApplyTracker tracker_;
  std::vector<Slot> slots_;
  std::map<uint32_t, bool> held_;
  Status error_;
};

}  // namespace

Status RunApplyWorker(const ApplyWorkerOptions& options, const StopSource& stop) {
  Worker w(options, /*replay=*/false);
  RETURN_IF_ERROR(w.Open());
  return w.Run(stop);
}

Result<ReplayReport> RunReplay(const ApplyWorkerOptions& options, ReplayFrom from, const StopSource& stop) {
  Worker w(options, /*replay=*/true, /*follow_retention=*/from.offset == ReplayFrom::kEarliest);
  RETURN_IF_ERROR(w.Open());
  return w.Replay(from, stop);
}

}  // namespace midflight::kafka
