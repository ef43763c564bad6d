#include "engines/mysql/verify.h"

#include <gtest/gtest.h>

#include "engines/verify_report.h"

namespace midflight::mysql {
namespace {

ColumnSchema Col(std::string name, std::string base, TypeKind kind, std::string charset = "") {
  ColumnSchema c;
  c.name = std::move(name);
  c.type.native_base = std::move(base);
  c.type.kind = kind;
  c.type.charset = std::move(charset);
  return c;
}

// A table whose names need quoting: a backtick, a space, a quote, SQL words.
class KeyRangeSqlTest : public ::testing::Test {
 protected:
  KeyRangeSqlTest() {
    t.id = {"shop", "odd `tbl"};
    t.columns = {Col("order", "varchar", TypeKind::kText, "utf8mb4"), Col("my id", "int", TypeKind::kInt),
                 Col("it's", "text", TypeKind::kText, "latin1"), Col("kind", "enum", TypeKind::kEnum)};
    t.key = {0, 1};
    t.key_kind = KeyKind::kPrimaryKey;
    t.images_carry_generated = true;
    t.Finalize();
  }
  TableSchema t;
};

TEST_F(KeyRangeSqlTest, CompositeRangeIsExpandedColumnByColumn) {
  KeyRangeSql sql(t, "shop_new");
  VerifyKey lo{std::string("a"), std::string("7")}, hi{std::string("b'"), std::string("2")};
  EXPECT_EQ(sql.Range(lo, std::nullopt),
            "((`order` > _utf8mb4 X'61') OR (`order` = _utf8mb4 X'61' AND `my id` > 7))");
  EXPECT_EQ(sql.Range(std::nullopt, hi),
            "((`order` < _utf8mb4 X'6227') OR (`order` = _utf8mb4 X'6227' AND `my id` <= 2))");
  EXPECT_EQ(sql.Range(std::nullopt, std::nullopt), "TRUE");
  EXPECT_EQ(sql.Range(lo, hi), sql.Range(lo, std::nullopt) + " AND " + sql.Range(std::nullopt, hi));
}

TEST_F(KeyRangeSqlTest, BoundaryWalksTheKeyInOrder) {
  KeyRangeSql sql(t, "shop_new");
  EXPECT_EQ(sql.Boundary(std::nullopt, 1000),
            "SELECT `order`, `my id` FROM `shop_new`.`odd ``tbl` WHERE TRUE ORDER BY `order`, `my id` LIMIT 1 OFFSET 999");
}

TEST_F(KeyRangeSqlTest, LookupMatchesEachKeyWhole) {
  KeyRangeSql sql(t, "shop");
  VerifyKey a{std::string("a"), std::string("1")}, b{std::string("A"), std::string("1")};
  const std::string q = sql.Lookup({&a, &b});
  EXPECT_NE(q.find("WHERE ((`order` = _utf8mb4 X'61' AND `my id` = 1) OR (`order` = _utf8mb4 X'41' AND `my id` = 1))"),
            std::string::npos)
      << q;
}

TEST_F(KeyRangeSqlTest, RowTextMarksNullApartFromEmptyAndTheWordNull) {
  KeyRangeSql sql(t, "shop");
  EXPECT_EQ(sql.RowText(),
            "CONCAT(IFNULL(CONCAT(LENGTH(CAST(`order` AS BINARY)), ':', CAST(`order` AS BINARY)), 'N'), "
            "IFNULL(CONCAT(LENGTH(CAST(`my id` AS BINARY)), ':', CAST(`my id` AS BINARY)), 'N'), "
            "IFNULL(CONCAT(LENGTH(CAST(`it's` AS BINARY)), ':', CAST(`it's` AS BINARY)), 'N'), "
            "IFNULL(CONCAT(LENGTH(CAST(`kind` AS BINARY)), ':', CAST(`kind` AS BINARY)), 'N'))");
}

TEST_F(KeyRangeSqlTest, ImageSelectsTheBinlogForms) {
  KeyRangeSql sql(t, "shop");
  VerifyKey a{std::string("a"), std::string("1")};
  const std::string q = sql.Image({&a});
  EXPECT_TRUE(q.starts_with("SELECT `order`, `my id`, `order`, `my id`, `it's`, (`kind` + 0) FROM `shop`.`odd ``tbl`"))
      << q;
}

TEST_F(KeyRangeSqlTest, LiteralsNeverCarryRawText) {
  KeyRangeSql sql(t, "shop");
  EXPECT_EQ(sql.Literal(0, std::string("x') OR 1=1 -- ")), "_utf8mb4 X'782729204f5220313d31202d2d20'");
  EXPECT_EQ(sql.Literal(1, std::string("-12")), "-12");
  EXPECT_EQ(sql.Literal(1, std::string("1; DROP")), "'1; DROP'");
  EXPECT_EQ(sql.Literal(1, std::nullopt), "NULL");
}

TEST_F(KeyRangeSqlTest, DisplayShowsBytesThatDoNotPrintAsHex) {
  KeyRangeSql sql(t, "shop");
  EXPECT_EQ(sql.Display({std::string("café"), std::string("42")}), "(order, my id)=(café, 42)");
  EXPECT_EQ(sql.Display({std::string("a\nb", 3), std::string("1")}), "(order, my id)=(0x610a62, 1)");
  EXPECT_EQ(sql.DisplayRange(std::nullopt, std::nullopt), "chunk (whole table)");
}

TEST(KeyRangeSqlSingle, SingleColumnKeysUseInAndPlainComparisons) {
  TableSchema t;
  t.id = {"shop", "t"};
  t.columns = {Col("id", "bigint", TypeKind::kInt), Col("v", "blob", TypeKind::kBytes)};
  t.key = {0};
  t.key_kind = KeyKind::kPrimaryKey;
  t.Finalize();
  KeyRangeSql sql(t, "shop");
  VerifyKey a{std::string("5")}, b{std::string("9")};
  EXPECT_EQ(sql.Range(a, b), "`id` > 5 AND `id` <= 9");
  EXPECT_NE(sql.Lookup({&a, &b}).find("WHERE `id` IN (5, 9)"), std::string::npos);
}

// A MySQL key may be any bytes (a BINARY key): the JSON report replaces what
// is not UTF-8 rather than throwing, and names the differing columns.
TEST(VerifyReport, JsonHoldsKeysThatAreNotUtf8AndTheColumns) {
  verify::Report r;
  verify::TableResult t;
  t.table = {"shop", "t"};
  t.differences.push_back({t.table, {std::string("\xff\x00", 2)}, "(k)=(0xff00)", "differs", {"c", "NULL"}});
  r.tables.push_back(t);
  const std::string j = r.ToJson();
  EXPECT_NE(j.find(R"j("columns":["c","NULL"])j"), std::string::npos) << j;
  EXPECT_NE(j.find(R"j("key_display":"(k)=(0xff00)")j"), std::string::npos) << j;
  EXPECT_FALSE(r.clean());
  EXPECT_TRUE(r.Summary().starts_with("verify: 1 differences (0 missing on target, 0 extra on target, 1 differ)"))
      << r.Summary();
}

}  // namespace
}  // namespace midflight::mysql
