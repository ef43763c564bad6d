#include "engines/postgres/pg_types.h"

#include <gtest/gtest.h>

namespace midflight::pg {

class PgTypesTest : public ::testing::Test {
 protected:
  // Text -> typed -> text must give back the same text.
  void RoundTrip(const ColumnType& t, const std::string& text) {
    auto v = PgTextToValue(t, text);
    ASSERT_TRUE(v.ok()) << t.native << ": " << v.status().message();
    auto back = ValueToPgText(t, *v);
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(*back, text) << t.native;
  }
  ColumnType Type(uint32_t oid, const char* native) { return PgColumnType(oid, native, 'b', 0, ""); }
};

TEST_F(PgTypesTest, MapsCatalogTypesToTheModel) {
  EXPECT_EQ(Type(20, "bigint").kind, TypeKind::kInt);
  EXPECT_EQ(Type(20, "bigint").width, 8);
  auto num = Type(1700, "numeric(12,2)");
  EXPECT_EQ(num.kind, TypeKind::kDecimal);
  EXPECT_EQ(num.precision, 12);
  EXPECT_EQ(num.scale, 2);
  auto ts = Type(1184, "timestamp(3) with time zone");
  EXPECT_TRUE(ts.with_zone);
  EXPECT_EQ(ts.precision, 3);
  EXPECT_TRUE(Type(3802, "jsonb").binary_json);
  EXPECT_EQ(PgColumnType(99999, "mood", 'e', 0, "").kind, TypeKind::kEnum);
  auto arr = PgColumnType(1007, "integer[]", 'b', 23, "integer");
  ASSERT_EQ(arr.kind, TypeKind::kArray);
  EXPECT_EQ(arr.element->kind, TypeKind::kInt);
}

TEST_F(PgTypesTest, ValuesRoundTripExactly) {
  RoundTrip(Type(16, "boolean"), "t");
  RoundTrip(Type(20, "bigint"), "-9223372036854775808");
  RoundTrip(Type(1700, "numeric"), "123456789012345678901234567890.000000000000000001");
  RoundTrip(Type(1700, "numeric"), "NaN");
  RoundTrip(Type(701, "double precision"), "0.1");
  RoundTrip(Type(701, "double precision"), "1e+300");
  RoundTrip(Type(25, "text"), "zażółć \"gęślą\" jaźń\n\ttab");
  RoundTrip(Type(17, "bytea"), "\\x00ff10");
  RoundTrip(Type(3802, "jsonb"), "{\"a\": [1, 2.50, null]}");
  RoundTrip(Type(1082, "date"), "2024-02-29");
  RoundTrip(Type(1082, "date"), "1969-12-31");
  RoundTrip(Type(1114, "timestamp without time zone"), "2024-03-01 12:34:56.123456");
  RoundTrip(Type(1184, "timestamp with time zone"), "1999-12-31 23:59:59.5+00");
  RoundTrip(Type(2950, "uuid"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  RoundTrip(Type(1082, "date"), "infinity");
  RoundTrip(PgColumnType(1009, "text[]", 'b', 25, "text"), "{\"a\",\"b c\",NULL,\"q\\\"uote\"}");
}

TEST_F(PgTypesTest, TimestampWithZoneIsNormalisedToUtc) {
  auto v = PgTextToValue(Type(1184, "timestamp with time zone"), "2024-01-01 05:30:00+05:30");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*ValueToPgText(Type(1184, "timestamp with time zone"), *v), "2024-01-01 00:00:00+00");
}

TEST_F(PgTypesTest, InvalidTextNamesTheType) {
  auto v = PgTextToValue(Type(23, "integer"), "12x");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().message(), "value '12x' is not a valid integer");
  EXPECT_EQ(PgTextToValue(Type(17, "bytea"), "\\xZZ").status().message(), "value '\\xZZ' is not a valid bytea");
}

// Found by tests/fuzz/pg_types_fuzz.cc: a month of -401 overflowed the
// microsecond arithmetic (undefined behaviour) instead of failing.
TEST_F(PgTypesTest, OutOfRangeDateFieldsAreInvalid) {
  const ColumnType tstz = Type(1184, "timestamp with time zone");
  EXPECT_EQ(PgTextToValue(tstz, "2--0401-02 03:04:05.678901+00").status().message(),
            "value '2--0401-02 03:04:05.678901+00' is not a valid timestamp with time zone");
  EXPECT_EQ(PgTextToValue(tstz, "2024-01-02 99999:04:05+00").status().message(),
            "value '2024-01-02 99999:04:05+00' is not a valid timestamp with time zone");
  EXPECT_EQ(PgTextToValue(tstz, "2024-01-02 03:04:05+999999").status().message(),
            "value '2024-01-02 03:04:05+999999' is not a valid timestamp with time zone");
  EXPECT_EQ(PgTextToValue(Type(1082, "date"), "2023-02-29").status().message(),
            "value '2023-02-29' is not a valid date");
  EXPECT_EQ(PgTextToValue(Type(1082, "date"), "2024-13-01").status().message(),
            "value '2024-13-01' is not a valid date");
  RoundTrip(Type(1082, "date"), "2000-02-29");
}

// Found by tests/fuzz/pg_types_fuzz.cc: "7e48" as a real was read as a double,
// written back as "inf" (the float cast overflowed) and read again as
// Infinity, so the text forms did not round-trip. PostgreSQL refuses such
// text; so does the conversion now.
TEST_F(PgTypesTest, FloatOutOfRangeIsInvalid) {
  EXPECT_EQ(PgTextToValue(Type(700, "real"), "7e48").status().message(), "value '7e48' is not a valid real");
  EXPECT_EQ(PgTextToValue(Type(701, "double precision"), "1e999").status().message(),
            "value '1e999' is not a valid double precision");
  RoundTrip(Type(700, "real"), "3.4028235e+38");
  RoundTrip(Type(700, "real"), "-Infinity");
  RoundTrip(Type(701, "double precision"), "1.7976931348623157e+308");
}

// The bulk upsert casts text to these before the INSERT assigns them: a
// length left in would cut a longer value silently instead of refusing it.
TEST(AssignedFromTextAsTest, DropsOnlyTheLengthsAnExplicitCastWouldCut) {
  EXPECT_EQ(AssignedFromTextAs("character varying(40)"), "character varying");
  EXPECT_EQ(AssignedFromTextAs("character(5)"), "bpchar");
  EXPECT_EQ(AssignedFromTextAs("character varying(10)[]"), "character varying[]");
  EXPECT_EQ(AssignedFromTextAs("character(2)[][]"), "bpchar[][]");
  EXPECT_EQ(AssignedFromTextAs("character varying"), "character varying");
  EXPECT_EQ(AssignedFromTextAs("character"), "character");
  EXPECT_EQ(AssignedFromTextAs("bit(4)"), "bit(4)");
  EXPECT_EQ(AssignedFromTextAs("numeric(10,3)"), "numeric(10,3)");
  EXPECT_EQ(AssignedFromTextAs("timestamp(3) without time zone"), "timestamp(3) without time zone");
  EXPECT_EQ(AssignedFromTextAs("\"character varying(4)\""), "\"character varying(4)\"");  // a user type of that name
}

}  // namespace midflight::pg
