#include "engines/cross/pg_to_my_types.h"

#include <gtest/gtest.h>

#include "engines/postgres/pg_types.h"

namespace midflight::cross {
namespace {

// A column as engines/postgres/catalog.cc reads it: type oid, format_type
// with and without the modifier, typtype, array element.
ColumnSchema Col(const std::string& name, uint32_t oid, const std::string& native, const std::string& base,
                 char typtype = 'b', uint32_t elem = 0, const std::string& elem_native = "") {
  ColumnSchema c;
  c.name = name;
  c.type = pg::PgColumnType(oid, native, typtype, elem, elem_native);
  c.type.native_base = base;
  return c;
}

class PgToMyTest : public ::testing::Test {
 protected:
  // The cast of `public.t` (id integer primary key) plus `col`.
  Result<PgTableCast> Table(ColumnSchema col, PgCastOptions options = {}, PgTableFacts facts = {},
                            ColumnSchema key = Col("id", 23, "integer", "integer")) {
    TableSchema t;
    t.id = {"public", "t"};
    t.columns.push_back(std::move(key));
    t.columns.push_back(std::move(col));
    t.key = {0};
    t.key_kind = KeyKind::kPrimaryKey;
    t.Finalize();
    if (options.target_db.empty()) options.target_db = "shop";
    return CastPgTable(t, facts, options);
  }
  PgColumnCast Cast(ColumnSchema col, PgCastOptions options = {}, PgTableFacts facts = {}) {
    auto cast = Table(std::move(col), options, facts);
    EXPECT_TRUE(cast.ok()) << cast.status().message();
    return cast.ok() ? cast->columns[1] : PgColumnCast{};
  }
  std::string My(const PgColumnCast& c, std::string_view v, bool null = false) {
    auto r = ToMyText(c, v, null);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() && *r ? **r : "<NULL>";
  }
  std::string Error(const PgColumnCast& c, std::string_view v) {
    auto r = ToMyText(c, v, false);
    return r.ok() ? "<ok>" : r.status().message();
  }
  // True when the refusal of `v` starts with `want`.
  bool Refused(const PgColumnCast& c, std::string_view v, const std::string& want) {
    const std::string e = Error(c, v);
    EXPECT_TRUE(e.starts_with(want)) << e;
    return e.starts_with(want);
  }
};

TEST_F(PgToMyTest, Integers) {
  EXPECT_EQ(Cast(Col("a", 21, "smallint", "smallint")).my_type, "SMALLINT");
  EXPECT_EQ(Cast(Col("a", 23, "integer", "integer")).my_type, "INT");
  auto big = Cast(Col("a", 20, "bigint", "bigint"));
  EXPECT_EQ(big.my_type, "BIGINT");
  EXPECT_EQ(My(big, "-9223372036854775808"), "-9223372036854775808");
}

TEST_F(PgToMyTest, NumericKeepsItsDigitsAndRefusesWhatDecimalCannotHold) {
  auto d = Cast(Col("a", 1700, "numeric(12,2)", "numeric"));
  EXPECT_EQ(d.my_type, "DECIMAL(12,2)");
  EXPECT_EQ(My(d, "-1234567890.25"), "-1234567890.25");
  EXPECT_EQ(Error(d, "NaN"), "column a: numeric NaN; MySQL cannot hold it (casting.out_of_range: null stores NULL)");
  EXPECT_EQ(My(d, "NaN", /*null=*/true), "<NULL>");
  // Past DECIMAL's 65 digits or 30 decimals: no default cast.
  auto wide = Table(Col("a", 1700, "numeric(70,2)", "numeric"));
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.status().message().find("table public.t column a (numeric(70,2)): no cast to MySQL (DECIMAL holds at "
                                         "most 65 digits, 30 after the point)"),
            std::string::npos)
      << wide.status().message();
}

TEST_F(PgToMyTest, NumericWithoutPrecisionIsRefusedUnlessTheSpecSaysDecimal) {
  auto refused = Table(Col("a", 1700, "numeric", "numeric"));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("or set casting.numeric: decimal for DECIMAL(65,30)"), std::string::npos)
      << refused.status().message();
  PgCastOptions o;
  o.numeric_decimal = true;
  auto d = Cast(Col("a", 1700, "numeric", "numeric"), o);
  EXPECT_EQ(d.my_type, "DECIMAL(65,30)");
  ASSERT_FALSE(d.notes.empty());
  EXPECT_NE(d.notes[0].find("refused by row, never rounded"), std::string::npos);
  EXPECT_EQ(My(d, "3.141592653589793238462643383279"), "3.141592653589793238462643383279");  // 30 decimals
  EXPECT_EQ(My(d, "1.50000000000000000000000000000000000000"), "1.50000000000000000000000000000000000000");
  EXPECT_EQ(Error(d, "0.0000000000000000000000000000001"),
            "column a: numeric 0.0000000000000000000000000000001 has more digits than DECIMAL(65,30); MySQL cannot "
            "hold it (casting.out_of_range: null stores NULL)");
  EXPECT_EQ(Error(d, std::string(36, '9')).substr(0, 20), "column a: numeric 99");
  EXPECT_EQ(My(d, std::string(35, '9')), std::string(35, '9'));
}

TEST_F(PgToMyTest, FloatsKeepTheirExactValueAndRefuseNanAndInfinity) {
  auto r = Cast(Col("a", 700, "real", "real"));
  EXPECT_EQ(r.my_type, "FLOAT");
  EXPECT_EQ(My(r, "3.1415927"), "3.1415927410125732");  // the float's exact value, read back as the same float
  auto d = Cast(Col("a", 701, "double precision", "double precision"));
  EXPECT_EQ(d.my_type, "DOUBLE");
  EXPECT_EQ(My(d, "2.718281828459045"), "2.718281828459045");
  EXPECT_EQ(Error(d, "NaN"), "column a: float NaN; MySQL cannot hold it (casting.out_of_range: null stores NULL)");
  EXPECT_TRUE(Refused(d, "-Infinity", "column a: float -Infinity"));
  EXPECT_EQ(My(d, "Infinity", true), "<NULL>");
}

TEST_F(PgToMyTest, Boolean) {
  auto b = Cast(Col("a", 16, "boolean", "boolean"));
  EXPECT_EQ(b.my_type, "TINYINT(1)");
  EXPECT_EQ(My(b, "t"), "1");
  EXPECT_EQ(My(b, "f"), "0");
}

TEST_F(PgToMyTest, TextIsUtf8mb4WithABinaryCollation) {
  auto t = Cast(Col("a", 25, "text", "text"));
  EXPECT_EQ(t.my_type, "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin");
  EXPECT_TRUE(t.notes.empty());
  EXPECT_EQ(My(t, "naïve ☕ 𝄞"), "naïve ☕ 𝄞");
  EXPECT_EQ(Cast(Col("a", 1043, "character varying(40)", "character varying")).my_type,
            "VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin");
  auto ch = Cast(Col("a", 1042, "character(10)", "character"));
  EXPECT_EQ(ch.my_type, "CHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin");
  EXPECT_FALSE(ch.notes.empty());
  PgCastOptions mysql8;
  mysql8.mariadb = false;
  EXPECT_EQ(Cast(Col("a", 25, "text", "text"), mysql8).my_type,
            "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin");
}

TEST_F(PgToMyTest, ACaseInsensitiveCollationIsFlaggedAndNeverUsedForKeys) {
  PgCastOptions o;
  o.collation = "utf8mb4_unicode_ci";
  auto t = Cast(Col("a", 25, "text", "text"), o);
  EXPECT_EQ(t.my_type, "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci");
  ASSERT_EQ(t.notes.size(), 1u);
  EXPECT_NE(t.notes[0].find("case-insensitive"), std::string::npos);
  PgTableFacts f;
  f.unique_columns = {"a"};
  auto unique = Cast(Col("a", 25, "text", "text"), o, f);  // in a unique index: binary, not flagged
  EXPECT_EQ(unique.my_type, "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin");
  EXPECT_TRUE(unique.notes.empty());
}

TEST_F(PgToMyTest, TextKeysFitInnodbsKeyLimitAndLongerValuesAreRefused) {
  auto cast = Table(Col("b", 23, "integer", "integer"), {}, {}, Col("name", 25, "text", "text"));
  ASSERT_TRUE(cast.ok()) << cast.status().message();
  const PgColumnCast& k = cast->columns[0];
  EXPECT_EQ(k.my_type, "VARCHAR(768) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin");  // 3072 / 4
  EXPECT_EQ(My(k, std::string(768, 'x')), std::string(768, 'x'));
  EXPECT_EQ(Error(k, std::string(769, 'x')),
            "column name: text of 769 characters is longer than the key column's 768; MySQL cannot hold it "
            "(casting.out_of_range: null stores NULL)");
}

TEST_F(PgToMyTest, VarcharsPastTheRowLimitBecomeLongtext) {
  TableSchema t;
  t.id = {"public", "wide"};
  t.columns.push_back(Col("id", 23, "integer", "integer"));
  for (int i = 0; i < 5; ++i)
    t.columns.push_back(Col("c" + std::to_string(i), 1043, "character varying(5000)", "character varying"));
  t.key = {0};
  t.key_kind = KeyKind::kPrimaryKey;
  t.Finalize();
  PgCastOptions o;
  o.target_db = "shop";
  auto cast = CastPgTable(t, {}, o);
  ASSERT_TRUE(cast.ok());
  int longtext = 0;
  for (const auto& c : cast->columns) longtext += c.my_type.starts_with("LONGTEXT");
  EXPECT_EQ(longtext, 2);  // 3 x (4 x 5000 + 2) fits 64 KB, 4 do not
}

TEST_F(PgToMyTest, BinaryUuidJson) {
  auto b = Cast(Col("a", 17, "bytea", "bytea"));
  EXPECT_EQ(b.my_type, "LONGBLOB");
  EXPECT_EQ(My(b, "\\x00ff0a"), std::string("\x00\xff\x0a", 3));
  auto u = Cast(Col("a", 2950, "uuid", "uuid"));
  EXPECT_EQ(u.my_type, "CHAR(36) CHARACTER SET ascii COLLATE ascii_bin");
  EXPECT_EQ(My(u, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  EXPECT_TRUE(Cast(Col("a", 114, "json", "json")).notes.empty());
  auto jb = Cast(Col("a", 3802, "jsonb", "jsonb"));
  EXPECT_EQ(jb.my_type, "JSON");
  ASSERT_EQ(jb.notes.size(), 1u);
  EXPECT_NE(jb.notes[0].find("duplicate keys"), std::string::npos);
}

TEST_F(PgToMyTest, DatesAndTimesKeepMicrosecondsWithinMysqlsYears) {
  auto d = Cast(Col("a", 1082, "date", "date"));
  EXPECT_EQ(d.my_type, "DATE");
  EXPECT_EQ(My(d, "2024-02-29"), "2024-02-29");
  EXPECT_EQ(Error(d, "0999-12-31"),
            "column a: '0999-12-31' is outside MySQL's years 1000..9999; MySQL cannot hold it (casting.out_of_range: "
            "null stores NULL)");
  EXPECT_TRUE(Refused(d, "10000-01-01", "column a: '10000-01-01' is outsid"));
  EXPECT_TRUE(Refused(d, "infinity", "column a: 'infinity' is infinity or before the common"));
  EXPECT_TRUE(Refused(d, "0044-03-15 BC", "column a: '0044-03-15 BC' "));
  EXPECT_EQ(My(d, "-infinity", true), "<NULL>");
  auto ts = Cast(Col("a", 1114, "timestamp without time zone", "timestamp without time zone"));
  EXPECT_EQ(ts.my_type, "DATETIME(6)");
  EXPECT_EQ(My(ts, "9999-12-31 23:59:59.999999"), "9999-12-31 23:59:59.999999");
  auto tz = Cast(Col("a", 1184, "timestamp(3) with time zone", "timestamp with time zone"));
  EXPECT_EQ(tz.my_type, "DATETIME(3)");
  EXPECT_NE(tz.notes[0].find("in UTC"), std::string::npos);
  EXPECT_EQ(My(tz, "2024-06-01 10:00:00.5+00"), "2024-06-01 10:00:00.5");
  EXPECT_TRUE(Refused(tz, "0999-12-31 23:00:00+00", "column a: '0999-12-31 23:00:00+00' "));
  auto t = Cast(Col("a", 1083, "time without time zone", "time without time zone"));
  EXPECT_EQ(t.my_type, "TIME(6)");
  EXPECT_EQ(My(t, "24:00:00"), "24:00:00");
  auto iv = Cast(Col("a", 1186, "interval", "interval"));
  EXPECT_EQ(iv.my_type, "VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin");
  EXPECT_EQ(My(iv, "1 year 2 mons 3 days 04:05:06.7"), "1 year 2 mons 3 days 04:05:06.7");
}

TEST_F(PgToMyTest, ArraysBecomeJson) {
  auto a = Cast(Col("a", 1007, "integer[]", "integer[]", 'b', 23, "integer"));
  EXPECT_EQ(a.my_type, "JSON");
  EXPECT_EQ(My(a, "{1,2,NULL}"), "[1,2,null]");
  EXPECT_EQ(My(a, "{{1,2},{3,4}}"), "[[1,2],[3,4]]");
  EXPECT_EQ(My(a, "{}"), "[]");
  auto t = Cast(Col("a", 1009, "text[]", "text[]", 'b', 25, "text"));
  EXPECT_EQ(My(t, R"({"a \"b\"",NULL,"NULL",c})"), R"(["a \"b\"",null,"NULL","c"])");
  EXPECT_TRUE(Refused(a, "[0:1]={1,2}", "column a: array '[0:1]={1,2}' has explicit bo"));
}

TEST_F(PgToMyTest, EnumsBitsNetworksDomains) {
  PgTableFacts f;
  f.enum_labels["a"] = {"small", "medium", "it's large"};
  auto e = Cast(Col("a", 16500, "size", "size", 'e'), {}, f);
  EXPECT_EQ(e.my_type, "ENUM('small','medium','it''s large') CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin");
  EXPECT_EQ(My(e, "medium"), "medium");
  EXPECT_TRUE(Refused(e, "huge", "column a: 'huge' is not a member of the ENUM "));
  auto b = Cast(Col("a", 1560, "bit(10)", "bit"));
  EXPECT_EQ(b.my_type, "BIT(10)");
  EXPECT_EQ(My(b, "1010101010"), "682");
  auto vb = Cast(Col("a", 1562, "bit varying(100)", "bit varying"));
  EXPECT_EQ(vb.my_type, "VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin");
  EXPECT_EQ(My(vb, "101"), "101");
  EXPECT_EQ(Cast(Col("a", 869, "inet", "inet")).my_type, "VARCHAR(43) CHARACTER SET ascii COLLATE ascii_bin");
  PgTableFacts d;
  d.domains["a"] = {"positive_amount", Col("x", 1700, "numeric(10,2)", "numeric").type};
  auto dom = Cast(Col("a", 16600, "positive_amount", "positive_amount", 'd'), {}, d);
  EXPECT_EQ(dom.my_type, "DECIMAL(10,2)");
  EXPECT_NE(dom.notes[0].find("domain positive_amount as its base type numeric(10,2)"), std::string::npos);
}

TEST_F(PgToMyTest, IdentityBecomesAutoIncrementOnASingleColumnKey) {
  PgTableFacts f;
  f.identity = "id";
  ColumnSchema id = Col("id", 20, "bigint", "bigint");
  id.not_null = true;
  auto cast = Table(Col("b", 25, "text", "text"), {}, f, id);
  ASSERT_TRUE(cast.ok());
  EXPECT_TRUE(cast->columns[0].auto_increment);
  const std::string ddl = CreateMyTableSql(*cast);
  EXPECT_NE(ddl.find("  `id` BIGINT NOT NULL AUTO_INCREMENT,\n"), std::string::npos) << ddl;
  EXPECT_NE(ddl.find("  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"), std::string::npos) << ddl;
}

TEST_F(PgToMyTest, UnknownTypesAreRefusedUnlessTheSpecNamesOne) {
  auto refused = Table(Col("p", 600, "point", "point"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(),
            "table public.t column p (point): no cast to MySQL; set one in casting.columns (\"t.p\": <MySQL type>, the "
            "value is carried as PostgreSQL's text form)");
  PgCastOptions o;
  o.column_types["t.p"] = "VARCHAR(64)";
  auto p = Cast(Col("p", 600, "point", "point"), o);
  EXPECT_EQ(p.my_type, "VARCHAR(64)");
  EXPECT_EQ(My(p, "(1,2)"), "(1,2)");
}

TEST_F(PgToMyTest, DryRunFlagsLossyLines) {
  auto cast = Table(Col("j", 3802, "jsonb", "jsonb"));
  ASSERT_TRUE(cast.ok());
  const std::string ddl = CreateMyTableSql(*cast);
  EXPECT_NE(ddl.find("CREATE TABLE IF NOT EXISTS `shop`.`t` (\n"), std::string::npos) << ddl;
  EXPECT_NE(ddl.find("  `j` JSON,  -- LOSSY/SEMANTIC: jsonb as JSON"), std::string::npos) << ddl;
}

TEST_F(PgToMyTest, CopyFieldsAreUnescaped) {
  EXPECT_EQ(UnescapeCopyField("a\\tb\\nc\\\\d"), "a\tb\nc\\d");
  EXPECT_EQ(UnescapeCopyField("\\x41\\101\\r"), "AA\r");
}

}  // namespace
}  // namespace midflight::cross
