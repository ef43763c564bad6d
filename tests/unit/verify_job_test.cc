#include "control/verify_job.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

namespace midflight {
namespace {

using json = nlohmann::json;

// The job over a real state store, with a pass that checks one table of 10
// rows at once (and, when told, finds key 42 different).
class VerifyJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/midflight-verify-job-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    auto s = StateStore::Open(root_, /*create=*/true);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(*s);
  }
  void TearDown() override {
    job_.reset();
    store_.reset();
    std::filesystem::remove_all(root_);
  }

  void Make(VerifyJob::Continuous c) {
    c.rows_per_s = [] { return int64_t{0}; };
    job_ = std::make_unique<VerifyJob>(
        *store_,
        [this](const ReplicationOps::VerifyRun& run, std::function<int64_t()>, const std::atomic<bool>*, bool repair) {
          ++passes_;
          repair_asked_ = repair;
          ReplicationOps::VerifyProgress p;
          p.table = "public.t";
          p.table_done = true;
          p.done_through.table = "public.t";
          p.table_rows = 10;
          if (differ_) p.lines.push_back("public.t (id)=(42): differs");
          run.on_progress(p);
          ReplicationOps::VerifyOutcome out;
          out.clean = !differ_;
          out.lines = p.lines;
          if (differ_ && repair) out.repairs.resize(1);
          return Result<ReplicationOps::VerifyOutcome>(std::move(out));
        },
        1, 10, [] { return int64_t{0}; }, std::move(c), [this](std::vector<Change> r) {
          repaired_ += r.size();
          return Result<size_t>(r.size());
        });
  }
  json Job() { return json::parse(VerifyJob::ShowJson(*store_)); }
  // Waits up to 5 s for `pred` on the stored job.
  bool WaitFor(const std::function<bool(const json&)>& pred) {
    for (int i = 0; i < 500; ++i) {
      if (pred(Job())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  static VerifyJob::Continuous On(bool repair = false) {
    VerifyJob::Continuous c;
    c.on = true;
    c.pause_seconds = 0.05;
    c.repair = repair;
    return c;
  }

  std::string root_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<VerifyJob> job_;
  std::atomic<int> passes_{0};
  std::atomic<bool> differ_{false}, repair_asked_{false};
  std::atomic<size_t> repaired_{0};
};

TEST_F(VerifyJobTest, ContinuousRunsPassAfterPassAndFeedsTheGate) {
  Make(On());
  job_->ResumeIfRunning();  // what the migration does once it replicates
  ASSERT_TRUE(WaitFor([](const json& j) { return j.value("passes", 0) >= 3; })) << Job().dump();
  json j = Job();
  EXPECT_TRUE(j.value("continuous", false));
  EXPECT_EQ(j["reports"].back().value("kind", ""), "continuous");
  EXPECT_EQ(j["reports"].back().value("actor", ""), "continuous verification");
  EXPECT_EQ(store_->Get("verify_clean").value_or(""), "true");
  EXPECT_EQ(store_->Get("verify_summary").value_or("").rfind("verify continuous: clean; 1 tables, 10 rows", 0), 0u);
}

TEST_F(VerifyJobTest, StopEndsTheLoopUntilStart) {
  Make(On());
  job_->ResumeIfRunning();
  ASSERT_TRUE(WaitFor([](const json& j) { return j.value("passes", 0) >= 1; }));
  ASSERT_TRUE(job_->Stop().ok());
  json j = Job();
  EXPECT_EQ(j.value("state", ""), "stopped");
  EXPECT_FALSE(j.value("continuous", true));
  const int n = passes_;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(passes_, n);
  job_->ResumeIfRunning();  // a restart or a switch's end: stays off
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(passes_, n);
  auto again = job_->Stop();
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().message(), "no verification job is running (it is stopped)");
  ASSERT_TRUE(job_->Start(-1).ok());  // on again
  ASSERT_TRUE(WaitFor([&](const json& j) { return passes_ >= n + 2 && j.value("continuous", false); }));
}

TEST_F(VerifyJobTest, ContinuousRepairReportsTheKeyAndWhatWasRepaired) {
  Make(On(/*repair=*/true));
  differ_ = true;
  job_->ResumeIfRunning();
  ASSERT_TRUE(WaitFor([](const json& j) { return !j["reports"].empty(); }));
  differ_ = false;
  json r = Job()["reports"][0];
  EXPECT_FALSE(r.value("clean", true));
  EXPECT_EQ(r.value("repaired", 0), 1);
  ASSERT_EQ(r["lines"].size(), 1u);
  EXPECT_EQ(r["lines"][0], "public.t (id)=(42): differs");
  EXPECT_TRUE(repair_asked_);
  EXPECT_GE(repaired_, 1u);
  ASSERT_TRUE(WaitFor([](const json& j) { return j["reports"].back().value("clean", false); }));
  EXPECT_EQ(store_->Get("verify_clean").value_or(""), "true");
}

TEST_F(VerifyJobTest, WithoutContinuousAPassEndsTheThread) {
  Make({});
  job_->ResumeIfRunning();  // nothing stored: nothing starts
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(passes_, 0);
  ASSERT_TRUE(job_->Start(-1).ok());
  ASSERT_TRUE(WaitFor([](const json& j) { return j.value("state", "") == "done"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(passes_, 1);
  EXPECT_FALSE(repair_asked_);  // the job repairs only in continuous mode, when the spec says
  auto stop = job_->Stop();
  ASSERT_FALSE(stop.ok());
  EXPECT_EQ(stop.status().message(), "no verification job is running (it is done)");
}

}  // namespace
}  // namespace midflight
