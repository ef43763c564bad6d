#include "control/gates.h"

#include <fmt/format.h>

namespace midflight {

void Checklist::Add(GateCheck check) {
  if (!check.ok && check.forceable && force_) check.forced = true;
  checks_.push_back(std::move(check));
}

bool Checklist::ok() const {
  for (const auto& c : checks_)
    if (!c.ok && !c.forced) return false;
  return true;
}

Status Checklist::FirstRefusal() const {
  for (const auto& c : checks_)
    if (!c.ok && !c.forced) return OperatorError("refused: " + c.detail);
  return Status::Ok();
}

std::string Checklist::Text(std::string_view title) const {
  size_t failed = 0;
  for (const auto& c : checks_)
    if (!c.ok && !c.forced) ++failed;
  std::string out = fmt::format("{}: {}\n", title,
                                failed == 0 ? fmt::format("all {} checks pass", checks_.size())
                                            : fmt::format("{} of {} checks fail", failed, checks_.size()));
  for (const auto& c : checks_) {
    const char* mark = c.ok ? "ok  " : c.forced ? "skip" : "FAIL";
    out += fmt::format("  {}  {}: {}{}\n", mark, c.name, c.detail, c.forced ? " (skipped: --force)" : "");
  }
  return out;
}

GateCheck LagGate(double lag, double max_lag, std::string_view behind, std::string_view ahead, bool reads) {
  if (lag <= max_lag)
    return GatePass("lag", fmt::format("the {} is {:.2f} s behind the {} (knob max_lag_seconds is {:.2f})", behind, lag,
                                   ahead, max_lag));
  if (reads)
    return GateFail("lag",
                fmt::format("the {} is {:.2f} s behind (knob max_lag_seconds is {:.2f}); reads there would be stale. "
                            "Wait, or use --force",
                            behind, lag, max_lag),
                true);
  return GateFail("lag",
              fmt::format("the {} is {:.2f} s behind the {} (knob max_lag_seconds is {:.2f}); wait for it to catch "
                          "up, or use --force",
                          behind, lag, ahead, max_lag),
              true);
}

GateCheck ValidationWindowGate(int64_t switched_at_us, int64_t now_us, double min_seconds) {
  const double window = (now_us - switched_at_us) / 1e6;
  if (window >= min_seconds)
    return GatePass("validation window", fmt::format("reads switched {:.0f} s ago; the window (cutover."
                                                 "min_validation_seconds) is {:.0f} s",
                                                 window, min_seconds));
  return GateFail("validation window",
              fmt::format("reads switched {:.0f} s ago; the validation window (cutover.min_validation_seconds) is "
                          "{:.0f} s: wait {:.0f} s more, or use --force",
                          window, min_seconds, min_seconds - window),
              true);
}

GateCheck ApprovalGate(bool required, bool approved) {
  if (!required) return GatePass("approval", "not required (cutover.require_approval is off)");
  if (approved) return GatePass("approval", "approved");
  return GateFail("approval",
              "waiting for approval (cutover.require_approval): run `midflight approve SPEC`, or use --force", true);
}

GateCheck VerificationGate(bool required, bool clean, const std::string& summary, double age_seconds,
                           double max_age_seconds) {
  if (!required)
    return GatePass("verification", fmt::format("not required (cutover.require_verify is off); last: {}",
                                            summary.empty() ? "never run" : summary));
  if (clean && max_age_seconds > 0 && (age_seconds < 0 || age_seconds > max_age_seconds))
    return GateFail("verification",
                    fmt::format("the last clean verification finished {} ago, over cutover.verify_max_age_seconds ({} "
                                "s); run `midflight verify SPEC` again or turn on continuous verification "
                                "(verify.continuous), or use --force",
                                age_seconds < 0 ? std::string("an unknown time") : fmt::format("{:.0f} s", age_seconds),
                                max_age_seconds),
                    true);
  if (clean) return GatePass("verification", summary.empty() ? "clean" : summary);
  return GateFail("verification",
              fmt::format("verification has not passed ({}); run `midflight verify SPEC`, or use --force",
                          summary.empty() ? "never run" : summary),
              true);
}

GateCheck PinnedSessionsGate(const std::vector<std::string>& sessions, std::string_view side) {
  if (sessions.empty()) return GatePass("sessions", fmt::format("no session holds state only the {} has", side));
  std::string list;
  for (size_t i = 0; i < sessions.size() && i < 5; ++i) list += (i ? "; " : "") + sessions[i];
  if (sessions.size() > 5) list += fmt::format("; and {} more", sessions.size() - 5);
  return GateFail("sessions", fmt::format("{} session(s) hold state only the {} has and cannot move ({}); end that state "
                                      "or those sessions, then switch again",
                                      sessions.size(), side, list));
}

GateCheck UntrackedTablesGate(const std::vector<std::string>& tables, std::string_view op) {
  if (tables.empty()) return GatePass("tables", "every table in scope on the source is migrated");
  return GateFail("tables", fmt::format("{}: table(s) {} exist on the source in the spec's scope but not in the migration "
                                    "(created after it started); the application would not find them on the target. "
                                    "Add them to exclude (spec, then restart midflight) or drop them",
                                    op, fmt::join(tables, ", ")));
}

}  // namespace midflight
