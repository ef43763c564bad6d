#include "proxy/pg_statement.h"

#include <algorithm>
#include <cctype>
#include <utility>
#include <vector>

#include "base/parse.h"

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

namespace midflight::proxy {
namespace {

// A lexical token of PostgreSQL SQL, enough to tell statements apart and read
// their keywords: words are lower-cased (as the server folds them), quoted
// identifiers and string constants keep their contents; `escaped` marks the
// U& forms and E'' constants holding a backslash, whose `text` is not what the
// server reads (U& escapes are left in, E'' ones taken one character at a time).
struct Token {
  enum class Kind { kWord, kIdent, kString, kSymbol };
  Kind kind;
  std::string text;
  bool escaped = false;
};
using Statement = std::vector<Token>;

bool WordStart(unsigned char c) {
  return isalpha(c) || c == '_' || c >= 0x80;
}
bool WordChar(unsigned char c) {
  return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

// The statements of `sql`, split at semicolons outside quotes and comments.
// Unterminated quotes or comments run to the end of the text (as the server
// would refuse them, nothing after them runs).
std::vector<Statement> Lex(std::string_view sql) {
  std::vector<Statement> out(1);
  size_t i = 0, n = sql.size();
  auto lower = [](std::string_view v) {
    std::string s(v);
    for (char& c : s) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    return s;
  };
  // A '...' constant starting at sql[i] == '\''; backslash escapes when `escapes`.
  auto quoted = [&](char q, bool escapes) {
    std::string text;
    ++i;
    while (i < n) {
      char c = sql[i];
      if (escapes && c == '\\' && i + 1 < n) {
        text += sql[i + 1];
        i += 2;
      } else if (c == q) {
        if (i + 1 < n && sql[i + 1] == q) {
          text += q;
          i += 2;
        } else {
          ++i;
          break;
        }
      } else {
        text += c;
        ++i;
      }
    }
    return text;
  };
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(sql[i]);
    if (isspace(c)) {
      ++i;
    } else if (sql.substr(i, 2) == "--") {
      while (i < n && sql[i] != '\n') ++i;
    } else if (sql.substr(i, 2) == "/*") {  // nested, as in PostgreSQL
      int depth = 0;
      while (i < n) {
        if (sql.substr(i, 2) == "/*") {
          ++depth;
          i += 2;
        } else if (sql.substr(i, 2) == "*/") {
          i += 2;
          if (--depth == 0) break;
        } else {
          ++i;
        }
      }
    } else if (c == ';') {
      ++i;
      if (!out.back().empty()) out.emplace_back();
    } else if (c == '\'') {
      out.back().push_back({Token::Kind::kString, quoted('\'', false)});
    } else if (c == '"') {
      out.back().push_back({Token::Kind::kIdent, lower(quoted('"', false))});
    } else if (c == '$') {
      // $tag$ ... $tag$ (tag empty or an identifier), else a parameter $1 or a symbol.
      size_t j = i + 1;
      while (j < n && WordChar(static_cast<unsigned char>(sql[j])) && sql[j] != '$') ++j;
      bool tag_ok = j < n && sql[j] == '$' && (j == i + 1 || !isdigit(static_cast<unsigned char>(sql[i + 1])));
      if (tag_ok) {
        std::string_view tag = sql.substr(i, j + 1 - i);
        size_t body = j + 1;
        size_t end = sql.find(tag, body);
        if (end == std::string_view::npos) end = n;
        out.back().push_back({Token::Kind::kString, std::string(sql.substr(body, end - body))});
        i = end == n ? n : end + tag.size();
      } else {
        size_t start = i++;
        while (i < n && isdigit(static_cast<unsigned char>(sql[i]))) ++i;
        out.back().push_back({Token::Kind::kSymbol, std::string(sql.substr(start, i - start))});
      }
    } else if (WordStart(c) || isdigit(c)) {
      size_t start = i;
      while (i < n && (WordChar(static_cast<unsigned char>(sql[i])) || (isdigit(c) && sql[i] == '.'))) ++i;
      std::string word = lower(sql.substr(start, i - start));
      if (word == "e" && i < n && sql[i] == '\'') {
        size_t start_quote = i;
        std::string text = quoted('\'', true);
        bool escaped = sql.substr(start_quote, i - start_quote).find('\\') != std::string_view::npos;
        out.back().push_back({Token::Kind::kString, std::move(text), escaped});
      } else if (word == "u" && i + 1 < n && sql[i] == '&' && (sql[i + 1] == '\'' || sql[i + 1] == '"')) {
        ++i;
        bool ident = sql[i] == '"';
        out.back().push_back({ident ? Token::Kind::kIdent : Token::Kind::kString, quoted(sql[i], false), true});
      } else {
        out.back().push_back({Token::Kind::kWord, std::move(word)});
      }
    } else {
      out.back().push_back({Token::Kind::kSymbol, std::string(1, static_cast<char>(c))});
      ++i;
    }
  }
  if (out.back().empty()) out.pop_back();
  return out;
}

bool IsWord(const Statement& s, size_t i, std::string_view word) {
  return i < s.size() && s[i].kind == Token::Kind::kWord && s[i].text == word;
}

bool HasReadWrite(const Statement& s) {
  for (size_t i = 0; i + 1 < s.size(); ++i)
    if (IsWord(s, i, "read") && IsWord(s, i + 1, "write")) return true;
  return false;
}

bool IsReadOnlySetting(const Token& t) {
  if (t.kind == Token::Kind::kSymbol) return false;
  std::string name = t.text;  // words and quoted identifiers are lower-cased already
  if (t.kind == Token::Kind::kString)
    for (char& c : name) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return name == "transaction_read_only" || name == "default_transaction_read_only";
}

// A value that leaves the setting on. DEFAULT is the connection's startup
// value (read-only on this endpoint).
bool IsTrueValue(const Token& t) {
  if (t.kind == Token::Kind::kSymbol) return false;
  std::string v = t.text;
  for (char& c : v) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  if (t.kind == Token::Kind::kWord && v == "default") return true;
  return v == "on" || v == "true" || v == "yes" || v == "1" || v == "t" || v == "y";
}

bool MentionsReadOnlySetting(const Statement& s) {
  for (const Token& t : s) {
    if (t.kind == Token::Kind::kSymbol) continue;
    std::string v = t.text;
    for (char& c : v) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    if (v.find("transaction_read_only") != std::string::npos) return true;
  }
  return false;
}

std::string_view StatementAttempt(const Statement& s) {
  if (IsWord(s, 0, "begin") && HasReadWrite(s)) return "BEGIN READ WRITE";
  if (IsWord(s, 0, "start") && HasReadWrite(s)) return "START TRANSACTION READ WRITE";
  if (IsWord(s, 0, "set")) {
    if (IsWord(s, 1, "transaction") && HasReadWrite(s)) return "SET TRANSACTION READ WRITE";
    if (IsWord(s, 1, "session") && IsWord(s, 2, "characteristics") && HasReadWrite(s))
      return "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE";
    size_t k = (IsWord(s, 1, "session") || IsWord(s, 1, "local")) ? 2 : 1;
    // A U&"..." name may spell either setting: refused unread.
    if (k < s.size() && s[k].kind == Token::Kind::kIdent && s[k].escaped) return "SET of a U& quoted setting name";
    if (k < s.size() && s[k].kind != Token::Kind::kString && IsReadOnlySetting(s[k])) {
      // SET name {= | TO} value: anything but one value that keeps it on is refused.
      bool to = k + 1 < s.size() &&
                (IsWord(s, k + 1, "to") || (s[k + 1].kind == Token::Kind::kSymbol && s[k + 1].text == "="));
      if (!(to && s.size() == k + 3 && IsTrueValue(s[k + 2])))
        return s[k].text == "transaction_read_only" ? "SET transaction_read_only" : "SET default_transaction_read_only";
    }
  }
  // A DO block runs code the proxy does not read (EXECUTE of a computed SET,
  // COMMIT and go on in a read-write transaction).
  if (IsWord(s, 0, "do")) return "a DO block";
  bool mentions = MentionsReadOnlySetting(s);
  for (size_t i = 0; i < s.size(); ++i) {
    if (!((s[i].kind == Token::Kind::kWord || s[i].kind == Token::Kind::kIdent) && s[i].text == "set_config")) continue;
    if (mentions) return "set_config of transaction_read_only";
    // The setting's name must be a plain string constant the proxy can read:
    // set_config('search_path', ...) passes, a name computed or bound at run
    // time does not.
    bool literal = i + 3 < s.size() && s[i + 1].kind == Token::Kind::kSymbol && s[i + 1].text == "(" &&
                   s[i + 2].kind == Token::Kind::kString && !s[i + 2].escaped &&
                   s[i + 3].kind == Token::Kind::kSymbol && s[i + 3].text == ",";
    if (!literal) return "set_config of a setting name computed at run time";
  }
  return "";
}

bool IsSymbol(const Statement& s, size_t i, std::string_view sym) {
  return i < s.size() && s[i].kind == Token::Kind::kSymbol && s[i].text == sym;
}

bool IsName(const Statement& s, size_t i) {
  return i < s.size() && (s[i].kind == Token::Kind::kWord || s[i].kind == Token::Kind::kIdent);
}

// A possibly qualified name at s[*i]: its last part, and whether its schema is
// pg_temp; *i moves past it. Empty when there is no name there.
std::string QualifiedName(const Statement& s, size_t* i, bool* in_pg_temp) {
  std::string last, schema;
  while (IsName(s, *i)) {
    schema = std::exchange(last, s[*i].text);
    ++*i;
    if (!IsSymbol(s, *i, ".")) break;
    ++*i;
  }
  if (in_pg_temp) *in_pg_temp = schema.starts_with("pg_temp");
  return last;
}

void StatementEffects(const Statement& s, std::vector<SessionEffect>* out) {
  using K = SessionEffect::Kind;
  auto word = [&](size_t i, std::string_view w) { return IsWord(s, i, w); };
  if (word(0, "create")) {
    size_t i = 1;
    if (word(i, "or") && word(i + 1, "replace")) i += 2;
    if (word(i, "global") || word(i, "local")) ++i;
    bool temp = false;
    if (word(i, "temp") || word(i, "temporary")) {
      temp = true;
      ++i;
    }
    if (word(i, "unlogged")) ++i;
    if (word(i, "recursive")) ++i;
    if (!(word(i, "table") || word(i, "view") || word(i, "sequence"))) return;
    ++i;
    if (word(i, "if") && word(i + 1, "not") && word(i + 2, "exists")) i += 3;
    bool in_pg_temp = false;
    std::string name = QualifiedName(s, &i, &in_pg_temp);
    if (name.empty() || !(temp || in_pg_temp)) return;
    for (size_t k = i; k + 2 < s.size(); ++k)
      if (word(k, "on") && word(k + 1, "commit") && word(k + 2, "drop")) return;  // gone at commit
    out->push_back({K::kTempObject, name});
    return;
  }
  if (word(0, "select") || word(0, "with")) {
    for (size_t i = 1; i < s.size(); ++i) {
      if (!word(i, "into")) continue;
      size_t k = i + 1;
      bool temp = false;
      if (word(k, "temp") || word(k, "temporary")) {
        temp = true;
        ++k;
      }
      if (word(k, "unlogged")) ++k;
      if (word(k, "table")) ++k;
      bool in_pg_temp = false;
      std::string name = QualifiedName(s, &k, &in_pg_temp);
      if (!name.empty() && (temp || in_pg_temp)) out->push_back({K::kTempObject, name});
    }
  }
  if (word(0, "drop") && (word(1, "table") || word(1, "view") || word(1, "sequence"))) {
    size_t i = 2;
    if (word(i, "if") && word(i + 1, "exists")) i += 2;
    while (true) {
      std::string name = QualifiedName(s, &i, nullptr);
      if (name.empty()) break;
      out->push_back({K::kDrop, name});
      if (!IsSymbol(s, i, ",")) break;
      ++i;
    }
    return;
  }
  if (word(0, "declare") && IsName(s, 1)) {
    for (size_t i = 2; i + 1 < s.size() && !word(i, "for"); ++i)
      if (word(i, "with") && word(i + 1, "hold")) {
        out->push_back({K::kHoldCursor, s[1].text});
        break;
      }
    return;
  }
  if (word(0, "close")) {
    if (word(1, "all") && s.size() == 2) out->push_back({K::kCloseAll, ""});
    else if (IsName(s, 1)) out->push_back({K::kCloseCursor, s[1].text});
    return;
  }
  if (word(0, "discard")) {
    if (word(1, "all")) out->push_back({K::kDiscardAll, ""});
    else if (word(1, "temp") || word(1, "temporary")) out->push_back({K::kDiscardTemp, ""});
    return;
  }
  if (word(0, "listen") && IsName(s, 1)) {
    out->push_back({K::kListen, s[1].text});
    return;
  }
  if (word(0, "unlisten")) {
    if (IsSymbol(s, 1, "*")) out->push_back({K::kUnlistenAll, ""});
    else if (IsName(s, 1)) out->push_back({K::kUnlisten, s[1].text});
    return;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const Token& t = s[i];
    if (t.kind != Token::Kind::kWord && t.kind != Token::Kind::kIdent) continue;
    // Custom ("x.y") settings are not in pg_settings, where the proxy reads
    // the rest of the session's settings when it moves: their names come
    // from here (a name computed at run time is not seen).
    if (t.text == "set_config" && IsSymbol(s, i + 1, "(") && i + 2 < s.size() &&
        s[i + 2].kind == Token::Kind::kString && !s[i + 2].escaped &&
        s[i + 2].text.find('.') != std::string::npos)
      out->push_back({K::kCustomSetting, s[i + 2].text});
    if (t.text == "pg_advisory_lock" || t.text == "pg_advisory_lock_shared" || t.text == "pg_try_advisory_lock" ||
        t.text == "pg_try_advisory_lock_shared")
      out->push_back({K::kAdvisoryLock, ""});
    else if (t.text == "pg_advisory_unlock_all")
      out->push_back({K::kAdvisoryUnlockAll, ""});
  }
}

}  // namespace

std::vector<SessionEffect> SessionEffects(std::string_view sql) {
  std::vector<SessionEffect> out;
  for (const Statement& s : Lex(sql)) StatementEffects(s, &out);
  return out;
}

std::string_view ReadWriteAttempt(std::string_view sql) {
  for (const Statement& s : Lex(sql))
    if (auto what = StatementAttempt(s); !what.empty()) return what;
  return "";
}

int HighestParameter(std::string_view sql) {
  int highest = 0;
  for (const Statement& s : Lex(sql))
    for (const Token& t : s)
      if (uint64_t n = 0; t.kind == Token::Kind::kSymbol && t.text.size() > 1 && t.text.size() < 7 &&
                          ParseU64(std::string_view(t.text).substr(1), &n))
        highest = std::max(highest, static_cast<int>(n));
  return highest;
}

std::string SettingKey(std::string_view sql) {
  size_t i = 0;
  auto blanks = [&] {
    while (i < sql.size() && isspace(static_cast<unsigned char>(sql[i]))) ++i;
  };
  auto word = [&](bool dotted) {
    std::string w;
    while (i < sql.size() && (isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_' || (dotted && sql[i] == '.')))
      w += static_cast<char>(tolower(static_cast<unsigned char>(sql[i++])));
    return w;
  };
  blanks();
  const std::string verb = word(false);
  if (verb != "set" && verb != "reset") return "";
  blanks();
  std::string name = word(true);
  if (verb == "set" && name == "session") {
    blanks();
    name = word(true);
  }
  if (name.empty() || (i < sql.size() && !isspace(static_cast<unsigned char>(sql[i])) && sql[i] != '=' && sql[i] != ';'))
    return "";
  if (sql.find("/*") != std::string_view::npos || sql.find("--") != std::string_view::npos) return "";
  return name;
}


LargeMessage PlanLargeMessage(bool readonly, char type, size_t total, std::string_view buffered) {
  if (type != 'Q' && type != 'P') return LargeMessage::kStream;
  const size_t want = std::min(total - 5, kClassifyPrefix);
  if (buffered.size() < 5 + want) return LargeMessage::kWaitForPrefix;
  std::string_view sql = buffered.substr(5, want);
  bool hold = readonly;  // ReadWriteAttempt must see every statement
  if (type == 'P') {
    const size_t nul = sql.find('\0');
    // A named statement is replayed on another server; a name that does not
    // end in the prefix is not one PostgreSQL takes anyway.
    hold = hold || nul != 0;
    sql = nul == std::string_view::npos ? std::string_view() : sql.substr(nul + 1);
  }
  if (!hold && MayChangeState(sql)) {
    // Classify looks at the first keyword: held when it is one that changes
    // session state, or when the prefix cannot say (blanks or comments up to
    // its end, or the word running to its end).
    const std::string first = Leading(sql, 1);
    const bool complete = !first.empty() && first == Leading(sql.substr(0, sql.size() - 1), 1);
    hold = !complete || first == "SET" || first == "RESET" || first == "PREPARE" || first == "DEALLOCATE" ||
           first == "DISCARD";
  }
  if (!hold) return LargeMessage::kStream;
  return total <= kMaxHeldMessage ? LargeMessage::kHoldWhole : LargeMessage::kRefuse;
}

}  // namespace midflight::proxy
