#include "pipeline/router.h"

#include <xxhash.h>

#include <charconv>

namespace midflight {

PartitionId Router::Route(const Change& change) const {
  const TableSchema& t = *change.table;
  uint64_t h = XXH64(t.id.schema.data(), t.id.schema.size(), 0);
  h = XXH64(t.id.name.data(), t.id.name.size(), h);
  if (change.kind != ChangeKind::kTruncate && t.routing() == RoutingMode::kByKey) {
    std::string key = change.KeyText();
    h = XXH64(key.data(), key.size(), h);
  }
  return PartitionId{static_cast<uint32_t>(h % partitions_)};
}

void SnapshotFilter::AddTable(const TableId& table, Position snapshot) {
  tables_[table] = snapshot;
  horizon_ = std::max(horizon_, snapshot);
}

void SnapshotFilter::AddRange(const TableId& table, std::optional<int64_t> lo, std::optional<int64_t> hi,
                              Position snapshot) {
  ranges_[table].push_back({lo, hi, snapshot});
  horizon_ = std::max(horizon_, snapshot);
}

Position SnapshotFilter::SnapshotFor(const TableSchema& table, const std::vector<Datum>& image) const {
  auto rit = ranges_.find(table.id);
  if (rit != ranges_.end() && !table.key_writable.empty()) {
    const Datum& d = image.at(table.key_writable[0]);
    int64_t v = 0;
    auto [p, ec] = std::from_chars(d.text.data(), d.text.data() + d.text.size(), v);
    if (ec == std::errc() && p == d.text.data() + d.text.size()) {
      for (const Range& r : rit->second)
        if ((!r.lo || v >= *r.lo) && (!r.hi || v < *r.hi)) return r.snapshot;
    }
  }
  auto tit = tables_.find(table.id);
  return tit == tables_.end() ? Position() : tit->second;
}

Position SnapshotFilter::OldestSnapshot(const TableId& table) const {
  auto rit = ranges_.find(table);
  if (rit != ranges_.end() && !rit->second.empty()) {
    Position oldest = rit->second.front().snapshot;
    for (const auto& r : rit->second) oldest = std::min(oldest, r.snapshot);
    return oldest;
  }
  auto it = tables_.find(table);
  return it == tables_.end() ? Position() : it->second;
}

bool SnapshotFilter::AlreadyCopied(const Change& change) const {
  if (change.pos.commit_lsn >= horizon_) return false;
  if (change.kind == ChangeKind::kTruncate) {
    // A truncate is applied unless every table it empties was copied after it.
    for (const auto& t : change.truncated)
      if (change.pos.commit_lsn >= OldestSnapshot(t->id)) return false;
    return true;
  }
  const TableSchema& t = *change.table;
  const bool uses_old = change.kind == ChangeKind::kDelete || change.MovesKey();
  Position snap = SnapshotFor(t, uses_old ? change.old : change.values);
  if (change.MovesKey()) snap = std::min(snap, SnapshotFor(t, change.values));
  return change.pos.commit_lsn < snap;
}

}  // namespace midflight
