// Debezium's change events in Avro, for the per-table topics outside
// consumers read (src/kafka/README.md has the type table): pure functions
// over bytes, no librdkafka, no registry (tests/unit/kafka_avro_test.cc,
// fuzz target tests/fuzz/kafka_avro_fuzz.cc for the decoder).
//
//   DebeziumAvroTable::Build(table, topic, engine)   once per TableSchema version
//      ├─ key_schema()   record <topic>.Key   {key columns}
//      └─ value_schema() record <topic>.Envelope {before: [null, Value], after: [null, Value],
//                                                 source: Source, op: string, ts_ms: [null, long]}
//   EncodeKey / EncodeValue(change)  → Avro binary bodies
//   ConfluentFrame(id, body)         → 0x00, id (big-endian int32), body: the message bytes
//
// The schema texts are written here, with Debezium's `connect.name`,
// `connect.parameters` and Avro `logicalType` annotations, and registered as
// written (libavro's schema-to-JSON would drop the logical types).
//
// Values arrive in the source's text form (core/value.h Datum); each column
// has a conversion chosen from its ColumnType when the table is built. A
// value that does not parse as its type (PostgreSQL's 'infinity', a numeric
// NaN) becomes null in a nullable column and is an error naming table and
// column in a NOT NULL one.
//
// AvroDecode is a generic schema-driven decoder (the reader side, for tests,
// the fuzz target and the registry round trip): any bytes in, JSON or an
// error out, never a crash.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "core/change.h"

namespace midflight::kafka {

// Avro binary primitives (the Avro 1.11 specification, "Binary Encoding").
class AvroWriter {
 public:
  void Null() {}
  void Bool(bool b) { out_.push_back(b ? 1 : 0); }
  void Long(int64_t v);  // zigzag varint; int is the same encoding
  void Float(float f);
  void Double(double d);
  void Bytes(std::string_view b);  // length, then the bytes; string likewise
  void String(std::string_view s) { Bytes(s); }
  void Branch(int index) { Long(index); }  // a union's branch
  std::string& out() { return out_; }

 private:
  std::string out_;
};

// Decodes one datum of `schema` (parsed schema JSON) from all of `data`.
// Records become objects, unions their branch's value (null for null),
// bytes and fixed a string of the raw bytes. Errors (InvalidArgument): data
// cut short or left over, a bad branch or length, a schema this decoder does
// not know, nesting deeper than 64.
Result<nlohmann::json> AvroDecode(const nlohmann::json& schema, std::string_view data);

// The Confluent wire format: magic byte 0, the schema id big-endian, the body.
std::string ConfluentFrame(int32_t schema_id, std::string_view body);
// Splits a framed message; InvalidArgument for a short one or another magic byte.
Result<std::pair<int32_t, std::string_view>> ConfluentUnframe(std::string_view message);

// Debezium's topic name: <prefix>.<schema>.<table> (PostgreSQL schema, MySQL database).
std::string DebeziumTopic(const std::string& prefix, const TableId& table);

// A decimal's text form ("-12.50") as Connect's Decimal body: the unscaled
// value, big-endian two's complement, with `scale` digits after the point
// (more digits are refused, fewer are padded). nullopt when not a number.
std::optional<std::string> DecimalBytes(std::string_view text, int scale);

class DebeziumAvroTable {
 public:
  // `engine` picks the source record's fields (kBinlog: MySQL's file/pos/row;
  // anything else PostgreSQL's lsn). Errors: none today beyond Internal; a
  // column of an unknown type is carried as a string.
  static Result<std::shared_ptr<const DebeziumAvroTable>> Build(std::shared_ptr<const TableSchema> table,
                                                                const std::string& topic, PositionKind engine);

  const std::string& key_schema() const { return key_schema_; }
  const std::string& value_schema() const { return value_schema_; }
  // True when the table has key columns (else the message key is null, as
  // Debezium does for a keyless table).
  bool has_key() const { return !table_->key_writable.empty(); }

  // The Avro bodies of `change` (an insert, update or delete of this
  // table's layout). The key comes from the old image for a delete, else the
  // new one. `snapshot`: a snapshot row (op r, source.snapshot "true", or
  // "last" with `last`: the snapshot's final event).
  // Errors: OperatorError naming table, column and the value's problem.
  Result<std::string> EncodeKey(const Change& change) const;
  Result<std::string> EncodeValue(const Change& change, const std::string& source_name, int64_t now_ms,
                                  bool snapshot, bool last = false) const;
  // Debezium's truncate event of this table (op t, before and after null,
  // source at the truncate's position); the message has no key.
  Result<std::string> EncodeTruncate(const Change& truncate, const std::string& source_name, int64_t now_ms) const;

  // One column's conversion (the type table in src/kafka/README.md).
  enum class Conv : uint8_t {
    kString, kBool, kInt, kLong, kFloat, kDouble, kBytesPg, kBytesRaw, kDecimal, kVarDecimal,
    kDate, kTimeMs, kTimeMicros, kZonedTime, kTimestampMs, kTimestampMicros, kZonedTimestamp, kGeometry,
    kBitBool, kBits, kEnumIndex, kSetBits, kFixedBinary,
  };

 private:
  struct Column {
    std::string name;  // the Avro field name (sanitised)
    Conv conv = Conv::kString;
    int scale = 0;  // kDecimal: the scale; kBits: the width in bits
    bool nullable = true;
    std::vector<std::string> labels;  // kEnumIndex, kSetBits: the members in order
    std::string fixed_type;           // kFixedBinary: "uuid", "inet6" or "inet4"
  };
  Status EncodeImage(const Change& c, const std::vector<Datum>& image, bool key_only, AvroWriter* w) const;
  Status EncodeColumn(const Change& c, const Column& col, const Datum& d, AvroWriter* w) const;
  void EncodeSource(const Change& c, const std::string& source_name, const char* snapshot, AvroWriter* w) const;

  std::shared_ptr<const TableSchema> table_;
  PositionKind engine_ = PositionKind::kPgLsn;
  std::vector<Column> columns_;  // one per writable column
  std::string key_schema_, value_schema_;
};

}  // namespace midflight::kafka
