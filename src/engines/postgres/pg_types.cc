#include "engines/postgres/pg_types.h"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

namespace midflight::pg {
namespace {

// Type oids from pg_type.dat (stable across versions).
constexpr uint32_t kBool = 16, kBytea = 17, kInt8 = 20, kInt2 = 21, kInt4 = 23, kText = 25, kOid = 26, kJson = 114,
                   kFloat4 = 700, kFloat8 = 701, kBpchar = 1042, kVarchar = 1043, kDate = 1082, kTime = 1083,
                   kTimestamp = 1114, kTimestamptz = 1184, kInterval = 1186, kTimetz = 1266, kNumeric = 1700,
                   kUuid = 2950, kJsonb = 3802, kName = 19;

Status Bad(const ColumnType& t, std::string_view text) {
  return InvalidArgument(fmt::format("value '{}' is not a valid {}", text.substr(0, 80), t.native));
}

int ParenInt(const std::string& native, int which) {
  auto open = native.find('(');
  if (open == std::string::npos) return -1;
  int a = -1, b = -1;
  if (std::sscanf(native.c_str() + open, "(%d,%d)", &a, &b) < 1) return -1;
  return which == 0 ? a : b;
}

// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// True for a date PostgreSQL can print in ISO DateStyle without " BC": year 0
// (which it never prints) up to its largest date year, a real month and day.
bool ValidDate(int y, int m, int d) {
  static constexpr int kDaysIn[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 0 || y > 5874897 || m < 1 || m > 12 || d < 1 || d > kDaysIn[m - 1]) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m != 2 || d <= 28 || leap;
}

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

// "2024-03-01 12:34:56.123456+05:30" (ISO DateStyle, as midflight's sessions use).
bool ParseTimestamp(std::string_view s, bool with_zone, int64_t* micros) {
  int y, mo, d, h = 0, mi = 0, sec = 0, consumed = 0;
  std::string str(s);
  if (std::sscanf(str.c_str(), "%d-%d-%d %d:%d:%d%n", &y, &mo, &d, &h, &mi, &sec, &consumed) < 6) return false;
  // Out-of-range fields (no server prints them) would overflow the arithmetic
  // below; so would years past 292000, beyond int64 microseconds since 1970.
  if (!ValidDate(y, mo, d) || y > 292000 || h < 0 || h > 24 || mi < 0 || mi > 59 || sec < 0 || sec > 60) return false;
  size_t pos = consumed;
  int64_t frac = 0;
  if (pos < str.size() && str[pos] == '.') {
    int digits = 0;
    ++pos;
    while (pos < str.size() && std::isdigit(static_cast<unsigned char>(str[pos]))) {
      if (digits < 6) {
        frac = frac * 10 + (str[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    while (digits++ < 6) frac *= 10;
  }
  int64_t offset_s = 0;
  if (with_zone) {
    if (pos >= str.size() || (str[pos] != '+' && str[pos] != '-')) return false;
    int sign = str[pos] == '-' ? -1 : 1;
    int oh = 0, om = 0, os = 0;
    std::sscanf(str.c_str() + pos + 1, "%d:%d:%d", &oh, &om, &os);
    if (oh < 0 || oh > 23 || om < 0 || om > 59 || os < 0 || os > 59) return false;
    offset_s = sign * (oh * 3600 + om * 60 + os);
    pos = str.size();
  }
  if (pos != str.size()) return false;
  int64_t days = DaysFromCivil(y, mo, d);
  *micros = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_s) * 1000000 + frac;
  return true;
}

std::string FormatTimestamp(int64_t micros, bool with_zone) {
  int64_t secs = micros >= 0 ? micros / 1000000 : -((-micros + 999999) / 1000000);
  int64_t frac = micros - secs * 1000000;
  int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
  int64_t rem = secs - days * 86400;
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, &y, &m, &d);
  std::string out = fmt::format("{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}", y, m, d, rem / 3600, (rem / 60) % 60, rem % 60);
  if (frac) {
    std::string f = fmt::format("{:06d}", frac);
    while (f.back() == '0') f.pop_back();  // PostgreSQL prints "23:59:59.5", not ".500000"
    out += "." + f;
  }
  if (with_zone) out += "+00";
  return out;
}

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits a one-dimensional array literal {a,"b c",NULL} into elements.
bool SplitArray(std::string_view s, std::vector<std::optional<std::string>>* out) {
  if (s.size() < 2 || s.front() != '{' || s.back() != '}') return false;
  size_t i = 1, end = s.size() - 1;
  if (i == end) return true;
  while (i <= end) {
    std::string item;
    bool quoted = false;
    if (s[i] == '{') return false;  // multi-dimensional: not modelled
    if (s[i] == '"') {
      quoted = true;
      ++i;
      while (i < end && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < end) ++i;
        item.push_back(s[i++]);
      }
      if (i >= end) return false;
      ++i;
    } else {
      while (i < end && s[i] != ',') item.push_back(s[i++]);
    }
    if (!quoted && item == "NULL") out->push_back(std::nullopt);
    else out->push_back(item);
    if (i == end) break;
    if (s[i] != ',') return false;
    ++i;
  }
  return true;
}

// Dates and timestamps PostgreSQL writes in forms the model does not cover
// (infinity, BC years) are kept as the engine's text.
Result<Value> OtherOrBad(const ColumnType& type, std::string_view text) {
  if (text == "infinity" || text == "-infinity" || text.ends_with(" BC")) return Value{OtherText{std::string(text)}};
  return Bad(type, text);
}

}  // namespace

ColumnType PgColumnType(uint32_t oid, const std::string& native, char typtype, uint32_t elem_oid,
                        const std::string& elem_native) {
  ColumnType t;
  t.native = native;
  t.native_oid = oid;
  switch (oid) {
    case kBool: t.kind = TypeKind::kBool; break;
    case kInt2: t.kind = TypeKind::kInt; t.width = 2; break;
    case kInt4: t.kind = TypeKind::kInt; t.width = 4; break;
    case kInt8: t.kind = TypeKind::kInt; t.width = 8; break;
    case kOid: t.kind = TypeKind::kInt; t.width = 4; t.is_signed = false; break;
    case kNumeric:
      t.kind = TypeKind::kDecimal;
      t.precision = ParenInt(native, 0);
      t.scale = t.precision >= 0 ? std::max(0, ParenInt(native, 1)) : -1;
      break;
    case kFloat4: t.kind = TypeKind::kFloat; t.width = 4; break;
    case kFloat8: t.kind = TypeKind::kFloat; t.width = 8; break;
    case kText: case kVarchar: case kBpchar: case kName: t.kind = TypeKind::kText; break;
    case kBytea: t.kind = TypeKind::kBytes; break;
    case kJson: t.kind = TypeKind::kJson; break;
    case kJsonb: t.kind = TypeKind::kJson; t.binary_json = true; break;
    case kDate: t.kind = TypeKind::kDate; break;
    case kTime: case kTimetz: t.kind = TypeKind::kTime; t.with_zone = oid == kTimetz; t.precision = ParenInt(native, 0); break;
    case kTimestamp: case kTimestamptz:
      t.kind = TypeKind::kTimestamp;
      t.with_zone = oid == kTimestamptz;
      t.precision = ParenInt(native, 0);
      break;
    case kInterval: t.kind = TypeKind::kInterval; break;
    case kUuid: t.kind = TypeKind::kUuid; break;
    default:
      if (typtype == 'e') t.kind = TypeKind::kEnum;
      else if (elem_oid != 0) {
        t.kind = TypeKind::kArray;
        t.element = std::make_shared<ColumnType>(PgColumnType(elem_oid, elem_native, 'b', 0, ""));
      }
      break;
  }
  return t;
}

Result<Value> PgTextToValue(const ColumnType& type, std::string_view text) {
  Value v;
  switch (type.kind) {
    case TypeKind::kBool:
      if (text == "t" || text == "true") v.v = true;
      else if (text == "f" || text == "false") v.v = false;
      else return Bad(type, text);
      return v;
    case TypeKind::kInt: {
      if (!type.is_signed) {
        uint64_t u = 0;
        auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), u);
        if (ec != std::errc() || p != text.data() + text.size()) return Bad(type, text);
        v.v = u;
        return v;
      }
      int64_t i = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
      if (ec != std::errc() || p != text.data() + text.size()) return Bad(type, text);
      v.v = i;
      return v;
    }
    case TypeKind::kDecimal: {
      bool ok = !text.empty();
      for (char c : text) ok = ok && (std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == 'e' || c == 'E' || c == '+');
      if (!ok && text != "NaN" && text != "Infinity" && text != "-Infinity") return Bad(type, text);
      v.v = Decimal{std::string(text)};
      return v;
    }
    case TypeKind::kFloat: {
      std::string s(text);
      if (s == "NaN") v.v = std::nan("");
      else if (s == "Infinity") v.v = HUGE_VAL;
      else if (s == "-Infinity") v.v = -HUGE_VAL;
      else {
        // real is read as a float, as PostgreSQL does: "7e48" is out of its
        // range (an error there, not infinity) though a double holds it.
        char* end = nullptr;
        errno = 0;
        double d = type.width == 4 ? std::strtof(s.c_str(), &end) : std::strtod(s.c_str(), &end);
        if (end != s.c_str() + s.size() || s.empty()) return Bad(type, text);
        if (errno == ERANGE && std::isinf(d)) return Bad(type, text);
        v.v = d;
      }
      return v;
    }
    case TypeKind::kText: v.v = std::string(text); return v;
    case TypeKind::kBytes: {
      if (text.size() < 2 || text[0] != '\\' || text[1] != 'x' || text.size() % 2) return Bad(type, text);
      Bytes b;
      for (size_t i = 2; i < text.size(); i += 2) {
        int hi = HexVal(text[i]), lo = HexVal(text[i + 1]);
        if (hi < 0 || lo < 0) return Bad(type, text);
        b.data.push_back(static_cast<uint8_t>(hi << 4 | lo));
      }
      v.v = std::move(b);
      return v;
    }
    case TypeKind::kJson: v.v = Json{std::string(text)}; return v;
    case TypeKind::kDate: {
      int y, m, d, n = 0;
      std::string s(text);
      if (std::sscanf(s.c_str(), "%d-%d-%d%n", &y, &m, &d, &n) != 3 || n != static_cast<int>(s.size()) ||
          !ValidDate(y, m, d))
        return OtherOrBad(type, text);
      v.v = Date{static_cast<int32_t>(DaysFromCivil(y, m, d))};
      return v;
    }
    case TypeKind::kTimestamp: {
      int64_t micros = 0;
      if (!ParseTimestamp(text, type.with_zone, &micros)) return OtherOrBad(type, text);
      v.v = Timestamp{micros, type.with_zone};
      return v;
    }
    case TypeKind::kUuid: {
      Uuid u;
      size_t j = 0;
      for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '-') continue;
        if (i + 1 >= text.size() || j >= 16) return Bad(type, text);
        int hi = HexVal(text[i]), lo = HexVal(text[i + 1]);
        if (hi < 0 || lo < 0) return Bad(type, text);
        u.bytes[j++] = static_cast<uint8_t>(hi << 4 | lo);
        ++i;
      }
      if (j != 16) return Bad(type, text);
      v.v = u;
      return v;
    }
    case TypeKind::kEnum: v.v = EnumLabel{std::string(text)}; return v;
    case TypeKind::kArray: {
      std::vector<std::optional<std::string>> items;
      if (!SplitArray(text, &items)) {
        v.v = OtherText{std::string(text)};
        return v;
      }
      Array a;
      for (const auto& item : items) {
        if (!item) {
          a.elements.push_back(Value{});
          continue;
        }
        ASSIGN_OR_RETURN(Value e, PgTextToValue(*type.element, *item));
        a.elements.push_back(std::move(e));
      }
      v.v = std::move(a);
      return v;
    }
    case TypeKind::kTime:
    case TypeKind::kInterval:
    case TypeKind::kOther: v.v = OtherText{std::string(text)}; return v;
  }
  return Bad(type, text);
}

Result<std::string> ValueToPgText(const ColumnType& type, const Value& value) {
  struct Visitor {
    const ColumnType& type;
    Result<std::string> operator()(const Null&) const { return InvalidArgument("NULL has no text form"); }
    Result<std::string> operator()(bool b) const { return std::string(b ? "t" : "f"); }
    Result<std::string> operator()(int64_t i) const { return std::to_string(i); }
    Result<std::string> operator()(uint64_t u) const { return std::to_string(u); }
    Result<std::string> operator()(const Decimal& d) const { return d.digits; }
    Result<std::string> operator()(double d) const {
      if (std::isnan(d)) return std::string("NaN");
      if (std::isinf(d)) return std::string(d > 0 ? "Infinity" : "-Infinity");
      if (type.width == 4) return fmt::format("{}", static_cast<float>(d));
      return fmt::format("{}", d);
    }
    Result<std::string> operator()(const std::string& s) const { return s; }
    Result<std::string> operator()(const Bytes& b) const {
      std::string out = "\\x";
      for (uint8_t c : b.data) out += fmt::format("{:02x}", c);
      return out;
    }
    Result<std::string> operator()(const Json& j) const { return j.text; }
    Result<std::string> operator()(const Date& d) const {
      int64_t y;
      unsigned m, dd;
      CivilFromDays(d.days, &y, &m, &dd);
      return fmt::format("{:04d}-{:02d}-{:02d}", y, m, dd);
    }
    Result<std::string> operator()(const Timestamp& t) const { return FormatTimestamp(t.micros, t.with_zone); }
    Result<std::string> operator()(const Uuid& u) const {
      std::string out;
      for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
        out += fmt::format("{:02x}", u.bytes[i]);
      }
      return out;
    }
    Result<std::string> operator()(const EnumLabel& e) const { return e.label; }
    Result<std::string> operator()(const OtherText& o) const { return o.text; }
    Result<std::string> operator()(const Array& a) const {
      std::string out = "{";
      for (size_t i = 0; i < a.elements.size(); ++i) {
        if (i) out.push_back(',');
        if (std::holds_alternative<Null>(a.elements[i].v)) {
          out += "NULL";
          continue;
        }
        ASSIGN_OR_RETURN(std::string s, ValueToPgText(*type.element, a.elements[i]));
        out.push_back('"');
        for (char c : s) {
          if (c == '"' || c == '\\') out.push_back('\\');
          out.push_back(c);
        }
        out.push_back('"');
      }
      out.push_back('}');
      return out;
    }
  };
  return std::visit(Visitor{type}, value.v);
}

std::string AssignedFromTextAs(const std::string& native) {
  std::string_view n = native;
  std::string_view dims;  // "[]", "[][]"
  if (auto b = n.find('['); b != std::string_view::npos) {
    dims = n.substr(b);
    n = n.substr(0, b);
  }
  auto bare = [&](std::string_view prefix, const char* as) -> std::optional<std::string> {
    if (!n.starts_with(prefix) || n.size() < prefix.size() + 3 || n.back() != ')') return std::nullopt;
    std::string_view digits = n.substr(prefix.size() + 1, n.size() - prefix.size() - 2);
    if (n[prefix.size()] != '(' || digits.find_first_not_of("0123456789") != std::string_view::npos)
      return std::nullopt;
    return std::string(as) + std::string(dims);
  };
  if (auto t = bare("character varying", "character varying")) return *t;
  if (auto t = bare("character", "bpchar")) return *t;
  return native;
}

}  // namespace midflight::pg
