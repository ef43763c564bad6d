#include "pipeline/batch.h"

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
