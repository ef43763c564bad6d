#include "kafka/change_codec.h"

#include <fmt/format.h>

#include <arpa/inet.h>

#include <nlohmann/json.hpp>

namespace midflight::kafka {
namespace {

using nlohmann::json;

constexpr const char* kUnavailable = "__debezium_unavailable_value";


std::string Hex(const std::string& s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

json TextJson(const std::string& t) {
  return ValidUtf8(t) ? json(t) : json{{"hex", Hex(t)}};
}

json DatumJson(const Datum& d) {
  switch (d.kind) {
    case Datum::Kind::kNull: return nullptr;
    case Datum::Kind::kUnchanged: return json{{"unchanged", true}};
    case Datum::Kind::kText: return TextJson(d.text);
  }
  return nullptr;
}

// A value of column c in the Debezium images and the key (FixedBinaryText).
json ColumnJson(const ColumnSchema& c, const Datum& d) {
  if (d.is_unchanged()) return kUnavailable;
  return d.kind == Datum::Kind::kText ? TextJson(FixedBinaryText(c.type.native_base, d.text)) : DatumJson(d);
}

json Image(const TableSchema& t, const std::vector<Datum>& image) {
  if (image.empty()) return nullptr;
  json out = json::object();
  for (size_t i = 0; i < image.size() && i < t.writable.size(); ++i) {
    const ColumnSchema& c = t.columns[t.writable[i]];
    out[c.name] = ColumnJson(c, image[i]);
  }
  return out;
}

json Datums(const std::vector<Datum>& image) {
  json out = json::array();
  for (const Datum& d : image) out.push_back(DatumJson(d));
  return out;
}

const char* Op(ChangeKind k) {
  switch (k) {
    case ChangeKind::kInsert: return "c";
    case ChangeKind::kUpdate: return "u";
    case ChangeKind::kDelete: return "d";
    case ChangeKind::kTruncate: return "t";
  }
  return "?";
}

const char* CheckName(ConflictCheck c) {
  switch (c) {
    case ConflictCheck::kNone: return "none";
    case ConflictCheck::kInsert: return "insert";
    case ConflictCheck::kUpdate: return "update";
    case ConflictCheck::kDelete: return "delete";
  }
  return "none";
}

Status Bad(const std::string& what) {
  return DataLoss("kafka change message: " + what);
}

// The member `name` of `o`, which must have the JSON type `ok` checks.
template <typename Pred>
Result<const json*> Member(const json& o, const char* name, Pred ok, const char* type) {
  auto it = o.find(name);
  if (it == o.end()) return Bad(fmt::format("'{}' is missing", name));
  if (!ok(*it)) return Bad(fmt::format("'{}' is not {}", name, type));
  return &*it;
}

Result<uint64_t> U64(const json& o, const char* name) {
  ASSIGN_OR_RETURN(const json* v,
                   Member(
                       o, name, [](const json& j) { return j.is_number_unsigned(); }, "an unsigned integer"));
  return v->get<uint64_t>();
}

Status DecodeDatums(const json& o, const char* name, size_t writable, std::vector<Datum>* out) {
  ASSIGN_OR_RETURN(const json* arr, Member(
                                        o, name, [](const json& j) { return j.is_array(); }, "an array"));
  if (!arr->empty() && arr->size() != writable)
    return Bad(fmt::format("'{}' holds {} values, the table has {} writable columns", name, arr->size(), writable));
  for (const json& d : *arr) {
    if (d.is_null()) {
      out->push_back(Datum::Null());
    } else if (d.is_string()) {
      out->push_back(Datum::Text(d.get<std::string>()));
    } else if (d.is_object() && d.size() == 1 && d.contains("unchanged") && d["unchanged"] == true) {
      out->push_back(Datum::Unchanged());
    } else if (d.is_object() && d.size() == 1 && d.contains("hex") && d["hex"].is_string()) {
      std::string bytes;
      if (!Unhex(d["hex"].get<std::string>(), &bytes)) return Bad(fmt::format("'{}' holds bad hex", name));
      out->push_back(Datum::Text(std::move(bytes)));
    } else {
      return Bad(fmt::format("'{}' holds a value that is not a string, null, hex or unchanged", name));
    }
  }
  return Status::Ok();
}

Result<std::shared_ptr<const TableSchema>> Table(const TableLookup& lookup, uint64_t ref) {
  std::shared_ptr<const TableSchema> t = ref <= UINT32_MAX ? lookup(static_cast<uint32_t>(ref)) : nullptr;
  if (!t) return Bad(fmt::format("unknown table ref {}", ref));
  return t;
}

// `named` set: any run, tables by name (DecodeChangeAnyRun). `read` set: a
// snapshot row decodes to an insert and sets *read; else snapshot records
// decode to nullopt.
Result<std::optional<Change>> Decode(const json& root, uint64_t run, const TableLookup& lookup,
                                     const NamedTableLookup* named = nullptr, bool* read = nullptr) {
  if (!root.is_object()) return Bad("not a JSON object");
  ASSIGN_OR_RETURN(const json* m, Member(
                                      root, "midflight", [](const json& j) { return j.is_object(); }, "an object"));
  ASSIGN_OR_RETURN(uint64_t version, U64(*m, "v"));
  if (version != 1) return Bad(fmt::format("encoding version {} is not 1", version));
  ASSIGN_OR_RETURN(uint64_t from_run, U64(*m, "run"));
  if (!named && from_run != run) return std::optional<Change>();
  Change c;
  ASSIGN_OR_RETURN(const json* kind, Member(
                                         *m, "kind", [](const json& j) { return j.is_string(); }, "a string"));
  const std::string k = kind->get<std::string>();
  if (k == "reset" || (k == "read" && (!named || !read))) return std::optional<Change>();
  if (k == "read") {
    c.kind = ChangeKind::kInsert;
    *read = true;
  } else if (k == "insert")
    c.kind = ChangeKind::kInsert;
  else if (k == "update")
    c.kind = ChangeKind::kUpdate;
  else if (k == "delete")
    c.kind = ChangeKind::kDelete;
  else if (k == "truncate")
    c.kind = ChangeKind::kTruncate;
  else
    return Bad(fmt::format("kind '{}' is unknown", k));
  ASSIGN_OR_RETURN(uint64_t ref, U64(*m, "table"));
  const json* source = root.contains("source") && root["source"].is_object() ? &root["source"] : nullptr;
  if (named) {
    if (c.kind == ChangeKind::kTruncate) return std::optional<Change>();
    if (!source || !(*source).contains("schema") || !(*source).contains("table") || !(*source)["schema"].is_string() ||
        !(*source)["table"].is_string())
      return Bad("source.schema/table are missing");
    TableId id{(*source)["schema"].get<std::string>(), (*source)["table"].get<std::string>()};
    c.table = (*named)(id);
    if (!c.table) return Bad(fmt::format("table {} is not one the migration moves", id.ToString()));
  } else {
    ASSIGN_OR_RETURN(c.table, Table(lookup, ref));
  }
  if (!source || !(*source).contains("schema") || !(*source).contains("table") ||
      (*source)["schema"] != c.table->id.schema || (*source)["table"] != c.table->id.name)
    return Bad(fmt::format("source.schema/table do not name table ref {} ({})", ref, c.table->id.ToString()));
  ASSIGN_OR_RETURN(uint64_t lsn, U64(*m, "lsn"));
  ASSIGN_OR_RETURN(uint64_t seq, U64(*m, "seq"));
  if (seq > UINT32_MAX) return Bad("'seq' is out of range");
  c.pos = ChangePosition{PgLsn::FromU64(lsn), static_cast<uint32_t>(seq)};
  ASSIGN_OR_RETURN(const json* us,
                   Member(
                       *m, "commit_us", [](const json& j) { return j.is_number_integer(); }, "an integer"));
  c.commit_time_us = us->get<int64_t>();
  ASSIGN_OR_RETURN(const json* check, Member(
                                          *m, "check", [](const json& j) { return j.is_string(); }, "a string"));
  const std::string ch = check->get<std::string>();
  if (ch == "none")
    c.check = ConflictCheck::kNone;
  else if (ch == "insert")
    c.check = ConflictCheck::kInsert;
  else if (ch == "update")
    c.check = ConflictCheck::kUpdate;
  else if (ch == "delete")
    c.check = ConflictCheck::kDelete;
  else
    return Bad(fmt::format("check '{}' is unknown", ch));
  const size_t writable = c.table->writable.size();
  RETURN_IF_ERROR(DecodeDatums(*m, "values", writable, &c.values));
  RETURN_IF_ERROR(DecodeDatums(*m, "old", writable, &c.old));
  ASSIGN_OR_RETURN(const json* truncated, Member(
                                              *m, "truncated", [](const json& j) { return j.is_array(); }, "an array"));
  for (const json& r : *truncated) {
    if (!r.is_number_unsigned()) return Bad("'truncated' holds a ref that is not an unsigned integer");
    ASSIGN_OR_RETURN(auto t, Table(lookup, r.get<uint64_t>()));
    c.truncated.push_back(std::move(t));
  }
  ASSIGN_OR_RETURN(const json* restart,
                   Member(
                       *m, "restart_identity", [](const json& j) { return j.is_boolean(); }, "a boolean"));
  c.truncate_restart_identity = restart->get<bool>();
  if (c.kind != ChangeKind::kTruncate && c.kind != ChangeKind::kDelete && c.values.empty())
    return Bad(fmt::format("a {} without a new image", k));
  if (c.kind == ChangeKind::kDelete && c.old.empty()) return Bad("a delete without an old image");
  return std::optional<Change>(std::move(c));
}

}  // namespace

bool Unhex(std::string_view h, std::string* out) {
  if (h.size() % 2) return false;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < h.size(); i += 2) {
    int a = val(h[i]), b = val(h[i + 1]);
    if (a < 0 || b < 0) return false;
    out->push_back(static_cast<char>(a * 16 + b));
  }
  return true;
}

std::string FixedBinaryText(std::string_view type_base, const std::string& value) {
  char buf[INET6_ADDRSTRLEN];
  if (type_base == "uuid" && value.size() == 16) {
    const std::string h = Hex(value);
    return fmt::format("{}-{}-{}-{}-{}", h.substr(0, 8), h.substr(8, 4), h.substr(12, 4), h.substr(16, 4),
                       h.substr(20));
  }
  if (type_base == "inet6" && value.size() == 16 && inet_ntop(AF_INET6, value.data(), buf, sizeof buf)) return buf;
  if (type_base == "inet4" && value.size() == 4 && inet_ntop(AF_INET, value.data(), buf, sizeof buf)) return buf;
  return value;
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < len; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 0x2) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

EncodedChange EncodeChange(const Change& c, uint64_t run, uint32_t table_ref,
                           const std::vector<uint32_t>& truncated_refs, const std::string& source_name) {
  const TableSchema& t = *c.table;
  // The key columns of the image the key comes from (Change::KeyText's rule).
  const std::vector<Datum>& key_image =
      (c.kind == ChangeKind::kDelete || c.MovesKey()) && !c.old.empty() ? c.old : c.values;
  json key = json::object();
  if (!t.key_writable.empty()) {
    for (int i : t.key_writable)
      if (static_cast<size_t>(i) < key_image.size()) key[t.columns[t.writable[i]].name] = ColumnJson(t.columns[t.writable[i]], key_image[i]);
  } else {
    key = Image(t, key_image);
  }
  const int64_t ts_ms = c.commit_time_us / 1000;
  json source = {
      {"connector", "midflight"},        {"name", source_name},   {"schema", t.id.schema}, {"table", t.id.name},
      {"lsn", c.pos.commit_lsn.value()}, {"sequence", c.pos.seq}, {"ts_ms", ts_ms},        {"snapshot", "false"}};
  json mid = {{"v", 1},
              {"run", run},
              {"table", table_ref},
              {"kind", ChangeKindName(c.kind)},
              {"lsn", c.pos.commit_lsn.value()},
              {"seq", c.pos.seq},
              {"commit_us", c.commit_time_us},
              {"check", CheckName(c.check)},
              {"values", Datums(c.values)},
              {"old", Datums(c.old)},
              {"truncated", truncated_refs},
              {"restart_identity", c.truncate_restart_identity}};
  json value = {
      {"before", c.kind == ChangeKind::kInsert ? json(nullptr) : Image(t, c.old)},
      {"after", c.kind == ChangeKind::kDelete || c.kind == ChangeKind::kTruncate ? json(nullptr) : Image(t, c.values)},
      {"source", std::move(source)},
      {"op", Op(c.kind)},
      {"ts_ms", ts_ms},
      {"midflight", std::move(mid)}};
  // Images hold only valid UTF-8 (hex otherwise); `replace` guards names.
  return {key.dump(-1, ' ', false, json::error_handler_t::replace),
          value.dump(-1, ' ', false, json::error_handler_t::replace)};
}

EncodedChange EncodeSnapshotRow(const Change& row, uint64_t run, const std::string& source_name, int chunk) {
  EncodedChange m = EncodeChange(row, run, 0, {}, source_name);
  // The same envelope, as Debezium's read event.
  json value = json::parse(m.value);
  value["op"] = "r";
  value["before"] = nullptr;
  value["source"]["snapshot"] = "true";
  value["midflight"]["kind"] = "read";
  value["midflight"]["check"] = "none";
  value["midflight"]["chunk"] = chunk;
  m.value = value.dump(-1, ' ', false, json::error_handler_t::replace);
  return m;
}

EncodedChange EncodeChunkReset(const ChunkReset& r, uint64_t run, const std::string& source_name) {
  auto opt = [](const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); };
  json source = {{"connector", "midflight"}, {"name", source_name}, {"schema", r.table.schema},
                 {"table", r.table.name},    {"lsn", r.snapshot},    {"snapshot", "true"}};
  json mid = {{"v", 1},
              {"run", run},
              {"kind", "reset"},
              {"chunk", r.chunk},
              {"column", r.column.empty() ? json(nullptr) : json(r.column)},
              {"lo", opt(r.lo)},
              {"hi", opt(r.hi)},
              {"lsn", r.snapshot}};
  json value = {{"before", nullptr}, {"after", nullptr},           {"source", std::move(source)},
                {"op", "midflight.reset"}, {"ts_ms", nullptr}, {"midflight", std::move(mid)}};
  json key = {{"midflight_reset", fmt::format("{}#{}", r.table.ToString(), r.chunk)}};
  return {key.dump(-1, ' ', false, json::error_handler_t::replace),
          value.dump(-1, ' ', false, json::error_handler_t::replace)};
}

namespace {

Result<ChunkReset> DecodeReset(const json& root, const json& m, const NamedTableLookup& lookup) {
  const json* source = root.contains("source") && root["source"].is_object() ? &root["source"] : nullptr;
  if (!source || !source->contains("schema") || !source->contains("table") || !(*source)["schema"].is_string() ||
      !(*source)["table"].is_string())
    return Bad("source.schema/table are missing");
  ChunkReset r;
  r.table = TableId{(*source)["schema"].get<std::string>(), (*source)["table"].get<std::string>()};
  if (!lookup(r.table)) return Bad(fmt::format("table {} is not one the migration moves", r.table.ToString()));
  auto chunk = m.find("chunk");
  if (chunk == m.end() || !chunk->is_number_integer() || chunk->get<int64_t>() < -1 ||
      chunk->get<int64_t>() > INT32_MAX)
    return Bad("'chunk' is not a chunk number");
  r.chunk = static_cast<int>(chunk->get<int64_t>());
  ASSIGN_OR_RETURN(r.snapshot, U64(m, "lsn"));
  auto column = m.find("column");
  if (column == m.end() || !(column->is_null() || column->is_string())) return Bad("'column' is not a string or null");
  if (column->is_string()) r.column = column->get<std::string>();
  for (auto [name, out] : {std::pair<const char*, std::optional<int64_t>*>{"lo", &r.lo}, {"hi", &r.hi}}) {
    auto it = m.find(name);
    if (it == m.end() || !(it->is_null() || it->is_number_integer()))
      return Bad(fmt::format("'{}' is not an integer or null", name));
    if (it->is_number_integer()) *out = it->get<int64_t>();
  }
  if (r.column.empty() && (r.lo || r.hi)) return Bad("a reset with a range but no column");
  return r;
}

}  // namespace

Result<LogRecord> DecodeRecordAnyRun(std::string_view value, const NamedTableLookup& lookup) {
  json root = json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Bad("not valid JSON");
  try {
    LogRecord out;
    if (root.is_object() && root.contains("midflight") && root["midflight"].is_object() &&
        root["midflight"].value("kind", "") == "reset") {
      out.kind = LogRecord::Kind::kChunkReset;
      ASSIGN_OR_RETURN(out.reset, DecodeReset(root, root["midflight"], lookup));
      return out;
    }
    bool read = false;
    ASSIGN_OR_RETURN(out.change, Decode(root, 0, nullptr, &lookup, &read));
    if (read) out.kind = LogRecord::Kind::kSnapshotRow;
    return out;
  } catch (const json::exception& e) {
    return Bad(e.what());
  }
}

Result<std::optional<Change>> DecodeChangeAnyRun(std::string_view value, const NamedTableLookup& lookup) {
  json root = json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Bad("not valid JSON");
  try {
    return Decode(root, 0, nullptr, &lookup);
  } catch (const json::exception& e) {
    return Bad(e.what());
  }
}

Result<std::optional<Change>> DecodeChange(std::string_view value, uint64_t run, const TableLookup& lookup) {
  json root = json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Bad("not valid JSON");
  try {
    return Decode(root, run, lookup);
  } catch (const json::exception& e) {
    return Bad(e.what());
  }
}

}  // namespace midflight::kafka
