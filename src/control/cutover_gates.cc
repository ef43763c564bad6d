// The cutover's gates (control/gates.h) gathered per operation, and the dry
// run that prints them. The switches in cutover.cc refuse at the first
// failure of the same list, so a rehearsal and the real thing agree.
#include <fmt/format.h>

#include <mutex>

#include "base/clock.h"
#include "base/parse.h"
#include "control/cutover.h"

namespace midflight {

using proxy::Side;

Checklist Cutover::Gates(const TrafficRequest& req) {
  Checklist c(req.force);
  std::shared_ptr<Running> fwd, rev;
  {
    MutexLock lock(&state_mu_);
    fwd = forward_;
    rev = reverse_;
  }
  const double max_lag = runtime_.knobs.Get(Knob::kMaxLagSeconds);
  // With a proxy the proxy moves the traffic; without one the operator moves
  // it and records it with --external (CheckExternal says which is wrong).
  auto need_proxy = [&](const char* op) {
    if (Status st = CheckExternal(op, req.external); !st.ok()) {
      c.Add(GateFail("proxy", st.message()));
      return false;
    }
    c.Add(GatePass("proxy", proxy_ ? "the proxy moves the traffic"
                                   : "no proxy: the operator moved the applications (--external)"));
    return true;
  };
  auto pinned = [&](Side side, const char* name) {
    if (proxy_) c.Add(PinnedSessionsGate(proxy_->PinnedSessions(side), name));
  };
  switch (req.op) {
    case TrafficOp::kSwitchReads: {
      if (!need_proxy("switch reads")) break;
      if (req.external && req.percent != 0 && req.percent != 100) {
        c.Add(GateFail("percent", fmt::format("switch reads --external records where all reads go: percent {} is not "
                                              "0 or 100 (a canary needs the proxy)",
                                              req.percent)));
        break;
      }
      if (req.percent <= 0) break;  // moving reads back is always allowed
      c.Add(UntrackedTablesGate(UntrackedNames(), "switch reads"));
      if (!fwd) {
        c.Add(GateFail("replication", "replication is not running yet"));
        break;
      }
      c.Add(LagGate(fwd->flow->metrics().lag_seconds, max_lag, "target", "source", /*reads=*/true));
      break;
    }
    case TrafficOp::kSwitchWrites: {
      if (!need_proxy("switch writes")) break;
      c.Add(UntrackedTablesGate(UntrackedNames(), "switch writes"));
      int64_t switched_at = 0;
      const std::string stored = store_.Get("reads_switched_at").value_or("0");
      if (!ParseI64(stored, &switched_at))
        c.Add(GateFail("validation window", fmt::format("state store: reads_switched_at '{}' is not a time", stored)));
      else
        c.Add(ValidationWindowGate(switched_at, NowUnixMicros(), spec_.cutover.min_validation_seconds));
      c.Add(ApprovalGate(spec_.cutover.require_approval, store_.Get("approved").value_or("") == "true"));
      {
        int64_t verify_at = 0;
        const bool known = ParseI64(store_.Get("verify_at").value_or(""), &verify_at) && verify_at > 0;
        c.Add(VerificationGate(spec_.cutover.require_verify, store_.Get("verify_clean").value_or("") == "true",
                               store_.Get("verify_summary").value_or(""),
                               known ? (NowUnixMicros() - verify_at) / 1e6 : -1.0,
                               spec_.cutover.verify_max_age_seconds));
      }
      if (!fwd) {
        c.Add(GateFail("replication", "replication is not running yet"));
        break;
      }
      c.Add(LagGate(fwd->flow->metrics().lag_seconds, max_lag, "target", "source"));
      c.Add(ops_.SwitchChecks(Side::kTarget, /*reverse_needed=*/rev == nullptr));
      pinned(Side::kSource, "source");
      break;
    }
    case TrafficOp::kRollback: {
      if (!need_proxy("rollback")) break;
      if (!rev) {
        c.Add(GateFail("reverse replication", "reverse replication is not running"));
        break;
      }
      c.Add(LagGate(rev->flow->metrics().lag_seconds, max_lag, "source", "target"));
      c.Add(ops_.SwitchChecks(Side::kSource, /*reverse_needed=*/false));
      pinned(Side::kTarget, "target");
      break;
    }
    case TrafficOp::kComplete:
      // Nothing but the phase: writes are on the target already, and complete
      // only stops replication and removes what midflight created.
      if (rev)
        c.Add(GatePass("reverse replication",
                       fmt::format("{:.2f} s behind the target; complete stops it (no rollback afterwards)",
                                   rev->flow->metrics().lag_seconds)));
      break;
    case TrafficOp::kApprove:
    case TrafficOp::kVerify:
    case TrafficOp::kVerifyStart:
    case TrafficOp::kVerifyStop:
    case TrafficOp::kSyncSequences: break;
  }
  return c;
}

TrafficResult Cutover::DryRun(const TrafficRequest& req) {
  Checklist c(req.force);
  const Phase now = store_.phase();
  if (Status st = CheckTrafficPhase(req.op, now, spec_.name); st.ok())
    c.Add(GatePass("phase", PhaseName(now)));
  else
    c.Add(GateFail("phase", st.message()));
  {
    // Another operation in progress would make the real one wait its turn
    // (refused); a rehearsal does not take the slot, it only looks.
    std::unique_lock lock(op_mu_, std::try_to_lock);
    MutexLock s(&state_mu_);
    if (!lock.owns_lock())
      c.Add(GateFail("operations", fmt::format("another operation is running ({}); wait for it to finish", op_running_)));
    else if (!running_)
      c.Add(GateFail("replication", "replication is not running yet"));
    else
      c.Add(GatePass("operations", "no other operation is running"));
  }
  c.Add(Gates(req).checks());
  std::string what = TrafficOpName(req.op);
  for (auto& ch : what)
    if (ch == '-') ch = ' ';
  if (req.op == TrafficOp::kSwitchReads) what += fmt::format(" --percent {}", req.percent);
  TrafficResult out;
  out.message = c.Text(fmt::format("{} (dry run) for migration {}", what, spec_.name));
  while (!out.message.empty() && out.message.back() == '\n') out.message.pop_back();
  out.clean = c.ok();
  out.checks = c.checks();
  return out;
}

}  // namespace midflight
