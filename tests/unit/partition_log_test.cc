#include <gtest/gtest.h>

#include <thread>

#include "pipeline/partition_log.h"
#include "test_tables.h"

namespace midflight {
using namespace testing;

TEST(MemoryPartitionLogTest, KeepsOrderPerPartition) {
  auto log = NewMemoryPartitionLog(2, 1 << 20);
  auto t = Accounts();
  for (uint32_t i = 1; i <= 5; ++i) ASSERT_TRUE(log->Append({i % 2}, Make(ChangeKind::kInsert, t, 1, i, {T("1"), T("0"), T("")})).ok());
  std::vector<Change> out;
  ASSERT_TRUE(log->Poll({1}, 1, 10, std::chrono::milliseconds(1), &out).ok());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].pos.seq, 1u);
  EXPECT_EQ(out[1].pos.seq, 3u);
  EXPECT_EQ(out[2].pos.seq, 5u);
}

TEST(MemoryPartitionLogTest, AppendBlocksWhenFullUntilTheApplierTakes) {
  auto t = Accounts();
  Change c = Make(ChangeKind::kInsert, t, 1, 1, {T("1"), T("0"), T(std::string(1000, 'x').c_str())});
  auto log = NewMemoryPartitionLog(1, c.ByteSize() * 3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(log->Append({0}, c).ok());
  std::atomic<bool> appended{false};
  std::thread producer([&] {
    ASSERT_TRUE(log->Append({0}, c).ok());
    appended = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(appended) << "the fourth append must wait: memory is bounded";
  std::vector<Change> out;
  ASSERT_TRUE(log->Poll({0}, 1, 1, std::chrono::milliseconds(10), &out).ok());
  producer.join();
  EXPECT_TRUE(appended);
}

TEST(MemoryPartitionLogTest, PollWaitsForTheBatchItAsksForOrTheTime) {
  auto log = NewMemoryPartitionLog(1, 1 << 20);
  auto t = Accounts();
  ASSERT_TRUE(log->Append({0}, Make(ChangeKind::kInsert, t, 1, 1, {T("1"), T("0"), T("")})).ok());
  std::vector<Change> out;
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(log->Poll({0}, 10, 10, std::chrono::milliseconds(30), &out).ok());
  EXPECT_EQ(out.size(), 1u) << "after the wait, what is there is taken";
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(25));
  std::thread producer([&] {
    for (uint32_t i = 2; i <= 11; ++i) ASSERT_TRUE(log->Append({0}, Make(ChangeKind::kInsert, t, 1, i, {T("1"), T("0"), T("")})).ok());
  });
  out.clear();
  ASSERT_TRUE(log->Poll({0}, 10, 10, std::chrono::seconds(30), &out).ok());
  producer.join();
  EXPECT_EQ(out.size(), 10u) << "a full batch returns at once";
}

TEST(MemoryPartitionLogTest, CloseWakesEveryone) {
  auto log = NewMemoryPartitionLog(1, 1 << 20);
  std::thread consumer([&] {
    std::vector<Change> out;
    Status st = log->Poll({0}, 1, 1, std::chrono::seconds(30), &out);
    EXPECT_EQ(st.code(), StatusCode::kCancelled);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  log->Close();
  consumer.join();
  EXPECT_EQ(log->Append({0}, Change{}).code(), StatusCode::kCancelled);
}

}  // namespace midflight
