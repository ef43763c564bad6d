#include "proxy/pg_statement.h"

#include <algorithm>
#include <cctype>

namespace midflight::proxy {

// The first keyword(s) of a statement, upper-cased, skipping blanks and comments.
std::string Leading(std::string_view sql, int words) {
  std::string out;
  size_t i = 0;
  int got = 0;
  while (i < sql.size() && got < words) {
    while (i < sql.size()) {
      if (isspace(static_cast<unsigned char>(sql[i]))) {
        ++i;
      } else if (sql.substr(i, 2) == "--") {
        while (i < sql.size() && sql[i] != '\n') ++i;
      } else if (sql.substr(i, 2) == "/*") {
        auto end = sql.find("*/", i + 2);
        i = end == std::string_view::npos ? sql.size() : end + 2;
      } else {
        break;
      }
    }
    size_t start = i;
    while (i < sql.size() && (isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_')) ++i;
    if (i == start) break;
    if (!out.empty()) out += ' ';
    for (size_t k = start; k < i; ++k) out += static_cast<char>(toupper(static_cast<unsigned char>(sql[k])));
    ++got;
  }
  return out;
}

// One statement only (a trailing semicolon allowed)?
bool SingleStatement(std::string_view sql) {
  auto semi = sql.find(';');
  if (semi == std::string_view::npos) return true;
  for (size_t i = semi + 1; i < sql.size(); ++i)
    if (!isspace(static_cast<unsigned char>(sql[i]))) return false;
  return true;
}

StateEffect Classify(std::string_view sql, std::string* name) {
  std::string two = Leading(sql, 2);
  std::string first = two.substr(0, two.find(' '));
  if (first == "SET") {
    if (two == "SET LOCAL" || two == "SET TRANSACTION" || two == "SET CONSTRAINTS") return StateEffect::kNone;
    return SingleStatement(sql) ? StateEffect::kSet : StateEffect::kNone;
  }
  if (first == "RESET") return two == "RESET ALL" ? StateEffect::kResetAll : StateEffect::kSet;
  if (two == "DISCARD ALL") return StateEffect::kDiscardAll;
  if (first == "PREPARE" && two != "PREPARE TRANSACTION") {
    // "PREPARE" without a name is the server's syntax error: nothing to carry.
    if (two.size() <= 8) return StateEffect::kNone;
    *name = two.substr(8);
    return SingleStatement(sql) ? StateEffect::kPrepare : StateEffect::kNone;
  }
  if (first == "DEALLOCATE") {
    std::string three = Leading(sql, 3);
    std::string rest = three.substr(std::min<size_t>(three.size(), 11));
    if (rest.starts_with("PREPARE ")) rest = rest.substr(8);
    *name = rest;
    return StateEffect::kDeallocate;
  }
  return StateEffect::kNone;
}

}  // namespace midflight::proxy
