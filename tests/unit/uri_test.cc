#include "base/uri.h"

#include <gtest/gtest.h>

#include "postgres/pg_conn.h"

namespace midflight {

TEST(UriTest, PasswordNeverShown) {
  EXPECT_EQ(RedactUri("postgres://app:s3cret@db1:5432/shop"), "postgres://app:***@db1:5432/shop");
  EXPECT_EQ(RedactUri("postgres://app@db1/shop"), "postgres://app@db1/shop");
  EXPECT_EQ(RedactUri("postgres://db1/shop?user=a&password=s3cret"), "postgres://db1/shop?user=a&password=***");
  EXPECT_EQ(RedactUri("host=db1 password=s3cret"), "host=db1 password=***");
}

TEST(UriTest, SplitPasswordKeepsEverythingElse) {
  auto r = pg::SplitPassword("postgres://app:s3cret@127.0.0.1:5433/shop");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->second, "s3cret");
  EXPECT_EQ(r->first.find("s3cret"), std::string::npos);
  EXPECT_NE(r->first.find("port='5433'"), std::string::npos) << r->first;
}

TEST(QuoteTest, IdentifiersAndLiterals) {
  EXPECT_EQ(pg::QuoteIdent("Order"), "\"Order\"");
  EXPECT_EQ(pg::QuoteIdent("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(pg::QuoteLiteral("it's"), "'it''s'");
  EXPECT_EQ(pg::QuoteLiteral("a\\b"), "E'a\\\\b'");
}

}  // namespace midflight
