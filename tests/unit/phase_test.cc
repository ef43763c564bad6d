#include "control/phase.h"

#include <gtest/gtest.h>

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

}  // namespace midflight
