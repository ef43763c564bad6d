#include "control/gates.h"

#include <gtest/gtest.h>

namespace midflight {
namespace {

TEST(Gates, LagPassesAtTheLimitAndNamesTheKnobBeyond) {
  EXPECT_TRUE(LagGate(2.0, 2.0, "target", "source").ok);
  GateCheck c = LagGate(7.5, 2.0, "target", "source");
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(c.forceable);
  EXPECT_EQ(c.detail,
            "the target is 7.50 s behind the source (knob max_lag_seconds is 2.00); wait for it to catch up, or use "
            "--force");
}

TEST(Gates, ValidationWindowSaysHowLongToWait) {
  GateCheck c = ValidationWindowGate(1'000'000'000, 1'000'000'000 + 20'000'000, 300);
  EXPECT_FALSE(c.ok);
  EXPECT_EQ(c.detail,
            "reads switched 20 s ago; the validation window (cutover.min_validation_seconds) is 300 s: wait 280 s "
            "more, or use --force");
  EXPECT_TRUE(ValidationWindowGate(0, 400'000'000, 300).ok);
}

TEST(Gates, ApprovalAndVerificationNameTheCommandThatFixesThem) {
  EXPECT_TRUE(ApprovalGate(false, false).ok);
  EXPECT_TRUE(ApprovalGate(true, true).ok);
  EXPECT_NE(ApprovalGate(true, false).detail.find("midflight approve"), std::string::npos);
  EXPECT_TRUE(VerificationGate(false, false, "").ok);
  GateCheck v = VerificationGate(true, false, "");
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.detail, "verification has not passed (never run); run `midflight verify SPEC`, or use --force");
}

TEST(Gates, VerificationOlderThanTheMaximumAgeFails) {
  EXPECT_TRUE(VerificationGate(true, true, "verify: clean", 100, 0).ok);    // any age
  EXPECT_TRUE(VerificationGate(true, true, "verify: clean", 100, 600).ok);  // recent enough
  GateCheck old = VerificationGate(true, true, "verify: clean", 900, 600);
  EXPECT_FALSE(old.ok);
  EXPECT_TRUE(old.forceable);
  EXPECT_NE(old.detail.find("finished 900 s ago, over cutover.verify_max_age_seconds (600 s)"), std::string::npos)
      << old.detail;
  EXPECT_FALSE(VerificationGate(true, true, "verify: clean", -1, 600).ok);  // when it ran is unknown
  EXPECT_FALSE(VerificationGate(true, false, "verify: 1 difference", 1, 600).ok);
}

TEST(Gates, PinnedSessionsListAtMostFive) {
  EXPECT_TRUE(PinnedSessionsGate({}, "source").ok);
  GateCheck c = PinnedSessionsGate({"a", "b", "c", "d", "e", "f", "g"}, "source");
  EXPECT_FALSE(c.ok);
  EXPECT_FALSE(c.forceable);  // a pinned session would lose its state: --force does not skip it
  EXPECT_NE(c.detail.find("7 session(s) hold state only the source has and cannot move (a; b; c; d; e; and 2 more)"),
            std::string::npos)
      << c.detail;
}

TEST(Gates, ChecklistRefusesAtTheFirstFailureUnlessForced) {
  Checklist c;
  c.Add(GatePass("phase", "reads_switched"));
  c.Add(ApprovalGate(true, false));
  c.Add(GateFail("target wal_level", "target: wal_level is 'replica'"));
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.FirstRefusal().message(),
            "refused: waiting for approval (cutover.require_approval): run `midflight approve SPEC`, or use --force");
  EXPECT_EQ(c.Text("switch writes (dry run) for migration m"),
            "switch writes (dry run) for migration m: 2 of 3 checks fail\n"
            "  ok    phase: reads_switched\n"
            "  FAIL  approval: waiting for approval (cutover.require_approval): run `midflight approve SPEC`, or use "
            "--force\n"
            "  FAIL  target wal_level: target: wal_level is 'replica'\n");

  Checklist forced(/*force=*/true);
  forced.Add(ApprovalGate(true, false));
  EXPECT_TRUE(forced.ok());
  EXPECT_TRUE(forced.FirstRefusal().ok());
  forced.Add(GateFail("target wal_level", "target: wal_level is 'replica'"));
  EXPECT_EQ(forced.FirstRefusal().message(), "refused: target: wal_level is 'replica'");
  EXPECT_NE(forced.Text("t").find("  skip  approval: "), std::string::npos);
}

}  // namespace
}  // namespace midflight
