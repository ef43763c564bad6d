// The target table of a MySQL -> MySQL transform (schema_loader.h
// TransformedTableSql), made from the source's SHOW CREATE TABLE.
#include <gtest/gtest.h>

#include "core/transform.h"
#include "engines/mysql/schema_loader.h"
#include "test_tables.h"

namespace midflight::mysql {
namespace {

using midflight::testing::Col;
using midflight::testing::Type;

// shop.`order lines` as the MySQL catalog reads it: images carry the generated column.
std::shared_ptr<const TableSchema> OrderLines() {
  auto t = std::make_shared<TableSchema>();
  t->id = {"shop", "order lines"};
  ColumnType text = Type(TypeKind::kText, "varchar(20)");
  text.charset = "utf8mb4";
  t->columns = {Col("id", Type(TypeKind::kInt, "int(11)", 4)), Col("qty text", text), Col("it's", text),
                Col("g", Type(TypeKind::kInt, "int(11)", 4)), Col("secret", text),
                Col("price", Type(TypeKind::kDecimal, "decimal(10,2)"))};
  t->columns[0].not_null = true;
  t->columns[1].not_null = true;
  t->columns[3].generated = true;
  t->key = {0};
  t->key_kind = KeyKind::kPrimaryKey;
  t->images_carry_generated = true;
  t->Finalize();
  return t;
}

constexpr const char* kShow =
    "CREATE TABLE `order lines` (\n"
    "  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
    "  `qty text` varchar(20) NOT NULL COMMENT 'as typed',\n"
    "  `it's` varchar(20) DEFAULT 'it''s',\n"
    "  `g` int(11) GENERATED ALWAYS AS (`id` * 2) VIRTUAL,\n"
    "  `secret` varchar(20) DEFAULT NULL,\n"
    "  `price` decimal(10,2) NOT NULL,\n"
    "  PRIMARY KEY (`id`),\n"
    "  KEY `k` (`qty text`)\n"
    ") ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci\n"
    " PARTITION BY HASH (`id`)\n"
    "PARTITIONS 2";

TableTransformSpec Spec() {
  TableTransformSpec s;
  s.table = "order lines";
  s.rename = "line items";
  s.exclude = {"secret"};
  s.columns = {{"id", "line_id", "", ""}, {"qty text", "qty", "text_to_int", ""}, {"it's", "", "upper", ""}};
  s.add = {{"total", "price * \"qty text\""}, {"origin", "'maria-1'"}};
  return s;
}

TEST(TransformedTableSql, KeptColumnsKeepTheirDefinitionMadeOnesGetAType) {
  auto tr = TableTransform::Bind(Spec(), OrderLines());
  ASSERT_TRUE(tr.ok()) << tr.status().message();
  ASSERT_TRUE(CheckTransformedTypes(**tr).ok());
  auto sql = TransformedTableSql(**tr, kShow, "shop_new");
  ASSERT_TRUE(sql.ok()) << sql.status().message();
  EXPECT_EQ(*sql,
            "CREATE TABLE IF NOT EXISTS `shop_new`.`line items` (\n"
            "  `line_id` int(11) NOT NULL AUTO_INCREMENT,\n"
            "  `qty` BIGINT NOT NULL,\n"
            "  `it's` varchar(20) DEFAULT 'it''s',\n"
            "  `g` int(11),\n"
            "  `price` decimal(10,2) NOT NULL,\n"
            "  `total` DECIMAL(65,30),\n"
            "  `origin` LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,\n"
            "  PRIMARY KEY (`line_id`)\n"
            ") ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci");
}

TEST(TransformedTableSql, ACastKeyIsAVarcharAndLosesAutoIncrement) {
  TableTransformSpec s;
  s.table = "order lines";
  s.columns = {{"id", "", "int_to_text", ""}};
  auto tr = TableTransform::Bind(s, OrderLines());
  ASSERT_TRUE(tr.ok()) << tr.status().message();
  auto sql = TransformedTableSql(**tr, kShow, "shop_new");
  ASSERT_TRUE(sql.ok()) << sql.status().message();
  EXPECT_NE(sql->find("  `id` VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,\n"), std::string::npos)
      << *sql;
  EXPECT_EQ(sql->find("AUTO_INCREMENT,"), std::string::npos) << *sql;
}

TEST(TransformedTableSql, AComputedColumnTakesItsSourceColumnsType) {
  TableTransformSpec s;
  s.table = "order lines";
  s.add = {{"label", "coalesce(\"it's\", \"qty text\")"}};
  auto tr = TableTransform::Bind(s, OrderLines());
  ASSERT_TRUE(tr.ok()) << tr.status().message();
  auto sql = TransformedTableSql(**tr, kShow, "shop_new");
  ASSERT_TRUE(sql.ok()) << sql.status().message();
  EXPECT_NE(sql->find("  `label` varchar(20) CHARACTER SET utf8mb4,\n"), std::string::npos) << *sql;
}

TEST(TransformedTableSql, ATrueFalseResultHasNoType) {
  TableTransformSpec s = Spec();
  s.add = {{"flag", "true"}};
  auto tr = TableTransform::Bind(s, OrderLines());
  ASSERT_TRUE(tr.ok()) << tr.status().message();
  EXPECT_EQ(CheckTransformedTypes(**tr).message(),
            "transforms.order lines: column flag would be boolean, which has no column type on a mysql:// "
            "target (a true/false value: compute a number or a text instead)");
  EXPECT_EQ(TransformedTableSql(**tr, kShow, "shop_new").status().message(), CheckTransformedTypes(**tr).message());
}

}  // namespace
}  // namespace midflight::mysql
