#include "engines/postgres/schema_loader.h"

#include <gtest/gtest.h>

#include "engines/postgres/pg_conn.h"

namespace midflight::pg {
namespace {

// Lines as `pg_restore --list` prints them: names unquoted, spaces and quotes as they are.
TEST(TocLine, NumbersOfAnEntryWithSpacesInItsNames) {
  auto e = ParseTocLine("3222; 2606 16393 CONSTRAINT we\"ird my table my table_pkey midflight");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->dump_id, 3222);
  EXPECT_EQ(e->catalog, 2606u);
  EXPECT_EQ(e->oid, 16393u);
}

TEST(TocLine, EntryWithoutACatalogObject) {
  auto e = ParseTocLine("3229; 0 0 INDEX ATTACH public pp 1_k_idx midflight");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->catalog, 0u);
  EXPECT_EQ(e->oid, 0u);
}

TEST(TocLine, CommentsAndOtherLinesAreNotEntries) {
  EXPECT_FALSE(ParseTocLine(";3222; 2606 16393 CONSTRAINT public t t_pkey midflight").has_value());
  EXPECT_FALSE(ParseTocLine(";     dbname: postgres").has_value());
  EXPECT_FALSE(ParseTocLine("").has_value());
  EXPECT_FALSE(ParseTocLine("3222; 2606").has_value());
  EXPECT_FALSE(ParseTocLine("3222;2606 16393 INDEX public i o").has_value());
  EXPECT_FALSE(ParseTocLine("x; 2606 16393 INDEX public i o").has_value());
}

TEST(TextArray, QuotesEveryElement) {
  EXPECT_EQ(TextArray({}), "{}");
  EXPECT_EQ(TextArray({"public", "my table"}), "{\"public\",\"my table\"}");
  EXPECT_EQ(TextArray({"we\"ird", "a\\b", "{x,y}", "NULL", ""}),
            "{\"we\\\"ird\",\"a\\\\b\",\"{x,y}\",\"NULL\",\"\"}");
}

}  // namespace
}  // namespace midflight::pg
