#include "engines/cross/canonical.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "engines/mysql/my_conn.h"
#include "engines/postgres/pg_conn.h"

namespace midflight::cross {
namespace {

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// "-12.5", "0", "18446744073709551615": what CanonDecimal gives.
bool IsCanonNumber(std::string_view s) {
  if (!s.empty() && s[0] == '-') s.remove_prefix(1);
  size_t dot = s.find('.');
  if (dot == std::string_view::npos) return AllDigits(s);
  return AllDigits(s.substr(0, dot)) && AllDigits(s.substr(dot + 1));
}

Result<int64_t> ParseMicros(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return InvalidArgument(fmt::format("'{}' is not microseconds", s));
  return v;
}

// Days since 1970-01-01 of a civil date and back (H. Hinnant's algorithms).
void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// A JSON document rebuilt from nlohmann's SAX events, numbers kept as their
// text (a double would round a long decimal that jsonb keeps exact).
struct JsonNode {
  enum class Kind { kScalar, kObject, kArray } kind = Kind::kScalar;
  std::string scalar;                     // canonical text of a scalar
  std::map<std::string, JsonNode> object;  // bytes order; a repeated key: the last value
  std::vector<JsonNode> array;
};

class CanonSax {
 public:
  using number_integer_t = nlohmann::json::number_integer_t;
  using number_unsigned_t = nlohmann::json::number_unsigned_t;
  using number_float_t = nlohmann::json::number_float_t;
  using string_t = nlohmann::json::string_t;
  using binary_t = nlohmann::json::binary_t;

  bool null() { return Scalar("null"); }
  bool boolean(bool b) { return Scalar(b ? "true" : "false"); }
  bool number_integer(number_integer_t v) { return Scalar(std::to_string(v)); }
  bool number_unsigned(number_unsigned_t v) { return Scalar(std::to_string(v)); }
  bool number_float(number_float_t, const string_t& raw) {
    auto d = CanonDecimal(raw);
    if (!d.ok()) {
      error_ = d.status().message();
      return false;
    }
    return Scalar(*d);
  }
  bool string(string_t& s) { return Scalar(nlohmann::json(s).dump()); }
  bool binary(binary_t&) { return false; }
  bool start_object(std::size_t) { return Open(JsonNode::Kind::kObject); }
  bool key(string_t& k) {
    keys_.back() = k;
    return true;
  }
  bool end_object() { return Close(); }
  bool start_array(std::size_t) { return Open(JsonNode::Kind::kArray); }
  bool end_array() { return Close(); }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& e) {
    error_ = fmt::format("not JSON at byte {}: {}", pos, e.what());
    return false;
  }

  JsonNode root;
  std::string error_;

 private:
  bool Place(JsonNode n) {
    if (stack_.empty()) {
      root = std::move(n);
      return true;
    }
    JsonNode& parent = *stack_.back();
    if (parent.kind == JsonNode::Kind::kObject) parent.object[keys_.back()] = std::move(n);
    else parent.array.push_back(std::move(n));
    return true;
  }
  bool Scalar(std::string text) {
    JsonNode n;
    n.scalar = std::move(text);
    return Place(std::move(n));
  }
  bool Open(JsonNode::Kind kind) {
    // Built apart and placed when closed, so a parent's pointer stays valid.
    open_.push_back(std::make_unique<JsonNode>());
    open_.back()->kind = kind;
    stack_.push_back(open_.back().get());
    keys_.emplace_back();
    return true;
  }
  bool Close() {
    std::unique_ptr<JsonNode> n = std::move(open_.back());
    open_.pop_back();
    stack_.pop_back();
    keys_.pop_back();
    return Place(std::move(*n));
  }
  std::vector<std::unique_ptr<JsonNode>> open_;
  std::vector<JsonNode*> stack_;
  std::vector<std::string> keys_;
};

void Serialise(const JsonNode& n, std::string* out) {
  switch (n.kind) {
    case JsonNode::Kind::kScalar: *out += n.scalar; return;
    case JsonNode::Kind::kArray: {
      *out += '[';
      for (size_t i = 0; i < n.array.size(); ++i) {
        if (i) *out += ',';
        Serialise(n.array[i], out);
      }
      *out += ']';
      return;
    }
    case JsonNode::Kind::kObject: {
      *out += '{';
      bool first = true;
      for (const auto& [k, v] : n.object) {
        if (!first) *out += ',';
        first = false;
        *out += nlohmann::json(k).dump();
        *out += ':';
        Serialise(v, out);
      }
      *out += '}';
      return;
    }
  }
}

// "[-]H:MM:SS[.ffffff]" (PostgreSQL and MySQL time/interval text) -> microseconds.
Result<int64_t> TimeTextToMicros(std::string_view text) {
  std::string_view s = text;
  const bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  const size_t c1 = s.find(':');
  const size_t c2 = c1 == std::string_view::npos ? c1 : s.find(':', c1 + 1);
  if (c2 == std::string_view::npos) return InvalidArgument(fmt::format("'{}' is not a time", text));
  std::string_view h = s.substr(0, c1), m = s.substr(c1 + 1, c2 - c1 - 1), sec = s.substr(c2 + 1), frac;
  if (size_t dot = sec.find('.'); dot != std::string_view::npos) {
    frac = sec.substr(dot + 1);
    sec = sec.substr(0, dot);
  }
  if (!AllDigits(h) || !AllDigits(m) || !AllDigits(sec) || frac.size() > 6 || (!frac.empty() && !AllDigits(frac)))
    return InvalidArgument(fmt::format("'{}' is not a time", text));
  int64_t hv = 0, mv = 0, sv = 0, fv = 0;
  std::from_chars(h.data(), h.data() + h.size(), hv);
  std::from_chars(m.data(), m.data() + m.size(), mv);
  std::from_chars(sec.data(), sec.data() + sec.size(), sv);
  std::string f(frac);
  f.resize(6, '0');
  std::from_chars(f.data(), f.data() + f.size(), fv);
  const int64_t v = ((hv * 60 + mv) * 60 + sv) * 1000000 + fv;
  return neg ? -v : v;
}

std::string MyQ(const CanonColumn& c) { return mysql::QuoteIdent(c.my.name); }
std::string PgQ(const CanonColumn& c) { return pg::QuoteIdent(c.pg.name); }
bool PgStartsWith(const ColumnSchema& c, std::string_view prefix) { return c.type.native.rfind(prefix, 0) == 0; }

std::string MyZeroDateGuard(const CanonColumn& c, const std::string& expr) {
  if (!c.my_zero_dates_null) return expr;
  const std::string q = MyQ(c);
  return fmt::format("IF(YEAR({0}) = 0 OR MONTH({0}) = 0 OR DAYOFMONTH({0}) = 0, NULL, {1})", q, expr);
}

// PostgreSQL -> MySQL under out_of_range: null: what the casting stored as
// NULL reads as NULL here too (pg_to_my_types.cc ToMyText's rules in SQL).
std::string PgOutOfRangeGuard(const CanonColumn& c, const std::string& expr) {
  if (!c.pg_out_of_range_null) return expr;
  const std::string q = PgQ(c);
  switch (c.kind) {
    case Canon::kDate:
    case Canon::kTimestamp:
      // The session's TimeZone is UTC: a timestamptz compares as its UTC instant.
      return fmt::format("CASE WHEN isfinite({0}) AND {0} >= '1000-01-01' AND {0} < '10000-01-01' THEN {1} END", q,
                         expr);
    case Canon::kNumber:
      if (c.precision <= 0) return expr;
      return fmt::format("CASE WHEN {0} = 'NaN' OR {0} IN ('Infinity', '-Infinity') OR scale(trim_scale({0})) > {1} OR "
                         "abs({0}) >= power(10::numeric, {2}) THEN NULL ELSE {3} END",
                         q, c.scale, c.precision - c.scale, expr);
    case Canon::kFloat:
      return fmt::format("CASE WHEN {0} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE {1} END", q, expr);
    default: return expr;
  }
}

std::string PgCanonExprUnguarded(const CanonColumn& c);

}  // namespace

std::string_view CanonName(Canon kind) {
  switch (kind) {
    case Canon::kNumber: return "number";
    case Canon::kFloat: return "float";
    case Canon::kText: return "text";
    case Canon::kBytes: return "bytes";
    case Canon::kDate: return "date";
    case Canon::kTimestamp: return "timestamp";
    case Canon::kTime: return "time";
    case Canon::kBits: return "bits";
    case Canon::kJson: return "json";
  }
  return "?";
}

Result<std::string> CanonDecimal(std::string_view text) {
  std::string_view s = text;
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (s == "NaN" || s == "Infinity" || s == "-Infinity") return std::string(s);
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  std::string digits;
  int64_t point = 0;
  size_t i = 0;
  bool any = false;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') digits += s[i++], ++point, any = true;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') digits += s[i++], any = true;
  }
  if (!any) return InvalidArgument(fmt::format("'{}' is not a number", text));
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    int64_t exp = 0;
    std::string_view e = s.substr(i);
    if (!e.empty() && e[0] == '+') e.remove_prefix(1);
    auto [p, ec] = std::from_chars(e.data(), e.data() + e.size(), exp);
    if (ec != std::errc() || p != e.data() + e.size() || exp > 100000 || exp < -100000)
      return InvalidArgument(fmt::format("'{}' is not a number", text));
    point += exp;
    i = s.size();
  }
  if (i != s.size()) return InvalidArgument(fmt::format("'{}' is not a number", text));
  // value = 0.<digits> x 10^point: leading zeros move the point, trailing ones go.
  size_t lead = digits.find_first_not_of('0');
  if (lead == std::string::npos) return std::string("0");
  digits.erase(0, lead);
  point -= static_cast<int64_t>(lead);
  while (digits.back() == '0') digits.pop_back();
  std::string out = neg ? "-" : "";
  const int64_t n = static_cast<int64_t>(digits.size());
  if (point <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-point), '0');
    out += digits;
  } else if (point >= n) {
    out += digits;
    out.append(static_cast<size_t>(point - n), '0');
  } else {
    out += digits.substr(0, static_cast<size_t>(point));
    out += '.';
    out += digits.substr(static_cast<size_t>(point));
  }
  return out;
}

Result<std::string> CanonFloat(std::string_view text) {
  std::string_view s = text;
  if (s == "NaN" || s == "nan" || s == "-nan") return std::string("NaN");
  if (s == "Infinity" || s == "inf" || s == "infinity") return std::string("Infinity");
  if (s == "-Infinity" || s == "-inf" || s == "-infinity") return std::string("-Infinity");
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  double d = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty())
    return InvalidArgument(fmt::format("'{}' is not a floating-point number", text));
  if (std::isnan(d)) return std::string("NaN");
  if (std::isinf(d)) return std::string(d > 0 ? "Infinity" : "-Infinity");
  return fmt::format("{}", d);
}

Result<std::string> CanonJson(std::string_view text) {
  CanonSax sax;
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(text, &sax);
  } catch (const std::exception& e) {
    return InvalidArgument(fmt::format("JSON: {}", e.what()));
  }
  if (!ok) return InvalidArgument(fmt::format("JSON: {}", sax.error_.empty() ? "not a document" : sax.error_));
  std::string out;
  Serialise(sax.root, &out);
  return out;
}

std::string DaysToDateText(int32_t days) {
  int64_t y = 0;
  unsigned m = 0, d = 0;
  CivilFromDays(days, &y, &m, &d);
  return fmt::format("{:04}-{:02}-{:02}", y, m, d);
}

std::string MicrosToTimestampText(int64_t micros) {
  const int64_t day = FloorDiv(micros, 86400000000LL);
  int64_t rest = micros - day * 86400000000LL;
  const int64_t us = rest % 1000000;
  rest /= 1000000;
  return fmt::format("{} {:02}:{:02}:{:02}.{:06}", DaysToDateText(static_cast<int32_t>(day)), rest / 3600,
                     rest / 60 % 60, rest % 60, us);
}

std::string MicrosToTimeText(int64_t micros) {
  const bool neg = micros < 0;
  const uint64_t a = neg ? 0 - static_cast<uint64_t>(micros) : static_cast<uint64_t>(micros);
  const uint64_t s = a / 1000000;
  return fmt::format("{}{:02}:{:02}:{:02}.{:06}", neg ? "-" : "", s / 3600, s / 60 % 60, s % 60, a % 1000000);
}

Result<std::optional<std::string>> CanonOfValue(const Value& value, Canon kind) {
  using R = std::optional<std::string>;
  const auto& v = value.v;
  if (std::holds_alternative<Null>(v)) return R();
  if (const bool* b = std::get_if<bool>(&v)) return R(*b ? "1" : "0");
  if (const int64_t* i = std::get_if<int64_t>(&v)) return R(std::to_string(*i));
  if (const uint64_t* u = std::get_if<uint64_t>(&v)) return R(std::to_string(*u));
  if (const Decimal* d = std::get_if<Decimal>(&v)) {
    ASSIGN_OR_RETURN(std::string s, CanonDecimal(d->digits));
    return R(std::move(s));
  }
  if (const double* d = std::get_if<double>(&v)) {
    ASSIGN_OR_RETURN(std::string s, CanonFloat(fmt::format("{}", *d)));
    return R(std::move(s));
  }
  if (const std::string* s = std::get_if<std::string>(&v)) return R(*s);
  if (const Bytes* b = std::get_if<Bytes>(&v))
    return R(Hex(std::string_view(reinterpret_cast<const char*>(b->data.data()), b->data.size())));
  if (const Json* j = std::get_if<Json>(&v)) {
    ASSIGN_OR_RETURN(std::string s, CanonJson(j->text));
    return R(std::move(s));
  }
  if (const Date* d = std::get_if<Date>(&v)) return R(DaysToDateText(d->days));
  if (const Timestamp* t = std::get_if<Timestamp>(&v)) return R(std::to_string(t->micros));
  if (const EnumLabel* e = std::get_if<EnumLabel>(&v)) return R(e->label);
  if (const OtherText* o = std::get_if<OtherText>(&v)) {
    switch (kind) {
      case Canon::kBits: return R(o->text);
      case Canon::kTime: {
        ASSIGN_OR_RETURN(int64_t us, TimeTextToMicros(o->text));
        return R(std::to_string(us));
      }
      case Canon::kNumber: {
        ASSIGN_OR_RETURN(std::string s, CanonDecimal(o->text));
        return R(std::move(s));
      }
      default: return R(o->text);
    }
  }
  return InvalidArgument(fmt::format("no canonical {} form for this value", CanonName(kind)));
}

Canon CanonOfCast(const ColumnCast& c) {
  switch (c.conv) {
    case Conv::kInt:
    case Conv::kBool:
    case Conv::kDecimal:
    case Conv::kYear: return Canon::kNumber;
    case Conv::kFloat: return Canon::kFloat;
    case Conv::kDate: return Canon::kDate;
    case Conv::kDateTime:
    case Conv::kTimestamp: return Canon::kTimestamp;
    case Conv::kTime:
    case Conv::kInterval: return Canon::kTime;
    case Conv::kBit: return Canon::kBits;
    case Conv::kEnum:
    case Conv::kSet:
    case Conv::kText: return Canon::kText;
    case Conv::kJson: return Canon::kJson;
    case Conv::kBytes:
    case Conv::kGeometry: return Canon::kBytes;
  }
  return Canon::kText;
}

std::string MyCanonExpr(const CanonColumn& c) {
  const std::string q = MyQ(c);
  const std::string& base = c.my.type.native_base;
  switch (c.kind) {
    case Canon::kNumber:
      if (base == "year" || base == "bit") return fmt::format("CAST({} + 0 AS BINARY)", q);
      if (c.my.type.kind == TypeKind::kDecimal) {
        // No trailing fractional zeros, no trailing point (MariaDB prints no "-0").
        const std::string x = fmt::format("CAST({} AS CHAR)", q);
        return fmt::format("CAST(IF(LOCATE('.', {0}) > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {0})), {0}) "
                           "AS BINARY)",
                           x);
      }
      return fmt::format("CAST({} AS BINARY)", q);
    case Canon::kFloat: return fmt::format("CAST({} AS DOUBLE)", q);
    case Canon::kText: return fmt::format("CAST(CONVERT({} USING utf8mb4) AS BINARY)", q);
    case Canon::kJson: return fmt::format("CONVERT({} USING utf8mb4)", q);
    case Canon::kBytes:
      if (c.my_geometry) return fmt::format("CAST(LOWER(HEX(SUBSTRING({}, 5))) AS BINARY)", q);
      return fmt::format("CAST(LOWER(HEX({})) AS BINARY)", q);
    case Canon::kDate: return MyZeroDateGuard(c, fmt::format("CAST(DATE_FORMAT({}, '%Y-%m-%d') AS BINARY)", q));
    case Canon::kTimestamp:
      // The session's time_zone is '+00:00' (MyConn): a TIMESTAMP reads as UTC.
      return MyZeroDateGuard(c, fmt::format("CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {}) AS BINARY)", q));
    case Canon::kTime: return fmt::format("CAST(CAST(TIME_TO_SEC({}) * 1000000 AS SIGNED) AS BINARY)", q);
    case Canon::kBits: return fmt::format("CAST(LPAD(BIN({} + 0), {}, '0') AS BINARY)", q, std::max(c.bits, 1));
  }
  return q;
}

std::string PgCanonExpr(const CanonColumn& c) { return PgOutOfRangeGuard(c, PgCanonExprUnguarded(c)); }

namespace {
std::string PgCanonExprUnguarded(const CanonColumn& c) {
  const std::string q = PgQ(c);
  const std::string& native = c.pg.type.native;
  switch (c.kind) {
    case Canon::kNumber:
      if (native == "boolean" || native == "bool") return fmt::format("({}::int)::text", q);
      if (PgStartsWith(c.pg, "numeric") || PgStartsWith(c.pg, "decimal")) return fmt::format("trim_scale({})::text", q);
      return fmt::format("{}::text", q);
    case Canon::kFloat: return fmt::format("{}::float8::text", q);  // extra_float_digits 1: exact
    case Canon::kText:
      // inet's cast to text adds a host's /32 that its output (what a change carries) leaves out.
      // (format() prints NULL as '', hence the CASE.)
      if (native == "inet") return fmt::format("CASE WHEN {0} IS NOT NULL THEN format('%s', {0}) END", q);
      return fmt::format("{}::text", q);
    case Canon::kJson: return fmt::format("{}::text", q);
    case Canon::kBytes: return fmt::format("encode({}, 'hex')", q);
    case Canon::kDate: return fmt::format("{}::text", q);  // DateStyle ISO: YYYY-MM-DD (infinity, BC as such)
    case Canon::kTimestamp:
    case Canon::kTime:
      // extract(epoch) is numeric (PostgreSQL 14+): exact microseconds, UTC for timestamptz.
      if (c.kind == Canon::kTime && !PgStartsWith(c.pg, "time") && !PgStartsWith(c.pg, "interval"))
        return fmt::format("{}::text", q);
      if (c.kind == Canon::kTime) return fmt::format("(extract(epoch from {}) * 1000000)::bigint::text", q);
      return fmt::format("CASE WHEN isfinite({0}) THEN (extract(epoch from {0}) * 1000000)::bigint::text ELSE {0}::text "
                         "END",
                         q);
    case Canon::kBits: return fmt::format("{}::text", q);
  }
  return q;
}
}  // namespace

CanonColumn CanonOfPgCast(const PgColumnCast& cast, const ColumnSchema& pg, const ColumnSchema& my,
                          bool out_of_range_null, std::string* not_compared) {
  CanonColumn c;
  c.my = my;
  c.pg = pg;
  c.pg.type = cast.source_type;  // a domain's base type: its values are that type's
  TypeKind expect = TypeKind::kText;
  switch (cast.conv) {
    case PgConv::kInt:
    case PgConv::kBool: c.kind = Canon::kNumber, expect = TypeKind::kInt; break;
    case PgConv::kDecimal:
      c.kind = Canon::kNumber, expect = TypeKind::kDecimal;
      c.precision = cast.precision;
      c.scale = cast.scale;
      break;
    case PgConv::kFloat: c.kind = Canon::kFloat, expect = TypeKind::kFloat; break;
    case PgConv::kDate: c.kind = Canon::kDate, expect = TypeKind::kDate; break;
    case PgConv::kDateTime:
    case PgConv::kDateTimeUtc: c.kind = Canon::kTimestamp, expect = TypeKind::kTimestamp; break;
    case PgConv::kTime: c.kind = Canon::kTime, expect = TypeKind::kTime; break;
    case PgConv::kText:
    case PgConv::kEnum:
    case PgConv::kAsText: c.kind = Canon::kText, expect = TypeKind::kText; break;
    case PgConv::kBytes: c.kind = Canon::kBytes, expect = TypeKind::kBytes; break;
    case PgConv::kJson: c.kind = Canon::kJson, expect = TypeKind::kJson; break;
    case PgConv::kArray: {
      c.kind = Canon::kJson, expect = TypeKind::kJson;
      c.pg_cast = [cast, out_of_range_null](std::string_view v) { return ToMyText(cast, v, out_of_range_null); };
      break;
    }
    case PgConv::kBit:
      c.kind = Canon::kBits, expect = TypeKind::kOther;
      c.bits = cast.bits;
      break;
  }
  c.pg_out_of_range_null = out_of_range_null && !cast.key &&
                           (cast.conv == PgConv::kDate || cast.conv == PgConv::kDateTime ||
                            cast.conv == PgConv::kDateTimeUtc || cast.conv == PgConv::kDecimal ||
                            cast.conv == PgConv::kFloat);
  // An override keeps the PostgreSQL value's cast; the canonical form holds
  // only where MySQL's type is the one that cast writes (a TIME(6) holding an
  // interval's text has no form in common with it).
  if (cast.overridden && my.type.kind != expect) {
    if (not_compared)
      *not_compared = fmt::format("column {} is stored as {} (casting.columns), which is not compared across engines",
                                  cast.name, cast.my_type);
    c.kind = Canon::kText;
    c.pg_cast = nullptr;
  }
  return c;
}

std::string MyPieceExpr(const std::string& x) { return fmt::format("IFNULL(CONCAT(LENGTH({0}), ':', {0}), 'N')", x); }
std::string PgPieceExpr(const std::string& x) {
  return fmt::format("coalesce(octet_length({0})::text || ':' || {0}, 'N')", x);
}
std::string MyRowMd5(const std::vector<std::string>& pieces) {
  if (pieces.empty()) return "MD5('')";
  return fmt::format("MD5(CONCAT({}))", fmt::join(pieces, ", "));
}
std::string PgRowMd5(const std::vector<std::string>& pieces) {
  if (pieces.empty()) return "md5('')";
  return fmt::format("md5({})", fmt::join(pieces, " || "));
}

Result<std::string> MyKeyLiteral(const CanonColumn& c, const std::string& v) {
  auto bad = [&] {
    return InvalidArgument(fmt::format("column {}: '{}' is not a canonical {}", c.my.name, v, CanonName(c.kind)));
  };
  switch (c.kind) {
    case Canon::kNumber:
      if (!IsCanonNumber(v)) return bad();
      return v;
    case Canon::kDate: return mysql::QuoteString(v);
    case Canon::kTimestamp: {
      ASSIGN_OR_RETURN(int64_t us, ParseMicros(v));
      return mysql::QuoteString(MicrosToTimestampText(us));
    }
    case Canon::kTime: {
      ASSIGN_OR_RETURN(int64_t us, ParseMicros(v));
      return mysql::QuoteString(MicrosToTimeText(us));
    }
    case Canon::kText: {
      const std::string& cs = c.my.type.charset;
      const std::string lit = "_utf8mb4 " + mysql::HexLiteral(v);
      if (cs.empty() || cs == "utf8mb4" || c.my.type.native_base == "enum" || c.my.type.native_base == "set")
        return lit;
      return fmt::format("CONVERT({} USING {})", lit, cs);
    }
    case Canon::kBytes: return "X" + mysql::QuoteString(v);
    case Canon::kBits:
      for (char ch : v)
        if (ch != '0' && ch != '1') return bad();
      return "b'" + v + "'";
    case Canon::kFloat:
    case Canon::kJson: break;
  }
  return InvalidArgument(fmt::format("column {}: a {} key cannot be compared across engines", c.my.name,
                                     CanonName(c.kind)));
}

Result<std::string> PgKeyLiteral(const CanonColumn& c, const std::string& v) {
  auto bad = [&] {
    return InvalidArgument(fmt::format("column {}: '{}' is not a canonical {}", c.pg.name, v, CanonName(c.kind)));
  };
  const std::string& native = c.pg.type.native;
  switch (c.kind) {
    case Canon::kNumber: {
      if (!IsCanonNumber(v)) return bad();
      if (native == "boolean" || native == "bool") return std::string(v == "0" ? "false" : "true");
      const size_t paren = native.find('(');
      return fmt::format("{}::{}", pg::QuoteLiteral(v), paren == std::string::npos ? native : native.substr(0, paren));
    }
    case Canon::kDate: return pg::QuoteLiteral(v) + "::date";
    case Canon::kTimestamp: {
      ASSIGN_OR_RETURN(int64_t us, ParseMicros(v));
      if (native.find("with time zone") != std::string::npos)
        return pg::QuoteLiteral(MicrosToTimestampText(us) + "+00") + "::timestamptz";
      return pg::QuoteLiteral(MicrosToTimestampText(us)) + "::timestamp";
    }
    case Canon::kTime: {
      ASSIGN_OR_RETURN(int64_t us, ParseMicros(v));
      return pg::QuoteLiteral(MicrosToTimeText(us)) + (PgStartsWith(c.pg, "interval") ? "::interval" : "::time");
    }
    case Canon::kText: return pg::QuoteLiteral(v);
    case Canon::kBytes:
      for (char ch : v)
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return bad();
      return fmt::format("decode('{}', 'hex')", v);
    case Canon::kBits:
      for (char ch : v)
        if (ch != '0' && ch != '1') return bad();
      return "B'" + v + "'";
    case Canon::kFloat:
    case Canon::kJson: break;
  }
  return InvalidArgument(fmt::format("column {}: a {} key cannot be compared across engines", c.pg.name,
                                     CanonName(c.kind)));
}

std::string MyRangeExpr(const CanonColumn& c) {
  return CanonNativeOrder(c.kind) ? MyQ(c) : MyCanonExpr(c);
}
std::string PgRangeExpr(const CanonColumn& c) {
  return CanonNativeOrder(c.kind) ? PgQ(c) : fmt::format("({} COLLATE \"C\")", PgCanonExpr(c));
}
Result<std::string> MyRangeLiteral(const CanonColumn& c, const std::string& v) {
  if (CanonNativeOrder(c.kind)) return MyKeyLiteral(c, v);
  return mysql::HexLiteral(v);  // a binary string: compared byte for byte with the canonical bytes
}
Result<std::string> PgRangeLiteral(const CanonColumn& c, const std::string& v) {
  if (CanonNativeOrder(c.kind)) return PgKeyLiteral(c, v);
  return pg::QuoteLiteral(v);  // UTF-8 under "C": byte order
}

std::string RowDigest(std::string_view sql_md5, const std::vector<std::optional<std::string>>& midflight) {
  if (midflight.empty()) return std::string(sql_md5);
  std::string in(sql_md5);
  for (const auto& v : midflight) in += v ? fmt::format("{}:{}", v->size(), *v) : std::string("N");
  const XXH128_hash_t h = XXH3_128bits(in.data(), in.size());
  return fmt::format("{:016x}{:016x}", h.high64, h.low64);
}

Result<std::string> CanonToMyText(const ColumnCast& c, const std::string& v) {
  auto none = [&](std::string_view why) {
    return InvalidArgument(fmt::format("column {}: {}", c.name, why));
  };
  switch (CanonOfCast(c)) {
    case Canon::kNumber:
    case Canon::kDate: return v;
    case Canon::kTimestamp: {
      ASSIGN_OR_RETURN(int64_t us, ParseMicros(v));
      return MicrosToTimestampText(us);
    }
    case Canon::kTime: {
      ASSIGN_OR_RETURN(int64_t us, ParseMicros(v));
      return MicrosToTimeText(us);
    }
    case Canon::kText:
      if (c.conv == Conv::kEnum) {
        for (size_t i = 0; i < c.labels.size(); ++i)
          if (c.labels[i] == v) return std::to_string(i + 1);
        return none(fmt::format("'{}' is not one of its ENUM members", v));
      }
      if (c.conv == Conv::kSet) {
        uint64_t mask = 0;
        size_t start = 0;
        while (!v.empty() && start <= v.size()) {
          const size_t comma = std::min(v.find(',', start), v.size());
          const std::string member = v.substr(start, comma - start);
          auto it = std::find(c.labels.begin(), c.labels.end(), member);
          if (it == c.labels.end() || it - c.labels.begin() >= 64)
            return none(fmt::format("'{}' is not one of its SET members", member));
          mask |= uint64_t{1} << (it - c.labels.begin());
          start = comma + 1;
        }
        return std::to_string(mask);
      }
      if (c.charset == "latin1") return none("a latin1 key has no delete repair across engines yet");
      return v;
    case Canon::kBytes: {
      if (c.conv == Conv::kGeometry) return none("a GEOMETRY key has no delete repair");
      if (v.size() % 2) return none("odd hex");
      std::string out;
      for (size_t i = 0; i < v.size(); i += 2) {
        unsigned x = 0;
        auto [p, ec] = std::from_chars(v.data() + i, v.data() + i + 2, x, 16);
        if (ec != std::errc() || p != v.data() + i + 2) return none("not hex");
        out += static_cast<char>(x);
      }
      return out;
    }
    case Canon::kBits: {
      uint64_t n = 0;
      for (char ch : v) n = n << 1 | (ch == '1' ? 1 : 0);
      return std::to_string(n);
    }
    case Canon::kFloat:
    case Canon::kJson: break;
  }
  return none("a float or JSON key has no delete repair");
}

Result<std::optional<std::string>> CanonRaw(Canon kind, const std::optional<std::string>& raw) {
  if (!raw) return std::optional<std::string>();
  if (kind == Canon::kFloat) {
    ASSIGN_OR_RETURN(std::string s, CanonFloat(*raw));
    return std::optional<std::string>(std::move(s));
  }
  if (kind == Canon::kJson) {
    ASSIGN_OR_RETURN(std::string s, CanonJson(*raw));
    return std::optional<std::string>(std::move(s));
  }
  return raw;
}

}  // namespace midflight::cross
