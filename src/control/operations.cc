#include "control/operations.h"

#include <fmt/format.h>

#include <initializer_list>

namespace midflight {
namespace {

struct OpDef {
  TrafficOp op;
  const char* name;
  std::initializer_list<Phase> allowed;
};
const OpDef kOps[] = {
    {TrafficOp::kSwitchReads, "switch-reads", {Phase::kReplicating, Phase::kReadsSwitched}},
    {TrafficOp::kSwitchWrites, "switch-writes", {Phase::kReadsSwitched}},
    {TrafficOp::kRollback, "rollback", {Phase::kWritesSwitched}},
    {TrafficOp::kComplete, "complete", {Phase::kWritesSwitched}},
    {TrafficOp::kApprove, "approve", {Phase::kReadsSwitched}},
    {TrafficOp::kVerify, "verify", {Phase::kReplicating, Phase::kReadsSwitched, Phase::kWritesSwitched}},
    {TrafficOp::kVerifyStart, "verify-start", {Phase::kReplicating, Phase::kReadsSwitched, Phase::kWritesSwitched}},
    {TrafficOp::kVerifyStop, "verify-stop", {Phase::kReplicating, Phase::kReadsSwitched, Phase::kWritesSwitched}},
    {TrafficOp::kSyncSequences, "sequences-sync", {Phase::kReplicating, Phase::kReadsSwitched, Phase::kWritesSwitched}},
};

const OpDef& Def(TrafficOp op) {
  for (const auto& d : kOps)
    if (d.op == op) return d;
  return kOps[0];
}

}  // namespace

std::optional<TrafficOp> ParseTrafficOp(std::string_view name) {
  for (const auto& d : kOps)
    if (name == d.name) return d.op;
  return std::nullopt;
}

const char* TrafficOpName(TrafficOp op) { return Def(op).name; }

Status CheckTrafficPhase(TrafficOp op, Phase now, const std::string& migration) {
  const OpDef& d = Def(op);
  for (Phase p : d.allowed)
    if (p == now) return Status::Ok();
  std::string words = d.name;
  for (auto& c : words)
    if (c == '-') c = ' ';
  std::string names;
  for (Phase p : d.allowed) names += (names.empty() ? "" : " or ") + std::string(PhaseName(p));
  if (op == TrafficOp::kSwitchWrites && now == Phase::kReplicating)
    return OperatorError(fmt::format("switch writes is allowed in phase reads_switched; migration {} is replicating: "
                                     "switch reads first (`midflight switch reads`), which opens the validation window",
                                     migration));
  return OperatorError(fmt::format("{} is allowed in phase {}; migration {} is in phase {}", words, names, migration,
                                   PhaseName(now)));
}

}  // namespace midflight
