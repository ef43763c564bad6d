// Session state of a PostgreSQL proxy session beyond what its SQL text says
// (pg_statement.h): what pins a session to its server, and what is carried to
// the new server when a read-write session moves at a write switch. Pure
// logic plus the messages of the carry, which the proxy's event loop sends.
//
// Carried when a read-write session moves (SessionStateQuery, one round trip
// on each server, asked of the old server itself so nothing the SQL scan
// missed is lost):
//   - every setting whose source is the session (SET, set_config(..., false),
//     SET in a function body that kept it): replayed with set_config; custom
//     ("x.y") settings, which pg_settings does not list, when the session's
//     statements named them (SET replays as text; set_config with a literal name);
//   - the channels it LISTENs to: LISTEN again on the new server.
// Pinned (SessionPins; the session cannot move, and a write switch away from
// its server is refused while it lasts):
//   - temporary tables, views and sequences (not ON COMMIT DROP), until
//     dropped by name or DISCARD TEMP / DISCARD ALL;
//   - cursors declared WITH HOLD, until CLOSE name / CLOSE ALL / DISCARD ALL;
//   - session advisory locks (pg_[try_]advisory_lock[_shared]), until
//     pg_advisory_unlock_all() or DISCARD ALL (a single pg_advisory_unlock
//     cannot be matched reliably to the locks held: the session stays pinned).
// Effects count when their transaction ends (a session moves only between
// transactions); after a rollback (or one to a savepoint: the server's tag is
// the same) new state still counts and ends of state do not (the safe side: a
// pin too many, never one too few). Advisory locks count at once.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "proxy/pg_statement.h"
#include "proxy/wire/pg/backend.h"
#include "proxy/wire/pg/pg_wire.h"

namespace midflight::proxy {

// What pins one session, from the effects of the statements it ran.
// Not thread-safe: the session's own thread.
class SessionPins {
 public:
  // The effects of the statements answered by the ReadyForQuery just
  // received (`txn_status` its status); `failed`: an ErrorResponse came
  // since the previous ReadyForQuery.
  void Answered(const std::vector<SessionEffect>& effects, bool failed, char txn_status);
  // A CommandComplete "ROLLBACK" (ROLLBACK, ROLLBACK TO SAVEPOINT, COMMIT of a
  // failed transaction): ends of state in this transaction did not happen.
  void RolledBack() { rolled_back_ = true; }

  bool pinned() const { return !temp_.empty() || !cursors_.empty() || advisory_; }
  // LISTEN is active (as far as the statements tell).
  bool listening() const { return !channels_.empty(); }
  // Custom settings set_config was seen to set (for CarryServerState).
  const std::set<std::string>& custom_settings() const { return custom_; }
  // "temporary table t1, t2; cursor c WITH HOLD; session advisory lock", or "".
  std::string Reason() const;

 private:
  void Apply(const SessionEffect& e);
  std::set<std::string> temp_, cursors_, channels_, custom_;
  bool advisory_ = false;
  std::vector<SessionEffect> staged_;  // effects in the open transaction, applied at its end
  bool rolled_back_ = false;
};

// Moving the session state the old server holds to the new one (see the top
// of this file), as the proxy's event loop does it: SessionStateQuery is the
// Query message to send the old server when both connections are idle; its
// DataRows (DataRowColumns) give the rows for ReplayStatements, whose Query
// messages go to the new server with their answers swallowed.
// `custom_settings`: names of custom ("x.y") settings the session set with
// set_config (pg_settings does not list them); their current values go too.
std::string SessionStateQuery(const std::set<std::string>& custom_settings);
// A DataRow ('D') body's columns as text (NULL as "").
Result<std::vector<std::string>> DataRowColumns(std::string_view body);

// The replay of the session state as Query messages, from the old server's
// rows ('s', name, value) and ('l', channel): set_config(name, value, false)
// and LISTEN, quoted for any standard_conforming_strings.
std::vector<std::string> ReplayStatements(const std::vector<std::vector<std::string>>& rows);

}  // namespace midflight::proxy
