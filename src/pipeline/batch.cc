#include "pipeline/batch.h"

#include <map>

#include <string>
#include <unordered_map>

namespace midflight {
namespace {

void FillUnchanged(std::vector<Datum>& later, const std::vector<Datum>& earlier) {
  for (size_t i = 0; i < later.size() && i < earlier.size(); ++i)
    if (later[i].is_unchanged()) later[i] = earlier[i];
}

}  // namespace

std::vector<Change> CollapseBatch(std::vector<Change> changes) {
  std::vector<Change> out;
  out.reserve(changes.size());
  std::vector<bool> dead;
  dead.reserve(changes.size());
  std::unordered_map<std::string, size_t> last;  // table + key -> index in out
  for (Change& c : changes) {
    const bool collapsible = c.kind != ChangeKind::kTruncate && c.table &&
                             c.table->routing() == RoutingMode::kByKey && !c.MovesKey();
    if (!collapsible) {
      out.push_back(std::move(c));
      dead.push_back(false);
      continue;
    }
    std::string key = c.table->id.ToString();
    key.push_back('\x1e');
    key += c.KeyText();
    auto it = last.find(key);
    if (it != last.end()) {
      Change& e = out[it->second];
      if (c.kind == ChangeKind::kUpdate && e.kind != ChangeKind::kDelete) {
        FillUnchanged(c.values, e.values);
        if (e.kind == ChangeKind::kInsert) c.kind = ChangeKind::kInsert;
        c.old.clear();
      }
      // What the target must hold before the collapsed change is what it
      // had to hold before the key's first change of the batch.
      c.check = e.check;
      dead[it->second] = true;
    }
    last[key] = out.size();
    out.push_back(std::move(c));
    dead.push_back(false);
  }
  std::vector<Change> result;
  result.reserve(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (dead[i]) continue;
    // A full update image is applied as an upsert: same as an insert.
    if (out[i].kind == ChangeKind::kUpdate && !out[i].MovesKey() && !out[i].HasUnchangedValues() &&
        out[i].table->routing() == RoutingMode::kByKey)
      out[i].kind = ChangeKind::kInsert;
    result.push_back(std::move(out[i]));
  }
  return result;
}

std::vector<TableChanges> GroupByTable(std::span<const Change> changes) {
  std::vector<TableChanges> out;
  std::map<const TableSchema*, size_t> index;
  for (const Change& c : changes) {
    auto [it, fresh] = index.try_emplace(c.table.get(), out.size());
    if (fresh) out.push_back({c.table.get(), {}});
    out[it->second].second.push_back(&c);
  }
  return out;
}

}  // namespace midflight
