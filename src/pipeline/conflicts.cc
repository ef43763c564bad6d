#include "pipeline/conflicts.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/log.h"

namespace midflight {

const char* ConflictKindName(ConflictKind kind) {
  switch (kind) {
    case ConflictKind::kInsertExisting: return "insert_existing";
    case ConflictKind::kUpdateMissing: return "update_missing";
    case ConflictKind::kDeleteMissing: return "delete_missing";
  }
  return "?";
}

std::optional<ConflictKind> ConflictOf(const Change& change, bool existed) {
  switch (change.check) {
    case ConflictCheck::kNone: return std::nullopt;
    case ConflictCheck::kInsert: return existed ? std::optional(ConflictKind::kInsertExisting) : std::nullopt;
    case ConflictCheck::kUpdate: return existed ? std::nullopt : std::optional(ConflictKind::kUpdateMissing);
    case ConflictCheck::kDelete: return existed ? std::nullopt : std::optional(ConflictKind::kDeleteMissing);
  }
  return std::nullopt;
}

std::string DescribeConflict(const Conflict& c) {
  std::string key = c.change->KeyText();
  for (auto& k : key)
    if (k == '\x1f') k = ',';
  return fmt::format("{} on {} key {}=({}) at {}", ConflictKindName(c.kind), c.change->table->id.ToString(),
                     c.change->table->KeyDescription(), key.substr(0, 200), c.change->pos.ToString());
}

Status ConflictStopError(const Conflict& c) {
  const char* what = c.kind == ConflictKind::kInsertExisting ? "the target already has a row with this key"
                                                              : "the target has no row with this key";
  return OperatorError(fmt::format(
      "apply conflict: {}: {}; on_conflict is stop (knob stop_on_conflict=1), so the batch was rolled back and "
      "nothing after it applied; repair the target row (or set stop_on_conflict=0 to overwrite), then resume",
      DescribeConflict(c), what));
}

std::string ConflictSummaryJson(const std::string& by_table_json) {
  nlohmann::json by_table = nlohmann::json::parse(by_table_json, nullptr, /*allow_exceptions=*/false);
  if (!by_table.is_object()) by_table = nlohmann::json::object();
  nlohmann::json out = {{"total", 0}};
  uint64_t total = 0;
  for (size_t i = 0; i < kConflictKinds; ++i) {
    const char* k = ConflictKindName(static_cast<ConflictKind>(i));
    uint64_t n = 0;
    for (const auto& [t, e] : by_table.items())
      if (e.is_object()) n += e.value(k, uint64_t{0});
    out[k] = n;
    total += n;
  }
  out["total"] = total;
  out["tables"] = by_table;
  return out.dump();
}

void ConflictBoard::Record(const std::vector<Conflict>& conflicts) {
  if (conflicts.empty()) return;
  MutexLock lock(&mu_);
  for (const Conflict& c : conflicts) {
    std::string table = c.change->table->id.ToString();
    ++by_table_[table][static_cast<size_t>(c.kind)];
    uint64_t n = ++logged_[table];
    if (n <= kLoggedPerTable) {
      LOG_WARN("apply conflict: {}{}", DescribeConflict(c),
               n == kLoggedPerTable ? fmt::format(" (further conflicts on {} are counted, and logged every {})",
                                                  table, kSummaryEvery)
                                    : "");
    } else if (n % kSummaryEvery == 0) {
      const Counts& k = by_table_[table];
      LOG_WARN("apply conflicts on {}: {} in this run (insert_existing {}, update_missing {}, delete_missing {} "
               "in all); latest: {}",
               table, n, k[0], k[1], k[2], DescribeConflict(c));
    }
  }
}

std::map<std::string, ConflictBoard::Counts> ConflictBoard::ByTable() const {
  MutexLock lock(&mu_);
  return by_table_;
}

uint64_t ConflictBoard::Total() const {
  MutexLock lock(&mu_);
  uint64_t n = 0;
  for (const auto& [t, k] : by_table_)
    for (uint64_t v : k) n += v;
  return n;
}

std::string ConflictBoard::ToJson() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [t, k] : ByTable()) {
    nlohmann::json e;
    for (size_t i = 0; i < kConflictKinds; ++i) e[ConflictKindName(static_cast<ConflictKind>(i))] = k[i];
    j[t] = e;
  }
  return j.dump();
}

void ConflictBoard::LoadOnce(const std::string& json) {
  MutexLock lock(&mu_);
  if (loaded_) return;
  loaded_ = true;
  auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  for (const auto& [t, e] : j.items()) {
    if (!e.is_object()) continue;
    for (size_t i = 0; i < kConflictKinds; ++i) {
      auto it = e.find(ConflictKindName(static_cast<ConflictKind>(i)));
      if (it != e.end() && it->is_number_unsigned()) by_table_[t][i] += it->get<uint64_t>();
    }
  }
}

}  // namespace midflight
