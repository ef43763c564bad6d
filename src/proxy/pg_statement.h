// What a client's SQL statement does to the session state that the proxy
// must carry to another server when the session moves (pg_proxy.h): pure
// functions over the statement text.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace midflight::proxy {

// The first `words` keywords of a statement, upper-cased, skipping blanks and
// -- and /* */ comments: Leading("  set  search_path to x", 2) == "SET SEARCH_PATH".
std::string Leading(std::string_view sql, int words);

// True when `sql` holds one statement (a trailing semicolon allowed).
// Semicolons inside quotes count too: such text is treated as several
// statements and not carried (the safe side).
bool SingleStatement(std::string_view sql);

enum class StateEffect {
  kNone,        // nothing to carry (also SET LOCAL, SET TRANSACTION, SET CONSTRAINTS)
  kSet,         // SET x / RESET x: replay the statement
  kResetAll,    // RESET ALL: forget the SETs
  kDiscardAll,  // DISCARD ALL: forget everything
  kPrepare,     // PREPARE name ...: replay it; *name set (upper-cased)
  kDeallocate,  // DEALLOCATE [PREPARE] name | ALL; *name set ("ALL" for all)
};
StateEffect Classify(std::string_view sql, std::string* name);

// A cheap first look for the per-query path: false when the statement's first
// character rules out every statement Classify cares about (S, R, D, P, or a
// comment / blank before the keyword), so most queries cost no allocation.
inline bool MayChangeState(std::string_view sql) {
  for (char c : sql) {
    switch (c) {
      case ' ': case '\t': case '\n': case '\r': case '-': case '/': case '(':
        return true;  // let Classify skip blanks and comments
      case 'S': case 's': case 'R': case 'r': case 'D': case 'd': case 'P': case 'p':
        return true;
      default:
        return false;
    }
  }
  return false;
}

// What would let a session on the read-only endpoint write: a statement that
// opens a read-write transaction or turns transaction_read_only /
// default_transaction_read_only off. Looks at every statement in `sql` (a
// simple Query may hold several), skipping comments and reading quoted
// identifiers, string constants (E'', dollar quotes) the way the server does.
// Returns a short constant naming what was found ("BEGIN READ WRITE", ...), or
// "" when nothing was. Caught:
//   BEGIN / START TRANSACTION ... READ WRITE
//   SET TRANSACTION ... READ WRITE, SET SESSION CHARACTERISTICS AS TRANSACTION ... READ WRITE
//   SET [SESSION | LOCAL] [default_]transaction_read_only {= | TO} anything but
//     on / true / yes / 1 / t / y / DEFAULT
//   SET of a U&"..." setting name (it may spell either)
//   set_config(...) in a statement naming [default_]transaction_read_only, or
//     whose setting name is not a plain string constant ($1, a column,
//     'default_transaction' || '_read_only', an E'' constant with escapes)
//   any DO block (its code may build and run such a SET, and COMMIT)
// Not caught: server-side functions and procedures that change the setting
// (the server's session default, set at connection start, and the proxy's
// watch of the reported default_transaction_read_only stay the defence there).
// RESET, RESET ALL and DISCARD ALL pass: they restore the connection's
// startup value, which the proxy sets to read-only.
std::string_view ReadWriteAttempt(std::string_view sql);

// A cheap first look for the per-query path: false when ReadWriteAttempt(sql)
// is certainly "" (every statement it catches spells "write", "read_only",
// "set_config" or "do", or has a U& name), so most queries cost no allocation.
inline bool MayAskForWrites(std::string_view sql) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; };
  auto has = [&](std::string_view word) {  // `word` in lower case
    for (size_t i = 0; i + word.size() <= sql.size(); ++i) {
      size_t k = 0;
      while (k < word.size() && lower(sql[i + k]) == word[k]) ++k;
      if (k == word.size()) return true;
    }
    return false;
  };
  return sql.find('&') != std::string_view::npos || has("write") || has("read_only") || has("set_config") || has("do");
}

// The highest parameter number ($n) used in `sql` outside quotes and
// comments; 0 when none.
int HighestParameter(std::string_view sql);

// The setting a plain "SET [SESSION] name ..." or "RESET name" names, in
// lower case; "" when the statement has a comment, a quoted name or another
// shape (such a statement is never taken to override another).
std::string SettingKey(std::string_view sql);

// Server-side state a statement creates or ends that cannot follow a session
// to another server (temporary objects, cursors WITH HOLD, session advisory
// locks), and LISTEN / UNLISTEN (which the proxy re-issues on a new server,
// but which keep a read-only session on its server). The session that holds
// such state is pinned to its server (pg_session_state.h).
struct SessionEffect {
  enum class Kind {
    kTempObject,         // CREATE TEMP TABLE|VIEW|SEQUENCE name, SELECT ... INTO TEMP name, pg_temp.name
    kDrop,               // DROP TABLE|VIEW|SEQUENCE name (one effect per name)
    kHoldCursor,         // DECLARE name ... CURSOR WITH HOLD
    kCloseCursor,        // CLOSE name
    kCloseAll,           // CLOSE ALL
    kAdvisoryLock,       // pg_[try_]advisory_lock[_shared](...): a session-level lock may be held
    kAdvisoryUnlockAll,  // pg_advisory_unlock_all()
    kDiscardTemp,        // DISCARD TEMP
    kDiscardAll,         // DISCARD ALL: ends all of the above and LISTEN
    kListen,             // LISTEN name
    kUnlisten,           // UNLISTEN name
    kUnlistenAll,        // UNLISTEN *
    kCustomSetting,      // set_config('x.y', ...): a custom setting pg_settings does not list (name as written)
  };
  Kind kind;
  std::string name;  // object, cursor or channel name (lower-cased unless quoted; last part of a qualified name)
  bool operator==(const SessionEffect&) const = default;
};
// Every statement of `sql` (a Query may hold several). Not seen: state made
// by server-side code (a function creating a temporary table), and statements
// built at run time (EXECUTE in a DO block).
std::vector<SessionEffect> SessionEffects(std::string_view sql);

// A cheap first look for the per-query path: false when SessionEffects(sql)
// is certainly empty (every statement it finds spells one of these words).
inline bool MayHoldSessionState(std::string_view sql) {
  // One pass over the statement (it runs for every Query and Parse): each
  // position is tried only against the words starting with its letter.
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; };
  auto at = [&](size_t i, std::string_view word) {  // `word` in lower case, its first letter matched
    if (i + word.size() > sql.size()) return false;
    for (size_t k = 1; k < word.size(); ++k)
      if (lower(sql[i + k]) != word[k]) return false;
    return true;
  };
  for (size_t i = 0; i < sql.size(); ++i) {
    switch (lower(sql[i])) {
      case 't': if (at(i, "temp")) return true; break;
      case 'd': if (at(i, "drop") || at(i, "discard")) return true; break;
      case 'h': if (at(i, "hold")) return true; break;
      case 'c': if (at(i, "close")) return true; break;
      case 'a': if (at(i, "advisory")) return true; break;
      case 'l': if (at(i, "listen")) return true; break;
      case 's': if (at(i, "set_config")) return true; break;
      default: break;
    }
  }
  return false;
}

// Memory per proxy session stays bounded whatever a client sends: a message
// longer than kStreamAbove that is not all buffered yet is relayed in the
// chunks it arrives in. A Query or Parse is looked at first, through its first
// kClassifyPrefix bytes, for what the proxy must keep of it: the read-only
// endpoint's check reads a whole statement (ReadWriteAttempt), a named Parse
// and a statement changing session state (SET, PREPARE, ...) are kept to be
// replayed when the session moves. Those are held whole up to
// kMaxHeldMessage; above it the proxy refuses them.
inline constexpr size_t kStreamAbove = size_t{1} << 20;
inline constexpr size_t kClassifyPrefix = size_t{64} << 10;
inline constexpr size_t kMaxHeldMessage = size_t{16} << 20;

enum class LargeMessage {
  kWaitForPrefix,  // fewer than kClassifyPrefix bytes of the body are here
  kHoldWhole,      // buffer all of it (at most kMaxHeldMessage)
  kStream,         // relay it as it comes
  kRefuse,         // must be held but is above kMaxHeldMessage
};

// What to do with a client message of `total` bytes (type byte included,
// above kStreamAbove) of which `buffered` (from the type byte on) is here;
// `readonly`: the read-only endpoint.
LargeMessage PlanLargeMessage(bool readonly, char type, size_t total, std::string_view buffered);

}  // namespace midflight::proxy
