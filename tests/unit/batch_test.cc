#include "pipeline/batch.h"
#include "pipeline/conflicts.h"

#include <gtest/gtest.h>

#include "test_tables.h"

namespace midflight {
using namespace testing;

class BatchTest : public ::testing::Test {
 protected:
  std::shared_ptr<const TableSchema> acc_ = Accounts();
  Change Ins(uint32_t seq, const char* id, const char* bal, const char* note = "n") {
    return Make(ChangeKind::kInsert, acc_, 10, seq, {T(id), T(bal), T(note)});
  }
  Change Upd(uint32_t seq, const char* id, const char* bal, Datum note = Datum::Unchanged()) {
    return Make(ChangeKind::kUpdate, acc_, 10, seq, {T(id), T(bal), note});
  }
  Change Del(uint32_t seq, const char* id) {
    return Make(ChangeKind::kDelete, acc_, 10, seq, {}, {T(id), Datum::Null(), Datum::Null()});
  }
};

// The stream's changes carry the check of their own kind (RoutedLog::Append).
Change Checked(Change c) {
  c.check = c.kind == ChangeKind::kInsert ? ConflictCheck::kInsert
            : c.kind == ChangeKind::kUpdate ? ConflictCheck::kUpdate
                                            : ConflictCheck::kDelete;
  return c;
}

TEST_F(BatchTest, CollapsedChangeKeepsTheCheckOfTheKeysFirstChange) {
  std::vector<Change> in;
  in.push_back(Checked(Del(1, "1")));
  in.push_back(Checked(Ins(2, "1", "5")));
  in.push_back(Checked(Ins(3, "2", "5")));
  in.push_back(Checked(Del(4, "2")));
  in.push_back(Checked(Upd(5, "3", "1", T("x"))));
  auto out = CollapseBatch(std::move(in));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].kind, ChangeKind::kInsert);  // delete + insert: an upsert of a row that must exist
  EXPECT_EQ(out[0].check, ConflictCheck::kDelete);
  EXPECT_EQ(out[1].kind, ChangeKind::kDelete);  // insert + delete: a delete of a row that must not exist
  EXPECT_EQ(out[1].check, ConflictCheck::kInsert);
  EXPECT_EQ(out[2].kind, ChangeKind::kInsert);  // a full update image is an upsert, still checked as an update
  EXPECT_EQ(out[2].check, ConflictCheck::kUpdate);
}

TEST_F(BatchTest, ConflictOfFollowsTheCheck) {
  Change del_then_ins = Checked(Del(1, "1"));
  EXPECT_EQ(ConflictOf(del_then_ins, /*existed=*/true), std::nullopt);
  EXPECT_EQ(ConflictOf(del_then_ins, /*existed=*/false), ConflictKind::kDeleteMissing);
  Change ins = Checked(Ins(2, "1", "5"));
  EXPECT_EQ(ConflictOf(ins, true), ConflictKind::kInsertExisting);
  EXPECT_EQ(ConflictOf(ins, false), std::nullopt);
  Change repair = Ins(3, "1", "5");  // injected repairs are not checked
  EXPECT_EQ(ConflictOf(repair, true), std::nullopt);
  EXPECT_EQ(DescribeConflict({ConflictKind::kInsertExisting, &ins}), "insert_existing on public.accounts key (id)=(1) at 0/A#2");
}

TEST_F(BatchTest, OnlyTheLastImageOfAKeyRemains) {
  std::vector<Change> in;
  in.push_back(Upd(1, "1", "10", T("a")));
  in.push_back(Upd(2, "1", "20", T("b")));
  in.push_back(Upd(3, "2", "5", T("c")));
  in.push_back(Upd(4, "1", "30", T("d")));
  auto out = CollapseBatch(std::move(in));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].values[1].text, "5");
  EXPECT_EQ(out[1].values[1].text, "30");
  EXPECT_EQ(out[1].kind, ChangeKind::kInsert);  // a full image is applied as an upsert
}

TEST_F(BatchTest, UnchangedToastTakesTheEarlierValue) {
  std::vector<Change> in;
  in.push_back(Ins(1, "1", "0", "big-text"));
  in.push_back(Upd(2, "1", "7"));
  auto out = CollapseBatch(std::move(in));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, ChangeKind::kInsert);
  EXPECT_EQ(out[0].values[2].text, "big-text");
}

TEST_F(BatchTest, UpdateAloneWithUnchangedToastStaysAnUpdate) {
  std::vector<Change> in;
  in.push_back(Upd(1, "1", "7"));
  auto out = CollapseBatch(std::move(in));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, ChangeKind::kUpdate);
  EXPECT_TRUE(out[0].values[2].is_unchanged());
}

TEST_F(BatchTest, DeleteWinsAndInsertAfterDeleteWins) {
  std::vector<Change> in;
  in.push_back(Ins(1, "1", "0"));
  in.push_back(Del(2, "1"));
  in.push_back(Upd(3, "2", "1", T("x")));
  in.push_back(Del(4, "2"));
  in.push_back(Ins(5, "2", "9"));
  auto out = CollapseBatch(std::move(in));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].kind, ChangeKind::kDelete);
  EXPECT_EQ(out[0].KeyText(), "1");
  EXPECT_EQ(out[1].kind, ChangeKind::kInsert);
  EXPECT_EQ(out[1].values[1].text, "9");
}

TEST_F(BatchTest, TablesRoutedWholeAreNeverCollapsed) {
  auto h = History();
  auto uniq = Accounts(/*secondary_unique=*/true);
  std::vector<Change> in;
  in.push_back(Make(ChangeKind::kInsert, h, 10, 1, {T("1"), T("a")}));
  in.push_back(Make(ChangeKind::kInsert, h, 10, 2, {T("1"), T("a")}));
  in.push_back(Make(ChangeKind::kUpdate, uniq, 10, 3, {T("1"), T("1"), T("x")}));
  in.push_back(Make(ChangeKind::kUpdate, uniq, 10, 4, {T("1"), T("2"), T("y")}));
  auto out = CollapseBatch(std::move(in));
  ASSERT_EQ(out.size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(out[i].pos.seq, i + 1);
}

}  // namespace midflight
