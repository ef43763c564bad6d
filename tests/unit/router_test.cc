#include "pipeline/router.h"

#include <gtest/gtest.h>

#include <set>

#include "test_tables.h"

namespace midflight {
using namespace testing;

TEST(RouterTest, SameKeyAlwaysSamePartition) {
  Router r(8);
  auto t = Accounts();
  auto ins = Make(ChangeKind::kInsert, t, 1, 1, {T("42"), T("0"), T("x")});
  auto upd = Make(ChangeKind::kUpdate, t, 2, 1, {T("42"), T("5"), Datum::Unchanged()});
  auto del = Make(ChangeKind::kDelete, t, 3, 1, {}, {T("42"), Datum::Null(), Datum::Null()});
  EXPECT_EQ(r.Route(ins), r.Route(upd));
  EXPECT_EQ(r.Route(ins), r.Route(del));
}

TEST(RouterTest, KeysSpreadOverEveryPartition) {
  Router r(4);
  auto t = Accounts();
  std::set<uint32_t> seen;
  for (int i = 0; i < 200; ++i) {
    std::string k = std::to_string(i);
    seen.insert(r.Route(Make(ChangeKind::kInsert, t, 1, 1, {Datum::Text(k), T("0"), T("")})).value);
  }
  EXPECT_EQ(seen.size(), 4u);
}

TEST(RouterTest, TablesRoutedWholeStayOnOnePartition) {
  Router r(4);
  for (auto t : {History(), Accounts(/*secondary_unique=*/true)}) {
    std::set<uint32_t> seen;
    for (int i = 0; i < 50; ++i)
      seen.insert(r.Route(Make(ChangeKind::kInsert, t, 1, 1, {Datum::Text(std::to_string(i)), T("0"), T("")})).value);
    EXPECT_EQ(seen.size(), 1u) << t->id.ToString();
  }
}

TEST(RouterTest, KeysUnderAFoldingCollationRouteTheTableWhole) {
  // 'a' and 'A' name one row under a case-insensitive collation: a key move
  // between them must not be split over two partitions.
  auto folded = std::make_shared<TableSchema>(*Accounts());
  folded->key_collation_folds = true;
  EXPECT_EQ(folded->routing(), RoutingMode::kByTable);
  EXPECT_EQ(Accounts()->routing(), RoutingMode::kByKey);
  Router r(8);
  std::set<uint32_t> seen;
  for (const char* k : {"a", "A", "b", "B", "key1", "KEY1"})
    seen.insert(r.Route(Make(ChangeKind::kInsert, folded, 1, 1, {T(k), T("0"), T("")})).value);
  EXPECT_EQ(seen.size(), 1u);
}

TEST(SnapshotFilterTest, SkipsOnlyWhatTheChunksSnapshotHolds) {
  auto t = Accounts();
  SnapshotFilter f;
  f.AddRange(t->id, std::nullopt, 100, PgLsn::FromU64(1000));  // copied from the first snapshot
  f.AddRange(t->id, 100, std::nullopt, PgLsn::FromU64(5000));  // copied after a crash, newer snapshot
  auto at = [&](uint64_t lsn, const char* key) { return Make(ChangeKind::kInsert, t, lsn, 1, {T(key), T("0"), T("")}); };
  EXPECT_FALSE(f.AlreadyCopied(at(2000, "5")));    // after the first chunk's snapshot: apply
  EXPECT_TRUE(f.AlreadyCopied(at(2000, "150")));   // the newer chunk already holds it
  EXPECT_FALSE(f.AlreadyCopied(at(5000, "150")));  // at the newer snapshot: not in it
  EXPECT_FALSE(f.AlreadyCopied(at(6000, "150")));
  EXPECT_EQ(f.horizon(), PgLsn::FromU64(5000));
}

TEST(SnapshotFilterTest, DeletesAreJudgedByTheirOldKey) {
  auto t = Accounts();
  SnapshotFilter f;
  f.AddRange(t->id, std::nullopt, 100, PgLsn::FromU64(1000));
  f.AddRange(t->id, 100, std::nullopt, PgLsn::FromU64(5000));
  auto del = Make(ChangeKind::kDelete, t, 2000, 1, {}, {T("150"), Datum::Null(), Datum::Null()});
  EXPECT_TRUE(f.AlreadyCopied(del));
}

TEST(SnapshotFilterTest, WholeTableSnapshot) {
  auto h = History();
  SnapshotFilter f;
  f.AddTable(h->id, PgLsn::FromU64(3000));
  EXPECT_TRUE(f.AlreadyCopied(Make(ChangeKind::kInsert, h, 2999, 1, {T("1"), T("a")})));
  EXPECT_FALSE(f.AlreadyCopied(Make(ChangeKind::kInsert, h, 3000, 1, {T("1"), T("a")})));
}

}  // namespace midflight
