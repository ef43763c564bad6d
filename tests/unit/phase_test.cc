#include "control/phase.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include "control/knobs.h"
#include "control/spec.h"
#include "control/state_store.h"
#include "pipeline/throttle.h"

namespace midflight {

TEST(PhaseTest, ForwardOneStepAtATime) {
  EXPECT_TRUE(TransitionAllowed(Phase::kCreated, Phase::kPreflight));
  EXPECT_TRUE(TransitionAllowed(Phase::kPreflight, Phase::kSchema));
  EXPECT_TRUE(TransitionAllowed(Phase::kSchema, Phase::kCopying));
  EXPECT_TRUE(TransitionAllowed(Phase::kCopying, Phase::kReplicating));
  EXPECT_TRUE(TransitionAllowed(Phase::kReplicating, Phase::kReadsSwitched));
  EXPECT_TRUE(TransitionAllowed(Phase::kReadsSwitched, Phase::kWritesSwitched));
  EXPECT_TRUE(TransitionAllowed(Phase::kWritesSwitched, Phase::kCompleted));
  EXPECT_FALSE(TransitionAllowed(Phase::kCreated, Phase::kCopying));
  EXPECT_FALSE(TransitionAllowed(Phase::kCopying, Phase::kSchema));
  EXPECT_FALSE(TransitionAllowed(Phase::kCompleted, Phase::kPaused));
}

TEST(PhaseTest, ReadsFlipBackAndWritesRollBack) {
  EXPECT_TRUE(TransitionAllowed(Phase::kReadsSwitched, Phase::kReplicating));
  EXPECT_TRUE(TransitionAllowed(Phase::kWritesSwitched, Phase::kReadsSwitched));
}

TEST(PhaseTest, AbortOnlyBeforeWritesSwitched) {
  EXPECT_TRUE(TransitionAllowed(Phase::kCopying, Phase::kAborted));
  EXPECT_TRUE(TransitionAllowed(Phase::kReadsSwitched, Phase::kAborted));
  EXPECT_FALSE(TransitionAllowed(Phase::kWritesSwitched, Phase::kAborted));
  EXPECT_EQ(WhereAllowed(Phase::kCompleted), "writes_switched");
}

TEST(PhaseTest, PausedAndFailedResumeWhereTheyLeft) {
  EXPECT_TRUE(TransitionAllowed(Phase::kCopying, Phase::kPaused));
  EXPECT_TRUE(TransitionAllowed(Phase::kPaused, Phase::kCopying, Phase::kCopying));
  EXPECT_FALSE(TransitionAllowed(Phase::kPaused, Phase::kReplicating, Phase::kCopying));
  EXPECT_TRUE(TransitionAllowed(Phase::kFailed, Phase::kReplicating, Phase::kReplicating));
  EXPECT_TRUE(TransitionAllowed(Phase::kFailed, Phase::kAborted, Phase::kCopying));
  EXPECT_FALSE(TransitionAllowed(Phase::kFailed, Phase::kAborted, Phase::kWritesSwitched));
}

TEST(PhaseTest, NamesRoundTrip) {
  for (const char* n : {"created", "preflight", "schema", "copying", "replicating", "reads_switched",
                        "writes_switched", "completed", "paused", "failed", "aborted"})
    EXPECT_STREQ(PhaseName(*ParsePhase(n)), n);
  EXPECT_FALSE(ParsePhase("running").has_value());
}


// Every (from, to) pair of the state machine, against a table written out by
// hand from DESIGN.md (not computed by the code under test).
namespace {
constexpr Phase kAllPhases[] = {Phase::kCreated,      Phase::kPreflight,      Phase::kSchema,
                                Phase::kCopying,      Phase::kReplicating,    Phase::kReadsSwitched,
                                Phase::kWritesSwitched, Phase::kCompleted,    Phase::kPaused,
                                Phase::kFailed,       Phase::kAborted};
}  // namespace

TEST(PhaseTest, EveryTransitionOfActivePhases) {
  // from -> the phases it may move to.
  const std::map<Phase, std::set<Phase>> allowed = {
      {Phase::kCreated, {Phase::kPreflight, Phase::kPaused, Phase::kFailed, Phase::kAborted}},
      {Phase::kPreflight, {Phase::kSchema, Phase::kPaused, Phase::kFailed, Phase::kAborted}},
      {Phase::kSchema, {Phase::kCopying, Phase::kPaused, Phase::kFailed, Phase::kAborted}},
      {Phase::kCopying, {Phase::kReplicating, Phase::kPaused, Phase::kFailed, Phase::kAborted}},
      {Phase::kReplicating, {Phase::kReadsSwitched, Phase::kPaused, Phase::kFailed, Phase::kAborted}},
      {Phase::kReadsSwitched, {Phase::kWritesSwitched, Phase::kReplicating, Phase::kFailed, Phase::kAborted}},
      {Phase::kWritesSwitched, {Phase::kCompleted, Phase::kReadsSwitched, Phase::kFailed}},
      {Phase::kCompleted, {}},
      {Phase::kAborted, {}},
  };
  int checked = 0;
  for (const auto& [from, tos] : allowed)
    for (Phase to : kAllPhases) {
      EXPECT_EQ(TransitionAllowed(from, to), tos.count(to) > 0) << PhaseName(from) << " -> " << PhaseName(to);
      ++checked;
    }
  EXPECT_EQ(checked, 9 * 11);
}

TEST(PhaseTest, EveryTransitionOfPausedAndFailed) {
  // From paused or failed: back to the phase left, or aborted while writes are
  // still on the source; paused may also fail. Nothing else.
  for (Phase held : {Phase::kPaused, Phase::kFailed})
    for (Phase left : kAllPhases) {
      if (left == Phase::kPaused || left == Phase::kFailed || left == Phase::kAborted || left == Phase::kCompleted)
        continue;
      for (Phase to : kAllPhases) {
        bool expect = to == left || (to == Phase::kAborted && left < Phase::kWritesSwitched) ||
                      (held == Phase::kPaused && to == Phase::kFailed);
        EXPECT_EQ(TransitionAllowed(held, to, left), expect)
            << PhaseName(held) << " (left " << PhaseName(left) << ") -> " << PhaseName(to);
      }
      EXPECT_FALSE(TransitionAllowed(held, left)) << "no resume without knowing the phase left";
    }
}

TEST(PhaseTest, PauseOnlyBeforeReadsMove) {
  EXPECT_FALSE(TransitionAllowed(Phase::kReadsSwitched, Phase::kPaused));
  EXPECT_FALSE(TransitionAllowed(Phase::kWritesSwitched, Phase::kPaused));
  EXPECT_EQ(WhereAllowed(Phase::kPaused), "created, preflight, schema, copying, replicating");
}

TEST(StateStoreTest, TransitionsArePersistedWithActorAndRefusalsNameTheAllowedPhases) {
  std::string dir = ::testing::TempDir() + "/mf_state_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  {
    auto store = StateStore::Open(dir, true);
    ASSERT_TRUE(store.ok()) << store.status().message();
    StateStore& s = **store;
    std::vector<std::string> seen;
    s.OnTransition([&](Phase from, Phase to, const std::string&) {
      seen.push_back(std::string(PhaseName(from)) + ">" + PhaseName(to));
    });
    ASSERT_TRUE(s.SetPhase(Phase::kPreflight, "checking").ok());
    Status bad = s.SetPhase(Phase::kCompleted, "too early");
    EXPECT_EQ(bad.code(), StatusCode::kOperator);
    EXPECT_EQ(bad.message(), "cannot move to completed from preflight; completed is reached from writes_switched");
    ASSERT_TRUE(s.SetPhase(Phase::kSchema, "schema").ok());
    {
      ActorScope actor("api@127.0.0.1:9");
      ASSERT_TRUE(s.SetPhase(Phase::kPaused, "operator paused").ok());
    }
    EXPECT_EQ(s.Get("resume_phase").value_or(""), "schema");
    Status wrong = s.SetPhase(Phase::kCopying, "resume elsewhere");
    EXPECT_NE(wrong.message().find("it can only resume to schema or be aborted"), std::string::npos) << wrong.message();
    EXPECT_EQ(seen, (std::vector<std::string>{"created>preflight", "preflight>schema", "schema>paused"}));
  }
  auto again = StateStore::Open(dir, false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->phase(), Phase::kPaused);
  auto events = (*again)->Events(10);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].actor, "api@127.0.0.1:9");
  EXPECT_EQ(events[2].message, "operator paused");
  EXPECT_EQ(events[0].actor, "midflight");
  ASSERT_TRUE((*again)->SetPhase(Phase::kSchema, "resumed").ok());
  std::filesystem::remove_all(dir);
}

TEST(KnobsTest, SetValidatesNameRangeAndKind) {
  MigrationSpec spec;
  spec.copy_workers = 3;
  Knobs k(spec);
  EXPECT_EQ(k.Int(Knob::kParallelism), 3);
  EXPECT_TRUE(k.SetText("parallelism", "8").ok());
  EXPECT_EQ(k.Int(Knob::kParallelism), 8);
  EXPECT_EQ(k.SetText("paralelism", "8").message().rfind("unknown knob 'paralelism'; knobs are: parallelism, ", 0), 0u);
  EXPECT_EQ(k.SetText("parallelism", "0").message(), "knob parallelism: 0 is out of range (1 to 64)");
  EXPECT_EQ(k.SetText("parallelism", "2.5").message(), "knob parallelism: 2.5 is not a whole number");
  EXPECT_EQ(k.SetText("parallelism", "four").message(), "knob parallelism: 'four' is not a number");
  EXPECT_TRUE(k.SetText("max_lag_seconds", "2.5").ok());
  std::string saved = k.OverridesJson();
  Knobs fresh(spec);
  ASSERT_TRUE(fresh.LoadOverrides(saved).ok());
  EXPECT_EQ(fresh.Int(Knob::kParallelism), 8);
  EXPECT_DOUBLE_EQ(fresh.Get(Knob::kMaxLagSeconds), 2.5);
  EXPECT_EQ(fresh.Int(Knob::kApplyBatchSize), spec.batch_size);
}

TEST(ThrottleTest, ClassifiesDistressAndRateLimiterPaces) {
  EXPECT_EQ(ClassifyDistress(RetryTxn("x: canceling statement due to lock timeout (SQLSTATE 55P03)")),
            Distress::kLockTimeout);
  EXPECT_EQ(ClassifyDistress(RetryTxn("x: deadlock detected (SQLSTATE 40P01)")), Distress::kDeadlock);
  EXPECT_EQ(ClassifyDistress(RetryCall("FATAL: sorry, too many clients already")), Distress::kTooManyConnections);
  EXPECT_EQ(ClassifyDistress(RetryCall("server closed the connection")), Distress::kConnection);
  ThrottleBoard board;
  board.Report("apply partition 1", 1, Distress::kLockTimeout, "lock timeout", std::chrono::milliseconds(200));
  EXPECT_TRUE(board.active());
  EXPECT_NE(board.ToJson().find("\"kind\":\"lock_timeout\""), std::string::npos);
  board.Clear("apply partition 1");
  EXPECT_FALSE(board.active());
  EXPECT_EQ(board.errors(Distress::kLockTimeout), 1u);

  std::atomic<double> rate{2000};
  RateLimiter limiter([&] { return rate.load(); });
  std::atomic<bool> stop{false};
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 30; ++i) limiter.Acquire(100, stop);  // 3000 units at 2000/s: about 1.5 s (first 100 free)
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(secs, 1.2);
  rate = 0;  // unlimited: no wait
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) limiter.Acquire(100000, stop);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
}

}  // namespace midflight
