#include "engines/cross/canonical.h"

#include <gtest/gtest.h>

#include "engines/postgres/pg_types.h"

namespace midflight::cross {
namespace {

std::string Dec(std::string_view s) { return CanonDecimal(s).value(); }
std::string Flt(std::string_view s) { return CanonFloat(s).value(); }
std::string Js(std::string_view s) { return CanonJson(s).value(); }

TEST(CanonicalTest, DecimalsLoseScaleAndZerosNotValue) {
  EXPECT_EQ(Dec("12.500"), "12.5");
  EXPECT_EQ(Dec("100"), "100");
  EXPECT_EQ(Dec("100.000"), "100");
  EXPECT_EQ(Dec("-0.00"), "0");
  EXPECT_EQ(Dec("0"), "0");
  EXPECT_EQ(Dec("007.10"), "7.1");
  EXPECT_EQ(Dec("+.5"), "0.5");
  EXPECT_EQ(Dec("-0.05"), "-0.05");
  EXPECT_EQ(Dec("1e2"), "100");
  EXPECT_EQ(Dec("1.5E-3"), "0.0015");
  EXPECT_EQ(Dec("-12345678901234567890123456789012345.123456789012345678901234567890"),
            "-12345678901234567890123456789012345.12345678901234567890123456789");
  EXPECT_EQ(Dec("18446744073709551615"), "18446744073709551615");
  EXPECT_EQ(Dec("NaN"), "NaN");
  EXPECT_EQ(CanonDecimal("1.2.3").status().message(), "'1.2.3' is not a number");
  EXPECT_EQ(CanonDecimal("").status().message(), "'' is not a number");
}

TEST(CanonicalTest, FloatsPrintedAlikeWhateverTheEngine) {
  // MariaDB prints "1e20" and "0.0000001", PostgreSQL "1e+20" and "1e-07".
  EXPECT_EQ(Flt("1e20"), Flt("1e+20"));
  EXPECT_EQ(Flt("0.0000001"), Flt("1e-07"));
  EXPECT_EQ(Flt("3.1415927410125732"), "3.1415927410125732");
  EXPECT_EQ(Flt("2.718281828459045"), "2.718281828459045");
  EXPECT_EQ(Flt("0.1"), "0.1");
  EXPECT_EQ(Flt("Infinity"), "Infinity");
  EXPECT_EQ(Flt("-inf"), "-Infinity");
  EXPECT_EQ(Flt("NaN"), "NaN");
  EXPECT_EQ(CanonFloat("x").status().message(), "'x' is not a floating-point number");
}

TEST(CanonicalTest, JsonKeyOrderSpacingNumbersAndEscapes) {
  // MariaDB keeps the text as written; jsonb::text reorders keys and respaces.
  EXPECT_EQ(Js(R"({"b": 1, "a": [1, 2.50, "x"], "c": {"d": "é"}})"), R"({"a":[1,2.5,"x"],"b":1,"c":{"d":"é"}})");
  EXPECT_EQ(Js(R"({"a":[1,2.5,"x"],"b":1,"c":{"d":"\u00e9"}})"), R"({"a":[1,2.5,"x"],"b":1,"c":{"d":"é"}})");
  EXPECT_EQ(Js("[1e2, -0.0, 1.000000000000000000001]"), "[100,0,1.000000000000000000001]");
  EXPECT_EQ(Js(R"({"k": 1, "k": 2})"), R"({"k":2})");  // jsonb keeps the last
  EXPECT_EQ(Js(R"("tab\there")"), R"("tab\there")");
  EXPECT_EQ(Js("null"), "null");
  EXPECT_EQ(Js("[]"), "[]");
  EXPECT_EQ(Js("{}"), "{}");
  EXPECT_EQ(Js(R"({"n": null, "t": true, "f": false})"), R"({"f":false,"n":null,"t":true})");
  EXPECT_FALSE(CanonJson("{").ok());
  EXPECT_FALSE(CanonJson("[1] x").ok());
}

TEST(CanonicalTest, TimesAsMicrosecondsAndBack) {
  EXPECT_EQ(MicrosToTimestampText(0), "1970-01-01 00:00:00.000000");
  EXPECT_EQ(MicrosToTimestampText(-1), "1969-12-31 23:59:59.999999");
  EXPECT_EQ(MicrosToTimestampText(253402300799999999), "9999-12-31 23:59:59.999999");
  EXPECT_EQ(MicrosToTimestampText(-30610224000000000), "1000-01-01 00:00:00.000000");
  EXPECT_EQ(MicrosToTimeText(-3020399000000), "-838:59:59.000000");
  EXPECT_EQ(MicrosToTimeText(86399999999), "23:59:59.999999");
  EXPECT_EQ(DaysToDateText(19782), "2024-02-29");
}

// The canonical form of what the casting table makes of a MySQL value: what
// the SQL of both sides must produce for it (tests/integration/cross_verify.sh
// proves they do on real servers).
class CanonOfMySqlTest : public ::testing::Test {
 protected:
  std::optional<std::string> Of(Conv conv, std::string_view mysql_text, ColumnCast c = {}) {
    c.name = "c";
    c.conv = conv;
    auto v = MyTextToValue(c, mysql_text, true);
    EXPECT_TRUE(v.ok()) << v.status().message();
    auto out = CanonOfValue(*v, CanonOfCast(c));
    EXPECT_TRUE(out.ok()) << out.status().message();
    return *out;
  }
};

TEST_F(CanonOfMySqlTest, EachKind) {
  EXPECT_EQ(Of(Conv::kInt, "18446744073709551615"), "18446744073709551615");
  EXPECT_EQ(Of(Conv::kInt, "-128"), "-128");
  EXPECT_EQ(Of(Conv::kBool, "1"), "1");
  EXPECT_EQ(Of(Conv::kDecimal, "-0.05"), "-0.05");
  EXPECT_EQ(Of(Conv::kDecimal, "12.10"), "12.1");
  EXPECT_EQ(Of(Conv::kYear, "2155"), "2155");
  EXPECT_EQ(Of(Conv::kFloat, "3.1415927410125732"), "3.1415927410125732");
  EXPECT_EQ(Of(Conv::kDate, "2024-02-29"), "2024-02-29");
  EXPECT_EQ(Of(Conv::kDate, "0000-00-00"), std::nullopt);  // zero_dates: null
  EXPECT_EQ(Of(Conv::kDateTime, "1000-01-01 00:00:00"), "-30610224000000000");
  EXPECT_EQ(Of(Conv::kTimestamp, "2038-01-19 03:14:07.999999"), "2147483647999999");
  EXPECT_EQ(Of(Conv::kTime, "23:59:59.999999"), "86399999999");
  EXPECT_EQ(Of(Conv::kInterval, "-838:59:59"), "-3020399000000");
  ColumnCast bit;
  bit.length = 10;
  EXPECT_EQ(Of(Conv::kBit, "682", bit), "1010101010");
  ColumnCast e;
  e.labels = {"small", "medium", "large"};
  EXPECT_EQ(Of(Conv::kEnum, "3", e), "large");
  EXPECT_EQ(Of(Conv::kSet, "5", e), "small,large");
  EXPECT_EQ(Of(Conv::kJson, R"({"n": 1, "a": null})"), R"({"a":null,"n":1})");
  EXPECT_EQ(Of(Conv::kText, ""), "");  // not NULL
  ColumnCast latin;
  latin.charset = "latin1";
  EXPECT_EQ(Of(Conv::kText, "\xc6r\xf8 \x80", latin), "Ærø €");
  ColumnCast bin;
  bin.length = 4;
  EXPECT_EQ(Of(Conv::kBytes, std::string("\x00\xff\x0a", 3), bin), "00ff0a00");  // BINARY(4) re-padded
  EXPECT_EQ(Of(Conv::kGeometry, std::string("\0\0\0\0\x01\x02", 6)), "0102");   // SRID dropped
}

TEST(CanonicalTest, DeleteRepairKeysBackToMySqlText) {
  ColumnCast e;
  e.name = "e";
  e.conv = Conv::kEnum;
  e.labels = {"small", "medium", "large"};
  EXPECT_EQ(CanonToMyText(e, "medium").value(), "2");
  e.conv = Conv::kSet;
  EXPECT_EQ(CanonToMyText(e, "small,large").value(), "5");
  EXPECT_EQ(CanonToMyText(e, "").value(), "0");
  EXPECT_EQ(CanonToMyText(e, "huge").status().message(), "column e: 'huge' is not one of its SET members");
  ColumnCast ts;
  ts.name = "ts";
  ts.conv = Conv::kDateTime;
  EXPECT_EQ(CanonToMyText(ts, "1700000000000001").value(), "2023-11-14 22:13:20.000001");
  ColumnCast b;
  b.name = "b";
  b.conv = Conv::kBytes;
  EXPECT_EQ(CanonToMyText(b, "00ff").value(), std::string("\x00\xff", 2));
}

TEST(CanonicalTest, SqlPerEngine) {
  CanonColumn c;
  c.kind = Canon::kNumber;
  c.my.name = "d";
  c.my.type.kind = TypeKind::kDecimal;
  c.pg.name = "d";
  c.pg.type.native = "numeric(10,2)";
  EXPECT_EQ(PgCanonExpr(c), "trim_scale(\"d\")::text");
  EXPECT_NE(MyCanonExpr(c).find("TRIM(TRAILING '0'"), std::string::npos);
  EXPECT_EQ(PgKeyLiteral(c, "1.5").value(), "'1.5'::numeric");
  EXPECT_EQ(MyKeyLiteral(c, "1.5").value(), "1.5");
  EXPECT_EQ(MyKeyLiteral(c, "1; DROP").status().message(), "column d: '1; DROP' is not a canonical number");
  c.pg.type.native = "boolean";
  EXPECT_EQ(PgCanonExpr(c), "(\"d\"::int)::text");
  // Text keys are ranged by their bytes on both sides, whatever the collations.
  c.kind = Canon::kText;
  c.my.type.charset = "utf8mb4";
  EXPECT_EQ(MyRangeExpr(c), "CAST(CONVERT(`d` USING utf8mb4) AS BINARY)");
  EXPECT_EQ(PgRangeExpr(c), "(\"d\"::text COLLATE \"C\")");
  EXPECT_EQ(PgRangeLiteral(c, "it's").value(), "'it''s'");
  c.kind = Canon::kTimestamp;
  c.pg.type.native = "timestamp(6) with time zone";
  EXPECT_EQ(PgKeyLiteral(c, "0").value(), "'1970-01-01 00:00:00.000000+00'::timestamptz");
  EXPECT_EQ(MyPieceExpr("x"), "IFNULL(CONCAT(LENGTH(x), ':', x), 'N')");
  EXPECT_EQ(RowDigest("abc", {}), "abc");
  EXPECT_NE(RowDigest("abc", {std::nullopt}), RowDigest("abc", {std::string("")}));  // NULL is not ''
}

// PostgreSQL -> MySQL: each casting entry's canonical kind, so that both
// sides' SQL agree on what the casting stored (tests/integration/
// cross_verify_pg_to_my.sh proves it on real servers).
class CanonOfPgTest : public ::testing::Test {
 protected:
  ColumnSchema Col(const std::string& name, uint32_t oid, const std::string& native, char typtype = 'b',
                   uint32_t elem = 0, const std::string& elem_native = "") {
    ColumnSchema c;
    c.name = name;
    c.type = pg::PgColumnType(oid, native, typtype, elem, elem_native);
    c.type.native_base = native.substr(0, native.find('('));
    return c;
  }
  // The CanonColumn of `col` in public.t (id integer primary key, col).
  CanonColumn Of(ColumnSchema col, PgCastOptions o = {}, PgTableFacts f = {}, std::string* not_compared = nullptr) {
    TableSchema t;
    t.id = {"public", "t"};
    t.columns.push_back(Col("id", 23, "integer"));
    t.columns.push_back(std::move(col));
    t.key = {0};
    t.key_kind = KeyKind::kPrimaryKey;
    t.Finalize();
    o.target_db = "shop";
    auto cast = CastPgTable(t, f, o);
    EXPECT_TRUE(cast.ok()) << cast.status().message();
    std::string ignored;
    return CanonOfPgCast(cast->columns[1], t.columns[1], cast->target->columns[1], o.out_of_range_null,
                         not_compared ? not_compared : &ignored);
  }
  std::optional<std::string> PgRaw(const CanonColumn& c, const std::string& raw) {
    EXPECT_TRUE(c.pg_cast);
    auto v = c.pg_cast(raw);
    EXPECT_TRUE(v.ok()) << v.status().message();
    auto out = CanonRaw(c.kind, *v);
    EXPECT_TRUE(out.ok()) << out.status().message();
    return *out;
  }
};

TEST_F(CanonOfPgTest, EachCastingEntry) {
  EXPECT_EQ(Of(Col("a", 16, "boolean")).kind, Canon::kNumber);
  EXPECT_EQ(PgCanonExpr(Of(Col("a", 16, "boolean"))), "(\"a\"::int)::text");
  CanonColumn n = Of(Col("a", 1700, "numeric(12,2)"));
  EXPECT_EQ(n.kind, Canon::kNumber);
  EXPECT_EQ(n.my.type.kind, TypeKind::kDecimal);
  EXPECT_EQ(PgCanonExpr(n), "trim_scale(\"a\")::text");  // no guard without out_of_range: null
  EXPECT_EQ(Of(Col("a", 701, "double precision")).kind, Canon::kFloat);
  EXPECT_EQ(Of(Col("a", 1082, "date")).kind, Canon::kDate);
  CanonColumn tz = Of(Col("a", 1184, "timestamp with time zone"));
  EXPECT_EQ(tz.kind, Canon::kTimestamp);  // microseconds since the epoch: MySQL's DATETIME holds the UTC instant
  EXPECT_EQ(tz.my.type.native_base, "datetime");
  EXPECT_EQ(PgKeyLiteral(tz, "0").value(), "'1970-01-01 00:00:00.000000+00'::timestamptz");
  EXPECT_EQ(Of(Col("a", 1114, "timestamp without time zone")).kind, Canon::kTimestamp);
  EXPECT_EQ(Of(Col("a", 1083, "time without time zone")).kind, Canon::kTime);
  EXPECT_EQ(Of(Col("a", 17, "bytea")).kind, Canon::kBytes);
  EXPECT_EQ(Of(Col("a", 2950, "uuid")).kind, Canon::kText);
  EXPECT_EQ(Of(Col("a", 1186, "interval")).kind, Canon::kText);  // VARCHAR of PostgreSQL's text
  EXPECT_EQ(Of(Col("a", 869, "inet")).kind, Canon::kText);
  EXPECT_EQ(PgCanonExpr(Of(Col("a", 869, "inet"))), "CASE WHEN \"a\" IS NOT NULL THEN format('%s', \"a\") END");  // '10.1.2.3', not '10.1.2.3/32'
  EXPECT_EQ(PgCanonExpr(Of(Col("a", 650, "cidr"))), "\"a\"::text");
  EXPECT_EQ(Of(Col("a", 1562, "bit varying(20)")).kind, Canon::kText);
  CanonColumn bit = Of(Col("a", 1560, "bit(10)"));
  EXPECT_EQ(bit.kind, Canon::kBits);
  EXPECT_EQ(bit.bits, 10);
  EXPECT_EQ(MyCanonExpr(bit), "CAST(LPAD(BIN(`a` + 0), 10, '0') AS BINARY)");
  PgTableFacts f;
  f.enum_labels["a"] = {"sad", "ok"};
  CanonColumn e = Of(Col("a", 16500, "mood", 'e'), {}, f);
  EXPECT_EQ(e.kind, Canon::kText);
  EXPECT_EQ(MyKeyLiteral(e, "ok").value(), "_utf8mb4 X'6f6b'");
  // json keeps its text, jsonb prints its own: both compared as documents.
  EXPECT_EQ(Of(Col("a", 3802, "jsonb")).kind, Canon::kJson);
  EXPECT_FALSE(Of(Col("a", 3802, "jsonb")).pg_cast);
  // An array: the PostgreSQL side's text goes through the casting to the JSON MySQL holds.
  CanonColumn arr = Of(Col("a", 1007, "integer[]", 'b', 23, "integer"));
  EXPECT_EQ(arr.kind, Canon::kJson);
  EXPECT_EQ(PgRaw(arr, "{{1,2},{3,NULL}}"), CanonJson("[[1, 2], [3, null]]").value());
  CanonColumn tarr = Of(Col("a", 1009, "text[]", 'b', 25, "text"));
  EXPECT_EQ(PgRaw(tarr, R"({"a \"q\"",NULL,plain})"), R"(["a \"q\"",null,"plain"])");
}

TEST_F(CanonOfPgTest, WhatOutOfRangeNullStoredAsNullReadsAsNull) {
  PgCastOptions o;
  o.out_of_range_null = true;
  CanonColumn d = Of(Col("a", 1082, "date"), o);
  EXPECT_TRUE(d.pg_out_of_range_null);
  EXPECT_EQ(PgCanonExpr(d),
            "CASE WHEN isfinite(\"a\") AND \"a\" >= '1000-01-01' AND \"a\" < '10000-01-01' THEN \"a\"::text END");
  CanonColumn n = Of(Col("a", 1700, "numeric(10,2)"), o);
  EXPECT_EQ(n.precision, 10);
  EXPECT_EQ(n.scale, 2);
  EXPECT_EQ(PgCanonExpr(n),
            "CASE WHEN \"a\" = 'NaN' OR \"a\" IN ('Infinity', '-Infinity') OR scale(trim_scale(\"a\")) > 2 OR "
            "abs(\"a\") >= power(10::numeric, 8) THEN NULL ELSE trim_scale(\"a\")::text END");
  CanonColumn f = Of(Col("a", 701, "double precision"), o);
  EXPECT_EQ(PgCanonExpr(f), "CASE WHEN \"a\" IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE \"a\"::float8::text END");
  EXPECT_FALSE(Of(Col("a", 1184, "timestamp with time zone")).pg_out_of_range_null);  // refused by row instead
  EXPECT_FALSE(Of(Col("a", 25, "text"), o).pg_out_of_range_null);
}

TEST_F(CanonOfPgTest, AnOverrideIntoAnotherKindOfTypeIsNotCompared) {
  PgCastOptions o;
  o.column_types["t.a"] = "TIME(6)";
  std::string why;
  Of(Col("a", 1186, "interval"), o, {}, &why);
  EXPECT_EQ(why, "column a is stored as TIME(6) (casting.columns), which is not compared across engines");
  o.column_types["t.a"] = "VARCHAR(200)";
  why.clear();
  EXPECT_EQ(Of(Col("a", 1186, "interval"), o, {}, &why).kind, Canon::kText);
  EXPECT_EQ(why, "");
  o.column_types["t.a"] = "DECIMAL(30,4)";
  why.clear();
  CanonColumn n = Of(Col("a", 1700, "numeric"), o, {}, &why);
  EXPECT_EQ(why, "");
  EXPECT_EQ(n.kind, Canon::kNumber);
  EXPECT_EQ(n.scale, 4);
}

}  // namespace
}  // namespace midflight::cross
