#include "control/operations.h"

#include <gtest/gtest.h>

namespace midflight {
namespace {

TEST(Operations, ParsesEveryNameBackAndForth) {
  for (TrafficOp op : {TrafficOp::kSwitchReads, TrafficOp::kSwitchWrites, TrafficOp::kRollback, TrafficOp::kComplete,
                       TrafficOp::kApprove, TrafficOp::kVerify, TrafficOp::kVerifyStart, TrafficOp::kVerifyStop,
                       TrafficOp::kSyncSequences}) {
    auto parsed = ParseTrafficOp(TrafficOpName(op));
    ASSERT_TRUE(parsed.has_value()) << TrafficOpName(op);
    EXPECT_EQ(*parsed, op);
  }
  EXPECT_FALSE(ParseTrafficOp("pause").has_value());
  EXPECT_FALSE(ParseTrafficOp("switch_reads").has_value());
  EXPECT_FALSE(ParseTrafficOp("").has_value());
}

TEST(Operations, PhaseRuleMatchesTheTable) {
  struct Case {
    TrafficOp op;
    Phase phase;
    bool allowed;
  } cases[] = {
      {TrafficOp::kSwitchReads, Phase::kReplicating, true},
      {TrafficOp::kSwitchReads, Phase::kReadsSwitched, true},
      {TrafficOp::kSwitchReads, Phase::kWritesSwitched, false},
      {TrafficOp::kSwitchReads, Phase::kCopying, false},
      {TrafficOp::kSwitchWrites, Phase::kReadsSwitched, true},
      {TrafficOp::kSwitchWrites, Phase::kReplicating, false},
      {TrafficOp::kSwitchWrites, Phase::kWritesSwitched, false},
      {TrafficOp::kRollback, Phase::kWritesSwitched, true},
      {TrafficOp::kRollback, Phase::kReadsSwitched, false},
      {TrafficOp::kComplete, Phase::kWritesSwitched, true},
      {TrafficOp::kComplete, Phase::kReplicating, false},
      {TrafficOp::kComplete, Phase::kCompleted, false},
      {TrafficOp::kApprove, Phase::kReadsSwitched, true},
      {TrafficOp::kApprove, Phase::kReplicating, false},
      {TrafficOp::kVerify, Phase::kReplicating, true},
      {TrafficOp::kVerify, Phase::kWritesSwitched, true},
      {TrafficOp::kVerify, Phase::kPaused, false},
      {TrafficOp::kVerify, Phase::kCompleted, false},
  };
  for (const auto& c : cases) {
    Status st = CheckTrafficPhase(c.op, c.phase, "m1");
    EXPECT_EQ(st.ok(), c.allowed) << TrafficOpName(c.op) << " in " << PhaseName(c.phase) << ": " << st.message();
    if (!st.ok()) {
      EXPECT_EQ(st.code(), StatusCode::kOperator);
      EXPECT_NE(st.message().find("migration m1"), std::string::npos) << st.message();
    }
  }
}

TEST(Operations, RefusalsSayWhatToDo) {
  Status st = CheckTrafficPhase(TrafficOp::kSwitchWrites, Phase::kReplicating, "m1");
  EXPECT_NE(st.message().find("switch reads first"), std::string::npos) << st.message();
  st = CheckTrafficPhase(TrafficOp::kComplete, Phase::kReplicating, "m1");
  EXPECT_EQ(st.message(), "complete is allowed in phase writes_switched; migration m1 is in phase replicating");
  st = CheckTrafficPhase(TrafficOp::kSwitchReads, Phase::kCopying, "m1");
  EXPECT_EQ(st.message(), "switch reads is allowed in phase replicating or reads_switched; migration m1 is in phase copying");
}

}  // namespace
}  // namespace midflight
