// Tests for the pgoutput decoder, mostly on bytes captured from a real
// PostgreSQL 15.18 server.
//
// How the bytes were captured (recapture the same way; OIDs, xids and LSNs
// will differ, which only changes the constants below):
//
//   initdb -D /tmp/pg/data -A trust -U postgres
//   pg_ctl -D /tmp/pg/data -w start -o "-c wal_level=logical -c port=55999
//          -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp"
//
//   -- setup (nothing here is streamed: the slot is created last)
//   CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
//   CREATE TABLE items (
//     id int PRIMARY KEY, name text, price numeric(10,2), blob bytea, big text,
//     doc jsonb, ts timestamptz, tags int[], feeling mood,
//     twice int GENERATED ALWAYS AS (id * 2) STORED);
//   ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
//   CREATE TABLE audit (id int, note text, big text);
//   ALTER TABLE audit REPLICA IDENTITY FULL;
//   ALTER TABLE audit ALTER COLUMN big SET STORAGE EXTERNAL;
//   INSERT INTO items (id, name, big) VALUES (100, 'toasty', repeat('x', 2500));
//   INSERT INTO audit VALUES (1, 'first', repeat('y', 2500));
//   CREATE PUBLICATION pub FOR TABLE items, audit;
//   SELECT pg_create_logical_replication_slot('s', 'pgoutput');
//
//   -- batch 1: one autocommit transaction per statement
//   SET TIME ZONE 'UTC';
//   INSERT INTO items (id, name, price, blob, big, doc, ts, tags, feeling)
//     VALUES (1, 'widget', 12.50, '\xdeadbeef', 'small', '{"a": 1, "b": [true, null]}',
//             '2024-01-02 03:04:05.678901+00', '{1,2,NULL,4}', 'happy');
//   INSERT INTO items (id, name) VALUES (2, NULL);
//   UPDATE items SET name = 'toasty2' WHERE id = 100;   -- 'u' for big
//   UPDATE items SET id = 3 WHERE id = 2;               -- 'K' old key
//   DELETE FROM items WHERE id = 1;                     -- 'K'
//   UPDATE audit SET note = 'second' WHERE id = 1;      -- 'O' old row
//   DELETE FROM audit WHERE id = 1;                     -- 'O'
//   TRUNCATE items, audit;
//   SELECT pg_logical_emit_message(true, 'mf', 'hello');
//
//   SELECT lsn, xid, encode(data, 'hex')
//     FROM pg_logical_slot_get_binary_changes('s', NULL, NULL, 'proto_version', '1',
//          'publication_names', 'pub', 'messages', 'true');
//
//   -- batch 2: a transaction replayed from a replication origin, then a
//   -- non-transactional message
//   SELECT pg_replication_origin_create('upstream');
//   SELECT pg_replication_origin_session_setup('upstream');
//   BEGIN;
//   SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-02 03:04:05+00');
//   INSERT INTO items (id, name, price, ts)
//     VALUES (7, 'from-origin', 1.5, '2024-01-02 03:04:05+00');
//   COMMIT;
//   SELECT pg_replication_origin_session_reset();
//   SELECT pg_logical_emit_message(false, 'mf', 'not-txn');
//
//   The same peek as above, once as is and once adding 'binary', 'true'.
//
// pg_logical_slot_{peek,get}_binary_changes returns one row per pgoutput
// message, which gives the message boundaries that a walsender would put in
// separate XLogData frames.

#include "engines/postgres/pgoutput.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <iterator>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace midflight::pg {
namespace {

using Bytes = std::vector<uint8_t>;
using Kind = PgColumnValue::Kind;

Bytes Hex(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out;
  if (hex.size() % 2 != 0) {
    ADD_FAILURE() << "odd-length hex string";
    return out;
  }
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      ADD_FAILURE() << "bad hex at " << i;
      return out;
    }
    out.push_back(static_cast<uint8_t>(hi * 16 + lo));
  }
  return out;
}

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes Repeat(char c, size_t n) { return Bytes(n, static_cast<uint8_t>(c)); }

// ---- Batch 1: captured messages, in stream order ----------------------------

// xid 733: INSERT the 'widget' row. The first change to a relation is preceded
// by a Type message for each non-built-in column type, then its Relation.
const Bytes kBegin733 = Hex("420000000001532ea0000303c112b16386000002dd");
const Bytes kTypeMood = Hex("59000040017075626c6963006d6f6f6400");
const Bytes kRelationItems = Hex(
    "52000040077075626c6963006974656d7300640009"
    "0169640000000017ffffffff"                // key id int4
    "006e616d650000000019ffffffff"            // name text
    "00707269636500000006a4000a0006"          // price numeric(10,2)
    "00626c6f620000000011ffffffff"            // blob bytea
    "006269670000000019ffffffff"              // big text
    "00646f630000000edaffffffff"              // doc jsonb
    "00747300000004a0ffffffff"                // ts timestamptz
    "007461677300000003efffffffff"            // tags int4[]
    "006665656c696e670000004001ffffffff");    // feeling mood
const Bytes kInsertWidget = Hex(
    "49000040074e0009"
    "740000000131"
    "7400000006776964676574"
    "740000000531322e3530"
    "740000000a5c786465616462656566"
    "7400000005736d616c6c"
    "740000001b7b2261223a20312c202262223a205b747275652c206e756c6c5d7d"
    "740000001d323032342d30312d30322030333a30343a30352e3637383930312b3030"
    "740000000c7b312c322c4e554c4c2c347d"
    "74000000056861707079");
const Bytes kCommit733 = Hex("43000000000001532ea00000000001532ed0000303c112b16386");

// xid 734: INSERT (2, NULL).
const Bytes kInsertNulls = Hex("49000040074e00097400000001326e6e6e6e6e6e6e6e");
// xid 735: UPDATE name of row 100 whose 'big' is stored out of line.
const Bytes kUpdateToast =
    Hex("55000040074e000974000000033130307400000007746f61737479326e6e756e6e6e6e");
// xid 736: UPDATE id 2 -> 3 (key change, default replica identity).
const Bytes kUpdateKey = Hex(
    "55000040074b00097400000001326e6e6e6e6e6e6e6e"
    "4e00097400000001336e6e6e6e6e6e6e6e");
// xid 737: DELETE id 1.
const Bytes kDeleteKey = Hex("44000040074b00097400000001316e6e6e6e6e6e6e6e");

// xid 738: UPDATE on the REPLICA IDENTITY FULL table. The old row carries the
// TOASTed 2500-byte 'big' value in full (written here as Repeat('y', 2500)
// rather than 5000 hex digits); the new row marks it unchanged ('u').
const Bytes kBegin738 = Hex("420000000001533c28000303c112b16bfe000002e2");
const Bytes kRelationAudit = Hex(
    "520000400f7075626c696300617564697400660003"
    "0169640000000017ffffffff"
    "016e6f74650000000019ffffffff"
    "016269670000000019ffffffff");
const Bytes kUpdateFull = Cat({
    Hex("550000400f4f00037400000001317400000005666972737474000009c4"),
    Repeat('y', 2500),
    Hex("4e000374000000013174000000067365636f6e6475"),
});
const Bytes kCommit738 = Hex("43000000000001533c280000000001533c58000303c112b16bfe");
// xid 739: DELETE from the FULL table: whole old row, TOASTed value included.
const Bytes kDeleteFull = Cat({
    Hex("440000400f4f000374000000013174000000067365636f6e6474000009c4"),
    Repeat('y', 2500),
});

// xid 740: TRUNCATE items, audit. The Type and both Relation messages are sent
// again first (the truncate invalidated them), then one Truncate for both.
const Bytes kBegin740 = Hex("420000000001535ae0000303c112b1753e000002e4");
const Bytes kTruncate = Hex("540000000200000040070000400f");
const Bytes kCommit740 = Hex("43000000000001535ae00000000001535d20000303c112b1753e");

// xid 741: pg_logical_emit_message(true, 'mf', 'hello').
const Bytes kMessageTxn = Hex("4d010000000001535d606d66000000000568656c6c6f");

// ---- Batch 2 -------------------------------------------------------------------

const Bytes kBegin743 = Hex("4200000000015361500002b0ec8515f340000002e7");
const Bytes kOriginUpstream = Hex("4f0000000000abcdef757073747265616d00");
const Bytes kInsertFromOrigin = Hex(
    "49000040074e0009"
    "740000000137"
    "740000000b66726f6d2d6f726967696e"
    "7400000004312e3530"
    "6e6e6e"
    "7400000016323032342d30312d30322030333a30343a30352b3030"
    "6e6e");
// The same insert decoded with 'binary', 'true'.
const Bytes kInsertFromOriginBinary = Hex(
    "49000040074e0009"
    "620000000400000007"
    "620000000b66726f6d2d6f726967696e"
    "620000000c000200000000000200011388"
    "6e6e6e"
    "62000000080002b0ec8515f340"
    "6e6e");
const Bytes kCommit743 = Hex("4300000000000153615000000000015361980002b0ec8515f340");
// pg_logical_emit_message(false, ...): arrives outside any Begin/Commit (xid 0).
const Bytes kMessageNonTxn = Hex("4d0000000000015361d86d6600000000076e6f742d74786e");

constexpr uint32_t kItemsOid = 16391;
constexpr uint32_t kAuditOid = 16399;
constexpr uint32_t kMoodOid = 16385;
// '2024-01-02 03:04:05+00' in microseconds since 2000-01-01.
constexpr int64_t kOriginTimestamp = (1704164645LL * 1000000LL) - kPgEpochOffsetMicros;

class PgOutputTest : public testing::Test {
 protected:
  // Decodes `bytes`, which must succeed and be a T.
  template <typename T>
  T Decode(const Bytes& bytes) {
    Result<PgOutputMessage> r = DecodePgOutput(bytes);
    if (!r.ok()) {
      ADD_FAILURE() << "decode failed: " << r.status().message();
      return T{};
    }
    if (!std::holds_alternative<T>(*r)) {
      ADD_FAILURE() << "decoded to variant index " << r->index();
      return T{};
    }
    return std::get<T>(std::move(r).value());
  }

  // Decodes `bytes`, which must fail with DataLoss; returns the message.
  std::string DecodeError(const Bytes& bytes) {
    Result<PgOutputMessage> r = DecodePgOutput(bytes);
    if (r.ok()) {
      ADD_FAILURE() << "decode of " << bytes.size() << " bytes unexpectedly succeeded";
      return "";
    }
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    return r.status().message();
  }

  static Bytes Prefix(const Bytes& bytes, size_t n) {
    return Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  }
  static Bytes With(Bytes bytes, size_t at, uint8_t value) {
    bytes.at(at) = value;
    return bytes;
  }

  static void ExpectText(const PgColumnValue& v, std::string_view text) {
    EXPECT_EQ(v.kind, Kind::kText);
    EXPECT_EQ(v.data, text);
  }
  static void ExpectKinds(const PgTuple& t, std::string_view kinds) {
    ASSERT_EQ(t.columns.size(), kinds.size());
    for (size_t i = 0; i < kinds.size(); ++i) {
      Kind want = Kind::kNull;
      switch (kinds[i]) {
        case 'n': want = Kind::kNull; break;
        case 'u': want = Kind::kUnchangedToast; break;
        case 't': want = Kind::kText; break;
        case 'b': want = Kind::kBinary; break;
      }
      EXPECT_EQ(t.columns[i].kind, want) << "column " << i;
    }
  }
};

// ---- Captured messages -------------------------------------------------------

TEST_F(PgOutputTest, BeginAndCommitAgree) {
  const PgBegin b = Decode<PgBegin>(kBegin733);
  const PgCommit c = Decode<PgCommit>(kCommit733);
  EXPECT_EQ(b.xid, 733u);
  EXPECT_EQ(b.final_lsn, 0x1532EA0u);
  EXPECT_EQ(c.flags, 0);
  EXPECT_EQ(c.commit_lsn, b.final_lsn);
  EXPECT_EQ(c.end_lsn, 0x1532ED0u);  // the slot's next position
  EXPECT_GT(c.end_lsn, c.commit_lsn);
  EXPECT_EQ(c.commit_time, b.commit_time);
  // Captured in 2025 or later; a sanity check on the epoch and byte order.
  EXPECT_GT(b.commit_time + kPgEpochOffsetMicros, 1735689600LL * 1000000LL);

  for (const auto& [begin, commit] : {std::pair{kBegin738, kCommit738},
                                      std::pair{kBegin740, kCommit740},
                                      std::pair{kBegin743, kCommit743}}) {
    const PgBegin b2 = Decode<PgBegin>(begin);
    const PgCommit c2 = Decode<PgCommit>(commit);
    EXPECT_EQ(c2.commit_lsn, b2.final_lsn);
    EXPECT_EQ(c2.commit_time, b2.commit_time);
    EXPECT_GT(b2.xid, b.xid);
  }
}

TEST_F(PgOutputTest, Type) {
  const PgType t = Decode<PgType>(kTypeMood);
  EXPECT_EQ(t.type_oid, kMoodOid);
  EXPECT_EQ(t.namespace_name, "public");
  EXPECT_EQ(t.type_name, "mood");
}

TEST_F(PgOutputTest, RelationOmitsGeneratedColumn) {
  const PgRelation r = Decode<PgRelation>(kRelationItems);
  EXPECT_EQ(r.relation_id, kItemsOid);
  EXPECT_EQ(r.namespace_name, "public");
  EXPECT_EQ(r.relation_name, "items");
  EXPECT_EQ(r.replica_identity, 'd');
  struct Want {
    const char* name;
    uint32_t oid;
    int32_t typmod;
    bool key;
  };
  const Want want[] = {
      {"id", 23, -1, true},        {"name", 25, -1, false},     {"price", 1700, 0xA0006, false},
      {"blob", 17, -1, false},     {"big", 25, -1, false},      {"doc", 3802, -1, false},
      {"ts", 1184, -1, false},     {"tags", 1007, -1, false},   {"feeling", kMoodOid, -1, false},
  };  // 'twice' (GENERATED ... STORED) is not sent at all in PG15.
  ASSERT_EQ(r.columns.size(), std::size(want));
  for (size_t i = 0; i < std::size(want); ++i) {
    SCOPED_TRACE(want[i].name);
    EXPECT_EQ(r.columns[i].name, want[i].name);
    EXPECT_EQ(r.columns[i].type_oid, want[i].oid);
    EXPECT_EQ(r.columns[i].type_modifier, want[i].typmod);  // numeric(10,2): (10<<16|2)+4
    EXPECT_EQ(r.columns[i].part_of_key, want[i].key);
  }
}

TEST_F(PgOutputTest, RelationFullIdentityMarksEveryColumnAsKey) {
  const PgRelation r = Decode<PgRelation>(kRelationAudit);
  EXPECT_EQ(r.relation_id, kAuditOid);
  EXPECT_EQ(r.relation_name, "audit");
  EXPECT_EQ(r.replica_identity, 'f');
  ASSERT_EQ(r.columns.size(), 3u);
  for (const PgRelationColumn& c : r.columns) EXPECT_TRUE(c.part_of_key) << c.name;
  EXPECT_EQ(r.columns[2].name, "big");
}

TEST_F(PgOutputTest, InsertTextValues) {
  const PgInsert ins = Decode<PgInsert>(kInsertWidget);
  EXPECT_EQ(ins.relation_id, kItemsOid);
  const auto& c = ins.new_tuple.columns;
  ASSERT_EQ(c.size(), 9u);
  ExpectText(c[0], "1");
  ExpectText(c[1], "widget");
  ExpectText(c[2], "12.50");
  ExpectText(c[3], "\\xdeadbeef");
  ExpectText(c[4], "small");
  ExpectText(c[5], R"({"a": 1, "b": [true, null]})");
  ExpectText(c[6], "2024-01-02 03:04:05.678901+00");
  ExpectText(c[7], "{1,2,NULL,4}");
  ExpectText(c[8], "happy");
}

TEST_F(PgOutputTest, InsertNulls) {
  const PgInsert ins = Decode<PgInsert>(kInsertNulls);
  ExpectKinds(ins.new_tuple, "tnnnnnnnn");
  ExpectText(ins.new_tuple.columns[0], "2");
  EXPECT_TRUE(ins.new_tuple.columns[1].data.empty());
}

TEST_F(PgOutputTest, UpdateWithUnchangedToast) {
  const PgUpdate u = Decode<PgUpdate>(kUpdateToast);
  EXPECT_EQ(u.relation_id, kItemsOid);
  EXPECT_EQ(u.old_kind, 0);  // key unchanged, default identity: no old tuple
  EXPECT_FALSE(u.old_tuple.has_value());
  ExpectKinds(u.new_tuple, "ttnnunnnn");
  ExpectText(u.new_tuple.columns[0], "100");
  ExpectText(u.new_tuple.columns[1], "toasty2");
}

TEST_F(PgOutputTest, UpdateChangingKeySendsOldKey) {
  const PgUpdate u = Decode<PgUpdate>(kUpdateKey);
  EXPECT_EQ(u.old_kind, 'K');
  ASSERT_TRUE(u.old_tuple.has_value());
  // A 'K' tuple has every column; the non-key ones are 'n' whatever their value.
  ExpectKinds(*u.old_tuple, "tnnnnnnnn");
  ExpectText(u.old_tuple->columns[0], "2");
  ExpectText(u.new_tuple.columns[0], "3");
}

TEST_F(PgOutputTest, DeleteSendsOldKey) {
  const PgDelete d = Decode<PgDelete>(kDeleteKey);
  EXPECT_EQ(d.relation_id, kItemsOid);
  EXPECT_EQ(d.old_kind, 'K');
  ExpectKinds(d.old_tuple, "tnnnnnnnn");
  ExpectText(d.old_tuple.columns[0], "1");
}

TEST_F(PgOutputTest, UpdateFullIdentityOldRowHasToastedValue) {
  const PgUpdate u = Decode<PgUpdate>(kUpdateFull);
  EXPECT_EQ(u.relation_id, kAuditOid);
  EXPECT_EQ(u.old_kind, 'O');
  ASSERT_TRUE(u.old_tuple.has_value());
  ExpectKinds(*u.old_tuple, "ttt");
  ExpectText(u.old_tuple->columns[1], "first");
  ExpectText(u.old_tuple->columns[2], std::string(2500, 'y'));
  ExpectKinds(u.new_tuple, "ttu");
  ExpectText(u.new_tuple.columns[1], "second");
}

TEST_F(PgOutputTest, DeleteFullIdentity) {
  const PgDelete d = Decode<PgDelete>(kDeleteFull);
  EXPECT_EQ(d.old_kind, 'O');
  ExpectKinds(d.old_tuple, "ttt");
  ExpectText(d.old_tuple.columns[1], "second");
  EXPECT_EQ(d.old_tuple.columns[2].data.size(), 2500u);
}

TEST_F(PgOutputTest, Truncate) {
  const PgTruncate t = Decode<PgTruncate>(kTruncate);
  EXPECT_EQ(t.options, 0);
  EXPECT_EQ(t.relation_ids, (std::vector<uint32_t>{kItemsOid, kAuditOid}));
}

TEST_F(PgOutputTest, LogicalDecodingMessages) {
  const PgMessage txn = Decode<PgMessage>(kMessageTxn);
  EXPECT_TRUE(txn.transactional);
  EXPECT_EQ(txn.lsn, 0x1535D60u);
  EXPECT_EQ(txn.prefix, "mf");
  EXPECT_EQ(txn.content, "hello");

  const PgMessage plain = Decode<PgMessage>(kMessageNonTxn);
  EXPECT_FALSE(plain.transactional);
  EXPECT_EQ(plain.lsn, 0x15361D8u);
  EXPECT_EQ(plain.content, "not-txn");
}

TEST_F(PgOutputTest, OriginTransactionUsesOriginTimestamp) {
  const PgBegin b = Decode<PgBegin>(kBegin743);
  EXPECT_EQ(b.commit_time, kOriginTimestamp);
  const PgOrigin o = Decode<PgOrigin>(kOriginUpstream);
  EXPECT_EQ(o.commit_lsn, 0xABCDEFu);
  EXPECT_EQ(o.name, "upstream");
}

TEST_F(PgOutputTest, BinaryTupleValues) {
  const PgInsert text = Decode<PgInsert>(kInsertFromOrigin);
  ExpectKinds(text.new_tuple, "tttnnntnn");
  ExpectText(text.new_tuple.columns[6], "2024-01-02 03:04:05+00");

  const PgInsert bin = Decode<PgInsert>(kInsertFromOriginBinary);
  ExpectKinds(bin.new_tuple, "bbbnnnbnn");
  const auto& c = bin.new_tuple.columns;
  EXPECT_EQ(c[0].data, std::string("\0\0\0\7", 4));  // int4 7
  EXPECT_EQ(c[1].data, "from-origin");
  EXPECT_EQ(c[2].data.size(), 12u);  // numeric: ndigits, weight, sign, dscale, 2 digits
  const Bytes ts(c[6].data.begin(), c[6].data.end());
  int64_t micros = 0;
  for (uint8_t byte : ts) micros = (micros << 8) | byte;
  EXPECT_EQ(ts.size(), 8u);
  EXPECT_EQ(micros, kOriginTimestamp);
}

// ---- Malformed input ---------------------------------------------------------

TEST_F(PgOutputTest, EveryTruncationOfInsertFails) {
  for (size_t n = 0; n < kInsertWidget.size(); ++n) {
    SCOPED_TRACE(n);
    DecodeError(Prefix(kInsertWidget, n));
  }
}

TEST_F(PgOutputTest, EveryTruncationOfEveryCapturedMessageFails) {
  for (const Bytes* m : {&kBegin733, &kTypeMood, &kRelationItems, &kCommit733, &kUpdateToast,
                         &kUpdateKey, &kDeleteKey, &kRelationAudit, &kUpdateFull, &kDeleteFull,
                         &kTruncate, &kMessageTxn, &kOriginUpstream, &kInsertFromOriginBinary}) {
    for (size_t n = 0; n < m->size(); ++n) {
      SCOPED_TRACE(testing::Message() << "type " << (*m)[0] << " prefix " << n);
      DecodeError(Prefix(*m, n));
    }
  }
}

TEST_F(PgOutputTest, TruncationMessageNamesTypeAndOffset) {
  // 19 bytes: the Int32 length of "widget" ends at byte 18, its text starts at 19.
  EXPECT_EQ(DecodeError(Prefix(kInsertWidget, 19)),
            "pgoutput: truncated Insert message at byte 19");
  // Cut inside the Int32 length itself: the offset is where that field starts.
  EXPECT_EQ(DecodeError(Prefix(kInsertWidget, 17)),
            "pgoutput: truncated Insert message at byte 15");
  EXPECT_EQ(DecodeError(Prefix(kCommit733, 5)), "pgoutput: truncated Commit message at byte 2");
  EXPECT_EQ(DecodeError({}), "pgoutput: empty message at byte 0");
}

TEST_F(PgOutputTest, UnknownMessageType) {
  EXPECT_EQ(DecodeError(With(kBegin733, 0, 'Z')),
            "pgoutput: unknown message type 'Z' (0x5a) at byte 0");
  // Stream Start exists only in protocol version 2 and later.
  EXPECT_EQ(DecodeError(Hex("53000002e501")),
            "pgoutput: unknown message type 'S' (0x53) at byte 0");
  EXPECT_EQ(DecodeError(Hex("00")), "pgoutput: unknown message type 0x00 at byte 0");
}

TEST_F(PgOutputTest, UnknownTupleKind) {
  // Byte 14 is column 1's kind ('n').
  EXPECT_EQ(DecodeError(With(kInsertNulls, 14, 'x')),
            "pgoutput: unknown tuple kind 'x' (0x78) for column 1 in Insert message at byte 14");
}

TEST_F(PgOutputTest, UnexpectedTupleMarkers) {
  // Insert must announce 'N'.
  EXPECT_EQ(DecodeError(With(kInsertNulls, 5, 'K')),
            "pgoutput: unexpected tuple marker 'K' (0x4b) in Insert message at byte 5");
  // After the old key an Update must continue with 'N'.
  EXPECT_EQ(DecodeError(With(kUpdateKey, 22, 'O')),
            "pgoutput: unexpected tuple marker 'O' (0x4f) in Update message at byte 22");
  // Delete has no new tuple.
  EXPECT_EQ(DecodeError(With(kDeleteKey, 5, 'N')),
            "pgoutput: unexpected tuple marker 'N' (0x4e) in Delete message at byte 5");
}

TEST_F(PgOutputTest, NegativeLengthAndCounts) {
  Bytes neg_len = kInsertNulls;
  for (size_t i = 9; i < 13; ++i) neg_len[i] = 0xff;  // column 0's length = -1
  EXPECT_EQ(DecodeError(neg_len), "pgoutput: negative length -1 in Insert message at byte 9");

  EXPECT_EQ(DecodeError(With(kInsertNulls, 6, 0x80)),
            "pgoutput: negative column count -32759 in Insert message at byte 6");

  // A huge relation count must fail on the missing bytes, not allocate.
  EXPECT_EQ(DecodeError(Hex("547fffffff00000040070000400f")),
            "pgoutput: truncated Truncate message at byte 14");
}

TEST_F(PgOutputTest, TrailingBytes) {
  Bytes longer = kCommit733;
  longer.push_back(0);
  EXPECT_EQ(DecodeError(longer),
            "pgoutput: 1 unexpected trailing byte in Commit message at byte 26");
}

TEST_F(PgOutputTest, MissingNul) {
  const Bytes no_nul = Prefix(kTypeMood, kTypeMood.size() - 1);  // "mood" unterminated
  EXPECT_EQ(DecodeError(no_nul),
            "pgoutput: string without terminating NUL in Type message at byte 12");
}

TEST_F(PgOutputTest, UnknownReplicaIdentity) {
  // Byte 18 of the Relation message is the replica identity ('d').
  EXPECT_EQ(DecodeError(With(kRelationItems, 18, 'q')),
            "pgoutput: unknown replica identity 'q' (0x71) in Relation message at byte 18");
}

// ---- Replication frames ------------------------------------------------------

TEST_F(PgOutputTest, XLogDataFrame) {
  const Bytes frame = Cat({Hex("77"), Hex("0000000001532d98"), Hex("0000000001532ed0"),
                           Hex("0002b0ec8515f340"), kBegin733});
  Result<ReplicationFrame> r = DecodeReplicationFrame(frame);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(std::holds_alternative<XLogData>(*r));
  const XLogData& w = std::get<XLogData>(*r);
  EXPECT_EQ(w.wal_start, 0x1532D98u);
  EXPECT_EQ(w.wal_end, 0x1532ED0u);
  EXPECT_EQ(w.send_time, kOriginTimestamp);
  EXPECT_EQ(w.payload.data(), frame.data() + 25);  // points into the input
  EXPECT_EQ(Bytes(w.payload.begin(), w.payload.end()), kBegin733);
  EXPECT_EQ(Decode<PgBegin>(Bytes(w.payload.begin(), w.payload.end())).xid, 733u);

  for (size_t n = 0; n < 25; ++n) {
    EXPECT_FALSE(DecodeReplicationFrame(Prefix(frame, n)).ok()) << n;
  }
  EXPECT_EQ(DecodeReplicationFrame(Prefix(frame, 20)).status().message(),
            "pgoutput: truncated XLogData frame at byte 17");
}

TEST_F(PgOutputTest, KeepaliveFrame) {
  const Bytes frame = Hex("6b" "0000000001536198" "fffffffffffffffe" "01");
  Result<ReplicationFrame> r = DecodeReplicationFrame(frame);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(std::holds_alternative<PrimaryKeepalive>(*r));
  const PrimaryKeepalive& k = std::get<PrimaryKeepalive>(*r);
  EXPECT_EQ(k.wal_end, 0x1536198u);
  EXPECT_EQ(k.send_time, -2);
  EXPECT_TRUE(k.reply_requested);

  const PrimaryKeepalive quiet =
      std::get<PrimaryKeepalive>(*DecodeReplicationFrame(With(frame, 17, 0)));
  EXPECT_FALSE(quiet.reply_requested);

  for (size_t n = 0; n < frame.size(); ++n) {
    EXPECT_FALSE(DecodeReplicationFrame(Prefix(frame, n)).ok()) << n;
  }
  Bytes longer = frame;
  longer.push_back(0);
  EXPECT_EQ(DecodeReplicationFrame(longer).status().message(),
            "pgoutput: 1 unexpected trailing byte in Primary keepalive frame at byte 18");
  EXPECT_EQ(DecodeReplicationFrame(With(frame, 0, 'r')).status().message(),
            "pgoutput: unknown replication frame type 'r' (0x72) at byte 0");
  EXPECT_EQ(DecodeReplicationFrame(Prefix(frame, 0)).status().code(), StatusCode::kDataLoss);
}

TEST_F(PgOutputTest, StandbyStatusUpdate) {
  const Bytes out = EncodeStandbyStatus(0x0102030405060708, 0x1112131415161718,
                                        0x2122232425262728, -1, true);
  EXPECT_EQ(out, Hex("72"
                     "0102030405060708"
                     "1112131415161718"
                     "2122232425262728"
                     "ffffffffffffffff"
                     "01"));
  EXPECT_EQ(out.size(), 34u);

  const Bytes quiet = EncodeStandbyStatus(0x1536198, 0x1536198, 0, kOriginTimestamp, false);
  EXPECT_EQ(quiet, Hex("72"
                       "0000000001536198"
                       "0000000001536198"
                       "0000000000000000"
                       "0002b0ec8515f340"
                       "00"));
}

}  // namespace
}  // namespace midflight::pg
