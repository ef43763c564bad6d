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

namespace midflight {
namespace {

TEST(PositionTest, TaggedByEngineAndOrderedByValue) {
  const Position pg = Position::Pg((0x16ull << 32) | 0xB374D848);
  EXPECT_EQ(pg.kind(), PositionKind::kPgLsn);
  EXPECT_EQ(pg.ToString(), "16/B374D848");
  const Position bl = Position::Binlog((12ull << 32) | 4711);
  EXPECT_EQ(bl.kind(), PositionKind::kBinlog);
  EXPECT_EQ(bl.ToString(), "binlog 000012:4711");
  // A zero position carries no engine and orders below every other.
  EXPECT_EQ(Position::Binlog(0).kind(), PositionKind::kNone);
  EXPECT_EQ(Position().ToString(), "0");
  EXPECT_LT(Position(), Position::Binlog(1));
  EXPECT_LT(Position::Binlog((11ull << 32) | 999999), Position::Binlog((12ull << 32) | 4));
  EXPECT_EQ(Position(PgLsn::FromU64(42)), Position::Pg(42));
  // A change's position reads in its engine's form.
  EXPECT_EQ((ChangePosition{Position::Binlog((3ull << 32) | 120), 2}).ToString(), "binlog 000003:120#2");
}

}  // namespace
}  // namespace midflight
