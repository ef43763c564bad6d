#include "core/position.h"

#include <gtest/gtest.h>

namespace midflight {

TEST(PgLsnTest, ParsesAndPrintsPostgresForm) {
  auto lsn = PgLsn::Parse("16/B374D848");
  ASSERT_TRUE(lsn.ok());
  EXPECT_EQ(lsn->value(), (uint64_t{0x16} << 32) | 0xB374D848);
  EXPECT_EQ(lsn->ToString(), "16/B374D848");
  EXPECT_EQ(PgLsn::Parse("0/0")->value(), 0u);
}

TEST(PgLsnTest, RejectsMalformedTextWithTheText) {
  for (const char* bad : {"", "16", "/1", "1/", "G/1", "1/2/3", "1 /2"}) {
    auto lsn = PgLsn::Parse(bad);
    ASSERT_FALSE(lsn.ok()) << bad;
    EXPECT_EQ(lsn.status().message(), std::string("bad LSN \"") + bad + "\": expected the form X/Y in hex");
  }
}

TEST(PgLsnTest, BytesSinceNeverNegative) {
  EXPECT_EQ(PgLsn::FromU64(100).BytesSince(PgLsn::FromU64(40)), 60u);
  EXPECT_EQ(PgLsn::FromU64(40).BytesSince(PgLsn::FromU64(100)), 0u);
}

TEST(ChangePositionTest, OrdersByCommitThenSequence) {
  ChangePosition a{PgLsn::FromU64(10), 5}, b{PgLsn::FromU64(10), 6}, c{PgLsn::FromU64(11), 1};
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(a, (ChangePosition{PgLsn::FromU64(10), 5}));
  EXPECT_EQ(c.ToString(), "0/B#1");
}

}  // namespace midflight
