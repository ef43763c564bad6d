#include "engines/verify_report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

namespace midflight::verify {

bool Report::clean() const {
  for (const auto& t : tables)
    if (!t.differences.empty() || !t.unsettled.empty()) return false;
  return true;
}

void AddChunk(ChunkFindings& chunk, size_t max_keys, TableResult* out) {
  out->chunks++;
  out->rows += chunk.rows;
  if (chunk.differed) out->chunks_differing_first_look++;
  if (chunk.not_listed) out->truncated = true;
  out->keys_rechecked += chunk.keys_rechecked;
  for (auto& d : chunk.differences) {
    if (out->differences.size() < max_keys) {
      out->differences.push_back(std::move(d));
    } else {
      out->truncated = true;
    }
  }
  for (auto& k : chunk.unsettled) {
    if (out->unsettled.size() < max_keys) {
      out->unsettled.push_back(std::move(k));
    } else {
      out->truncated = true;
    }
  }
}

std::string Report::Summary() const {
  int64_t missing = 0, extra = 0, differs = 0, unsettled = 0;
  std::vector<std::string> skipped, truncated;
  for (const auto& t : tables) {
    for (const auto& d : t.differences) {
      if (d.kind == "missing on target") {
        ++missing;
      } else if (d.kind == "extra on target") {
        ++extra;
      } else {
        ++differs;
      }
    }
    unsettled += static_cast<int64_t>(t.unsettled.size());
    if (!t.skipped.empty()) skipped.push_back(t.table.ToString());
    if (t.truncated) truncated.push_back(t.table.ToString());
  }
  const double rate = seconds > 0 ? static_cast<double>(rows) / seconds : 0;
  std::string out;
  if (clean()) {
    out = "verify: clean";
  } else {
    out = fmt::format("verify: {} differences ({} missing on target, {} extra on target, {} differ), {} unsettled",
                      missing + extra + differs, missing, extra, differs, unsettled);
  }
  out += fmt::format("; {} tables, {} rows in {:.1f} s ({:.0f} rows/s)", tables.size(), rows, seconds, rate);
  if (!truncated.empty()) out += fmt::format("; more not listed in {}", fmt::join(truncated, ", "));
  if (!skipped.empty()) out += fmt::format("; not verified (no key, or transformed): {}", fmt::join(skipped, ", "));
  return out;
}

std::string Report::ToJson() const {
  nlohmann::json j;
  j["clean"] = clean();
  j["rows"] = rows;
  j["seconds"] = seconds;
  j["tables"] = nlohmann::json::array();
  for (const auto& t : tables) {
    nlohmann::json jt;
    jt["table"] = t.table.ToString();
    jt["rows"] = t.rows;
    jt["chunks"] = t.chunks;
    jt["chunks_differing_first_look"] = t.chunks_differing_first_look;
    jt["keys_rechecked"] = t.keys_rechecked;
    jt["truncated"] = t.truncated;
    if (!t.skipped.empty()) jt["skipped"] = t.skipped;
    jt["differences"] = nlohmann::json::array();
    for (const auto& d : t.differences) {
      nlohmann::json key = nlohmann::json::array();
      for (const auto& v : d.key) key.push_back(v ? nlohmann::json(*v) : nlohmann::json(nullptr));
      nlohmann::json jd{{"key", key}, {"key_display", d.key_display}, {"kind", d.kind}};
      if (!d.columns.empty()) jd["columns"] = d.columns;
      jt["differences"].push_back(std::move(jd));
    }
    jt["unsettled"] = t.unsettled;
    j["tables"].push_back(std::move(jt));
  }
  // A key may hold bytes that are not UTF-8 (a MySQL binary key): replaced, not thrown on.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace midflight::verify
