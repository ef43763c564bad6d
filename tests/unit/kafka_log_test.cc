// KafkaPartitionLog (kafka/kafka_partition_log.h) against librdkafka's mock
// cluster: changes come back in order per partition, tombstones and an
// earlier run's messages are not delivered, a topic of another partition
// count is refused naming both counts.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "control/http.h"
#include "kafka/avro_codec.h"
#include "kafka/kafka_partition_log.h"
#include "kafka/mock_cluster.h"
#include "kafka/snapshot_publisher.h"
#include "kafka/change_codec.h"
#include "pipeline/router.h"
#include "test_tables.h"

namespace midflight::kafka {
namespace {

using midflight::testing::Accounts;
using midflight::testing::Make;
using midflight::testing::T;

class KafkaLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mc = MockCluster::Start(1);
    ASSERT_TRUE(mc.ok()) << mc.status().ToString();
    cluster_ = std::move(*mc);
    ASSERT_TRUE(cluster_->CreateTopic("t.m.changes", 2).ok());
  }
  KafkaLogOptions Options(uint32_t partitions = 2) {
    KafkaLogOptions o;
    o.brokers = cluster_->bootstraps();
    o.topic = "t.m.changes";
    o.source_name = "m";
    o.partitions = partitions;
    o.producer_budget_bytes = 4096;  // Append blocks on acknowledgements often
    return o;
  }
  std::unique_ptr<PartitionLog> Open() {
    auto log = OpenKafkaPartitionLog(Options());
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(*log) : nullptr;
  }
  Change Ins(int key, uint64_t lsn) {
    return Make(ChangeKind::kInsert, table_, lsn, 1,
                {Datum::Text(std::to_string(key)), Datum::Text("1"), Datum::Text("n")});
  }
  // Polls partition p until `n` changes came or 5 s passed.
  std::vector<Change> Read(PartitionLog& log, uint32_t p, size_t n) {
    std::vector<Change> out;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (out.size() < n && std::chrono::steady_clock::now() < until)
      EXPECT_TRUE(log.Poll(PartitionId{p}, n - out.size(), n - out.size(), std::chrono::milliseconds(100), &out).ok());
    return out;
  }

  std::unique_ptr<MockCluster> cluster_;
  std::shared_ptr<const TableSchema> table_ = Accounts();
};

TEST_F(KafkaLogTest, ChangesComeBackInOrderPerPartition) {
  auto log = Open();
  ASSERT_TRUE(log);
  for (int i = 1; i <= 200; ++i) ASSERT_TRUE(log->Append(PartitionId{static_cast<uint32_t>(i % 2)}, Ins(i, i)).ok());
  ASSERT_TRUE(log->Append(PartitionId{0}, Make(ChangeKind::kDelete, table_, 500, 1, {},
                                               {Datum::Text("2"), Datum::Null(), Datum::Null()}))
                  .ok());
  for (uint32_t p = 0; p < 2; ++p) {
    std::vector<Change> got = Read(*log, p, p == 0 ? 101 : 100);
    ASSERT_EQ(got.size(), p == 0 ? 101u : 100u);
    for (size_t i = 1; i < got.size(); ++i) EXPECT_LT(got[i - 1].pos, got[i].pos);
    EXPECT_EQ(got.front().table, table_);
  }
  // The delete's tombstone is not a change: nothing more comes.
  std::vector<Change> more;
  ASSERT_TRUE(log->Poll(PartitionId{0}, 1, 10, std::chrono::milliseconds(300), &more).ok());
  EXPECT_TRUE(more.empty());
  log->Close();
  EXPECT_EQ(log->Poll(PartitionId{0}, 1, 10, std::chrono::milliseconds(10), &more).code(), StatusCode::kCancelled);
  EXPECT_EQ(log->Append(PartitionId{0}, Ins(1, 900)).code(), StatusCode::kCancelled);
}

TEST_F(KafkaLogTest, ANewRunReadsOnlyWhatItAppends) {
  {
    auto first = Open();
    ASSERT_TRUE(first);
    for (int i = 1; i <= 20; ++i) ASSERT_TRUE(first->Append(PartitionId{0}, Ins(i, i)).ok());
    ASSERT_EQ(Read(*first, 0, 5).size(), 5u);  // stops with 15 unread
  }
  auto second = Open();
  ASSERT_TRUE(second);
  // The first run's messages sit before the end offset the second starts at.
  std::vector<Change> none;
  ASSERT_TRUE(second->Poll(PartitionId{0}, 1, 10, std::chrono::milliseconds(300), &none).ok());
  EXPECT_TRUE(none.empty());
  for (int i = 6; i <= 20; ++i) ASSERT_TRUE(second->Append(PartitionId{0}, Ins(i, i)).ok());
  std::vector<Change> got = Read(*second, 0, 15);
  ASSERT_EQ(got.size(), 15u);
  EXPECT_EQ(got.front().pos.commit_lsn.value(), 6u);
}

TEST_F(KafkaLogTest, AMessageOfAnotherRunAfterTheStartIsDropped) {
  auto second = Open();
  ASSERT_TRUE(second);
  {
    // A producer of an earlier run still delivering after the second run
    // took its start offsets (it was in flight when its process died).
    auto first = Open();
    ASSERT_TRUE(first);
    for (int i = 1; i <= 5; ++i) ASSERT_TRUE(first->Append(PartitionId{0}, Ins(i, i)).ok());
  }
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(second->Append(PartitionId{0}, Ins(i, i)).ok());
  std::vector<Change> got = Read(*second, 0, 5);
  ASSERT_EQ(got.size(), 5u);
  std::vector<Change> more;
  ASSERT_TRUE(second->Poll(PartitionId{0}, 1, 10, std::chrono::milliseconds(300), &more).ok());
  EXPECT_TRUE(more.empty());
}

TEST_F(KafkaLogTest, ATopicWithAnotherPartitionCountIsRefused) {
  auto log = OpenKafkaPartitionLog(Options(3));
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kOperator);
  EXPECT_EQ(log.status().message(),
            "kafka topic t.m.changes has 2 partitions but the migration has 3: one topic partition per applier keeps "
            "each key's order; recreate the topic with 3 partitions or use another topic_prefix");
}

TEST_F(KafkaLogTest, AChangeOverTheMessageLimitStopsNamingIt) {
  KafkaLogOptions o = Options();
  o.max_message_bytes = 1024;
  auto log = OpenKafkaPartitionLog(o);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  Change big = Make(ChangeKind::kInsert, table_, 7, 1,
                    {Datum::Text("9"), Datum::Text("1"), Datum::Text(std::string(2000, 'x'))});
  Status st = (*log)->Append(PartitionId{1}, big);
  EXPECT_EQ(st.code(), StatusCode::kOperator);
  EXPECT_NE(st.message().find("table public.accounts key 9: the change at"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("over transport.max_message_bytes 1024"), std::string::npos) << st.message();
}

// A schema registry in process (the POST a producer makes), refusing on request.
class RegistryTest : public KafkaLogTest {
 protected:
  void SetUp() override {
    KafkaLogTest::SetUp();
    auto server = http::Server::Listen("127.0.0.1:0", [this](const http::Request& r) {
      std::lock_guard<std::mutex> lock(mu_);
      if (r.method != "POST" || r.path.rfind("/subjects/", 0) != 0) return http::Json(404, "{}");
      if (refuse_) return http::Json(409, R"({"error_code": 409, "message": "incompatible with version 1"})");
      const std::string subject = r.path.substr(10, r.path.find("/versions") - 10);
      subjects_[subject] = nlohmann::json::parse(r.body)["schema"].get<std::string>();
      ids_.push_back(subjects_[subject]);
      return http::Json(200, fmt::format(R"({{"id": {}}})", ids_.size()));
    });
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }
  KafkaLogOptions WithRegistry() {
    KafkaLogOptions o = Options();
    o.topic_prefix = "t";
    o.schema_registry = "http://" + server_->address();
    return o;
  }

  // Every message of `topic`'s partition p, from the start: (key, value),
  // nullopt for a tombstone's value.
  struct Message {
    std::string key;
    std::optional<std::string> value;
  };
  std::vector<Message> ReadTopic(const std::string& topic, int32_t p) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", cluster_->bootstraps().c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "reader", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof err);
    rd_kafka_t* c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, list);
    rd_kafka_topic_partition_list_destroy(list);
    std::vector<Message> out;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < until) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(c, 100);
      if (!m) continue;
      const bool eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
      if (!m->err) {
        Message msg;
        if (m->key) msg.key.assign(static_cast<const char*>(m->key), m->key_len);
        if (m->payload) msg.value = std::string(static_cast<const char*>(m->payload), m->len);
        out.push_back(std::move(msg));
      }
      rd_kafka_message_destroy(m);
      if (eof) break;
    }
    rd_kafka_destroy_flags(c, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return out;
  }
  // A table-topic value decoded through the schema its frame names.
  nlohmann::json Decode(const std::string& value) {
    auto frame = ConfluentUnframe(value);
    EXPECT_TRUE(frame.ok()) << frame.status().ToString();
    std::lock_guard<std::mutex> lock(mu_);
    auto v = AvroDecode(nlohmann::json::parse(ids_.at(frame->first - 1)), frame->second);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : nlohmann::json();
  }

  std::mutex mu_;
  bool refuse_ = false;
  std::map<std::string, std::string> subjects_;
  std::vector<std::string> ids_;  // schema id - 1
  std::unique_ptr<http::Server> server_;
};

TEST_F(RegistryTest, TableTopicsRegisterTheirSchemasAndKeepTheStream) {
  ASSERT_TRUE(cluster_->CreateTopic("t.public.accounts", 2).ok());
  auto log = OpenKafkaPartitionLog(WithRegistry());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  for (int i = 1; i <= 50; ++i) ASSERT_TRUE((*log)->Append(PartitionId{static_cast<uint32_t>(i % 2)}, Ins(i, i)).ok());
  size_t got = Read(**log, 0, 25).size() + Read(**log, 1, 25).size();
  EXPECT_EQ(got, 50u);
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_EQ(subjects_.size(), 2u);
  auto value = nlohmann::json::parse(subjects_.at("t.public.accounts-value"));
  EXPECT_EQ(value["name"], "Envelope");
  EXPECT_EQ(value["namespace"], "t.public.accounts");
  EXPECT_EQ(nlohmann::json::parse(subjects_.at("t.public.accounts-key"))["name"], "Key");
}

// Barriers (applied by the sequencer, outside the log) reach the table
// topics: a truncate in every partition, a key move with unchanged TOASTed
// values as delete + tombstone + create; the appliers never receive them.
TEST_F(RegistryTest, BarriersReachTheTableTopicsButNotTheAppliers) {
  ASSERT_TRUE(cluster_->CreateTopic("t.public.accounts", 2).ok());
  auto opened = OpenKafkaPartitionLog(WithRegistry());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  PartitionLog& log = **opened;
  auto route = [](const Change& c) { return PartitionId{static_cast<uint32_t>(std::stoi(c.KeyText()) % 2)}; };
  ASSERT_TRUE(log.Append(PartitionId{1}, Ins(1, 1)).ok());
  ASSERT_TRUE(log.Append(PartitionId{0}, Ins(2, 2)).ok());
  ASSERT_EQ(Read(log, 1, 1).size(), 1u);
  ASSERT_EQ(Read(log, 0, 1).size(), 1u);

  Change truncate = Make(ChangeKind::kTruncate, table_, 3, 1, {});
  truncate.truncated = {table_};
  ASSERT_TRUE(log.AppendBarrier(truncate, route).ok());
  Change move = Make(ChangeKind::kUpdate, table_, 4, 1, {T("4"), T("7"), Datum::Unchanged()},
                     {T("1"), Datum::Null(), Datum::Null()});
  ASSERT_TRUE(log.AppendBarrier(move, route).ok());
  ASSERT_TRUE(log.Append(PartitionId{0}, Ins(6, 5)).ok());
  std::vector<Change> got = Read(log, 0, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].KeyText(), "6");
  for (uint32_t p : {0u, 1u}) {  // nothing else: the barriers' records are dropped
    std::vector<Change> more;
    ASSERT_TRUE(log.Poll(PartitionId{p}, 1, 1, std::chrono::milliseconds(500), &more).ok());
    EXPECT_TRUE(more.empty()) << more.front().KeyText();
  }

  auto ops = [&](uint32_t p) {
    std::vector<std::string> out;
    for (const Message& m : ReadTopic("t.public.accounts", static_cast<int32_t>(p))) {
      if (!m.value) {
        out.push_back("tombstone");
        continue;
      }
      nlohmann::json v = Decode(*m.value);
      std::string op = v["op"].get<std::string>();
      if (op == "t") {
        EXPECT_TRUE(m.key.empty());
        EXPECT_EQ(v["source"]["lsn"], 3);
      } else {
        const nlohmann::json& row = op == "d" ? v["before"] : v["after"];
        op += row["id"].dump();
        if (row["id"] == 4) {
          EXPECT_EQ(row["note"], "__debezium_unavailable_value");
        }
      }
      out.push_back(op);
    }
    return out;
  };
  EXPECT_EQ(ops(1), (std::vector<std::string>{"c1", "t", "d1", "tombstone"}));
  EXPECT_EQ(ops(0), (std::vector<std::string>{"c2", "t", "c4", "c6"}));
  // The change topic holds both barriers in every partition, for a reader
  // that applies them once every partition reached them (replay).
  EXPECT_EQ(ReadTopic("t.m.changes", 0).size(), 4u);
  EXPECT_EQ(ReadTopic("t.m.changes", 1).size(), 3u);
}

TEST_F(RegistryTest, ARefusedSchemaStopsTheLogNamingTheSubject) {
  ASSERT_TRUE(cluster_->CreateTopic("t.public.accounts", 2).ok());
  {
    std::lock_guard<std::mutex> lock(mu_);
    refuse_ = true;
  }
  auto log = OpenKafkaPartitionLog(WithRegistry());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  Status st = (*log)->Append(PartitionId{0}, Ins(1, 1));
  EXPECT_EQ(st.code(), StatusCode::kOperator);
  EXPECT_NE(st.message().find("subject t.public.accounts-key refused the schema: incompatible with version 1"),
            std::string::npos)
      << st.message();
  // Nothing after it is taken, and the appliers stop too.
  EXPECT_EQ((*log)->Append(PartitionId{0}, Ins(2, 2)).code(), StatusCode::kOperator);
  std::vector<Change> out;
  EXPECT_EQ((*log)->Poll(PartitionId{0}, 1, 1, std::chrono::milliseconds(10), &out).code(), StatusCode::kOperator);
}

TEST_F(RegistryTest, ATableTopicWithAnotherPartitionCountIsRefused) {
  ASSERT_TRUE(cluster_->CreateTopic("t.public.accounts", 3).ok());
  auto log = OpenKafkaPartitionLog(WithRegistry());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  Status st = (*log)->Append(PartitionId{0}, Ins(1, 1));
  EXPECT_EQ(st.code(), StatusCode::kOperator);
  EXPECT_NE(st.message().find("kafka topic t.public.accounts has 3 partitions but the migration has 2"),
            std::string::npos)
      << st.message();
}

// transport.publish_snapshot (kafka/snapshot_publisher.h): each copied row
// goes to its key's partition (the router's) of the change topic as a read
// record and of its table topic as Debezium's op r event; a chunk copied
// again after a restart is preceded by a reset record in every partition;
// Flush returns once Kafka holds all of it; Finish marks the last row "last".
class PublisherTest : public RegistryTest {
 protected:
  SnapshotPublisherOptions PubOptions(bool republish) {
    SnapshotPublisherOptions o;
    o.brokers = cluster_->bootstraps();
    o.topic = "t.m.changes";
    o.source_name = "m";
    o.topic_prefix = "t";
    o.schema_registry = "http://" + server_->address();
    o.partitions = 2;
    o.producer_budget_bytes = 4096;
    o.republish = republish;
    return o;
  }
  // One chunk attempt: ids [lo, hi) at `snapshot`, flushed and committed.
  void CopyChunk(CopyPublisher& pub, int number, int lo, int hi, uint64_t snapshot) {
    Chunk c{table_->id, number, Chunk::Kind::kIntRange, lo, hi};
    auto chunk = pub.Begin(table_, c, Position::Pg(snapshot));
    ASSERT_TRUE(chunk.ok()) << chunk.status().ToString();
    for (int id = lo; id < hi; ++id)
      ASSERT_TRUE((*chunk)->Row({Datum::Text(std::to_string(id)), Datum::Text("5"), Datum::Null()}).ok());
    ASSERT_TRUE((*chunk)->Flush().ok());
    (*chunk)->Committed();
  }
  NamedTableLookup named_ = [this](const TableId& id) { return id == table_->id ? table_ : nullptr; };
};

TEST_F(PublisherTest, RowsGoToTheirKeysPartitionAfterTheirChunksReset) {
  ASSERT_TRUE(cluster_->CreateTopic("t.public.accounts", 2).ok());
  {
    auto pub = OpenSnapshotPublisher(PubOptions(/*republish=*/false));
    ASSERT_TRUE(pub.ok()) << pub.status().ToString();
    CopyChunk(**pub, 0, 1, 21, 0x100);  // a first attempt: no reset
  }
  auto pub = OpenSnapshotPublisher(PubOptions(/*republish=*/true));
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  CopyChunk(**pub, 0, 1, 11, 0x200);  // the same chunk again, from a newer snapshot
  ASSERT_TRUE((*pub)->Finish().ok());

  const Router router(2);
  size_t rows = 0;
  for (int32_t p = 0; p < 2; ++p) {
    std::vector<Message> msgs = ReadTopic("t.m.changes", p);
    std::vector<LogRecord::Kind> kinds;
    for (const Message& m : msgs) {
      ASSERT_TRUE(m.value.has_value());
      auto rec = DecodeRecordAnyRun(*m.value, named_);
      ASSERT_TRUE(rec.ok()) << rec.status().ToString();
      kinds.push_back(rec->kind);
      if (rec->kind == LogRecord::Kind::kSnapshotRow) {
        EXPECT_EQ(router.Route(*rec->change).value, static_cast<uint32_t>(p)) << "key " << rec->change->KeyText();
        ++rows;
      } else {
        ASSERT_EQ(rec->kind, LogRecord::Kind::kChunkReset);
        EXPECT_EQ(rec->reset, (ChunkReset{table_->id, 0, "id", 1, 11, 0x200}));
      }
    }
    // The first attempt's rows, then the reset, then the second attempt's.
    auto reset = std::find(kinds.begin(), kinds.end(), LogRecord::Kind::kChunkReset);
    ASSERT_NE(reset, kinds.end()) << "partition " << p << " has no reset";
    EXPECT_EQ(std::count(kinds.begin(), kinds.end(), LogRecord::Kind::kChunkReset), 1);
    for (auto it = kinds.begin(); it != kinds.end(); ++it) {
      if (it != reset) {
        EXPECT_EQ(*it, LogRecord::Kind::kSnapshotRow);
      }
    }
  }
  EXPECT_EQ(rows, 30u);
  // The table topic: op r events, the last one marked "last".
  std::vector<nlohmann::json> events;
  for (int32_t p = 0; p < 2; ++p)
    for (const Message& m : ReadTopic("t.public.accounts", p)) events.push_back(Decode(*m.value));
  ASSERT_EQ(events.size(), 31u);
  size_t last = 0;
  for (const auto& e : events) {
    EXPECT_EQ(e["op"], "r");
    EXPECT_TRUE(e["before"].is_null());
    if (e["source"]["snapshot"] == "last") {
      ++last;
    } else {
      EXPECT_EQ(e["source"]["snapshot"], "true");
    }
  }
  EXPECT_EQ(last, 1u);
}

// A MySQL copy's chunk snapshot is a binlog position: its op r events carry
// MySQL's source record, the position as Debezium's file and pos.
TEST_F(PublisherTest, AMySqlChunksEventsCarryTheSnapshotsBinlogFileAndPos) {
  ASSERT_TRUE(cluster_->CreateTopic("t.public.accounts", 2).ok());
  auto pub = OpenSnapshotPublisher(PubOptions(/*republish=*/false));
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  Chunk c{table_->id, 0, Chunk::Kind::kIntRange, 1, 5};
  auto chunk = (*pub)->Begin(table_, c, Position::Binlog((uint64_t{12} << 32) | 4711));
  ASSERT_TRUE(chunk.ok()) << chunk.status().ToString();
  for (int id = 1; id < 5; ++id)
    ASSERT_TRUE((*chunk)->Row({Datum::Text(std::to_string(id)), Datum::Text("5"), Datum::Null()}).ok());
  ASSERT_TRUE((*chunk)->Flush().ok());
  (*chunk)->Committed();
  ASSERT_TRUE((*pub)->Finish().ok());
  size_t events = 0;
  for (int32_t p = 0; p < 2; ++p)
    for (const Message& m : ReadTopic("t.public.accounts", p)) {
      nlohmann::json e = Decode(*m.value);
      EXPECT_EQ(e["op"], "r");
      EXPECT_EQ(e["source"]["connector"], "mysql");
      EXPECT_EQ(e["source"]["file"], "000012");
      EXPECT_EQ(e["source"]["pos"], 4711);
      EXPECT_TRUE(e["source"]["snapshot"] == "true" || e["source"]["snapshot"] == "last") << e["source"].dump();
      ++events;
    }
  EXPECT_EQ(events, 5u);  // four rows and the last one again, marked "last"
}

TEST_F(PublisherTest, AChangeTopicWithAnotherPartitionCountIsRefused) {
  SnapshotPublisherOptions o = PubOptions(false);
  o.partitions = 3;
  auto pub = OpenSnapshotPublisher(o);
  ASSERT_FALSE(pub.ok());
  EXPECT_EQ(pub.status().message(),
            "kafka topic t.m.changes has 2 partitions but the migration has 3: one topic partition per applier keeps "
            "each key's order; recreate the topic with 3 partitions or use another topic_prefix");
}

}  // namespace
}  // namespace midflight::kafka
