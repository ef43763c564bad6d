// Engine-neutral values.
//
// Two representations of a column value live side by side:
//  - Datum: the value as the source engine sent it (PostgreSQL's text form),
//    carried unchanged on the homogeneous fast path, plus the two states a
//    change stream can produce without a value (NULL, unchanged TOAST).
//  - Value: the typed model (integers with width and sign, exact decimals,
//    floats, text, bytes, JSON, dates and times with precision and zone, uuid,
//    enums, arrays, NULL). Each engine converts its Datums to and from Values
//    (engines/postgres/pg_types.h), so a heterogeneous pair needs a type
//    mapping, not a second pipeline.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace midflight {

struct Datum {
  enum class Kind : uint8_t { kNull, kUnchanged, kText };
  Kind kind = Kind::kNull;
  std::string text;

  static Datum Null() { return {}; }
  static Datum Unchanged() { return {Kind::kUnchanged, {}}; }
  static Datum Text(std::string t) { return {Kind::kText, std::move(t)}; }
  bool is_null() const { return kind == Kind::kNull; }
  bool is_unchanged() const { return kind == Kind::kUnchanged; }
  bool operator==(const Datum&) const = default;
};

enum class TypeKind : uint8_t {
  kBool,
  kInt,        // width 2/4/8 bytes, signed or not
  kDecimal,    // exact: precision/scale when declared
  kFloat,      // width 4/8
  kText,       // charset
  kBytes,
  kJson,       // json or jsonb (binary_json)
  kDate,
  kTime,       // precision, with_zone
  kTimestamp,  // precision, with_zone
  kInterval,
  kUuid,
  kEnum,
  kArray,      // element
  kOther,      // anything else: carried as the engine's text form
};

struct ColumnType {
  TypeKind kind = TypeKind::kOther;
  std::string native;     // the engine's own spelling: "numeric(12,2)", "timestamp with time zone"
  std::string native_base;  // the same without modifiers: "numeric", used for casts
  uint32_t native_oid = 0;
  int width = 0;          // kInt / kFloat: bytes
  bool is_signed = true;
  int precision = -1;     // kDecimal digits; kTime/kTimestamp fractional digits
  int scale = -1;
  bool with_zone = false;
  bool binary_json = false;
  std::string charset;    // kText: the column's character set ("utf8mb4", "latin1"), when the engine has one
  std::shared_ptr<const ColumnType> element;  // kArray
};

struct Decimal {
  std::string digits;  // canonical text: "-12.50", "NaN"
  bool operator==(const Decimal&) const = default;
};
struct Bytes {
  std::vector<uint8_t> data;
  bool operator==(const Bytes&) const = default;
};
struct Json {
  std::string text;
  bool operator==(const Json&) const = default;
};
struct Date {
  int32_t days = 0;  // since 1970-01-01
  bool operator==(const Date&) const = default;
};
struct Timestamp {
  int64_t micros = 0;   // since 1970-01-01 00:00:00 (UTC when with_zone)
  bool with_zone = false;
  bool operator==(const Timestamp&) const = default;
};
struct Uuid {
  std::array<uint8_t, 16> bytes{};
  bool operator==(const Uuid&) const = default;
};
struct EnumLabel {
  std::string label;
  bool operator==(const EnumLabel&) const = default;
};
struct OtherText {  // a type the model does not interpret: the engine's text form
  std::string text;
  bool operator==(const OtherText&) const = default;
};
struct Value;
struct Array {
  std::vector<Value> elements;  // one dimension
  bool operator==(const Array&) const;
};

struct Null {
  bool operator==(const Null&) const = default;
};

struct Value {
  std::variant<Null, bool, int64_t, uint64_t, Decimal, double, std::string, Bytes, Json, Date,
               Timestamp, Uuid, EnumLabel, Array, OtherText>
      v;
  bool operator==(const Value&) const = default;
};

}  // namespace midflight
