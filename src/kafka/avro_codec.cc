#include "kafka/avro_codec.h"
#include "kafka/change_codec.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include "base/civil_date.h"

namespace midflight::kafka {
namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

constexpr const char* kUnavailable = "__debezium_unavailable_value";

// ---------------------------------------------------------------- decoding

Status Short(const char* what) { return InvalidArgument(fmt::format("avro: {} runs past the end of the data", what)); }

struct Reader {
  std::string_view d;
  size_t i = 0;

  Result<int64_t> Long() {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (i >= d.size()) return Short("a varint");
      const uint8_t b = static_cast<uint8_t>(d[i++]);
      if (shift == 63 && (b & 0x7e)) return InvalidArgument("avro: a varint longer than 64 bits");
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1));
    }
    return InvalidArgument("avro: a varint longer than 10 bytes");
  }
  Result<std::string_view> Raw(size_t n, const char* what) {
    if (n > d.size() - i) return Short(what);
    std::string_view out = d.substr(i, n);
    i += n;
    return out;
  }
  Result<std::string_view> Bytes() {
    ASSIGN_OR_RETURN(int64_t n, Long());
    if (n < 0) return InvalidArgument("avro: a negative length");
    return Raw(static_cast<size_t>(n), "a string or bytes");
  }
};

struct Decoder {
  Reader r;
  std::map<std::string, const json*> named;  // full name → definition

  static std::string FullName(const json& s, const std::string& ns) {
    std::string name = s.value("name", "");
    if (name.find('.') != std::string::npos) return name;
    std::string space = s.contains("namespace") && s["namespace"].is_string() ? s["namespace"].get<std::string>() : ns;
    return space.empty() ? name : space + "." + name;
  }

  // Named types are defined where they first appear in the schema, which
  // need not be a branch the data takes: collected before decoding.
  Status Collect(const json& s, const std::string& ns, int depth) {
    if (depth > 64) return InvalidArgument("avro: schema nested deeper than 64");
    if (s.is_array()) {
      for (const json& b : s) RETURN_IF_ERROR(Collect(b, ns, depth + 1));
      return Status::Ok();
    }
    if (!s.is_object() || !s.contains("type")) return Status::Ok();
    const json& type = s["type"];
    if (!type.is_string()) return Collect(type, ns, depth + 1);
    const std::string t = type.get<std::string>();
    if (t == "record" || t == "error" || t == "enum" || t == "fixed") {
      if (!s.contains("name") || !s["name"].is_string()) return InvalidArgument("avro: a named type without a name");
      const std::string full = FullName(s, ns);
      named[full] = &s;
      if (t == "record" || t == "error") {
        const std::string inner = full.rfind('.') == std::string::npos ? "" : full.substr(0, full.rfind('.'));
        if (!s.contains("fields") || !s["fields"].is_array()) return InvalidArgument("avro: a record without fields");
        for (const json& f : s["fields"])
          if (f.is_object() && f.contains("type")) RETURN_IF_ERROR(Collect(f["type"], inner, depth + 1));
      }
    } else if (t == "array" && s.contains("items")) {
      return Collect(s["items"], ns, depth + 1);
    } else if (t == "map" && s.contains("values")) {
      return Collect(s["values"], ns, depth + 1);
    }
    return Status::Ok();
  }

  Result<json> Datum(const json& s, const std::string& ns, int depth) {
    if (depth > 64) return InvalidArgument("avro: schema nested deeper than 64");
    if (s.is_array()) {  // a union
      ASSIGN_OR_RETURN(int64_t b, r.Long());
      if (b < 0 || static_cast<size_t>(b) >= s.size())
        return InvalidArgument(fmt::format("avro: union branch {} of {}", b, s.size()));
      return Datum(s[static_cast<size_t>(b)], ns, depth + 1);
    }
    std::string type;
    if (s.is_string()) {
      type = s.get<std::string>();
    } else if (s.is_object() && s.contains("type") && s["type"].is_string()) {
      type = s["type"].get<std::string>();
    } else if (s.is_object() && s.contains("type")) {
      return Datum(s["type"], ns, depth + 1);
    } else {
      return InvalidArgument("avro: a schema that is not a name, union or object");
    }
    if (type == "null") return json(nullptr);
    if (type == "boolean") {
      ASSIGN_OR_RETURN(std::string_view b, r.Raw(1, "a boolean"));
      if (b[0] != 0 && b[0] != 1) return InvalidArgument("avro: a boolean that is neither 0 nor 1");
      return json(b[0] == 1);
    }
    if (type == "int" || type == "long") {
      ASSIGN_OR_RETURN(int64_t v, r.Long());
      if (type == "int" && (v < INT32_MIN || v > INT32_MAX)) return InvalidArgument("avro: an int out of range");
      return json(v);
    }
    if (type == "float") {
      ASSIGN_OR_RETURN(std::string_view b, r.Raw(4, "a float"));
      float f;
      std::memcpy(&f, b.data(), 4);
      return std::isfinite(f) ? json(f) : json(fmt::format("{}", f));
    }
    if (type == "double") {
      ASSIGN_OR_RETURN(std::string_view b, r.Raw(8, "a double"));
      double f;
      std::memcpy(&f, b.data(), 8);
      return std::isfinite(f) ? json(f) : json(fmt::format("{}", f));
    }
    if (type == "bytes" || type == "string") {
      ASSIGN_OR_RETURN(std::string_view b, r.Bytes());
      return json(std::string(b));
    }
    if (type == "record" || type == "error") {
      const std::string full = FullName(s, ns);
      named[full] = &s;
      const std::string inner = full.substr(0, full.rfind('.') == std::string::npos ? 0 : full.rfind('.'));
      if (!s.contains("fields") || !s["fields"].is_array()) return InvalidArgument("avro: a record without fields");
      json out = json::object();
      for (const json& f : s["fields"]) {
        if (!f.is_object() || !f.contains("name") || !f["name"].is_string() || !f.contains("type"))
          return InvalidArgument("avro: a record field without name or type");
        ASSIGN_OR_RETURN(out[f["name"].get<std::string>()], Datum(f["type"], inner, depth + 1));
      }
      return out;
    }
    if (type == "enum") {
      named[FullName(s, ns)] = &s;
      ASSIGN_OR_RETURN(int64_t v, r.Long());
      if (!s.contains("symbols") || !s["symbols"].is_array() || v < 0 || static_cast<size_t>(v) >= s["symbols"].size())
        return InvalidArgument("avro: an enum index out of range");
      return s["symbols"][static_cast<size_t>(v)];
    }
    if (type == "fixed") {
      named[FullName(s, ns)] = &s;
      if (!s.contains("size") || !s["size"].is_number_unsigned()) return InvalidArgument("avro: a fixed without size");
      ASSIGN_OR_RETURN(std::string_view b, r.Raw(s["size"].get<size_t>(), "a fixed"));
      return json(std::string(b));
    }
    if (type == "array" || type == "map") {
      const char* item = type == "array" ? "items" : "values";
      if (!s.contains(item)) return InvalidArgument(fmt::format("avro: an {} without {}", type, item));
      json out = type == "array" ? json::array() : json::object();
      for (;;) {
        ASSIGN_OR_RETURN(int64_t n, r.Long());
        if (n == 0) break;
        if (n < 0) {  // a negative count is followed by the block's size in bytes
          if (n == INT64_MIN) return InvalidArgument("avro: a block count out of range");
          n = -n;
          RETURN_IF_ERROR(r.Long().status());
        }
        // Each item takes at least one byte unless its schema is null: a
        // count larger than what is left is refused before the loop.
        if (static_cast<uint64_t>(n) > r.d.size() - r.i + 1) return Short("an array or map block");
        for (int64_t k = 0; k < n; ++k) {
          if (type == "map") {
            ASSIGN_OR_RETURN(std::string_view key, r.Bytes());
            ASSIGN_OR_RETURN(out[std::string(key)], Datum(s[item], ns, depth + 1));
          } else {
            ASSIGN_OR_RETURN(json v, Datum(s[item], ns, depth + 1));
            out.push_back(std::move(v));
          }
        }
      }
      return out;
    }
    // A reference to a named type defined earlier.
    std::string full = type.find('.') == std::string::npos && !ns.empty() ? ns + "." + type : type;
    auto it = named.find(full);
    if (it == named.end()) it = named.find(type);
    if (it == named.end()) return InvalidArgument(fmt::format("avro: unknown type '{}'", type));
    return Datum(*it->second, ns, depth + 1);
  }
};

// ---------------------------------------------------------------- text forms

// Avro strings are UTF-8: text that is not (a latin1 column's bytes) is read
// as latin1, each byte one code point.
std::string Utf8(std::string_view s) {
  if (ValidUtf8(s)) return std::string(s);
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

bool Digits(std::string_view s, size_t from, size_t n, int64_t* out) {
  if (from + n > s.size()) return false;
  int64_t v = 0;
  for (size_t k = from; k < from + n; ++k) {
    if (s[k] < '0' || s[k] > '9') return false;
    v = v * 10 + (s[k] - '0');
  }
  *out = v;
  return true;
}

// "YYYY-MM-DD" at the start of s (more year digits allowed); " BC" anywhere
// after it. Sets *used to the characters read. MySQL's zero date fails.
bool ParseDate(std::string_view s, int64_t* days, size_t* used) {
  size_t dash = s.find('-', 1);
  if (dash == std::string_view::npos || dash < 4) return false;
  int64_t y, m, d;
  if (!Digits(s, 0, dash, &y) || s.size() < dash + 6 || s[dash + 3] != '-' || !Digits(s, dash + 1, 2, &m) ||
      !Digits(s, dash + 4, 2, &d))
    return false;
  if (m < 1 || m > 12 || d < 1 || d > 31 || y == 0) return false;
  if (s.find(" BC") != std::string_view::npos) y = 1 - y;
  *days = DaysFromCivil(y, m, d);
  *used = dash + 6;
  return true;
}

// "[-]H+:MM[:SS[.ffffff]]" at the start of s: microseconds (signed: MySQL TIME).
bool ParseTimeOfDay(std::string_view s, int64_t* micros, size_t* used) {
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && s[i] == '-') neg = true, ++i;
  size_t colon = s.find(':', i);
  if (colon == std::string_view::npos || colon == i || colon - i > 4) return false;
  int64_t h, m, sec = 0, frac = 0;
  if (!Digits(s, i, colon - i, &h) || !Digits(s, colon + 1, 2, &m) || m > 59) return false;
  i = colon + 3;
  if (i < s.size() && s[i] == ':') {
    if (!Digits(s, i + 1, 2, &sec) || sec > 60) return false;
    i += 3;
    if (i < s.size() && s[i] == '.') {
      ++i;
      int digits = 0;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (digits < 6) frac = frac * 10 + (s[i] - '0'), ++digits;
        ++i;
      }
      if (digits == 0) return false;
      for (; digits < 6; ++digits) frac *= 10;
    }
  }
  *micros = ((h * 60 + m) * 60 + sec) * 1000000 + frac;
  if (neg) *micros = -*micros;
  *used = i;
  return true;
}

// "+HH[:MM[:SS]]", "-HHMM" or "Z" at the start of s, as seconds east of UTC.
bool ParseOffset(std::string_view s, int64_t* secs, size_t* used) {
  if (!s.empty() && s[0] == 'Z') {
    *secs = 0;
    *used = 1;
    return true;
  }
  if (s.size() < 3 || (s[0] != '+' && s[0] != '-')) return false;
  int64_t h, m = 0, sec = 0;
  if (!Digits(s, 1, 2, &h)) return false;
  size_t i = 3;
  if (i < s.size() && s[i] == ':') ++i;
  if (Digits(s, i, 2, &m)) {
    i += 2;
    if (i < s.size() && s[i] == ':' && Digits(s, i + 1, 2, &sec)) i += 3;
  }
  *secs = (h * 3600 + m * 60 + sec) * (s[0] == '-' ? -1 : 1);
  *used = i;
  return true;
}

// "YYYY-MM-DD[ T]HH:MM:SS[.ffffff][offset][ BC]": microseconds since the
// epoch, of UTC when an offset is given (or `zone_default_utc`).
bool ParseTimestamp(std::string_view s, bool want_offset, int64_t* micros) {
  int64_t days, tod, off = 0;
  size_t used, u2, u3 = 0;
  if (!ParseDate(s, &days, &used)) return false;
  if (used >= s.size() || (s[used] != ' ' && s[used] != 'T')) return false;
  std::string_view rest = s.substr(used + 1);
  if (!ParseTimeOfDay(rest, &tod, &u2) || tod < 0) return false;
  rest = rest.substr(u2);
  if (want_offset && !rest.empty() && rest[0] != ' ') {
    if (!ParseOffset(rest, &off, &u3)) return false;
  }
  rest = rest.substr(u3);
  if (!rest.empty() && rest != " BC") return false;
  *micros = days * 86400000000LL + tod - off * 1000000;
  return true;
}

std::string Fraction(int64_t micros_of_second) {
  if (micros_of_second == 0) return "";
  std::string f = fmt::format(".{:06}", micros_of_second);
  while (f.back() == '0') f.pop_back();
  return f;
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

std::string IsoUtc(int64_t micros) {
  const int64_t days = FloorDiv(micros, 86400000000LL);
  const int64_t in_day = micros - days * 86400000000LL;
  int64_t y, m, d;
  CivilFromDays(days, &y, &m, &d);
  const int64_t secs = in_day / 1000000;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z", y, m, d, secs / 3600, secs / 60 % 60, secs % 60,
                     Fraction(in_day % 1000000));
}

// ---------------------------------------------------------------- schemas

// Avro names: [A-Za-z_][A-Za-z0-9_]*; anything else becomes '_', as
// Debezium's schema name adjuster does.
std::string AvroName(std::string_view s) {
  std::string out;
  for (char c : s)
    out += (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (c >= '0' && c <= '9') ? c : '_';
  if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out.insert(out.begin(), '_');
  return out;
}

std::string AvroNamespace(const std::string& topic) {
  std::string out;
  size_t start = 0;
  for (;;) {
    size_t dot = topic.find('.', start);
    if (!out.empty()) out += '.';
    out += AvroName(std::string_view(topic).substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return out;
}

ojson Semantic(const char* base, const char* connect_name) {
  return ojson{{"type", base}, {"connect.version", 1}, {"connect.name", connect_name}};
}

// "enum('a','b')" / "set('a','b')" → its members, in order.
std::vector<std::string> Labels(const std::string& native) {
  std::vector<std::string> out;
  size_t i = native.find('(');
  if (i == std::string::npos) return out;
  bool in = false;
  std::string cur;
  for (++i; i < native.size(); ++i) {
    char c = native[i];
    if (in) {
      if (c == '\'' && i + 1 < native.size() && native[i + 1] == '\'') {
        cur += '\'';
        ++i;
      } else if (c == '\'') {
        in = false;
        out.push_back(std::move(cur));
        cur.clear();
      } else {
        cur += c;
      }
    } else if (c == '\'') {
      in = true;
    }
  }
  return out;
}

// "enum('a','b')" / "set('a','b')" → "a,b" (Debezium's `allowed` parameter).
std::string Allowed(const std::string& native) {
  std::string out;
  for (const std::string& l : Labels(native)) out += (out.empty() ? "" : ",") + l;
  return out;
}

bool IsGeometry(const std::string& base) {
  static const std::set<std::string> kGeo = {"geometry",        "point",          "linestring",
                                             "polygon",         "multipoint",     "multilinestring",
                                             "multipolygon",    "geometrycollection", "geomcollection"};
  return kGeo.count(base) > 0;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The first integer inside the parentheses of "numeric(10,2)" (n = 0) or the
// second (n = 1); -1 when absent.
int ParenArg(const std::string& native, int n) {
  size_t i = native.find('(');
  for (int k = 0; i != std::string::npos && k < n; ++k) i = native.find(',', i + 1);
  if (i == std::string::npos) return -1;
  int v = 0;
  auto [p, ec] = std::from_chars(native.data() + i + 1, native.data() + native.size(), v);
  return ec == std::errc() ? v : -1;
}

// A column type known only by its PostgreSQL name (format_type's spelling:
// the change stream's layouts carry the target's names, not the catalog's
// typed model) read into the typed model; any other type is left as it is.
ColumnType Refine(const ColumnType& in) {
  if (in.kind != TypeKind::kOther) return in;
  ColumnType t = in;
  const std::string base = Lower(in.native_base.empty() ? in.native : in.native_base);
  const std::string native = Lower(in.native);
  if (base.size() > 2 && base.compare(base.size() - 2, 2, "[]") == 0) {
    t.kind = TypeKind::kArray;
  } else if (base == "boolean") {
    t.kind = TypeKind::kBool;
  } else if (base == "smallint" || base == "integer" || base == "bigint") {
    t.kind = TypeKind::kInt;
    t.width = base == "smallint" ? 2 : base == "integer" ? 4 : 8;
  } else if (base == "numeric") {
    t.kind = TypeKind::kDecimal;
    t.precision = ParenArg(native, 0);
    t.scale = t.precision >= 0 ? std::max(0, ParenArg(native, 1)) : -1;
  } else if (base == "real" || base == "double precision") {
    t.kind = TypeKind::kFloat;
    t.width = base == "real" ? 4 : 8;
  } else if (base == "text" || base == "character varying" || base == "character" || base == "name") {
    t.kind = TypeKind::kText;
  } else if (base == "bytea") {
    t.kind = TypeKind::kBytes;
  } else if (base == "json" || base == "jsonb") {
    t.kind = TypeKind::kJson;
  } else if (base == "uuid") {
    t.kind = TypeKind::kUuid;
  } else if (base == "date") {
    t.kind = TypeKind::kDate;
  } else if (base.rfind("time", 0) == 0) {
    t.kind = base.rfind("timestamp", 0) == 0 ? TypeKind::kTimestamp : TypeKind::kTime;
    t.with_zone = base.find("with time zone") != std::string::npos;
    t.precision = ParenArg(native, 0);
  } else if (base == "interval") {
    t.kind = TypeKind::kInterval;
  }
  return t;
}

}  // namespace

// ---------------------------------------------------------------- public

void AvroWriter::Long(int64_t v) {
  uint64_t z = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
  while (z >= 0x80) {
    out_.push_back(static_cast<char>((z & 0x7f) | 0x80));
    z >>= 7;
  }
  out_.push_back(static_cast<char>(z));
}

void AvroWriter::Float(float f) {
  char b[4];
  std::memcpy(b, &f, 4);  // little-endian hosts only (x86-64, aarch64): Avro's order
  out_.append(b, 4);
}

void AvroWriter::Double(double d) {
  char b[8];
  std::memcpy(b, &d, 8);
  out_.append(b, 8);
}

void AvroWriter::Bytes(std::string_view b) {
  Long(static_cast<int64_t>(b.size()));
  out_.append(b);
}

Result<json> AvroDecode(const json& schema, std::string_view data) {
  Decoder dec{Reader{data, 0}, {}};
  try {
    RETURN_IF_ERROR(dec.Collect(schema, "", 0));
    ASSIGN_OR_RETURN(json out, dec.Datum(schema, "", 0));
    if (dec.r.i != data.size())
      return InvalidArgument(fmt::format("avro: {} bytes left over after the datum", data.size() - dec.r.i));
    return out;
  } catch (const json::exception& e) {
    return InvalidArgument(fmt::format("avro: {}", e.what()));
  }
}

std::string ConfluentFrame(int32_t id, std::string_view body) {
  std::string out(5, '\0');
  const uint32_t u = static_cast<uint32_t>(id);
  out[1] = static_cast<char>(u >> 24);
  out[2] = static_cast<char>(u >> 16);
  out[3] = static_cast<char>(u >> 8);
  out[4] = static_cast<char>(u);
  out.append(body);
  return out;
}

Result<std::pair<int32_t, std::string_view>> ConfluentUnframe(std::string_view m) {
  if (m.size() < 5) return InvalidArgument(fmt::format("confluent wire format: {} bytes, under the 5-byte header", m.size()));
  if (m[0] != 0) return InvalidArgument(fmt::format("confluent wire format: magic byte {}, not 0", static_cast<int>(m[0])));
  const uint32_t u = (static_cast<uint32_t>(static_cast<uint8_t>(m[1])) << 24) |
                     (static_cast<uint32_t>(static_cast<uint8_t>(m[2])) << 16) |
                     (static_cast<uint32_t>(static_cast<uint8_t>(m[3])) << 8) | static_cast<uint8_t>(m[4]);
  return std::pair<int32_t, std::string_view>(static_cast<int32_t>(u), m.substr(5));
}

std::string DebeziumTopic(const std::string& prefix, const TableId& t) { return prefix + "." + t.schema + "." + t.name; }

std::optional<std::string> DecimalBytes(std::string_view text, int scale) {
  size_t i = 0;
  bool neg = false;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) neg = text[i] == '-', ++i;
  std::string digits;
  int after = -1;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c >= '0' && c <= '9') {
      digits += c;
      if (after >= 0) ++after;
    } else if (c == '.' && after < 0) {
      after = 0;
    } else {
      return std::nullopt;
    }
  }
  if (digits.empty()) return std::nullopt;
  if (after < 0) after = 0;
  while (after > scale) {  // only zeros may go
    if (digits.back() != '0') return std::nullopt;
    digits.pop_back();
    --after;
  }
  for (; after < scale; ++after) digits += '0';
  // The magnitude in base 256, most significant first: repeated division.
  std::string mag;
  while (!(digits.empty() || digits.find_first_not_of('0') == std::string::npos)) {
    std::string q;
    int rem = 0;
    for (char c : digits) {
      int cur = rem * 10 + (c - '0');
      if (!q.empty() || cur / 256) q += static_cast<char>('0' + cur / 256);
      rem = cur % 256;
    }
    mag.insert(mag.begin(), static_cast<char>(rem));
    digits = q;
  }
  if (mag.empty()) return std::string(1, '\0');
  mag.insert(mag.begin(), '\0');  // room for the sign bit
  if (neg) {
    for (char& c : mag) c = static_cast<char>(~static_cast<uint8_t>(c));
    for (size_t k = mag.size(); k-- > 0;) {
      uint8_t b = static_cast<uint8_t>(mag[k]) + 1;
      mag[k] = static_cast<char>(b);
      if (b != 0) break;
    }
  }
  // Minimal: drop a leading byte that only repeats the next one's sign.
  while (mag.size() > 1 && ((mag[0] == 0 && !(static_cast<uint8_t>(mag[1]) & 0x80)) ||
                            (static_cast<uint8_t>(mag[0]) == 0xff && (static_cast<uint8_t>(mag[1]) & 0x80))))
    mag.erase(mag.begin());
  return mag;
}

Result<std::shared_ptr<const DebeziumAvroTable>> DebeziumAvroTable::Build(std::shared_ptr<const TableSchema> table,
                                                                          const std::string& topic,
                                                                          PositionKind engine) {
  auto out = std::make_shared<DebeziumAvroTable>();
  const TableSchema& t = *table;
  out->table_ = table;
  out->engine_ = engine;
  const bool mysql = engine == PositionKind::kBinlog;
  const std::string ns = AvroNamespace(topic);
  std::set<std::string> defined;  // named types already written out in the schema being built
  // The Avro type of a column; `defined` holds the named types written so far.
  auto type_of = [&](const ColumnSchema& c, Column* col) -> ojson {
    const ColumnType ty = mysql ? c.type : Refine(c.type);
    const std::string base = Lower(ty.native_base.empty() ? ty.native : ty.native_base);
    switch (ty.kind) {
      case TypeKind::kBool: col->conv = Conv::kBool; return "boolean";
      case TypeKind::kInt:
        if (ty.is_signed ? ty.width <= 2 : ty.width <= 1) {
          col->conv = Conv::kInt;
          return ojson{{"type", "int"}, {"connect.type", "int16"}};
        }
        if (ty.is_signed ? ty.width <= 4 : ty.width <= 3) {
          col->conv = Conv::kInt;
          return "int";
        }
        if (ty.is_signed || ty.width <= 4) {
          col->conv = Conv::kLong;
          return "long";
        }
        // BIGINT UNSIGNED: Debezium's precise mode, a Decimal(20, 0).
        col->conv = Conv::kDecimal;
        col->scale = 0;
        return ojson{{"type", "bytes"},
                     {"scale", 0},
                     {"precision", 20},
                     {"connect.version", 1},
                     {"connect.parameters", {{"scale", "0"}, {"connect.decimal.precision", "20"}}},
                     {"connect.name", "org.apache.kafka.connect.data.Decimal"},
                     {"logicalType", "decimal"}};
      case TypeKind::kDecimal:
        if (ty.scale >= 0 && ty.precision > 0) {
          col->conv = Conv::kDecimal;
          col->scale = ty.scale;
          return ojson{{"type", "bytes"},
                       {"scale", ty.scale},
                       {"precision", ty.precision},
                       {"connect.version", 1},
                       {"connect.parameters",
                        {{"scale", std::to_string(ty.scale)},
                         {"connect.decimal.precision", std::to_string(ty.precision)}}},
                       {"connect.name", "org.apache.kafka.connect.data.Decimal"},
                       {"logicalType", "decimal"}};
        }
        col->conv = Conv::kVarDecimal;
        if (!defined.insert("io.debezium.data.VariableScaleDecimal").second)
          return "io.debezium.data.VariableScaleDecimal";
        return ojson{{"type", "record"},
                     {"name", "VariableScaleDecimal"},
                     {"namespace", "io.debezium.data"},
                     {"fields", {{{"name", "scale"}, {"type", "int"}}, {{"name", "value"}, {"type", "bytes"}}}},
                     {"connect.doc", "Variable scaled decimal"},
                     {"connect.version", 1},
                     {"connect.name", "io.debezium.data.VariableScaleDecimal"}};
      case TypeKind::kFloat:
        col->conv = ty.width == 4 ? Conv::kFloat : Conv::kDouble;
        return ty.width == 4 ? "float" : "double";
      case TypeKind::kBytes:
        col->conv = mysql ? Conv::kBytesRaw : Conv::kBytesPg;
        return "bytes";
      case TypeKind::kJson: return Semantic("string", "io.debezium.data.Json");
      case TypeKind::kUuid: return Semantic("string", "io.debezium.data.Uuid");
      case TypeKind::kDate: col->conv = Conv::kDate; return Semantic("int", "io.debezium.time.Date");
      case TypeKind::kTime:
        if (ty.with_zone) {
          col->conv = Conv::kZonedTime;
          return Semantic("string", "io.debezium.time.ZonedTime");
        }
        // Debezium's MySQL connector (time.precision.mode
        // adaptive_time_microseconds, its default) makes every TIME a MicroTime.
        if (!mysql && ty.precision >= 0 && ty.precision <= 3) {
          col->conv = Conv::kTimeMs;
          return Semantic("int", "io.debezium.time.Time");
        }
        col->conv = Conv::kTimeMicros;
        return Semantic("long", "io.debezium.time.MicroTime");
      case TypeKind::kTimestamp:
        if (ty.with_zone) {
          col->conv = Conv::kZonedTimestamp;
          return Semantic("string", "io.debezium.time.ZonedTimestamp");
        }
        if (ty.precision >= 0 && ty.precision <= 3) {
          col->conv = Conv::kTimestampMs;
          return Semantic("long", "io.debezium.time.Timestamp");
        }
        col->conv = Conv::kTimestampMicros;
        return Semantic("long", "io.debezium.time.MicroTimestamp");
      case TypeKind::kEnum: {
        // MySQL's binlog gives an ENUM's index (1-based; 0 the empty
        // invalid value): the label is written.
        if (mysql) {
          col->conv = Conv::kEnumIndex;
          col->labels = Labels(ty.native);
        }
        ojson s = Semantic("string", "io.debezium.data.Enum");
        if (std::string a = Allowed(ty.native); !a.empty()) s["connect.parameters"] = {{"allowed", a}};
        return s;
      }
      case TypeKind::kOther:
        if (mysql && base.rfind("set", 0) == 0 && (base.size() == 3 || base[3] == '(')) {
          // The binlog's SET is a bitmask of its members: "a,c" is written.
          col->conv = Conv::kSetBits;
          col->labels = Labels(ty.native);
          ojson s = Semantic("string", "io.debezium.data.EnumSet");
          if (std::string a = Allowed(ty.native); !a.empty()) s["connect.parameters"] = {{"allowed", a}};
          return s;
        }
        if (mysql && base.rfind("bit", 0) == 0 && (base.size() == 3 || base[3] == '(')) {
          // Debezium: BIT(1) a boolean, BIT(n) its bytes little-endian
          // (io.debezium.data.Bits, `length` n).
          int n = 1;
          if (auto open = ty.native.find('('); open != std::string::npos) n = std::atoi(ty.native.c_str() + open + 1);
          if (n <= 1) {
            col->conv = Conv::kBitBool;
            return "boolean";
          }
          col->conv = Conv::kBits;
          col->scale = n;
          return ojson{{"type", "bytes"},
                       {"connect.version", 1},
                       {"connect.parameters", {{"length", std::to_string(n)}}},
                       {"connect.name", "io.debezium.data.Bits"}};
        }
        if (mysql && (base == "uuid" || base == "inet6" || base == "inet4")) {
          // MariaDB's UUID, INET6 and INET4: the binlog's stored bytes as
          // the text the server prints (Debezium: a string).
          col->conv = Conv::kFixedBinary;
          col->fixed_type = base;
          return "string";
        }
        if (mysql && IsGeometry(base)) {
          col->conv = Conv::kGeometry;
          if (!defined.insert("io.debezium.connector.mysql.Geometry").second)
            return "io.debezium.connector.mysql.Geometry";
          return ojson{{"type", "record"},
                       {"name", "Geometry"},
                       {"namespace", "io.debezium.connector.mysql"},
                       {"fields",
                        {{{"name", "wkb"}, {"type", "bytes"}},
                         {{"name", "srid"}, {"type", {"null", "int"}}, {"default", nullptr}}}},
                       {"connect.doc", "Geometry"},
                       {"connect.version", 1},
                       {"connect.name", "io.debezium.data.geometry.Geometry"}};
        }
        return "string";
      case TypeKind::kText:
      case TypeKind::kInterval:
      case TypeKind::kArray: return "string";
    }
    return "string";
  };

  std::set<int> key_cols(t.key_writable.begin(), t.key_writable.end());
  auto record = [&](const char* name, bool key_only) {
    ojson fields = ojson::array();
    for (size_t i = 0; i < t.writable.size(); ++i) {
      if (key_only && !key_cols.count(static_cast<int>(i))) continue;
      const ColumnSchema& c = t.columns[t.writable[i]];
      Column col;
      col.name = AvroName(c.name);
      ojson ty = type_of(c, &col);
      // Key columns are always there; every other column may be null (a
      // delete's old image holds only the key, as Debezium's does).
      col.nullable = !key_cols.count(static_cast<int>(i));
      if (!key_only) out->columns_.push_back(col);
      ojson f = {{"name", col.name}};
      if (col.nullable) {
        f["type"] = ojson::array({"null", ty});
        f["default"] = nullptr;
      } else {
        f["type"] = ty;
      }
      fields.push_back(std::move(f));
    }
    return ojson{{"type", "record"},
                 {"name", name},
                 {"namespace", ns},
                 {"fields", std::move(fields)},
                 {"connect.name", ns + "." + name}};
  };

  ojson key = record("Key", true);
  defined.clear();  // the value schema is a document of its own
  ojson value = record("Value", false);
  ojson snapshot = {{"type", "string"},
                    {"connect.version", 1},
                    {"connect.parameters", {{"allowed", "true,last,false,incremental"}}},
                    {"connect.default", "false"},
                    {"connect.name", "io.debezium.data.Enum"}};
  auto opt = [](const char* name, const char* type) {
    return ojson{{"name", name}, {"type", {"null", type}}, {"default", nullptr}};
  };
  auto req = [](const char* name, const char* type) { return ojson{{"name", name}, {"type", type}}; };
  ojson src_fields = ojson::array({req("version", "string"), req("connector", "string"), req("name", "string"),
                                   req("ts_ms", "long"),
                                   ojson{{"name", "snapshot"}, {"type", {snapshot, "null"}}, {"default", "false"}},
                                   req("db", "string"), opt("sequence", "string")});
  if (mysql) {
    for (ojson f : {opt("table", "string"), req("server_id", "long"), opt("gtid", "string"), req("file", "string"),
                    req("pos", "long"), req("row", "int"), opt("thread", "long"), opt("query", "string")})
      src_fields.push_back(std::move(f));
  } else {
    for (ojson f : {req("schema", "string"), req("table", "string"), opt("txId", "long"), opt("lsn", "long"),
                    opt("xmin", "long")})
      src_fields.push_back(std::move(f));
  }
  // midflight's ordinal of the change inside its transaction: with the
  // position, the total order of the stream.
  src_fields.push_back(opt("midflight_seq", "long"));
  const char* src_name = mysql ? "io.debezium.connector.mysql.Source" : "io.debezium.connector.postgresql.Source";
  ojson source = {{"type", "record"},
                  {"name", "Source"},
                  {"namespace", mysql ? "io.debezium.connector.mysql" : "io.debezium.connector.postgresql"},
                  {"fields", std::move(src_fields)},
                  {"connect.name", src_name}};
  ojson envelope = {
      {"type", "record"},
      {"name", "Envelope"},
      {"namespace", ns},
      {"fields",
       {{{"name", "before"}, {"type", {"null", std::move(value)}}, {"default", nullptr}},
        {{"name", "after"}, {"type", {"null", ns + ".Value"}}, {"default", nullptr}},
        {{"name", "source"}, {"type", std::move(source)}},
        {{"name", "op"}, {"type", "string"}},
        opt("ts_ms", "long")}},
      {"connect.version", 1},
      {"connect.name", ns + ".Envelope"}};
  out->key_schema_ = key.dump();
  out->value_schema_ = envelope.dump();
  return std::shared_ptr<const DebeziumAvroTable>(std::move(out));
}

Status DebeziumAvroTable::EncodeColumn(const Change& /*c*/, const Column& col, const Datum& d, AvroWriter* w) const {
  auto bad = [&](const std::string& what) {
    return OperatorError(fmt::format("table {} column {}: {} (Avro for topic subject of this table)",
                                     table_->id.ToString(), col.name, what));
  };
  auto null_or = [&](const std::string& what) -> Status {
    if (!col.nullable) return bad(what);
    w->Branch(0);
    return Status::Ok();
  };
  if (d.is_null()) {
    if (!col.nullable) return bad("a NULL in a key column");
    w->Branch(0);
    return Status::Ok();
  }
  if (d.is_unchanged()) {
    // Debezium's placeholder for an unchanged TOASTed value, where the type
    // can hold it; null elsewhere.
    if (col.conv == Conv::kString || col.conv == Conv::kBytesPg || col.conv == Conv::kBytesRaw) {
      if (col.nullable) w->Branch(1);
      w->String(kUnavailable);
      return Status::Ok();
    }
    return null_or("an unchanged TOASTed value");
  }
  const std::string& s = d.text;
  AvroWriter v;  // the value, written after the branch once it parsed
  switch (col.conv) {
    case Conv::kString: v.String(Utf8(s)); break;
    case Conv::kFixedBinary: v.String(Utf8(FixedBinaryText(col.fixed_type, s))); break;
    case Conv::kBool:
      if (s == "t" || s == "true" || s == "1")
        v.Bool(true);
      else if (s == "f" || s == "false" || s == "0")
        v.Bool(false);
      else
        return null_or(fmt::format("'{}' is not a boolean", Utf8(s)));
      break;
    case Conv::kInt:
    case Conv::kLong: {
      int64_t n = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (ec != std::errc() || p != s.data() + s.size() ||
          (col.conv == Conv::kInt && (n < INT32_MIN || n > INT32_MAX)))
        return null_or(fmt::format("'{}' is not an integer of its width", Utf8(s)));
      v.Long(n);
      break;
    }
    case Conv::kFloat:
    case Conv::kDouble: {
      char* end = nullptr;
      const double x = std::strtod(s.c_str(), &end);
      if (s.empty() || end != s.c_str() + s.size()) return null_or(fmt::format("'{}' is not a number", Utf8(s)));
      if (col.conv == Conv::kFloat)
        v.Float(static_cast<float>(x));
      else
        v.Double(x);
      break;
    }
    case Conv::kBytesPg: {
      std::string b;
      if (s.rfind("\\x", 0) == 0) {
        if (!Unhex(std::string_view(s).substr(2), &b)) return null_or("bytea text that is not hex");
      } else {
        b = s;
      }
      v.Bytes(b);
      break;
    }
    case Conv::kBytesRaw: v.Bytes(s); break;
    case Conv::kEnumIndex:
    case Conv::kSetBits: {
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (ec != std::errc() || p != s.data() + s.size()) {
        v.String(Utf8(s));  // a label already (a value not from the binlog)
        break;
      }
      std::string text;
      if (col.conv == Conv::kEnumIndex) {
        if (n > col.labels.size())
          return null_or(fmt::format("ENUM index {} past its {} members", n, col.labels.size()));
        if (n > 0) text = col.labels[n - 1];
      } else {
        for (size_t i = 0; i < col.labels.size() && i < 64; ++i)
          if (n >> i & 1) text += (text.empty() ? "" : ",") + col.labels[i];
      }
      v.String(Utf8(text));
      break;
    }
    case Conv::kBitBool:
    case Conv::kBits: {
      // The binlog's and the copy's text form of a BIT is its value in decimal.
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (ec != std::errc() || p != s.data() + s.size())
        return null_or(fmt::format("'{}' is not a BIT value", Utf8(s)));
      if (col.conv == Conv::kBitBool) {
        v.Bool(n != 0);
        break;
      }
      std::string bytes;
      for (int i = 0; i < (col.scale + 7) / 8; ++i) bytes.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
      v.Bytes(bytes);
      break;
    }
    case Conv::kDecimal: {
      auto b = DecimalBytes(s, col.scale);
      if (!b) return null_or(fmt::format("'{}' is not a decimal of scale {}", Utf8(s), col.scale));
      v.Bytes(*b);
      break;
    }
    case Conv::kVarDecimal: {
      const size_t dot = s.find('.');
      const int scale = dot == std::string::npos ? 0 : static_cast<int>(s.size() - dot - 1);
      auto b = DecimalBytes(s, scale);
      if (!b) return null_or(fmt::format("'{}' is not a decimal", Utf8(s)));  // NaN, Infinity
      v.Long(scale);
      v.Bytes(*b);
      break;
    }
    case Conv::kDate: {
      int64_t days;
      size_t used;
      if (!ParseDate(s, &days, &used) || (used != s.size() && s.substr(used) != " BC") || days < INT32_MIN ||
          days > INT32_MAX)
        return null_or(fmt::format("'{}' is not a date", Utf8(s)));
      v.Long(days);
      break;
    }
    case Conv::kTimeMs:
    case Conv::kTimeMicros: {
      int64_t us;
      size_t used;
      if (!ParseTimeOfDay(s, &us, &used) || used != s.size()) return null_or(fmt::format("'{}' is not a time", Utf8(s)));
      v.Long(col.conv == Conv::kTimeMs ? FloorDiv(us, 1000) : us);
      break;
    }
    case Conv::kZonedTime: {
      int64_t us, off = 0;
      size_t used, u2 = 0;
      if (!ParseTimeOfDay(s, &us, &used) || us < 0 ||
          (used != s.size() && (!ParseOffset(std::string_view(s).substr(used), &off, &u2) || used + u2 != s.size())))
        return null_or(fmt::format("'{}' is not a time with zone", Utf8(s)));
      int64_t utc = us - off * 1000000;
      utc = ((utc % 86400000000LL) + 86400000000LL) % 86400000000LL;
      const int64_t secs = utc / 1000000;
      v.String(fmt::format("{:02}:{:02}:{:02}{}Z", secs / 3600, secs / 60 % 60, secs % 60, Fraction(utc % 1000000)));
      break;
    }
    case Conv::kTimestampMs:
    case Conv::kTimestampMicros:
    case Conv::kZonedTimestamp: {
      int64_t us;
      if (!ParseTimestamp(s, col.conv == Conv::kZonedTimestamp, &us))
        return null_or(fmt::format("'{}' is not a timestamp", Utf8(s)));
      if (col.conv == Conv::kZonedTimestamp)
        v.String(IsoUtc(us));
      else
        v.Long(col.conv == Conv::kTimestampMs ? FloorDiv(us, 1000) : us);
      break;
    }
    case Conv::kGeometry: {
      // MySQL's internal form: a 4-byte little-endian SRID, then WKB.
      if (s.size() < 5) return null_or("a geometry shorter than its SRID and WKB header");
      const uint32_t srid = static_cast<uint8_t>(s[0]) | static_cast<uint8_t>(s[1]) << 8 |
                            static_cast<uint8_t>(s[2]) << 16 | static_cast<uint32_t>(static_cast<uint8_t>(s[3])) << 24;
      v.Bytes(std::string_view(s).substr(4));
      v.Branch(1);
      v.Long(static_cast<int32_t>(srid));
      break;
    }
  }
  if (col.nullable) w->Branch(1);
  w->out() += v.out();
  return Status::Ok();
}

Status DebeziumAvroTable::EncodeImage(const Change& c, const std::vector<Datum>& image, bool key_only,
                                      AvroWriter* w) const {
  const TableSchema& t = *table_;
  if (image.size() != t.writable.size())
    return Internal(fmt::format("table {}: an image of {} values for {} columns", t.id.ToString(), image.size(),
                                t.writable.size()));
  if (key_only) {
    for (int k : t.key_writable) {
      Column col = columns_[k];
      col.nullable = false;
      RETURN_IF_ERROR(EncodeColumn(c, col, image[k], w));
    }
    return Status::Ok();
  }
  for (size_t i = 0; i < columns_.size(); ++i) RETURN_IF_ERROR(EncodeColumn(c, columns_[i], image[i], w));
  return Status::Ok();
}

Result<std::string> DebeziumAvroTable::EncodeKey(const Change& c) const {
  const std::vector<Datum>& image = c.kind == ChangeKind::kDelete && !c.old.empty() ? c.old : c.values;
  AvroWriter w;
  RETURN_IF_ERROR(EncodeImage(c, image, /*key_only=*/true, &w));
  return std::move(w.out());
}

Result<std::string> DebeziumAvroTable::EncodeValue(const Change& c, const std::string& source_name, int64_t now_ms,
                                                   bool snapshot, bool last) const {
  if (c.kind == ChangeKind::kTruncate) return Internal("a truncate has no row event");
  AvroWriter w;
  // before
  if (c.kind == ChangeKind::kInsert || c.old.empty()) {
    w.Branch(0);
  } else {
    w.Branch(1);
    RETURN_IF_ERROR(EncodeImage(c, c.old, false, &w));
  }
  // after
  if (c.kind == ChangeKind::kDelete) {
    w.Branch(0);
  } else {
    w.Branch(1);
    RETURN_IF_ERROR(EncodeImage(c, c.values, false, &w));
  }
  EncodeSource(c, source_name, !snapshot ? "false" : last ? "last" : "true", &w);
  // op, ts_ms
  const char* op = snapshot ? "r" : c.kind == ChangeKind::kInsert ? "c" : c.kind == ChangeKind::kUpdate ? "u" : "d";
  w.String(op);
  w.Branch(1);
  w.Long(now_ms);
  return std::move(w.out());
}

void DebeziumAvroTable::EncodeSource(const Change& c, const std::string& source_name, const char* snapshot,
                                     AvroWriter* w) const {
  const int64_t ts_ms = c.commit_time_us / 1000;
  const uint64_t pos = c.pos.commit_lsn.value();
  w->String("midflight");  // version
  w->String(engine_ == PositionKind::kBinlog ? "mysql" : "postgresql");
  w->String(source_name);
  w->Long(ts_ms);
  w->Branch(0);  // snapshot: the string branch
  w->String(snapshot);
  w->String(engine_ == PositionKind::kBinlog ? Utf8(table_->id.schema) : std::string());  // db
  w->Branch(0);                                                                           // sequence: null
  if (engine_ == PositionKind::kBinlog) {
    w->Branch(1);
    w->String(Utf8(table_->id.name));
    w->Long(0);    // server_id: not carried by the position
    w->Branch(0);  // gtid
    w->String(fmt::format("{:06}", pos >> 32));
    w->Long(static_cast<int64_t>(pos & 0xffffffffu));
    w->Long(0);    // row
    w->Branch(0);  // thread
    w->Branch(0);  // query
  } else {
    w->String(Utf8(table_->id.schema));
    w->String(Utf8(table_->id.name));
    w->Branch(0);  // txId
    w->Branch(1);  // lsn
    w->Long(static_cast<int64_t>(pos));
    w->Branch(0);  // xmin
  }
  w->Branch(1);
  w->Long(c.pos.seq);
}

Result<std::string> DebeziumAvroTable::EncodeTruncate(const Change& c, const std::string& source_name,
                                                      int64_t now_ms) const {
  if (c.kind != ChangeKind::kTruncate) return Internal("not a truncate");
  AvroWriter w;
  w.Branch(0);  // before
  w.Branch(0);  // after
  EncodeSource(c, source_name, /*snapshot=*/"false", &w);
  w.String("t");
  w.Branch(1);
  w.Long(now_ms);
  return std::move(w.out());
}

}  // namespace midflight::kafka
