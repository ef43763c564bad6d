// Debezium's Avro events (kafka/avro_codec.h): the binary primitives, the
// Confluent frame, decimals as Connect encodes them, and whole events read
// back through the schemas midflight registers.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kafka/avro_codec.h"
#include "kafka/change_codec.h"

namespace midflight::kafka {
namespace {

using nlohmann::json;

std::string Hex(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += fmt::format("{:02x}", c);
  return out;
}

TEST(KafkaAvroTest, LongsAreZigzagVarints) {
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{1}, int64_t{63}, int64_t{-64}, int64_t{64}, int64_t{300},
                    INT64_MAX, INT64_MIN}) {
    AvroWriter w;
    w.Long(v);
    auto back = AvroDecode("long", w.out());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->get<int64_t>(), v);
  }
  AvroWriter w;
  w.Long(-64);
  EXPECT_EQ(Hex(w.out()), "7f");  // the specification's example
  w.out().clear();
  w.Long(64);
  EXPECT_EQ(Hex(w.out()), "8001");
}

TEST(KafkaAvroTest, DecoderRefusesShortAndLeftOverData) {
  EXPECT_FALSE(AvroDecode("long", std::string("\x80", 1)).ok());
  EXPECT_FALSE(AvroDecode("string", std::string("\x06" "ab", 3)).ok());
  EXPECT_FALSE(AvroDecode("int", std::string("\x02\x02", 2)).ok());
  EXPECT_FALSE(AvroDecode(json::array({"null", "int"}), std::string("\x04", 1)).ok());  // branch 2 of 2
  EXPECT_FALSE(AvroDecode("nosuchtype", std::string("\x00", 1)).ok());
  auto ok = AvroDecode(json::array({"null", "string"}), std::string("\x02\x04hi", 4));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "hi");
}

TEST(KafkaAvroTest, ConfluentFrame) {
  std::string m = ConfluentFrame(0x01020304, "body");
  EXPECT_EQ(Hex(m.substr(0, 5)), "0001020304");
  auto back = ConfluentUnframe(m);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->first, 0x01020304);
  EXPECT_EQ(back->second, "body");
  EXPECT_FALSE(ConfluentUnframe("\x01" "0000").ok());
  EXPECT_FALSE(ConfluentUnframe(std::string("\0\0", 2)).ok());
}

TEST(KafkaAvroTest, DecimalsAreBigEndianTwosComplement) {
  EXPECT_EQ(Hex(*DecimalBytes("0", 0)), "00");
  EXPECT_EQ(Hex(*DecimalBytes("1", 0)), "01");
  EXPECT_EQ(Hex(*DecimalBytes("-1", 0)), "ff");
  EXPECT_EQ(Hex(*DecimalBytes("127", 0)), "7f");
  EXPECT_EQ(Hex(*DecimalBytes("128", 0)), "0080");
  EXPECT_EQ(Hex(*DecimalBytes("-128", 0)), "80");
  EXPECT_EQ(Hex(*DecimalBytes("-129", 0)), "ff7f");
  EXPECT_EQ(Hex(*DecimalBytes("12.5", 2)), "04e2");   // 1250
  EXPECT_EQ(Hex(*DecimalBytes("-12.50", 2)), "fb1e");  // -1250
  EXPECT_EQ(Hex(*DecimalBytes("1.200", 1)), "0c");     // trailing zeros may go
  EXPECT_EQ(Hex(*DecimalBytes("18446744073709551615", 0)), "00ffffffffffffffff");
  EXPECT_EQ(Hex(*DecimalBytes("18446744073709551616", 0)), "010000000000000000");
  EXPECT_FALSE(DecimalBytes("1.234", 2));
  EXPECT_FALSE(DecimalBytes("NaN", 0));
  EXPECT_FALSE(DecimalBytes("", 0));
  EXPECT_FALSE(DecimalBytes("1e5", 0));
}

ColumnSchema Col(const std::string& name, TypeKind kind, bool not_null = false) {
  ColumnSchema c;
  c.name = name;
  c.type.kind = kind;
  c.not_null = not_null;
  return c;
}

std::shared_ptr<const TableSchema> Kinds() {
  auto t = std::make_shared<TableSchema>();
  t->id = {"public", "kinds"};
  ColumnSchema id = Col("id", TypeKind::kInt, true);
  id.type.width = 8;
  ColumnSchema small = Col("small", TypeKind::kInt);
  small.type.width = 2;
  ColumnSchema price = Col("price", TypeKind::kDecimal);
  price.type.precision = 12;
  price.type.scale = 2;
  ColumnSchema anynum = Col("anynum", TypeKind::kDecimal);
  ColumnSchema ratio = Col("ratio", TypeKind::kFloat);
  ratio.type.width = 8;
  ColumnSchema at = Col("at", TypeKind::kTimestamp);
  at.type.precision = 6;
  ColumnSchema atz = Col("atz", TypeKind::kTimestamp);
  atz.type.with_zone = true;
  ColumnSchema tm = Col("tm", TypeKind::kTime);
  ColumnSchema blob = Col("blob", TypeKind::kBytes);
  ColumnSchema doc = Col("doc", TypeKind::kJson);
  ColumnSchema nums = Col("nums2", TypeKind::kOther);  // known by name only, as in a stream's layout
  nums.type.native = nums.type.native_base = "numeric";  // a second VariableScaleDecimal: by name
  t->columns = {id,    small, price, anynum, ratio, Col("ok", TypeKind::kBool), Col("day", TypeKind::kDate),
                at,    atz,   tm,    blob,   doc,   Col("note", TypeKind::kText), Col("u", TypeKind::kUuid),
                nums};
  t->key = {0};
  t->key_kind = KeyKind::kPrimaryKey;
  t->Finalize();
  return t;
}

TEST(KafkaAvroTest, EventsReadBackThroughTheirSchemas) {
  auto t = Kinds();
  auto avro = DebeziumAvroTable::Build(t, "mf.public.kinds", PositionKind::kPgLsn);
  ASSERT_TRUE(avro.ok()) << avro.status().ToString();
  json key_schema = json::parse((*avro)->key_schema());
  json value_schema = json::parse((*avro)->value_schema());
  EXPECT_EQ(key_schema["name"], "Key");
  EXPECT_EQ(key_schema["namespace"], "mf.public.kinds");
  EXPECT_EQ(value_schema["name"], "Envelope");
  // The logical types are in the text midflight registers.
  EXPECT_NE((*avro)->value_schema().find("\"logicalType\":\"decimal\""), std::string::npos);
  EXPECT_NE((*avro)->value_schema().find("io.debezium.time.MicroTimestamp"), std::string::npos);

  Change c;
  c.kind = ChangeKind::kInsert;
  c.table = t;
  c.pos = ChangePosition{Position::Pg(0x16B374D848), 3};
  c.commit_time_us = 1'700'000'000'123'456;
  c.values = {Datum::Text("42"),
              Datum::Text("-7"),
              Datum::Text("-12.50"),
              Datum::Text("3.14159"),
              Datum::Text("0.5"),
              Datum::Text("t"),
              Datum::Text("2024-02-29"),
              Datum::Text("1969-12-31 23:59:59.5"),
              Datum::Text("2024-01-02 03:04:05.25+02"),
              Datum::Text("10:15:30.000001"),
              Datum::Text("\\x00ff"),
              Datum::Text("{\"a\": 1}"),
              Datum::Null(),
              Datum::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
              Datum::Text("NaN")};
  auto key = (*avro)->EncodeKey(c);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  auto k = AvroDecode(key_schema, *key);
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(*k, json({{"id", 42}}));

  auto value = (*avro)->EncodeValue(c, "m1", 1234, false);
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  auto v = AvroDecode(value_schema, *value);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE((*v)["before"].is_null());
  const json& a = (*v)["after"];
  EXPECT_EQ(a["id"], 42);
  EXPECT_EQ(a["small"], -7);
  EXPECT_EQ(Hex(a["price"].get<std::string>()), "fb1e");
  EXPECT_EQ(a["anynum"]["scale"], 5);
  EXPECT_EQ(Hex(a["anynum"]["value"].get<std::string>()), "04cb2f");  // 314159
  EXPECT_EQ(a["ratio"], 0.5);
  EXPECT_EQ(a["ok"], true);
  EXPECT_EQ(a["day"], 19782);  // days from 1970-01-01 to 2024-02-29
  EXPECT_EQ(a["at"], -500000);
  EXPECT_EQ(a["atz"], "2024-01-02T01:04:05.25Z");
  EXPECT_EQ(a["tm"], 36930000001);
  EXPECT_EQ(Hex(a["blob"].get<std::string>()), "00ff");
  EXPECT_EQ(a["doc"], "{\"a\": 1}");
  EXPECT_TRUE(a["note"].is_null());
  EXPECT_EQ(a["u"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  EXPECT_TRUE(a["nums2"].is_null());  // NaN has no Connect decimal
  const json& s = (*v)["source"];
  EXPECT_EQ(s["connector"], "postgresql");
  EXPECT_EQ(s["name"], "m1");
  EXPECT_EQ(s["lsn"], 0x16B374D848);
  EXPECT_EQ(s["midflight_seq"], 3);
  EXPECT_EQ(s["ts_ms"], 1'700'000'000'123);
  EXPECT_EQ(s["snapshot"], "false");
  EXPECT_EQ((*v)["op"], "c");
  EXPECT_EQ((*v)["ts_ms"], 1234);

  // A delete: before holds the key (the rest null), after is null, op d.
  Change d;
  d.kind = ChangeKind::kDelete;
  d.table = t;
  d.pos = c.pos;
  d.old.assign(t->writable.size(), Datum::Null());
  d.old[0] = Datum::Text("42");
  auto dv = (*avro)->EncodeValue(d, "m1", 1, false);
  ASSERT_TRUE(dv.ok()) << dv.status().ToString();
  auto dj = AvroDecode(value_schema, *dv);
  ASSERT_TRUE(dj.ok()) << dj.status().ToString();
  EXPECT_EQ((*dj)["op"], "d");
  EXPECT_EQ((*dj)["before"]["id"], 42);
  EXPECT_TRUE((*dj)["after"].is_null());
  auto dk = (*avro)->EncodeKey(d);
  ASSERT_TRUE(dk.ok());
  EXPECT_EQ(*dk, *key);

  // A key column that does not parse names table and column.
  Change bad = c;
  bad.values[0] = Datum::Text("x");
  auto err = (*avro)->EncodeKey(bad);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("table public.kinds column id"), std::string::npos) << err.status().message();
}

TEST(KafkaAvroTest, MysqlSourceAndUnsignedAndGeometry) {
  auto t = std::make_shared<TableSchema>();
  t->id = {"shop", "places"};
  ColumnSchema id = Col("id", TypeKind::kInt, true);
  id.type.width = 8;
  id.type.is_signed = false;
  ColumnSchema geo = Col("geo", TypeKind::kOther);
  geo.type.native = geo.type.native_base = "point";
  ColumnSchema size = Col("size", TypeKind::kOther);
  size.type.native = "set('s','m','l')";
  size.type.native_base = "set";
  t->columns = {id, geo, size};
  t->key = {0};
  t->key_kind = KeyKind::kPrimaryKey;
  t->Finalize();
  auto avro = DebeziumAvroTable::Build(t, "mf.shop.places", PositionKind::kBinlog);
  ASSERT_TRUE(avro.ok());
  EXPECT_NE((*avro)->value_schema().find("\"allowed\":\"s,m,l\""), std::string::npos);
  Change c;
  c.kind = ChangeKind::kUpdate;
  c.table = t;
  c.pos = ChangePosition{Position::Binlog((uint64_t{12} << 32) | 4711), 1};
  std::string wkb("\xe6\x10\x00\x00\x01\x01\x00\x00\x00", 9);  // SRID 4326, then WKB's start
  c.values = {Datum::Text("18446744073709551615"), Datum::Text(wkb), Datum::Text("s,l")};
  auto value = (*avro)->EncodeValue(c, "m1", 1, false);
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  auto v = AvroDecode(json::parse((*avro)->value_schema()), *value);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ((*v)["op"], "u");
  EXPECT_EQ(Hex((*v)["after"]["id"].get<std::string>()), "00ffffffffffffffff");
  EXPECT_EQ((*v)["after"]["geo"]["srid"], 4326);
  EXPECT_EQ(Hex((*v)["after"]["geo"]["wkb"].get<std::string>()), "0101000000");
  EXPECT_EQ((*v)["after"]["size"], "s,l");
  EXPECT_EQ((*v)["source"]["connector"], "mysql");
  EXPECT_EQ((*v)["source"]["file"], "000012");
  EXPECT_EQ((*v)["source"]["pos"], 4711);
  EXPECT_EQ((*v)["source"]["db"], "shop");
}

// MariaDB's UUID, INET6 and INET4 come from the binlog as their stored bytes
// (16, 16, 4); Debezium's events carry the text the server prints, as a
// string, in the Avro event (a UUID key too) and the JSON envelope's images.
// The JSON envelope's own copy keeps the bytes, so the Change is rebuilt exactly.
TEST(KafkaAvroTest, MariadbUuidAndInetAreStrings) {
  auto t = std::make_shared<TableSchema>();
  t->id = {"shop", "hosts"};
  auto typed = [](const std::string& name, const std::string& base, bool key) {
    ColumnSchema c = Col(name, TypeKind::kOther, key);
    c.type.native = c.type.native_base = base;
    return c;
  };
  t->columns = {typed("id", "uuid", true), typed("v6", "inet6", false), typed("v4", "inet4", false),
                typed("mapped", "inet6", false)};
  t->key = {0};
  t->key_kind = KeyKind::kPrimaryKey;
  t->Finalize();
  auto avro = DebeziumAvroTable::Build(t, "mf.shop.hosts", PositionKind::kBinlog);
  ASSERT_TRUE(avro.ok()) << avro.status().ToString();
  const json key_schema = json::parse((*avro)->key_schema());
  const json schema = json::parse((*avro)->value_schema());
  EXPECT_EQ(key_schema["fields"][0]["type"], "string");
  Change c;
  c.kind = ChangeKind::kInsert;
  c.table = t;
  c.pos = ChangePosition{Position::Binlog((uint64_t{3} << 32) | 900), 1};
  auto bytes = [](const char* hex) {
    std::string b;
    EXPECT_TRUE(Unhex(hex, &b));
    return b;
  };
  c.values = {Datum::Text(bytes("6ccd780cbaba102695645b8c656024db")),
              Datum::Text(bytes("20010db8000000000000ff0000428329")), Datum::Text(bytes("c0a80001")),
              Datum::Text(bytes("00000000000000000000ffff0a010203"))};
  auto value = (*avro)->EncodeValue(c, "m1", 1, false);
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  auto v = AvroDecode(schema, *value);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ((*v)["after"]["id"], "6ccd780c-baba-1026-9564-5b8c656024db");
  EXPECT_EQ((*v)["after"]["v6"], "2001:db8::ff00:42:8329");
  EXPECT_EQ((*v)["after"]["v4"], "192.168.0.1");
  EXPECT_EQ((*v)["after"]["mapped"], "::ffff:10.1.2.3");
  auto key = (*avro)->EncodeKey(c);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  auto k = AvroDecode(key_schema, *key);
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ((*k)["id"], "6ccd780c-baba-1026-9564-5b8c656024db");

  EncodedChange m = EncodeChange(c, 1, 0, {}, "m1");
  const json envelope = json::parse(m.value);
  EXPECT_EQ(envelope["after"]["id"], "6ccd780c-baba-1026-9564-5b8c656024db");
  EXPECT_EQ(envelope["after"]["v4"], "192.168.0.1");
  EXPECT_EQ(envelope["midflight"]["values"][2], json({{"hex", "c0a80001"}}));
  EXPECT_EQ(json::parse(m.key)["id"], "6ccd780c-baba-1026-9564-5b8c656024db");
  // A value of another length is already text (an older snapshot record): as it is.
  EXPECT_EQ(FixedBinaryText("uuid", "123e4567-e89b-42d3-a456-426614174000"), "123e4567-e89b-42d3-a456-426614174000");
  EXPECT_EQ(FixedBinaryText("varbinary", bytes("c0a80001")), bytes("c0a80001"));
}

// MySQL BIT as Debezium has it: BIT(1) a boolean, BIT(n) its bytes
// little-endian (io.debezium.data.Bits); ENUM and SET by their labels; a truncate event: no images, op t,
// the source at its position.
TEST(KafkaAvroTest, MysqlBitsAndTruncate) {
  auto t = std::make_shared<TableSchema>();
  t->id = {"shop", "flags"};
  ColumnSchema id = Col("id", TypeKind::kInt, true);
  id.type.width = 4;
  ColumnSchema one = Col("one", TypeKind::kOther);
  one.type.native = "bit(1)";
  one.type.native_base = "bit";
  ColumnSchema ten = Col("ten", TypeKind::kOther);
  ten.type.native = "bit(10)";
  ten.type.native_base = "bit";
  ColumnSchema color = Col("color", TypeKind::kEnum);
  color.type.native = "enum('red','green')";
  ColumnSchema marks = Col("marks", TypeKind::kOther);
  marks.type.native = "set('a','b','c')";
  marks.type.native_base = "set";
  t->columns = {id, one, ten, color, marks};
  t->key = {0};
  t->key_kind = KeyKind::kPrimaryKey;
  t->Finalize();
  auto avro = DebeziumAvroTable::Build(t, "mf.shop.flags", PositionKind::kBinlog);
  ASSERT_TRUE(avro.ok());
  EXPECT_NE((*avro)->value_schema().find(R"("connect.parameters":{"length":"10"},"connect.name":"io.debezium.data.Bits")"),
            std::string::npos)
      << (*avro)->value_schema();
  const json schema = json::parse((*avro)->value_schema());
  Change c;
  c.kind = ChangeKind::kInsert;
  c.table = t;
  c.pos = ChangePosition{Position::Binlog((uint64_t{3} << 32) | 900), 2};
  // 513 = 0b10_0000_0001; the binlog gives an ENUM's index and a SET's bitmask.
  c.values = {Datum::Text("7"), Datum::Text("1"), Datum::Text("513"), Datum::Text("2"), Datum::Text("5")};
  auto value = (*avro)->EncodeValue(c, "m1", 1, false);
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  auto v = AvroDecode(schema, *value);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ((*v)["after"]["one"], true);
  EXPECT_EQ(Hex((*v)["after"]["ten"].get<std::string>()), "0102");
  EXPECT_EQ((*v)["after"]["color"], "green");
  EXPECT_EQ((*v)["after"]["marks"], "a,c");
  c.values[3] = Datum::Text("3");  // past the members: null, named
  auto past = (*avro)->EncodeValue(c, "m1", 1, false);
  ASSERT_TRUE(past.ok()) << past.status().ToString();
  auto pj = AvroDecode(schema, *past);
  ASSERT_TRUE(pj.ok());
  EXPECT_TRUE((*pj)["after"]["color"].is_null());

  Change tr;
  tr.kind = ChangeKind::kTruncate;
  tr.table = t;
  tr.truncated = {t};
  tr.pos = ChangePosition{Position::Binlog((uint64_t{3} << 32) | 1200), 1};
  tr.commit_time_us = 1'700'000'000'000'000;
  auto tv = (*avro)->EncodeTruncate(tr, "m1", 5);
  ASSERT_TRUE(tv.ok()) << tv.status().ToString();
  auto tj = AvroDecode(schema, *tv);
  ASSERT_TRUE(tj.ok()) << tj.status().ToString();
  EXPECT_EQ((*tj)["op"], "t");
  EXPECT_TRUE((*tj)["before"].is_null());
  EXPECT_TRUE((*tj)["after"].is_null());
  EXPECT_EQ((*tj)["source"]["table"], "flags");
  EXPECT_EQ((*tj)["source"]["pos"], 1200);
  EXPECT_EQ((*tj)["source"]["ts_ms"], 1'700'000'000'000);
  EXPECT_EQ((*tj)["ts_ms"], 5);
  EXPECT_EQ((*avro)->EncodeTruncate(c, "m1", 5).status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace midflight::kafka
