// What a client's SQL statement does to the session state that the proxy
// must carry to another server when the session moves (pg_proxy.h): pure
// functions over the statement text.
#pragma once

#include <string>
#include <string_view>

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

}  // namespace midflight::proxy
