// The checks an operation makes before it moves traffic ("gates"), written
// once: the operation itself refuses at the first one that fails, and its dry
// run (`midflight switch writes --dry-run`, `?dry_run=1` in the API) runs
// them all and prints them as a checklist, changing nothing and pausing no
// one. Each gate is a pure function of what the caller read (lag, stored
// keys, sessions), so the operation and its rehearsal cannot disagree.
//
// A gate that --force skips is `forceable`; a dry run with --force shows it
// as skipped rather than failed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace midflight {

struct GateCheck {
  std::string name;        // short, stable: "lag", "validation window", "target wal_level", ...
  bool ok = true;
  bool forceable = false;  // --force skips it
  bool forced = false;     // failed, and skipped by --force
  // ok: what was found ("0.12 s behind, at most 2.00"); failed: what is
  // wrong and what fixes it (the operation's refusal, without "refused: ").
  std::string detail;
};

inline GateCheck GatePass(std::string name, std::string detail) { return {std::move(name), true, false, false, std::move(detail)}; }
inline GateCheck GateFail(std::string name, std::string detail, bool forceable = false) {
  return {std::move(name), false, forceable, false, std::move(detail)};
}

class Checklist {
 public:
  explicit Checklist(bool force = false) : force_(force) {}
  // Adds a check; a failed forceable one is marked forced when the list was made with force.
  void Add(GateCheck check);
  void Add(std::vector<GateCheck> checks) {
    for (auto& c : checks) Add(std::move(c));
  }
  const std::vector<GateCheck>& checks() const { return checks_; }
  // No check failed (forced ones do not count).
  bool ok() const;
  // OperatorError "refused: DETAIL" of the first failed check; Ok when none.
  Status FirstRefusal() const;
  // The checklist for an operator: a title line ("switch writes (dry run) for
  // migration orders: 2 of 9 checks fail"), then one line per check:
  // "  ok    lag: ...", "  FAIL  approval: ...", "  skip  window: ... (--force)".
  std::string Text(std::string_view title) const;

 private:
  bool force_;
  std::vector<GateCheck> checks_;
};

// --- the gates ------------------------------------------------------------------

// `behind` is `lag_seconds` behind `ahead`. `reads`: the reads switch's
// wording (reads there would be stale).
GateCheck LagGate(double lag_seconds, double max_lag_seconds, std::string_view behind, std::string_view ahead,
                  bool reads = false);
// Reads were switched at `reads_switched_at_us` (Unix µs; 0 or unparsable: never).
GateCheck ValidationWindowGate(int64_t reads_switched_at_us, int64_t now_us, double min_validation_seconds);
GateCheck ApprovalGate(bool required, bool approved);
// `summary`: the last verification's one-line summary ("" when it never ran).
// `age_seconds`: how long ago the last verification finished (negative:
// unknown); with `max_age_seconds` > 0 a clean result older than that fails.
GateCheck VerificationGate(bool required, bool clean, const std::string& summary, double age_seconds = -1,
                           double max_age_seconds = 0);
// Sessions pinned to `side` (proxy TrafficSwitch::PinnedSessions): they cannot move.
GateCheck PinnedSessionsGate(const std::vector<std::string>& sessions, std::string_view side);
// Tables in the spec's scope on the source that the migration does not carry.
GateCheck UntrackedTablesGate(const std::vector<std::string>& tables, std::string_view op);

}  // namespace midflight
