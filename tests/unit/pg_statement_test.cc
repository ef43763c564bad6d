#include "proxy/pg_statement.h"

#include <gtest/gtest.h>

namespace midflight::proxy {
namespace {

TEST(PgStatementTest, LeadingSkipsBlanksAndComments) {
  EXPECT_EQ(Leading("  set  search_path to x", 2), "SET SEARCH_PATH");
  EXPECT_EQ(Leading("-- note\n/* block */ Reset ALL;", 2), "RESET ALL");
  EXPECT_EQ(Leading("/* unterminated", 1), "");
  EXPECT_EQ(Leading("", 3), "");
  EXPECT_EQ(Leading("select * from t", 5), "SELECT");  // stops at a non-word
}

TEST(PgStatementTest, SingleStatement) {
  EXPECT_TRUE(SingleStatement("SET a = 1"));
  EXPECT_TRUE(SingleStatement("SET a = 1;  \n"));
  EXPECT_FALSE(SingleStatement("SET a = 1; SELECT 1"));
  EXPECT_FALSE(SingleStatement("SET a = ';x'"));  // conservative: not carried
}

TEST(PgStatementTest, ClassifiesSessionState) {
  std::string name;
  EXPECT_EQ(Classify("SET search_path = app", &name), StateEffect::kSet);
  EXPECT_EQ(Classify("set session statement_timeout = 5", &name), StateEffect::kSet);
  EXPECT_EQ(Classify("RESET search_path", &name), StateEffect::kSet);
  EXPECT_EQ(Classify("SET LOCAL search_path = app", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("SET CONSTRAINTS ALL DEFERRED", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("SET a = 1; DELETE FROM t", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("reset all", &name), StateEffect::kResetAll);
  EXPECT_EQ(Classify("DISCARD ALL", &name), StateEffect::kDiscardAll);
  EXPECT_EQ(Classify("DISCARD TEMP", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("SELECT 1", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("UPDATE t SET a = 1", &name), StateEffect::kNone);
}

TEST(PgStatementTest, PreparedStatementNames) {
  std::string name;
  EXPECT_EQ(Classify("PREPARE q1 (int) AS SELECT $1", &name), StateEffect::kPrepare);
  EXPECT_EQ(name, "Q1");
  EXPECT_EQ(Classify("PREPARE TRANSACTION 'x'", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("DEALLOCATE q1", &name), StateEffect::kDeallocate);
  EXPECT_EQ(name, "Q1");
  EXPECT_EQ(Classify("deallocate prepare q1", &name), StateEffect::kDeallocate);
  EXPECT_EQ(name, "Q1");
  EXPECT_EQ(Classify("DEALLOCATE ALL", &name), StateEffect::kDeallocate);
  EXPECT_EQ(name, "ALL");
}

// Found by tests/fuzz/pg_wire_fuzz.cc: a client's "PREPARE" without a name
// threw std::out_of_range from substr on the proxy's per-query path
// (Session::Track), which catches nothing: one query ended the process.
TEST(PgStatementTest, PrepareWithoutANameIsNotCarried) {
  std::string name = "unchanged";
  EXPECT_EQ(Classify("PREPARE", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("prepare;", &name), StateEffect::kNone);
  EXPECT_EQ(Classify("  PREPARE /* c */ (int) AS SELECT 1", &name), StateEffect::kNone);
  EXPECT_EQ(name, "unchanged");
}

}  // namespace
}  // namespace midflight::proxy
