#include "engines/cross/my_to_pg_types.h"
#include "engines/cross/pg_to_my_types.h"

#include <gtest/gtest.h>

namespace midflight::cross {
namespace {

ColumnSchema Col(const std::string& name, TypeKind kind, const std::string& base, const std::string& native,
                 bool is_signed = true, int width = 0) {
  ColumnSchema c;
  c.name = name;
  c.type.kind = kind;
  c.type.native_base = base;
  c.type.native = native;
  c.type.is_signed = is_signed;
  c.type.width = width;
  return c;
}

class MyToPgTest : public ::testing::Test {
 protected:
  // The cast of a one-key-column table `db.t` (id int) plus `col`.
  ColumnCast Cast(ColumnSchema col, CastOptions options = {}, MyTableFacts facts = {}) {
    TableSchema t;
    t.id = {"db", "t"};
    t.columns.push_back(Col("id", TypeKind::kInt, "int", "int(11)", true, 4));
    t.columns.push_back(std::move(col));
    t.key = {0};
    t.key_kind = KeyKind::kPrimaryKey;
    t.Finalize();
    auto cast = CastTable(t, facts, options);
    EXPECT_TRUE(cast.ok()) << cast.status().message();
    return cast.ok() ? cast->columns[1] : ColumnCast{};
  }
  std::string Pg(const ColumnCast& c, std::string_view v, bool zero_null = false) {
    auto r = ToPgText(c, v, zero_null);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() && *r ? **r : "<NULL>";
  }
  std::string Error(const ColumnCast& c, std::string_view v) {
    auto r = ToPgText(c, v, false);
    return r.ok() ? "<ok>" : r.status().message();
  }
};

TEST_F(MyToPgTest, UnsignedIntegersTakeTheNextWiderType) {
  EXPECT_EQ(Cast(Col("a", TypeKind::kInt, "tinyint", "tinyint(3) unsigned", false, 1)).pg_type, "smallint");
  EXPECT_EQ(Cast(Col("a", TypeKind::kInt, "smallint", "smallint(5) unsigned", false, 2)).pg_type, "integer");
  EXPECT_EQ(Cast(Col("a", TypeKind::kInt, "mediumint", "mediumint(8) unsigned", false, 3)).pg_type, "integer");
  EXPECT_EQ(Cast(Col("a", TypeKind::kInt, "int", "int(10) unsigned", false, 4)).pg_type, "bigint");
  auto big = Cast(Col("a", TypeKind::kInt, "bigint", "bigint(20) unsigned", false, 8));
  EXPECT_EQ(big.pg_type, "numeric(20)");
  EXPECT_EQ(Pg(big, "18446744073709551615"), "18446744073709551615");
  EXPECT_EQ(Cast(Col("a", TypeKind::kInt, "bigint", "bigint(20)", true, 8)).pg_type, "bigint");
  EXPECT_EQ(Cast(Col("a", TypeKind::kInt, "int", "int(11)", true, 4)).pg_type, "integer");
}

TEST_F(MyToPgTest, TinyintOneIsSmallintUnlessTheSpecSaysBoolean) {
  ColumnSchema c = Col("flag", TypeKind::kInt, "tinyint", "tinyint(1)", true, 1);
  EXPECT_EQ(Cast(c).pg_type, "smallint");
  CastOptions o;
  o.tinyint1_boolean = true;
  auto b = Cast(c, o);
  EXPECT_EQ(b.pg_type, "boolean");
  EXPECT_EQ(Pg(b, "1"), "t");
  EXPECT_EQ(Pg(b, "0"), "f");
  EXPECT_EQ(Error(b, "2"), "column flag: value 2 is not 0 or 1, and the column is boolean in PostgreSQL");
}

TEST_F(MyToPgTest, DecimalKeepsItsTextUnlessTrimmed) {
  ColumnSchema c = Col("d", TypeKind::kDecimal, "decimal", "decimal(65,30)");
  auto d = Cast(c);
  EXPECT_EQ(Pg(d, "1.500000000000000000000000000000"), "1.500000000000000000000000000000");
  d.trim_zeros = true;  // back to a numeric without scale (pg_to_my's reverse flow)
  EXPECT_EQ(Pg(d, "1.500000000000000000000000000000"), "1.5");
  EXPECT_EQ(Pg(d, "-20.000000000000000000000000000000"), "-20");
  EXPECT_EQ(Pg(d, "100"), "100");
  EXPECT_EQ(Pg(d, "0.000000000000000000000000000000"), "0");
}

TEST_F(MyToPgTest, DatesAndTimes) {
  ColumnSchema dt = Col("d", TypeKind::kTimestamp, "datetime", "datetime(6)");
  dt.type.precision = 6;
  auto d = Cast(dt);
  EXPECT_EQ(d.pg_type, "timestamp(6) without time zone");
  EXPECT_EQ(Pg(d, "2024-02-29 12:34:56.000001"), "2024-02-29 12:34:56.000001");
  EXPECT_EQ(Error(d, "0000-00-00 00:00:00"),
            "column d: zero date '0000-00-00 00:00:00' has no PostgreSQL value (casting.zero_dates: null stores NULL)");
  EXPECT_EQ(Pg(d, "0000-00-00 00:00:00", true), "<NULL>");
  EXPECT_EQ(Pg(d, "2024-00-10 00:00:00", true), "<NULL>");

  ColumnSchema ts = Col("t", TypeKind::kTimestamp, "timestamp", "timestamp");
  ts.type.with_zone = true;
  ts.type.precision = 0;
  auto t = Cast(ts);
  EXPECT_EQ(t.pg_type, "timestamp with time zone");
  EXPECT_EQ(Pg(t, "2024-02-29 12:34:56"), "2024-02-29 12:34:56+00");

  ColumnSchema tm = Col("tm", TypeKind::kTime, "time", "time");
  auto time = Cast(tm);
  EXPECT_EQ(time.pg_type, "time without time zone");
  EXPECT_EQ(Pg(time, "23:59:59"), "23:59:59");
  EXPECT_EQ(Pg(time, "24:00:00.000000"), "24:00:00.000000");
  EXPECT_EQ(Error(time, "24:00:01"), "column tm: TIME '24:00:01' is not a time of day (00:00:00..24:00:00); set "
                                     "the column's type to interval in casting.columns");
  EXPECT_EQ(Error(time, "-838:59:59"), "column tm: TIME '-838:59:59' is not a time of day (00:00:00..24:00:00); set "
                                       "the column's type to interval in casting.columns");
  CastOptions o;
  o.column_types["t.tm"] = "interval";
  auto iv = Cast(tm, o);
  EXPECT_EQ(iv.pg_type, "interval");
  EXPECT_EQ(Pg(iv, "-838:59:59"), "-838:59:59");

  EXPECT_EQ(Pg(Cast(Col("y", TypeKind::kOther, "year", "year(4)")), "0"), "0");
  EXPECT_EQ(Pg(Cast(Col("y", TypeKind::kOther, "year", "year(4)")), "2024"), "2024");
}

TEST_F(MyToPgTest, EnumSetBitJson) {
  auto e = Cast(Col("e", TypeKind::kEnum, "enum", "enum('a','it''s','c')"));
  EXPECT_EQ(e.pg_type, "text");
  EXPECT_EQ(e.check, "\"e\" IN ('a', 'it''s', 'c')");
  EXPECT_EQ(Pg(e, "2"), "it's");
  EXPECT_EQ(Error(e, "0"), "column e: holds MySQL's invalid ENUM value '' (index 0), which the CHECK refuses");

  auto s = Cast(Col("s", TypeKind::kOther, "set", "set('x','y','z')"));
  EXPECT_EQ(Pg(s, "5"), "x,z");
  EXPECT_EQ(Pg(s, "0"), "");

  auto b = Cast(Col("b", TypeKind::kOther, "bit", "bit(5)"));
  EXPECT_EQ(b.pg_type, "bit(5)");
  EXPECT_EQ(Pg(b, "5"), "00101");

  MyTableFacts f;
  f.json_columns.insert("j");
  auto j = Cast(Col("j", TypeKind::kText, "longtext", "longtext"), {}, f);
  EXPECT_EQ(j.pg_type, "jsonb");
}

TEST_F(MyToPgTest, TextAndBytes) {
  ColumnSchema v = Col("v", TypeKind::kText, "varchar", "varchar(20)");
  v.type.charset = "utf8mb4";
  auto vc = Cast(v);
  EXPECT_EQ(vc.pg_type, "varchar(20)");
  EXPECT_EQ(Pg(vc, ""), "");  // empty string stays apart from NULL
  EXPECT_EQ(Error(vc, std::string_view("a\0b", 3)),
            "column v: the value holds a NUL byte, which PostgreSQL text cannot store");
  ColumnSchema l = Col("l", TypeKind::kText, "text", "text");
  l.type.charset = "latin1";
  EXPECT_EQ(Pg(Cast(l), "caf\xe9 \x80"), "caf\xc3\xa9 \xe2\x82\xac");
  ColumnSchema k = Col("k", TypeKind::kText, "text", "text");
  k.type.charset = "koi8r";
  TableSchema t;
  t.id = {"db", "t"};
  t.columns = {k};
  EXPECT_EQ(CastTable(t, {}, {}).status().message(),
            "table db.t column k (text): character set koi8r has no conversion to UTF-8 yet (utf8mb4, utf8mb3, ascii "
            "and latin1 have); override the column's type in casting.columns or convert it on the source");

  auto bin = Cast(Col("b", TypeKind::kBytes, "binary", "binary(4)"));
  EXPECT_EQ(bin.pg_type, "bytea");
  EXPECT_EQ(Pg(bin, std::string_view("\x01\x00", 2)), "\\x01000000");  // the binlog strips BINARY's trailing zeros
  auto blob = Cast(Col("b", TypeKind::kBytes, "blob", "blob"));
  EXPECT_EQ(Pg(blob, std::string_view("\x00\xff", 2)), "\\x00ff");
  auto g = Cast(Col("g", TypeKind::kOther, "point", "point"));
  EXPECT_EQ(g.pg_type, "bytea");
  EXPECT_EQ(Pg(g, std::string_view("\x00\x00\x00\x00\x01\x02", 6)), "\\x0102");
}

TEST_F(MyToPgTest, DdlFlagsLossyLinesAndIdentity) {
  TableSchema t;
  t.id = {"shop", "users"};
  t.columns.push_back(Col("id", TypeKind::kInt, "bigint", "bigint(20) unsigned", false, 8));
  t.columns.push_back(Col("n", TypeKind::kInt, "int", "int(11)", true, 4));
  ColumnSchema email = Col("email", TypeKind::kText, "varchar", "varchar(100)");
  email.type.charset = "utf8mb4";
  email.not_null = true;
  t.columns.push_back(email);
  t.key = {2};
  t.key_kind = KeyKind::kPrimaryKey;
  t.key_collation_folds = true;
  t.Finalize();
  MyTableFacts f;
  f.auto_increment = "n";
  CastOptions o;
  o.target_schema = "public";
  auto cast = CastTable(t, f, o);
  ASSERT_TRUE(cast.ok()) << cast.status().message();
  EXPECT_EQ(cast->target->id.ToString(), "public.users");
  const std::string sql = CreateTableSql(*cast);
  EXPECT_NE(sql.find("\"n\" integer GENERATED BY DEFAULT AS IDENTITY,"), std::string::npos) << sql;
  EXPECT_NE(sql.find("\"email\" varchar(100) NOT NULL,  -- LOSSY/SEMANTIC: key under a case-insensitive MySQL "
                     "collation"),
            std::string::npos)
      << sql;
  EXPECT_NE(sql.find("PRIMARY KEY (\"email\")"), std::string::npos) << sql;
}

TEST_F(MyToPgTest, SnapshotReadsTheBinlogForms) {
  TableSchema t;
  t.columns.push_back(Col("b", TypeKind::kOther, "bit", "bit(3)"));
  t.columns.push_back(Col("e", TypeKind::kEnum, "enum", "enum('a')"));
  t.columns.push_back(Col("f", TypeKind::kFloat, "float", "float"));
  t.columns.push_back(Col("x", TypeKind::kInt, "int", "int(11)"));
  EXPECT_EQ(SnapshotSelectList(t), "CAST(`b` AS UNSIGNED), (`e` + 0), CAST(`f` AS DOUBLE), `x`");
}

TEST(PgTypeBaseTest, NamesAsFormatTypeDoes) {
  EXPECT_EQ(PgTypeBase("varchar(40)"), "character varying");
  EXPECT_EQ(PgTypeBase("character varying(40)"), "character varying");
  EXPECT_EQ(PgTypeBase("CHAR(3)"), "character");
  EXPECT_EQ(PgTypeBase("timestamp(3) with time zone"), "timestamp with time zone");
  EXPECT_EQ(PgTypeBase("timestamptz"), "timestamp with time zone");
  EXPECT_EQ(PgTypeBase("timestamp(6)"), "timestamp without time zone");
  EXPECT_EQ(PgTypeBase("numeric(20)"), "numeric");
  EXPECT_EQ(PgTypeBase("int4[]"), "integer[]");
  EXPECT_EQ(PgTypeBase("varchar(10) [ ]"), "character varying[]");
  EXPECT_EQ(PgTypeBase("bit(12)"), "bit");
  EXPECT_EQ(PgTypeBase("jsonb"), "jsonb");
  EXPECT_EQ(PgTypeBase("double precision"), "double precision");
}

// The PostgreSQL twin of a MySQL table (what a transform's inverse gives
// back when reverse replication starts) casts back to MySQL: its varchar(n)
// and timestamp columns read as PostgreSQL's own.
TEST(PgTypeBaseTest, TheTwinOfAMysqlTableCastsBackToMysql) {
  TableSchema t;
  t.id = {"shop", "t"};
  t.columns.push_back(Col("id", TypeKind::kInt, "int", "int(11)", true, 4));
  ColumnSchema v = Col("v", TypeKind::kText, "varchar", "varchar(40)");
  v.type.charset = "utf8mb4";
  t.columns.push_back(v);
  ColumnSchema c = Col("c", TypeKind::kText, "char", "char(3)");
  c.type.charset = "utf8mb4";
  t.columns.push_back(c);
  ColumnSchema at = Col("at", TypeKind::kTimestamp, "datetime", "datetime(3)");
  at.type.precision = 3;
  t.columns.push_back(at);
  t.key = {0};
  t.key_kind = KeyKind::kPrimaryKey;
  t.Finalize();
  auto cast = CastTable(t, {}, {});
  ASSERT_TRUE(cast.ok()) << cast.status().message();
  EXPECT_EQ(cast->target->columns[1].type.native_base, "character varying");
  PgCastOptions po;
  po.mariadb = true;
  po.target_db = "shop";
  auto back = CastPgTable(*cast->target, {}, po);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->columns[1].my_type.substr(0, 11), "VARCHAR(40)");
}

}  // namespace
}  // namespace midflight::cross
