#include "core/transform.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "base/civil_date.h"

namespace midflight {
namespace transform_detail {

// A parsed expression or predicate.
struct Expr {
  enum class Op {
    kColumn, kText, kNumber, kNull, kBool,                       // leaves
    kConcat, kCoalesce, kLower, kUpper, kTrim, kSha256,          // functions
    kAdd, kSub, kMul, kNeg,                                      // arithmetic
    kEq, kNe, kLt, kLe, kGt, kGe, kIsNull, kIsNotNull,           // comparisons
    kAnd, kOr, kNot,
  };
  Op op = Op::kNull;
  std::string text;  // column name, or the literal
  bool flag = false; // kBool: the value
  int column = -1;   // kColumn, once bound: index in the source's writable layout
  std::vector<std::shared_ptr<Expr>> args;

  bool IsPredicate() const { return op >= Op::kEq; }
};

}  // namespace transform_detail

using transform_detail::Expr;
using ExprPtr = std::shared_ptr<Expr>;

namespace {

// ---- exact decimals: mantissa and scale in 128 bits -------------------------

struct Dec {
  __int128 mant = 0;
  int scale = 0;
};
constexpr int kMaxScale = 30;

bool ParseDec(std::string_view s, Dec* out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  Dec d;
  bool digits = false, point = false;
  size_t i = 0;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.' && !point) {
      point = true;
      continue;
    }
    if (c < '0' || c > '9') break;
    digits = true;
    if (__builtin_mul_overflow(d.mant, 10, &d.mant) || __builtin_add_overflow(d.mant, c - '0', &d.mant)) return false;
    if (point) ++d.scale;
  }
  if (!digits) return false;
  if (i < s.size()) {  // exponent (float columns)
    if (s[i] != 'e' && s[i] != 'E') return false;
    std::string_view e = s.substr(i + 1);
    int exp = 0;
    bool eneg = false;
    if (!e.empty() && (e[0] == '-' || e[0] == '+')) {
      eneg = e[0] == '-';
      e.remove_prefix(1);
    }
    if (e.empty() || e.size() > 3) return false;
    for (char c : e) {
      if (c < '0' || c > '9') return false;
      exp = exp * 10 + (c - '0');
    }
    if (eneg) {
      d.scale += exp;
    } else {
      for (int k = 0; k < exp; ++k) {
        if (d.scale > 0) --d.scale;
        else if (__builtin_mul_overflow(d.mant, 10, &d.mant)) return false;
      }
    }
    if (d.scale > kMaxScale) return false;
  }
  if (neg) d.mant = -d.mant;
  *out = d;
  return true;
}

bool Rescale(Dec* d, int scale) {
  for (; d->scale < scale; ++d->scale)
    if (__builtin_mul_overflow(d->mant, 10, &d->mant)) return false;
  return true;
}

std::string DecText(Dec d) {
  bool neg = d.mant < 0;
  unsigned __int128 m = neg ? -static_cast<unsigned __int128>(d.mant) : static_cast<unsigned __int128>(d.mant);
  std::string digits;
  do {
    digits.push_back(static_cast<char>('0' + static_cast<int>(m % 10)));
    m /= 10;
  } while (m);
  while (static_cast<int>(digits.size()) <= d.scale) digits.push_back('0');
  std::reverse(digits.begin(), digits.end());
  if (d.scale > 0) digits.insert(digits.size() - d.scale, ".");
  return (neg ? "-" : "") + digits;
}

// ---- tokens and parser ---------------------------------------------------------

struct Token {
  enum class Kind { kEnd, kIdent, kQuotedIdent, kText, kNumber, kSymbol } kind = Kind::kEnd;
  std::string text;
  size_t at = 0;  // offset in the source text, for messages
};

Result<std::vector<Token>> Tokenize(const std::string& s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    Token t;
    t.at = i;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      t.kind = Token::Kind::kIdent;
      t.text = s.substr(i, j - i);
      i = j;
    } else if (c == '\'' || c == '"') {
      t.kind = c == '\'' ? Token::Kind::kText : Token::Kind::kQuotedIdent;
      size_t j = i + 1;
      bool closed = false;
      while (j < s.size()) {
        if (s[j] == c) {
          if (j + 1 < s.size() && s[j + 1] == c) {
            t.text.push_back(c);
            j += 2;
            continue;
          }
          closed = true;
          ++j;
          break;
        }
        t.text.push_back(s[j++]);
      }
      if (!closed) return InvalidArgument(fmt::format("unterminated {} at offset {}", c == '\'' ? "'text'" : "\"name\"", i));
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
      t.kind = Token::Kind::kNumber;
      t.text = s.substr(i, j - i);
      Dec d;
      if (!ParseDec(t.text, &d)) return InvalidArgument(fmt::format("'{}' at offset {} is not a number", t.text, i));
      i = j;
    } else {
      static const char* kTwo[] = {"<=", ">=", "<>", "!="};
      t.kind = Token::Kind::kSymbol;
      for (const char* two : kTwo)
        if (s.compare(i, 2, two) == 0) t.text = two;
      if (t.text.empty()) {
        if (std::string("()+-*,=<>").find(c) == std::string::npos)
          return InvalidArgument(fmt::format("unexpected '{}' at offset {}", c, i));
        t.text = std::string(1, c);
      }
      i += t.text.size();
    }
    out.push_back(std::move(t));
  }
  Token end;
  end.at = s.size();
  out.push_back(end);
  return out;
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Result<ExprPtr> ParseAll() {
    ASSIGN_OR_RETURN(ExprPtr e, Or());
    if (Peek().kind != Token::Kind::kEnd) return Unexpected();
    return e;
  }

 private:
  const Token& Peek() const { return t_[i_]; }
  bool IsWord(const char* w) const { return Peek().kind == Token::Kind::kIdent && Lower(Peek().text) == w; }
  bool IsSym(const char* s) const { return Peek().kind == Token::Kind::kSymbol && Peek().text == s; }
  Status Unexpected() const {
    if (Peek().kind == Token::Kind::kEnd) return InvalidArgument("unexpected end");
    return InvalidArgument(fmt::format("unexpected '{}' at offset {}", Peek().text, Peek().at));
  }
  static ExprPtr Node(Expr::Op op, std::vector<ExprPtr> args) {
    auto e = std::make_shared<Expr>();
    e->op = op;
    e->args = std::move(args);
    return e;
  }

  Result<ExprPtr> Or() {
    ASSIGN_OR_RETURN(ExprPtr l, And());
    while (IsWord("or")) {
      ++i_;
      ASSIGN_OR_RETURN(ExprPtr r, And());
      l = Node(Expr::Op::kOr, {l, r});
    }
    return l;
  }
  Result<ExprPtr> And() {
    ASSIGN_OR_RETURN(ExprPtr l, Not());
    while (IsWord("and")) {
      ++i_;
      ASSIGN_OR_RETURN(ExprPtr r, Not());
      l = Node(Expr::Op::kAnd, {l, r});
    }
    return l;
  }
  Result<ExprPtr> Not() {
    if (IsWord("not")) {
      ++i_;
      ASSIGN_OR_RETURN(ExprPtr e, Not());
      return Node(Expr::Op::kNot, {e});
    }
    return Compare();
  }
  Result<ExprPtr> Compare() {
    ASSIGN_OR_RETURN(ExprPtr l, Additive());
    if (IsWord("is")) {
      ++i_;
      bool negated = false;
      if (IsWord("not")) {
        ++i_;
        negated = true;
      }
      if (!IsWord("null")) return Unexpected();
      ++i_;
      return Node(negated ? Expr::Op::kIsNotNull : Expr::Op::kIsNull, {l});
    }
    static const std::map<std::string, Expr::Op> kOps = {{"=", Expr::Op::kEq},  {"!=", Expr::Op::kNe},
                                                         {"<>", Expr::Op::kNe}, {"<", Expr::Op::kLt},
                                                         {"<=", Expr::Op::kLe}, {">", Expr::Op::kGt},
                                                         {">=", Expr::Op::kGe}};
    if (Peek().kind == Token::Kind::kSymbol && kOps.count(Peek().text)) {
      Expr::Op op = kOps.at(Peek().text);
      ++i_;
      ASSIGN_OR_RETURN(ExprPtr r, Additive());
      return Node(op, {l, r});
    }
    return l;
  }
  Result<ExprPtr> Additive() {
    ASSIGN_OR_RETURN(ExprPtr l, Multiplicative());
    while (IsSym("+") || IsSym("-")) {
      Expr::Op op = IsSym("+") ? Expr::Op::kAdd : Expr::Op::kSub;
      ++i_;
      ASSIGN_OR_RETURN(ExprPtr r, Multiplicative());
      l = Node(op, {l, r});
    }
    return l;
  }
  Result<ExprPtr> Multiplicative() {
    ASSIGN_OR_RETURN(ExprPtr l, Unary());
    while (IsSym("*")) {
      ++i_;
      ASSIGN_OR_RETURN(ExprPtr r, Unary());
      l = Node(Expr::Op::kMul, {l, r});
    }
    return l;
  }
  Result<ExprPtr> Unary() {
    if (IsSym("-")) {
      ++i_;
      if (Peek().kind == Token::Kind::kNumber) {  // a negative literal
        auto e = std::make_shared<Expr>();
        e->op = Expr::Op::kNumber;
        e->text = "-" + Peek().text;
        ++i_;
        return e;
      }
      ASSIGN_OR_RETURN(ExprPtr e, Unary());
      return Node(Expr::Op::kNeg, {e});
    }
    return Primary();
  }
  Result<ExprPtr> Primary() {
    const Token& t = Peek();
    auto e = std::make_shared<Expr>();
    switch (t.kind) {
      case Token::Kind::kNumber:
        e->op = Expr::Op::kNumber;
        e->text = t.text;
        ++i_;
        return e;
      case Token::Kind::kText:
        e->op = Expr::Op::kText;
        e->text = t.text;
        ++i_;
        return e;
      case Token::Kind::kQuotedIdent:
        e->op = Expr::Op::kColumn;
        e->text = t.text;
        ++i_;
        return e;
      case Token::Kind::kSymbol:
        if (t.text == "(") {
          ++i_;
          ASSIGN_OR_RETURN(ExprPtr inner, Or());
          if (!IsSym(")")) return Unexpected();
          ++i_;
          return inner;
        }
        return Unexpected();
      case Token::Kind::kEnd:
        return Unexpected();
      case Token::Kind::kIdent:
        break;
    }
    const std::string word = Lower(t.text);
    const size_t at = t.at;
    ++i_;
    if (IsSym("(")) {
      static const std::map<std::string, std::pair<Expr::Op, int>> kFunctions = {
          {"concat", {Expr::Op::kConcat, -1}}, {"coalesce", {Expr::Op::kCoalesce, -1}},
          {"lower", {Expr::Op::kLower, 1}},    {"upper", {Expr::Op::kUpper, 1}},
          {"trim", {Expr::Op::kTrim, 1}},      {"sha256", {Expr::Op::kSha256, 1}}};
      auto f = kFunctions.find(word);
      if (f == kFunctions.end())
        return InvalidArgument(fmt::format(
            "unknown function '{}' at offset {} (concat, coalesce, lower, upper, trim, sha256)", t_[i_ - 1].text, at));
      ++i_;
      std::vector<ExprPtr> args;
      if (!IsSym(")")) {
        while (true) {
          ASSIGN_OR_RETURN(ExprPtr a, Or());
          args.push_back(a);
          if (IsSym(",")) {
            ++i_;
            continue;
          }
          break;
        }
      }
      if (!IsSym(")")) return Unexpected();
      ++i_;
      if (args.empty() || (f->second.second > 0 && static_cast<int>(args.size()) != f->second.second))
        return InvalidArgument(fmt::format("{}() at offset {} takes {}", word, at,
                                           f->second.second > 0 ? "one argument" : "one or more arguments"));
      return Node(f->second.first, std::move(args));
    }
    if (word == "null") {
      e->op = Expr::Op::kNull;
    } else if (word == "true" || word == "false") {
      e->op = Expr::Op::kBool;
      e->flag = word == "true";
    } else if (word == "and" || word == "or" || word == "not" || word == "is") {
      i_--;
      return Unexpected();
    } else {
      e->op = Expr::Op::kColumn;
      e->text = t_[i_ - 1].text;
    }
    return e;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
};

Result<ExprPtr> ParseExpr(const std::string& text) {
  ASSIGN_OR_RETURN(auto tokens, Tokenize(text));
  Parser p(std::move(tokens));
  return p.ParseAll();
}

// ---- casts -------------------------------------------------------------------

struct CastInfo {
  const char* name;
  std::vector<TypeKind> from;  // empty: any
  bool keeps_key;              // one-to-one and order-free: allowed on a key column
};
const std::map<std::string, CastInfo>& Casts() {
  static const std::map<std::string, CastInfo> kCasts = {
      {"text_to_int", {"text_to_int", {TypeKind::kText}, false}},
      {"text_to_numeric", {"text_to_numeric", {TypeKind::kText}, false}},
      {"int_to_text", {"int_to_text", {TypeKind::kInt}, true}},
      {"numeric_to_text", {"numeric_to_text", {TypeKind::kDecimal}, false}},
      {"json_to_text", {"json_to_text", {TypeKind::kJson}, false}},
      {"timestamp_to_timestamptz", {"timestamp_to_timestamptz", {TypeKind::kTimestamp}, true}},
      {"trim", {"trim", {TypeKind::kText}, false}},
      {"lower", {"lower", {TypeKind::kText}, false}},
      {"upper", {"upper", {TypeKind::kText}, false}},
  };
  return kCasts;
}
std::string CastNames() {
  std::string out;
  for (const auto& [name, info] : Casts()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// "UTC", "+02", "+02:00", "-05:30" -> minutes east of UTC.
bool ParseZone(const std::string& z, int* minutes) {
  if (z == "UTC" || z == "utc" || z == "Z") {
    *minutes = 0;
    return true;
  }
  if (z.size() != 3 && z.size() != 6) return false;
  if (z[0] != '+' && z[0] != '-') return false;
  auto two = [&](size_t at, int* v) {
    if (!std::isdigit(static_cast<unsigned char>(z[at])) || !std::isdigit(static_cast<unsigned char>(z[at + 1])))
      return false;
    *v = (z[at] - '0') * 10 + (z[at + 1] - '0');
    return true;
  };
  int h = 0, m = 0;
  if (!two(1, &h) || h > 15) return false;
  if (z.size() == 6 && (z[3] != ':' || !two(4, &m) || m > 59)) return false;
  *minutes = (z[0] == '-' ? -1 : 1) * (h * 60 + m);
  return true;
}

// timestamptz_to_timestamp, the inverse of timestamp_to_timestamptz: an
// instant with its offset ("2024-03-01 10:00:00.5+00", "...+05:30", "...Z")
// as the wall-clock time in the fixed zone `zone_minutes` east of UTC
// ("2024-03-01 11:00:00.5" for +01). nullopt when `v` is not such a text
// (or falls outside years 1..9999).
std::optional<std::string> LocalTimeIn(const std::string& v, int zone_minutes) {
  auto digits = [&v](size_t at, size_t n, int* out) {
    if (at + n > v.size()) return false;
    int x = 0;
    for (size_t k = at; k < at + n; ++k) {
      if (!std::isdigit(static_cast<unsigned char>(v[k]))) return false;
      x = x * 10 + (v[k] - '0');
    }
    *out = x;
    return true;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!digits(0, 4, &y) || v.size() < 19 || v[4] != '-' || !digits(5, 2, &mo) || v[7] != '-' || !digits(8, 2, &d) ||
      (v[10] != ' ' && v[10] != 'T') || !digits(11, 2, &h) || v[13] != ':' || !digits(14, 2, &mi) || v[16] != ':' ||
      !digits(17, 2, &sec))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) return std::nullopt;
  size_t i = 19;
  std::string fraction;
  if (i < v.size() && v[i] == '.') {
    size_t j = i + 1;
    while (j < v.size() && std::isdigit(static_cast<unsigned char>(v[j]))) ++j;
    if (j == i + 1) return std::nullopt;
    fraction = v.substr(i, j - i);
    i = j;
  }
  int offset_s = 0;
  if (i < v.size() && v[i] == 'Z' && i + 1 == v.size()) {
    offset_s = 0;
  } else {
    if (i >= v.size() || (v[i] != '+' && v[i] != '-')) return std::nullopt;
    const int sign = v[i] == '-' ? -1 : 1;
    int oh = 0, om = 0, os = 0;
    if (!digits(i + 1, 2, &oh)) return std::nullopt;
    size_t j = i + 3;
    if (j < v.size()) {
      if (v[j] != ':' || !digits(j + 1, 2, &om)) return std::nullopt;
      j += 3;
      if (j < v.size()) {
        if (v[j] != ':' || !digits(j + 1, 2, &os) || j + 3 != v.size()) return std::nullopt;
      }
    }
    offset_s = sign * (oh * 3600 + om * 60 + os);
  }
  int64_t t = DaysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_s + zone_minutes * 60;
  int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
  int64_t rest = t - days * 86400;
  int64_t ly = 0, lm = 0, ld = 0;
  CivilFromDays(days, &ly, &lm, &ld);
  if (ly < 1 || ly > 9999) return std::nullopt;
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}{}", ly, lm, ld, rest / 3600, rest / 60 % 60, rest % 60,
                     fraction);
}

// The cast that undoes `cast` on the values it produces ("" when none does).
std::string InverseCast(const std::string& cast) {
  static const std::map<std::string, std::string> kInverse = {
      {"int_to_text", "text_to_int"},         {"text_to_int", "int_to_text"},
      {"numeric_to_text", "text_to_numeric"}, {"text_to_numeric", "numeric_to_text"},
      {"timestamp_to_timestamptz", "timestamptz_to_timestamp"},
  };
  auto it = kInverse.find(cast);
  return it == kInverse.end() ? "" : it->second;
}

// Why `cast` has no inverse, for Inverse's refusal.
std::string WhyNotInvertible(const std::string& cast) {
  if (cast == "json_to_text")
    return "the target holds free text, which the source's JSON column may refuse or reformat";
  if (cast == "trim") return "the spaces it removed are gone";
  if (cast == "lower" || cast == "upper") return "the original case is gone";
  return "it has no exact inverse";
}

ColumnType TypeNamed(TypeKind kind, const std::string& native) {
  ColumnType t;
  t.kind = kind;
  t.native = native;
  t.native_base = native.substr(0, native.find('('));
  if (kind == TypeKind::kInt) t.width = 8;
  return t;
}

ColumnType CastType(const std::string& cast, const ColumnType& from) {
  if (cast == "text_to_int") return TypeNamed(TypeKind::kInt, "bigint");
  if (cast == "text_to_numeric") return TypeNamed(TypeKind::kDecimal, "numeric");
  if (cast == "timestamp_to_timestamptz") {
    // The precision, from the type or its spelling ("timestamp(3) without time zone").
    int precision = from.precision;
    const size_t open = from.native.find('(');
    if (precision < 0 && open != std::string::npos && open + 1 < from.native.size() &&
        std::isdigit(static_cast<unsigned char>(from.native[open + 1])))
      precision = from.native[open + 1] - '0';
    ColumnType t = TypeNamed(TypeKind::kTimestamp, precision >= 0
                                                       ? fmt::format("timestamp({}) with time zone", precision)
                                                       : "timestamp with time zone");
    t.native_base = "timestamp with time zone";
    t.precision = precision;
    t.with_zone = true;
    return t;
  }
  if (cast == "trim" || cast == "lower" || cast == "upper") return from;
  return TypeNamed(TypeKind::kText, "text");
}

bool IsNumberKind(TypeKind k) { return k == TypeKind::kInt || k == TypeKind::kDecimal || k == TypeKind::kFloat; }

// ---- evaluation ----------------------------------------------------------------

// A value during evaluation: NULL, or its text (with its kind, for comparisons).
struct Val {
  enum class Kind { kNull, kText, kNumber, kBool } kind = Kind::kNull;
  std::string text;
  bool b = false;
};

// Why a row could not be transformed: the column (or "filter") and the problem.
struct EvalError {
  std::string column, problem;
};

std::string Hex(const unsigned char* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 15]);
  }
  return out;
}

std::string Quoted(const std::string& v) {
  return v.size() > 200 ? "'" + v.substr(0, 200) + "...'" : "'" + v + "'";
}

class Evaluator {
 public:
  Evaluator(const TableSchema& t, const std::vector<Datum>& row) : t_(t), row_(row) {}
  std::optional<EvalError> error;

  Val Eval(const Expr& e) {
    if (error) return {};
    switch (e.op) {
      case Expr::Op::kColumn: {
        const Datum& d = row_[e.column];
        const ColumnSchema& col = t_.columns[t_.writable[e.column]];
        if (d.is_unchanged()) {
          Fail(col.name, "the source did not resend this unchanged (TOASTed) value, which the transform needs; "
                         "give the source table REPLICA IDENTITY FULL");
          return {};
        }
        if (d.is_null()) return {};
        if (col.type.kind == TypeKind::kBool) {
          const bool v = d.text == "t" || d.text == "true" || d.text == "1";
          return {Val::Kind::kBool, d.text, v};
        }
        return {IsNumberKind(col.type.kind) ? Val::Kind::kNumber : Val::Kind::kText, d.text, false};
      }
      case Expr::Op::kText: return {Val::Kind::kText, e.text, false};
      case Expr::Op::kNumber: return {Val::Kind::kNumber, e.text, false};
      case Expr::Op::kNull: return {};
      case Expr::Op::kBool: return {Val::Kind::kBool, e.flag ? "t" : "f", e.flag};
      case Expr::Op::kConcat: {
        std::string out;
        for (const auto& a : e.args) {
          Val v = Eval(*a);
          if (v.kind != Val::Kind::kNull) out += v.text;
        }
        return {Val::Kind::kText, out, false};
      }
      case Expr::Op::kCoalesce:
        for (const auto& a : e.args) {
          Val v = Eval(*a);
          if (v.kind != Val::Kind::kNull) return v;
        }
        return {};
      case Expr::Op::kLower:
      case Expr::Op::kUpper:
      case Expr::Op::kTrim:
      case Expr::Op::kSha256: {
        Val v = Eval(*e.args[0]);
        if (v.kind == Val::Kind::kNull) return v;
        return {Val::Kind::kText, TextFunction(e.op, v.text), false};
      }
      case Expr::Op::kAdd:
      case Expr::Op::kSub:
      case Expr::Op::kMul:
      case Expr::Op::kNeg: return Arithmetic(e);
      case Expr::Op::kIsNull:
      case Expr::Op::kIsNotNull: {
        Val v = Eval(*e.args[0]);
        bool is_null = v.kind == Val::Kind::kNull;
        return Bool(e.op == Expr::Op::kIsNull ? is_null : !is_null);
      }
      case Expr::Op::kAnd: return Bool(Truth(*e.args[0]) && Truth(*e.args[1]));
      case Expr::Op::kOr: return Bool(Truth(*e.args[0]) || Truth(*e.args[1]));
      case Expr::Op::kNot: return Bool(!Truth(*e.args[0]));
      default: return Comparison(e);
    }
  }

  static std::string TextFunction(Expr::Op op, std::string s) {
    switch (op) {
      case Expr::Op::kLower:
        for (auto& c : s)
          if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        return s;
      case Expr::Op::kUpper:
        for (auto& c : s)
          if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
        return s;
      case Expr::Op::kTrim: {
        size_t b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
        return b == std::string::npos ? "" : s.substr(b, e - b + 1);
      }
      default: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
        return Hex(md, n);
      }
    }
  }

  void Fail(const std::string& column, const std::string& problem) {
    if (!error) error = EvalError{column, problem};
  }

 private:
  static Val Bool(bool b) { return {Val::Kind::kBool, b ? "t" : "f", b}; }
  // A predicate's truth; NULL is false (SQL's unknown drops the row too).
  bool Truth(const Expr& e) {
    Val v = Eval(e);
    return v.kind == Val::Kind::kBool && v.b;
  }
  bool Number(const Val& v, const Expr& e, Dec* d) {
    if (ParseDec(v.text, d)) return true;
    Fail(e.op == Expr::Op::kColumn ? e.text : "expression", fmt::format("{} is not a number", Quoted(v.text)));
    return false;
  }
  Val Arithmetic(const Expr& e) {
    if (e.op == Expr::Op::kNeg) {
      Val v = Eval(*e.args[0]);
      Dec d;
      if (v.kind == Val::Kind::kNull || !Number(v, *e.args[0], &d)) return {};
      d.mant = -d.mant;
      return {Val::Kind::kNumber, DecText(d), false};
    }
    Val l = Eval(*e.args[0]), r = Eval(*e.args[1]);
    if (l.kind == Val::Kind::kNull || r.kind == Val::Kind::kNull) return {};
    Dec a, b;
    if (!Number(l, *e.args[0], &a) || !Number(r, *e.args[1], &b)) return {};
    Dec out;
    bool overflow = false;
    if (e.op == Expr::Op::kMul) {
      overflow = __builtin_mul_overflow(a.mant, b.mant, &out.mant);
      out.scale = a.scale + b.scale;
      overflow = overflow || out.scale > kMaxScale;
    } else {
      const int scale = std::max(a.scale, b.scale);
      overflow = !Rescale(&a, scale) || !Rescale(&b, scale);
      out.scale = scale;
      overflow = overflow || (e.op == Expr::Op::kAdd ? __builtin_add_overflow(a.mant, b.mant, &out.mant)
                                                     : __builtin_sub_overflow(a.mant, b.mant, &out.mant));
    }
    if (overflow) {
      Fail("expression", fmt::format("{} {} {} is out of range", l.text, e.op == Expr::Op::kMul ? "*" : e.op == Expr::Op::kAdd ? "+" : "-", r.text));
      return {};
    }
    return {Val::Kind::kNumber, DecText(out), false};
  }
  Val Comparison(const Expr& e) {
    Val l = Eval(*e.args[0]), r = Eval(*e.args[1]);
    if (l.kind == Val::Kind::kNull || r.kind == Val::Kind::kNull) return Bool(false);
    int cmp = 0;
    if (l.kind == Val::Kind::kNumber || r.kind == Val::Kind::kNumber) {
      Dec a, b;
      if (!Number(l, *e.args[0], &a) || !Number(r, *e.args[1], &b)) return Bool(false);
      const int scale = std::max(a.scale, b.scale);
      if (!Rescale(&a, scale) || !Rescale(&b, scale)) {
        Fail("filter", fmt::format("{} and {} cannot be compared exactly", l.text, r.text));
        return Bool(false);
      }
      cmp = a.mant < b.mant ? -1 : a.mant > b.mant ? 1 : 0;
    } else if (l.kind == Val::Kind::kBool || r.kind == Val::Kind::kBool) {
      auto truth = [](const Val& v) { return v.kind == Val::Kind::kBool ? v.b : (v.text == "t" || v.text == "true" || v.text == "1"); };
      cmp = static_cast<int>(truth(l)) - static_cast<int>(truth(r));
    } else {
      cmp = l.text.compare(r.text);
      cmp = cmp < 0 ? -1 : cmp > 0 ? 1 : 0;
    }
    switch (e.op) {
      case Expr::Op::kEq: return Bool(cmp == 0);
      case Expr::Op::kNe: return Bool(cmp != 0);
      case Expr::Op::kLt: return Bool(cmp < 0);
      case Expr::Op::kLe: return Bool(cmp <= 0);
      case Expr::Op::kGt: return Bool(cmp > 0);
      default: return Bool(cmp >= 0);
    }
  }

  const TableSchema& t_;
  const std::vector<Datum>& row_;
};

// Binds the column references of `e` to the source's writable layout and
// says what type the expression yields (for an added column's DDL).
Status BindExpr(Expr& e, const TableSchema& t, ColumnType* type) {
  using Op = Expr::Op;
  std::vector<ColumnType> arg_types(e.args.size());
  for (size_t i = 0; i < e.args.size(); ++i) RETURN_IF_ERROR(BindExpr(*e.args[i], t, &arg_types[i]));
  // A text column may hold numbers (qty_text): it is read as one per row, and
  // a value that is not a number stops the run naming it.
  auto is_number = [&](size_t i) {
    return e.args[i]->op == Op::kNumber ||
           (e.args[i]->op == Op::kColumn &&
            (IsNumberKind(arg_types[i].kind) || arg_types[i].kind == TypeKind::kText)) ||
           e.args[i]->op == Op::kAdd || e.args[i]->op == Op::kSub || e.args[i]->op == Op::kMul ||
           e.args[i]->op == Op::kNeg || e.args[i]->op == Op::kNull;
  };
  switch (e.op) {
    case Op::kColumn: {
      int found = -1;
      for (size_t i = 0; i < t.writable.size(); ++i)
        if (t.columns[t.writable[i]].name == e.text) found = static_cast<int>(i);
      if (found < 0) return InvalidArgument(fmt::format("'{}' is not a column of {}", e.text, t.id.ToString()));
      e.column = found;
      *type = t.columns[t.writable[found]].type;
      return Status::Ok();
    }
    case Op::kText: *type = TypeNamed(TypeKind::kText, "text"); return Status::Ok();
    case Op::kNumber:
      *type = e.text.find('.') == std::string::npos ? TypeNamed(TypeKind::kInt, "bigint")
                                                    : TypeNamed(TypeKind::kDecimal, "numeric");
      return Status::Ok();
    case Op::kNull: *type = TypeNamed(TypeKind::kText, "text"); return Status::Ok();
    case Op::kBool: *type = TypeNamed(TypeKind::kBool, "boolean"); return Status::Ok();
    case Op::kCoalesce:
      *type = arg_types[0];
      for (size_t i = 0; i < e.args.size(); ++i)
        if (e.args[i]->op != Op::kNull) {
          *type = arg_types[i];
          break;
        }
      return Status::Ok();
    case Op::kAdd:
    case Op::kSub:
    case Op::kMul:
    case Op::kNeg: {
      bool all_int = true;
      for (size_t i = 0; i < e.args.size(); ++i) {
        if (!is_number(i))
          return InvalidArgument(fmt::format("arithmetic needs numbers; {} is not one",
                                             e.args[i]->op == Op::kColumn ? "column " + e.args[i]->text
                                                                          : "an argument"));
        all_int = all_int && (arg_types[i].kind == TypeKind::kInt || e.args[i]->op == Op::kNull);
        if (arg_types[i].kind == TypeKind::kFloat)
          return InvalidArgument(fmt::format("arithmetic on float column {} is not exact; cast it first",
                                             e.args[i]->text));
      }
      *type = all_int ? TypeNamed(TypeKind::kInt, "bigint") : TypeNamed(TypeKind::kDecimal, "numeric");
      return Status::Ok();
    }
    default:
      if (e.IsPredicate()) {
        for (size_t i = 0; i < e.args.size(); ++i) {
          const bool logic = e.op == Op::kAnd || e.op == Op::kOr || e.op == Op::kNot;
          if (logic && !e.args[i]->IsPredicate() && e.args[i]->op != Op::kBool &&
              !(e.args[i]->op == Op::kColumn && arg_types[i].kind == TypeKind::kBool))
            return InvalidArgument("and, or and not need conditions (a = b, a is null, ...)");
        }
        *type = TypeNamed(TypeKind::kBool, "boolean");
        return Status::Ok();
      }
      *type = TypeNamed(TypeKind::kText, "text");  // concat, lower, upper, trim, sha256
      return Status::Ok();
  }
}

Status SpecError(const TableTransformSpec& s, const std::string& part, const std::string& problem) {
  return InvalidArgument(fmt::format("{}{}: {}", s.where(), part.empty() ? "" : "." + part, problem));
}

TableId TargetId(const TableTransformSpec& s, const TableId& source) {
  if (s.rename.empty()) return source;
  const size_t dot = s.rename.find('.');
  if (dot == std::string::npos) return {source.schema, s.rename};
  return {s.rename.substr(0, dot), s.rename.substr(dot + 1)};
}

}  // namespace

Status CheckTransformSyntax(const TableTransformSpec& s) {
  if (s.table.empty()) return InvalidArgument("transforms: an entry names no table");
  if (!s.include.empty() && !s.exclude.empty())
    return SpecError(s, "include", "include and exclude go apart: list the columns kept, or the columns dropped");
  if (s.rename.size() > 0 && (s.rename.front() == '.' || s.rename.back() == '.' ||
                              std::count(s.rename.begin(), s.rename.end(), '.') > 1))
    return SpecError(s, "rename", fmt::format("'{}' is not 'table' or 'schema.table'", s.rename));
  for (const auto& c : s.columns) {
    if (!c.cast.empty() && !Casts().count(c.cast))
      return SpecError(s, "columns." + c.column + ".cast", fmt::format("'{}' is not a cast ({})", c.cast, CastNames()));
    int minutes = 0;
    if (c.cast == "timestamp_to_timestamptz" && !ParseZone(c.zone, &minutes))
      return SpecError(s, "columns." + c.column + ".zone",
                       fmt::format("'{}' is not a zone: UTC, +HH or +HH:MM (timestamp_to_timestamptz needs one)",
                                   c.zone));
    if (c.cast != "timestamp_to_timestamptz" && !c.zone.empty())
      return SpecError(s, "columns." + c.column + ".zone", "only timestamp_to_timestamptz takes a zone");
    if (c.rename.empty() && c.cast.empty())
      return SpecError(s, "columns." + c.column, "says neither rename nor cast");
  }
  for (const auto& a : s.add) {
    auto e = ParseExpr(a.expr);
    if (!e.ok()) return SpecError(s, "add." + a.name, fmt::format("'{}': {}", a.expr, e.status().message()));
    if ((*e)->IsPredicate())
      return SpecError(s, "add." + a.name, fmt::format("'{}' is a condition, not a value", a.expr));
  }
  if (!s.filter.empty()) {
    auto e = ParseExpr(s.filter);
    if (!e.ok()) return SpecError(s, "filter", fmt::format("'{}': {}", s.filter, e.status().message()));
    if (!(*e)->IsPredicate() && (*e)->op != Expr::Op::kColumn && (*e)->op != Expr::Op::kBool)
      return SpecError(s, "filter", fmt::format("'{}' is a value, not a condition", s.filter));
  }
  return Status::Ok();
}

const TableTransformSpec* TransformFor(const std::vector<TableTransformSpec>& specs, const TableId& id) {
  const TableTransformSpec* bare = nullptr;
  for (const auto& s : specs) {
    if (s.table == id.ToString()) return &s;
    if (s.table == id.name && s.table.find('.') == std::string::npos) bare = &s;
  }
  return bare;
}

TableTransform::~TableTransform() = default;

Result<std::shared_ptr<const TableTransform>> TableTransform::Bind(const TableTransformSpec& s,
                                                                   std::shared_ptr<const TableSchema> source) {
  RETURN_IF_ERROR(CheckTransformSyntax(s));
  const TableSchema& t = *source;
  if (t.key_writable.empty() || (t.key_kind != KeyKind::kPrimaryKey && t.key_kind != KeyKind::kUniqueIndex))
    return SpecError(s, "", fmt::format("table {} has no primary key or unique replica identity: a transformed "
                                        "table's rows are matched by key on the target",
                                        t.id.ToString()));
  auto writable_index = [&t](const std::string& name) {
    for (size_t i = 0; i < t.writable.size(); ++i)
      if (t.columns[t.writable[i]].name == name) return static_cast<int>(i);
    return -1;
  };
  std::set<int> key;
  for (int k : t.key_writable) key.insert(k);
  std::set<int> dropped;
  auto check_named = [&](const std::string& part, const std::string& name) -> Status {
    if (writable_index(name) >= 0) return Status::Ok();
    if (t.ColumnIndex(name) >= 0)
      return SpecError(s, part, fmt::format("column '{}' of {} is generated on the source; it is not copied", name,
                                            t.id.ToString()));
    return SpecError(s, part, fmt::format("'{}' is not a column of {}", name, t.id.ToString()));
  };
  for (const auto& name : s.exclude) {
    RETURN_IF_ERROR(check_named("exclude", name));
    dropped.insert(writable_index(name));
  }
  if (!s.include.empty()) {
    std::set<int> kept;
    for (const auto& name : s.include) {
      RETURN_IF_ERROR(check_named("include", name));
      kept.insert(writable_index(name));
    }
    for (int i = 0; i < static_cast<int>(t.writable.size()); ++i)
      if (!kept.count(i)) dropped.insert(i);
  }
  for (int k : key)
    if (dropped.count(k))
      return SpecError(s, s.include.empty() ? "exclude" : "include",
                       fmt::format("key column '{}' of {} cannot be left out: rows are matched and ordered by their "
                                   "key {}",
                                   t.columns[t.writable[k]].name, t.id.ToString(), t.KeyDescription()));
  std::map<int, const ColumnTransformSpec*> per_column;
  for (const auto& c : s.columns) {
    const std::string part = "columns." + c.column;
    RETURN_IF_ERROR(check_named(part, c.column));
    const int i = writable_index(c.column);
    if (dropped.count(i)) return SpecError(s, part, fmt::format("column '{}' is left out by include/exclude", c.column));
    if (per_column.count(i)) return SpecError(s, part, "is named twice");
    per_column[i] = &c;
    const ColumnType& type = t.columns[t.writable[i]].type;
    if (!c.cast.empty()) {
      const CastInfo& info = Casts().at(c.cast);
      if (!info.from.empty() && std::find(info.from.begin(), info.from.end(), type.kind) == info.from.end())
        return SpecError(s, part + ".cast",
                         fmt::format("{} does not apply to column '{}' of type {}", c.cast, c.column, type.native));
      if (c.cast == "timestamp_to_timestamptz" && type.with_zone)
        return SpecError(s, part + ".cast", fmt::format("column '{}' is a timestamp with time zone already", c.column));
      if (key.count(i) && !info.keeps_key)
        return SpecError(s, part + ".cast",
                         fmt::format("{} on key column '{}' could make two source keys one target key (or change "
                                     "its order); only int_to_text and timestamp_to_timestamptz may cast a key",
                                     c.cast, c.column));
    }
  }

  auto out = std::shared_ptr<TableTransform>(new TableTransform());
  out->source_ = source;
  auto target = std::make_shared<TableSchema>();
  target->id = TargetId(s, t.id);
  target->source_oid = t.source_oid;
  target->key_kind = t.key_kind;
  target->key_collation_folds = t.key_collation_folds;
  target->version = t.version;
  std::set<std::string> names;
  std::map<int, int> key_at;  // source writable index -> target column
  for (int i = 0; i < static_cast<int>(t.writable.size()); ++i) {
    if (dropped.count(i)) continue;
    const ColumnSchema& from = t.columns[t.writable[i]];
    ColumnSchema col = from;
    col.generated = false;
    OutColumn oc;
    oc.from = i;
    oc.describe = from.name;
    if (auto it = per_column.find(i); it != per_column.end()) {
      if (!it->second->rename.empty()) {
        col.name = it->second->rename;
        oc.describe += " renamed " + col.name;
      }
      if (!it->second->cast.empty()) {
        oc.cast = it->second->cast;
        col.type = CastType(oc.cast, from.type);
        ParseZone(it->second->zone, &oc.zone_minutes);
        oc.describe += fmt::format(" cast {}{} ({} -> {})", oc.cast,
                                   it->second->zone.empty() ? "" : " zone " + it->second->zone, from.type.native,
                                   col.type.native);
      }
    }
    if (!names.insert(col.name).second)
      return SpecError(s, "columns." + from.name, fmt::format("the target would have two columns named '{}'", col.name));
    if (key.count(i)) key_at[i] = static_cast<int>(target->columns.size());
    target->columns.push_back(std::move(col));
    out->out_.push_back(std::move(oc));
  }
  for (const auto& a : s.add) {
    const std::string part = "add." + a.name;
    if (!names.insert(a.name).second)
      return SpecError(s, part, fmt::format("the target has a column named '{}' already", a.name));
    ASSIGN_OR_RETURN(ExprPtr e, ParseExpr(a.expr));
    ColumnSchema col;
    col.name = a.name;
    Status bound = BindExpr(*e, t, &col.type);
    if (!bound.ok()) return SpecError(s, part, fmt::format("'{}': {}", a.expr, bound.message()));
    if (col.type.kind == TypeKind::kBool && col.type.native.empty()) col.type = TypeNamed(TypeKind::kBool, "boolean");
    OutColumn oc;
    oc.expr = e;
    oc.describe = fmt::format("{} added = {} ({})", a.name, a.expr, col.type.native);
    target->columns.push_back(std::move(col));
    out->out_.push_back(std::move(oc));
  }
  for (int k : t.key) {
    // t.key indexes columns; find its writable position.
    int w = -1;
    for (size_t i = 0; i < t.writable.size(); ++i)
      if (t.writable[i] == k) w = static_cast<int>(i);
    target->key.push_back(key_at.at(w));
  }
  target->Finalize();
  if (!s.filter.empty()) {
    ASSIGN_OR_RETURN(ExprPtr f, ParseExpr(s.filter));
    ColumnType type;
    Status bound = BindExpr(*f, t, &type);
    if (!bound.ok()) return SpecError(s, "filter", fmt::format("'{}': {}", s.filter, bound.message()));
    if (type.kind != TypeKind::kBool)
      return SpecError(s, "filter", fmt::format("'{}' is a value, not a condition", s.filter));
    out->filter_ = f;
    out->filter_text_ = s.filter;
  }
  out->target_ = std::move(target);
  out->where_ = s.where();
  return std::shared_ptr<const TableTransform>(std::move(out));
}

Status TableTransform::RowError(const std::vector<Datum>& values, const std::string& column,
                                const std::string& problem) const {
  std::string key;
  for (size_t i = 0; i < source_->key_writable.size(); ++i) {
    const Datum& d = values[source_->key_writable[i]];
    key += (i ? ", " : "") + (d.is_null() ? std::string("NULL") : d.text);
  }
  return OperatorError(fmt::format("transform of table {} key {}=({}) column {}: {}", source_->id.ToString(),
                                   source_->KeyDescription(), key, column, problem));
}

Result<std::optional<std::vector<Datum>>> TableTransform::Row(const std::vector<Datum>& values) const {
  Evaluator ev(*source_, values);
  if (filter_) {
    Val pass = ev.Eval(*filter_);
    if (ev.error) return RowError(values, ev.error->column == "expression" ? "filter" : ev.error->column,
                                  fmt::format("{} (filter '{}')", ev.error->problem, filter_text_));
    if (!(pass.kind == Val::Kind::kBool && pass.b)) return std::optional<std::vector<Datum>>();
  }
  std::vector<Datum> out;
  out.reserve(out_.size());
  for (size_t i = 0; i < out_.size(); ++i) {
    const OutColumn& oc = out_[i];
    const std::string& name = target_->columns[i].name;
    if (oc.expr) {
      Val v = ev.Eval(*oc.expr);
      if (ev.error) return RowError(values, ev.error->column == "expression" ? name : ev.error->column,
                                    ev.error->problem + " (computing " + name + ")");
      out.push_back(v.kind == Val::Kind::kNull ? Datum::Null() : Datum::Text(std::move(v.text)));
      continue;
    }
    const Datum& d = values[oc.from];
    if (oc.cast.empty() || d.kind != Datum::Kind::kText) {
      out.push_back(d);
      continue;
    }
    const std::string& src_name = source_->columns[source_->writable[oc.from]].name;
    if (oc.cast == "text_to_int") {
      Dec dec;
      if (!ParseDec(d.text, &dec) || dec.scale != 0 || d.text.find_first_of(".eE") != std::string::npos ||
          dec.mant > INT64_MAX || dec.mant < INT64_MIN)
        return RowError(values, src_name, fmt::format("{} is not an integer (cast text_to_int)", Quoted(d.text)));
      out.push_back(Datum::Text(DecText(dec)));
    } else if (oc.cast == "text_to_numeric") {
      Dec dec;
      if (!ParseDec(d.text, &dec) || d.text.find_first_of("eE") != std::string::npos)
        return RowError(values, src_name, fmt::format("{} is not a number (cast text_to_numeric)", Quoted(d.text)));
      out.push_back(Datum::Text(DecText(dec)));
    } else if (oc.cast == "timestamp_to_timestamptz") {
      // "YYYY-MM-DD HH:MM:SS[.ffffff]": the zone is appended; the target reads it.
      const std::string& v = d.text;
      bool ok = v.size() >= 19 && v[4] == '-' && v[7] == '-' && v[10] == ' ' && v[13] == ':' && v[16] == ':';
      for (size_t k = 0; ok && k < v.size(); ++k)
        if (k != 4 && k != 7 && k != 10 && k != 13 && k != 16 && !(k == 19 && v[k] == '.'))
          ok = std::isdigit(static_cast<unsigned char>(v[k]));
      if (v == "infinity" || v == "-infinity") {
        out.push_back(d);
        continue;
      }
      if (!ok)
        return RowError(values, src_name,
                        fmt::format("{} is not a timestamp YYYY-MM-DD HH:MM:SS[.ffffff] (cast "
                                    "timestamp_to_timestamptz)",
                                    Quoted(v)));
      const int m = std::abs(oc.zone_minutes);
      out.push_back(Datum::Text(fmt::format("{}{}{:02}:{:02}", v, oc.zone_minutes < 0 ? '-' : '+', m / 60, m % 60)));
    } else if (oc.cast == "timestamptz_to_timestamp") {
      if (d.text == "infinity" || d.text == "-infinity") {
        out.push_back(d);
        continue;
      }
      std::optional<std::string> local = LocalTimeIn(d.text, oc.zone_minutes);
      if (!local)
        return RowError(values, src_name,
                        fmt::format("{} is not a timestamp with a zone offset, years 1 to 9999 (cast "
                                    "timestamptz_to_timestamp, the inverse of timestamp_to_timestamptz)",
                                    Quoted(d.text)));
      out.push_back(Datum::Text(std::move(*local)));
    } else if (oc.cast == "trim") {
      out.push_back(Datum::Text(Evaluator::TextFunction(Expr::Op::kTrim, d.text)));
    } else if (oc.cast == "lower") {
      out.push_back(Datum::Text(Evaluator::TextFunction(Expr::Op::kLower, d.text)));
    } else if (oc.cast == "upper") {
      out.push_back(Datum::Text(Evaluator::TextFunction(Expr::Op::kUpper, d.text)));
    } else {
      out.push_back(d);  // *_to_text: the text form is the value
    }
  }
  return std::optional<std::vector<Datum>>(std::move(out));
}

std::vector<Datum> TableTransform::KeyImage(const std::vector<Datum>& source_image) const {
  std::vector<Datum> out(out_.size());
  for (size_t i = 0; i < out_.size(); ++i)
    if (out_[i].from >= 0 && std::find(source_->key_writable.begin(), source_->key_writable.end(), out_[i].from) !=
                                 source_->key_writable.end()) {
      const Datum& d = source_image[out_[i].from];
      // Key casts are one-to-one on the text: int_to_text keeps it, a zone is appended.
      if (out_[i].cast == "timestamp_to_timestamptz" && d.kind == Datum::Kind::kText &&
          d.text != "infinity" && d.text != "-infinity") {
        const int m = std::abs(out_[i].zone_minutes);
        out[i] = Datum::Text(fmt::format("{}{}{:02}:{:02}", d.text, out_[i].zone_minutes < 0 ? '-' : '+', m / 60,
                                         m % 60));
      } else if (out_[i].cast == "timestamptz_to_timestamp" && d.kind == Datum::Kind::kText &&
                 d.text != "infinity" && d.text != "-infinity") {
        // A key the reverse cannot read stays as it is: the sink refuses it naming it.
        out[i] = Datum::Text(LocalTimeIn(d.text, out_[i].zone_minutes).value_or(d.text));
      } else {
        out[i] = d;
      }
    }
  return out;
}

Result<std::optional<Change>> TableTransform::Apply(const Change& change) const {
  if (change.table != source_) {
    // The stream announced the table again (each relation message): the
    // transform is bound to the columns it had when the migration started.
    bool same = change.table->writable.size() == source_->writable.size();
    for (size_t i = 0; same && i < source_->writable.size(); ++i) {
      const ColumnSchema& a = change.table->columns[change.table->writable[i]];
      const ColumnSchema& b = source_->columns[source_->writable[i]];
      same = a.name == b.name && a.type.kind == b.type.kind;
    }
    if (!same)
      return OperatorError(fmt::format("table {} changed its columns on the source while it is transformed "
                                       "(transforms.{}); the transform no longer fits its rows: restart the migration "
                                       "with a spec that matches",
                                       source_->id.ToString(), source_->id.ToString()));
  }
  Change out;
  out.kind = change.kind;
  out.table = target_;
  out.pos = change.pos;
  out.commit_time_us = change.commit_time_us;
  out.check = change.check;
  out.log_offset = change.log_offset;  // an apply worker's sink records it with the checkpoint
  if (change.kind == ChangeKind::kDelete) {
    out.old = KeyImage(change.old);
    if (filter_) out.check = ConflictCheck::kNone;  // the row may never have passed the filter
    return std::optional<Change>(std::move(out));
  }
  ASSIGN_OR_RETURN(auto row, Row(change.values));
  if (!change.old.empty()) out.old = KeyImage(change.old);
  if (!filter_) {
    out.values = std::move(*row);
    return std::optional<Change>(std::move(out));
  }
  out.check = ConflictCheck::kNone;
  if (!row) {
    // A row the filter refuses goes, whatever the change's kind: an update
    // that takes it out of the filter may reach the sink as an insert (the
    // pipeline turns full-image updates into upserts), so inserts cannot be
    // told apart and are deleted by key too (a no-op for a row never there).
    out.kind = ChangeKind::kDelete;
    out.old = KeyImage(change.MovesKey() ? change.old : change.values);
    return std::optional<Change>(std::move(out));
  }
  // Passing rows are upserted: an update may bring a row into the filter,
  // so the whole row must be there.
  for (size_t i = 0; i < row->size(); ++i)
    if ((*row)[i].is_unchanged())
      return RowError(change.values, target_->columns[i].name,
                      "the source did not resend this unchanged (TOASTed) value, and a filtered table's updates "
                      "are written whole; give the source table REPLICA IDENTITY FULL");
  out.values = std::move(*row);
  if (change.MovesKey()) {
    // A key move reaching a sink whole (a barrier): the old key goes as well.
    out.kind = ChangeKind::kUpdate;
    return std::optional<Change>(std::move(out));
  }
  out.kind = ChangeKind::kInsert;
  out.old.clear();
  return std::optional<Change>(std::move(out));
}

std::vector<std::string> TableTransform::Describe() const {
  std::vector<std::string> lines;
  if (source_->id != target_->id) lines.push_back(fmt::format("table renamed {}", target_->id.ToString()));
  std::set<int> kept;
  for (const auto& oc : out_)
    if (oc.from >= 0) kept.insert(oc.from);
  for (int i = 0; i < static_cast<int>(source_->writable.size()); ++i)
    if (!kept.count(i)) lines.push_back(fmt::format("{} left out", source_->columns[source_->writable[i]].name));
  for (const auto& oc : out_)
    if (oc.expr || !oc.cast.empty() || (oc.from >= 0 && oc.describe != source_->columns[source_->writable[oc.from]].name))
      lines.push_back(oc.describe);
  if (filter_) lines.push_back(fmt::format("rows where {}", filter_text_));
  return lines;
}

Result<std::shared_ptr<const TableTransform>> TableTransform::Inverse(std::shared_ptr<const TableSchema> as_read,
                                                                      const std::set<std::string>* defaulted) const {
  auto refuse = [this](const std::string& part, const std::string& problem) {
    return OperatorError(fmt::format("{}{}: {}", where_, part.empty() ? "" : "." + part, problem));
  };
  if (filter_)
    return refuse("filter", fmt::format("'{}' cannot be reversed: a row written on the target that the filter would "
                                        "have left out has no place on the source; keep writes on the source, or "
                                        "migrate without the filter",
                                        filter_text_));
  const TableSchema& src = *source_;
  std::vector<int> holder(src.writable.size(), -1);  // source writable index -> target column
  for (size_t i = 0; i < out_.size(); ++i) {
    const OutColumn& oc = out_[i];
    if (oc.from < 0) continue;
    const std::string& name = src.columns[src.writable[oc.from]].name;
    if (!oc.cast.empty() && InverseCast(oc.cast).empty())
      return refuse("columns." + name + ".cast",
                    fmt::format("{} cannot be reversed: {}; keep writes on the source, or migrate the column "
                                "without the cast",
                                oc.cast, WhyNotInvertible(oc.cast)));
    holder[oc.from] = static_cast<int>(i);
  }
  for (size_t w = 0; w < src.writable.size(); ++w) {
    const ColumnSchema& c = src.columns[src.writable[w]];
    if (defaulted && holder[w] < 0 && c.not_null && !c.generated && !defaulted->count(c.name))
      return refuse("exclude",
                    fmt::format("column '{}' is left out on the target and is NOT NULL without a default on the "
                                "source, so a row inserted on the target cannot be written back; give it a default "
                                "on the source (ALTER TABLE ... ALTER COLUMN ... SET DEFAULT), or keep writes on the "
                                "source",
                                c.name));
  }
  // The target table the reverse stream reads: its writable columns must be
  // the ones this transform made, by name and in order.
  if (!as_read) as_read = target_;
  std::vector<std::string> want, have;
  for (const auto& c : target_->columns) want.push_back(c.name);
  for (int i : as_read->writable) have.push_back(as_read->columns[i].name);
  if (want != have)
    return OperatorError(fmt::format("reverse replication: table {} has the columns ({}) on the target, not the ({}) "
                                     "{} made; make them match, or keep writes on the source",
                                     as_read->id.ToString(), fmt::join(have, ", "), fmt::join(want, ", "), where_));
  if (as_read->key_writable != target_->key_writable)
    return OperatorError(fmt::format("reverse replication: table {} has the key {} on the target, not the {} {} "
                                     "made; make them match, or keep writes on the source",
                                     as_read->id.ToString(), as_read->KeyDescription(), target_->KeyDescription(),
                                     where_));

  // The source table, its carried columns only (generated ones are the server's).
  auto back = std::make_shared<TableSchema>(src);
  back->columns.clear();
  back->key.clear();
  std::map<int, int> column_at;  // src column index -> back column index
  auto inv = std::shared_ptr<TableTransform>(new TableTransform());
  for (size_t w = 0; w < src.writable.size(); ++w) {
    if (holder[w] < 0) continue;
    const OutColumn& fwd = out_[holder[w]];
    column_at[src.writable[w]] = static_cast<int>(back->columns.size());
    back->columns.push_back(src.columns[src.writable[w]]);
    OutColumn oc;
    oc.from = holder[w];  // target column i is writable position i (checked above)
    oc.cast = fwd.cast.empty() ? "" : InverseCast(fwd.cast);
    oc.zone_minutes = fwd.zone_minutes;
    oc.describe = fmt::format("{} from {}{}", back->columns.back().name, target_->columns[holder[w]].name,
                              oc.cast.empty() ? "" : " cast " + oc.cast);
    inv->out_.push_back(std::move(oc));
  }
  for (int k : src.key) back->key.push_back(column_at.at(k));
  back->images_carry_generated = false;
  back->Finalize();
  inv->source_ = std::move(as_read);
  inv->target_ = std::move(back);
  inv->where_ = where_ + " (reversed)";
  return std::shared_ptr<const TableTransform>(std::move(inv));
}

Result<std::vector<std::shared_ptr<const TableTransform>>> BindTransforms(
    const std::vector<TableTransformSpec>& specs, const std::vector<std::shared_ptr<const TableSchema>>& tables) {
  std::vector<std::shared_ptr<const TableTransform>> out;
  std::set<const TableTransformSpec*> used;
  std::map<TableId, TableId> targets;  // target id -> source id
  for (const auto& t : tables) {
    const TableTransformSpec* s = TransformFor(specs, t->id);
    if (!s) {
      targets.emplace(t->id, t->id);
      continue;
    }
    used.insert(s);
    ASSIGN_OR_RETURN(auto bound, TableTransform::Bind(*s, t));
    out.push_back(bound);
  }
  for (const auto& tr : out) {
    auto [it, fresh] = targets.emplace(tr->target()->id, tr->source().id);
    if (!fresh)
      return InvalidArgument(fmt::format("transforms.{}: the target table {} is also where {} goes",
                                         tr->source().id.ToString(), tr->target()->id.ToString(),
                                         it->second.ToString()));
  }
  for (const auto& s : specs)
    if (!used.count(&s)) return InvalidArgument(fmt::format("{}: names no migrated table", s.where()));
  return out;
}

}  // namespace midflight
