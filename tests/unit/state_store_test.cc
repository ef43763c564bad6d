#include "control/state_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace midflight {
namespace {

class StateStoreOpenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/midflight-store-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  static int Mode(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) return -1;
    return st.st_mode & 07777;
  }

  std::string root_;
};

// `midflight run` on a fresh state directory once exited at once with "state
// store: database is locked": several openers switched it to WAL and created
// its tables at the same time. However many open a fresh store at once,
// every open and every write succeeds.
TEST_F(StateStoreOpenTest, ManyOpenersOfAFreshStoreAllSucceed) {
  constexpr int kRounds = 40, kThreads = 6;
  for (int round = 0; round < kRounds; ++round) {
    const std::string dir = root_ + "/m" + std::to_string(round);
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        auto store = StateStore::Open(dir, /*create=*/true);
        if (!store.ok()) {
          errors[t] = "open: " + store.status().message();
          return;
        }
        if (Status st = (*store)->Put("k" + std::to_string(t), "v"); !st.ok()) errors[t] = "put: " + st.message();
        else if (Status st = (*store)->AddEvent("thread " + std::to_string(t)); !st.ok())
          errors[t] = "event: " + st.message();
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) ASSERT_EQ(errors[t], "") << "round " << round << ", thread " << t;
    auto store = StateStore::Open(dir, /*create=*/false);
    ASSERT_TRUE(store.ok()) << store.status().message();
    EXPECT_EQ((*store)->Events(100).size(), static_cast<size_t>(kThreads));
  }
}

// The state directory holds the API token, the schema and the history:
// 0700, its files 0600, whatever the umask (this test keeps the default) and
// also for a directory an older version left world-readable.
TEST_F(StateStoreOpenTest, StateDirectoryIsPrivate) {
  for (bool existed : {false, true}) {
    const std::string dir = root_ + (existed ? "/old" : "/new");
    if (existed) {
      std::filesystem::create_directories(dir);
      ::chmod(dir.c_str(), 0755);
      auto first = StateStore::Open(dir, /*create=*/true);
      ASSERT_TRUE(first.ok()) << first.status().message();
      for (const char* f : {"/state.db", "/state.db-wal", "/state.db-shm"}) ::chmod((dir + f).c_str(), 0644);
      ::chmod(dir.c_str(), 0755);
    }
    auto store = StateStore::Open(dir, /*create=*/true);
    ASSERT_TRUE(store.ok()) << store.status().message();
    ASSERT_TRUE((*store)->Put("k", "v").ok());
    auto lock = LockStateDir(dir);
    ASSERT_TRUE(lock.ok()) << lock.status().message();
    ::close(*lock);
    EXPECT_EQ(Mode(dir), 0700) << dir;
    for (const char* f : {"/state.db", "/state.db-wal", "/state.db-shm", "/lock"})
      EXPECT_EQ(Mode(dir + f), 0600) << dir << f;
  }
}

}  // namespace
}  // namespace midflight
