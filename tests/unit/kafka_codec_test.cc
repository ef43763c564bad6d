// The Kafka change codec (kafka/change_codec.h): every Change comes back
// exactly, the envelope is Debezium's, and malformed input is DataLoss
// naming what is wrong.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kafka/change_codec.h"
#include "test_tables.h"

namespace midflight::kafka {
namespace {

using midflight::testing::Accounts;
using midflight::testing::History;
using midflight::testing::Make;
using nlohmann::json;

constexpr uint64_t kRun = 77;

class KafkaCodecTest : public ::testing::Test {
 protected:
  std::shared_ptr<const TableSchema> accounts_ = Accounts(), history_ = History();
  TableLookup lookup_ = [this](uint32_t ref) -> std::shared_ptr<const TableSchema> {
    return ref == 0 ? accounts_ : ref == 1 ? history_ : nullptr;
  };

  Change RoundTrip(const Change& c, uint32_t ref = 0, std::vector<uint32_t> truncated = {}) {
    EncodedChange m = EncodeChange(c, kRun, ref, truncated, "m1");
    auto back = DecodeChange(m.value, kRun, lookup_);
    EXPECT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_TRUE(back.ok() && back->has_value());
    return back.ok() && back->has_value() ? **back : Change{};
  }
  static void ExpectSame(const Change& a, const Change& b) {
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.table, b.table);
    EXPECT_EQ(a.pos, b.pos);
    EXPECT_EQ(a.commit_time_us, b.commit_time_us);
    EXPECT_EQ(a.values, b.values);
    EXPECT_EQ(a.old, b.old);
    EXPECT_EQ(a.check, b.check);
    EXPECT_EQ(a.truncated, b.truncated);
    EXPECT_EQ(a.truncate_restart_identity, b.truncate_restart_identity);
  }
  std::string Error(const std::string& value) {
    auto r = DecodeChange(value, kRun, lookup_);
    if (r.ok()) return "ok";
    return (r.status().code() == StatusCode::kDataLoss ? "DATA_LOSS: " : "other: ") + r.status().message();
  }
};

TEST_F(KafkaCodecTest, EveryKindComesBackExactly) {
  Change ins =
      Make(ChangeKind::kInsert, accounts_, 0x16B374D848, 3, {Datum::Text("42"), Datum::Text("-7"), Datum::Null()});
  ins.commit_time_us = 1'700'000'000'123'456;
  ins.check = ConflictCheck::kInsert;
  ExpectSame(RoundTrip(ins), ins);

  Change toast = Make(ChangeKind::kUpdate, accounts_, 9, 1, {Datum::Text("42"), Datum::Text("1"), Datum::Unchanged()});
  toast.check = ConflictCheck::kUpdate;
  ExpectSame(RoundTrip(toast), toast);

  Change move = Make(ChangeKind::kUpdate, accounts_, 9, 2, {Datum::Text("43"), Datum::Text("1"), Datum::Text("x")},
                     {Datum::Text("42"), Datum::Null(), Datum::Null()});
  ExpectSame(RoundTrip(move), move);

  Change del = Make(ChangeKind::kDelete, accounts_, UINT64_MAX, UINT32_MAX, {},
                    {Datum::Text("42"), Datum::Null(), Datum::Null()});
  del.check = ConflictCheck::kDelete;
  ExpectSame(RoundTrip(del), del);

  Change trunc = Make(ChangeKind::kTruncate, accounts_, 10, 1, {});
  trunc.truncated = {accounts_, history_};
  trunc.truncate_restart_identity = true;
  ExpectSame(RoundTrip(trunc, 0, {0, 1}), trunc);
}

TEST_F(KafkaCodecTest, TextThatIsNotUtf8ComesBackByteForByte) {
  std::string bytes = "caf\xe9 \xff\xfe\x00 \xc0\xaf \xed\xa0\x80 ok";
  bytes.push_back('\0');
  Change c = Make(ChangeKind::kInsert, accounts_, 5, 1, {Datum::Text("1"), Datum::Text("2"), Datum::Text(bytes)});
  ExpectSame(RoundTrip(c), c);
  Change utf8 =
      Make(ChangeKind::kInsert, accounts_, 5, 2, {Datum::Text("1"), Datum::Text("2"), Datum::Text("café ✓ 𝄞")});
  ExpectSame(RoundTrip(utf8), utf8);
}

TEST_F(KafkaCodecTest, TheEnvelopeIsDebeziums) {
  Change upd = Make(ChangeKind::kUpdate, accounts_, 1000, 4, {Datum::Text("42"), Datum::Text("5"), Datum::Unchanged()});
  upd.commit_time_us = 1'700'000'000'123'456;
  EncodedChange m = EncodeChange(upd, kRun, 0, {}, "m1");
  EXPECT_EQ(json::parse(m.key), json({{"id", "42"}}));
  json v = json::parse(m.value);
  EXPECT_EQ(v["op"], "u");
  EXPECT_EQ(v["ts_ms"], 1'700'000'000'123);
  EXPECT_TRUE(v["before"].is_null());
  EXPECT_EQ(v["after"], json({{"id", "42"}, {"balance", "5"}, {"note", "__debezium_unavailable_value"}}));
  EXPECT_EQ(v["source"]["connector"], "midflight");
  EXPECT_EQ(v["source"]["name"], "m1");
  EXPECT_EQ(v["source"]["schema"], "public");
  EXPECT_EQ(v["source"]["table"], "accounts");
  EXPECT_EQ(v["source"]["lsn"], 1000);
  EXPECT_EQ(v["source"]["sequence"], 4);

  Change del = Make(ChangeKind::kDelete, accounts_, 1000, 5, {}, {Datum::Text("42"), Datum::Null(), Datum::Null()});
  m = EncodeChange(del, kRun, 0, {}, "m1");
  v = json::parse(m.value);
  EXPECT_EQ(json::parse(m.key), json({{"id", "42"}}));
  EXPECT_EQ(v["op"], "d");
  EXPECT_TRUE(v["after"].is_null());
  EXPECT_EQ(v["before"]["id"], "42");

  // A table without a key is keyed by its whole row.
  Change h = Make(ChangeKind::kInsert, history_, 1, 1, {Datum::Text("1"), Datum::Text("b")});
  EXPECT_EQ(json::parse(EncodeChange(h, kRun, 1, {}, "m1").key), json({{"a", "1"}, {"b", "b"}}));
}

TEST_F(KafkaCodecTest, AnotherRunsMessageIsNotDecoded) {
  Change c = Make(ChangeKind::kInsert, accounts_, 5, 1, {Datum::Text("1"), Datum::Text("2"), Datum::Null()});
  // Its table ref would be unknown here: it is not looked up.
  EncodedChange m = EncodeChange(c, kRun + 1, 99, {}, "m1");
  auto r = DecodeChange(m.value, kRun, lookup_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->has_value());
}

TEST_F(KafkaCodecTest, AnApplyWorkerReadsEveryRunByTableName) {
  Change c = Make(ChangeKind::kUpdate, accounts_, 5, 2, {Datum::Text("1"), Datum::Text("2"), Datum::Null()});
  // Another run's message, its table ref meaningless here: found by name.
  EncodedChange m = EncodeChange(c, kRun + 1, 99, {}, "m1");
  NamedTableLookup by_name = [this](const TableId& id) -> std::shared_ptr<const TableSchema> {
    return id == accounts_->id ? accounts_ : nullptr;
  };
  auto r = DecodeChangeAnyRun(m.value, by_name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  ExpectSame(**r, c);
  NamedTableLookup none = [](const TableId&) -> std::shared_ptr<const TableSchema> { return nullptr; };
  auto unknown = DecodeChangeAnyRun(m.value, none);
  EXPECT_EQ(unknown.status().message(),
            fmt::format("kafka change message: table {} is not one the migration moves", accounts_->id.ToString()));
}

TEST_F(KafkaCodecTest, MalformedInputIsDataLossNamingTheProblem) {
  EXPECT_EQ(Error("{"), "DATA_LOSS: kafka change message: not valid JSON");
  EXPECT_EQ(Error("[]"), "DATA_LOSS: kafka change message: not a JSON object");
  EXPECT_EQ(Error("{}"), "DATA_LOSS: kafka change message: 'midflight' is missing");
  Change c = Make(ChangeKind::kInsert, accounts_, 5, 1, {Datum::Text("1"), Datum::Text("2"), Datum::Null()});
  json v = json::parse(EncodeChange(c, kRun, 0, {}, "m1").value);
  auto with = [&](const std::function<void(json&)>& f) {
    json w = v;
    f(w);
    return Error(w.dump());
  };
  EXPECT_EQ(with([](json& w) { w["midflight"]["v"] = 2; }),
            "DATA_LOSS: kafka change message: encoding version 2 is not 1");
  EXPECT_EQ(with([](json& w) { w["midflight"]["table"] = 7; }), "DATA_LOSS: kafka change message: unknown table ref 7");
  EXPECT_EQ(with([](json& w) { w["source"]["table"] = "other"; }),
            "DATA_LOSS: kafka change message: source.schema/table do not name table ref 0 (public.accounts)");
  EXPECT_EQ(with([](json& w) { w["midflight"]["values"].erase(0); }),
            "DATA_LOSS: kafka change message: 'values' holds 2 values, the table has 3 writable columns");
  EXPECT_EQ(with([](json& w) { w["midflight"]["values"][1] = 5; }),
            "DATA_LOSS: kafka change message: 'values' holds a value that is not a string, null, hex or unchanged");
  EXPECT_EQ(with([](json& w) {
              w["midflight"]["values"][1] = {{"hex", "zz"}};
            }),
            "DATA_LOSS: kafka change message: 'values' holds bad hex");
  EXPECT_EQ(with([](json& w) { w["midflight"]["lsn"] = -1; }),
            "DATA_LOSS: kafka change message: 'lsn' is not an unsigned integer");
  EXPECT_EQ(with([](json& w) { w["midflight"]["kind"] = "upsert"; }),
            "DATA_LOSS: kafka change message: kind 'upsert' is unknown");
  EXPECT_EQ(with([](json& w) { w["midflight"]["values"] = json::array(); }),
            "DATA_LOSS: kafka change message: a insert without a new image");
}

// transport.publish_snapshot: a copied row is Debezium's read event and
// comes back, for a replay, as an unchecked insert; the run's own log and
// the plain decoders skip it.
TEST_F(KafkaCodecTest, ASnapshotRowIsAReadEventOnlyAReplayTakes) {
  Change row = Make(ChangeKind::kInsert, accounts_, 0x5000, 0, {Datum::Text("42"), Datum::Text("7"), Datum::Null()});
  row.commit_time_us = 1'700'000'000'000'000;
  EncodedChange m = EncodeSnapshotRow(row, kRun, "m1", 3);
  EXPECT_EQ(json::parse(m.key), json({{"id", "42"}}));
  json v = json::parse(m.value);
  EXPECT_EQ(v["op"], "r");
  EXPECT_TRUE(v["before"].is_null());
  EXPECT_EQ(v["after"]["id"], "42");
  EXPECT_EQ(v["source"]["snapshot"], "true");
  EXPECT_EQ(v["midflight"]["kind"], "read");
  EXPECT_EQ(v["midflight"]["chunk"], 3);

  auto same_run = DecodeChange(m.value, kRun, lookup_);
  ASSERT_TRUE(same_run.ok()) << same_run.status().ToString();
  EXPECT_FALSE(same_run->has_value()) << "the run's own log skips snapshot rows";
  NamedTableLookup named = [this](const TableId& id) { return id == accounts_->id ? accounts_ : nullptr; };
  auto any = DecodeChangeAnyRun(m.value, named);
  ASSERT_TRUE(any.ok());
  EXPECT_FALSE(any->has_value()) << "apply workers skip snapshot rows";

  auto rec = DecodeRecordAnyRun(m.value, named);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->kind, LogRecord::Kind::kSnapshotRow);
  ASSERT_TRUE(rec->change.has_value());
  EXPECT_EQ(rec->change->kind, ChangeKind::kInsert);
  EXPECT_EQ(rec->change->check, ConflictCheck::kNone);
  EXPECT_EQ(rec->change->values, row.values);
  EXPECT_EQ(rec->change->pos, row.pos);

  // A change still decodes as one.
  Change upd = Make(ChangeKind::kUpdate, accounts_, 0x6000, 2, {Datum::Text("42"), Datum::Text("8"), Datum::Null()});
  auto change = DecodeRecordAnyRun(EncodeChange(upd, kRun, 0, {}, "m1").value, named);
  ASSERT_TRUE(change.ok());
  EXPECT_EQ(change->kind, LogRecord::Kind::kChange);
  ASSERT_TRUE(change->change.has_value());
  ExpectSame(*change->change, upd);
}

TEST_F(KafkaCodecTest, AChunkResetComesBackExactly) {
  NamedTableLookup named = [this](const TableId& id) { return id == accounts_->id ? accounts_ : nullptr; };
  ChunkReset range{accounts_->id, 2, "id", 1000, 2000, 0x7000};
  ChunkReset whole{accounts_->id, -1, "", std::nullopt, std::nullopt, 0x7000};
  ChunkReset open_ended{accounts_->id, 4, "id", 4000, std::nullopt, 0x7000};
  for (const ChunkReset& r : {range, whole, open_ended}) {
    EncodedChange m = EncodeChunkReset(r, kRun, "m1");
    auto rec = DecodeRecordAnyRun(m.value, named);
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    EXPECT_EQ(rec->kind, LogRecord::Kind::kChunkReset);
    EXPECT_EQ(rec->reset, r);
    EXPECT_EQ(json::parse(m.value)["op"], "midflight.reset");
    auto same_run = DecodeChange(m.value, kRun, lookup_);
    ASSERT_TRUE(same_run.ok()) << same_run.status().ToString();
    EXPECT_FALSE(same_run->has_value());
  }
  NamedTableLookup none = [](const TableId&) { return nullptr; };
  auto unknown = DecodeRecordAnyRun(EncodeChunkReset(range, kRun, "m1").value, none);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().message(), "kafka change message: table public.accounts is not one the migration moves");
  json bad = json::parse(EncodeChunkReset(range, kRun, "m1").value);
  bad["midflight"]["lo"] = "low";
  auto lo = DecodeRecordAnyRun(bad.dump(), named);
  ASSERT_FALSE(lo.ok());
  EXPECT_EQ(lo.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(lo.status().message(), "kafka change message: 'lo' is not an integer or null");
}

}  // namespace
}  // namespace midflight::kafka
