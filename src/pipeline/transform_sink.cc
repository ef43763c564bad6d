#include "pipeline/transform_sink.h"

namespace midflight {
namespace {

// Rewrites `changes`; origin[i] is the index in `changes` of out[i].
Status Rewrite(const TransformMap& transforms, std::span<const Change> changes, std::vector<Change>* out,
               std::vector<size_t>* origin) {
  out->reserve(changes.size());
  for (size_t i = 0; i < changes.size(); ++i) {
    const Change& c = changes[i];
    auto it = c.table ? transforms.find(c.table->id) : transforms.end();
    if (it == transforms.end()) {
      out->push_back(c);
      if (origin) origin->push_back(i);
      continue;
    }
    ASSIGN_OR_RETURN(std::optional<Change> t, it->second->Apply(c));
    if (!t) continue;
    out->push_back(std::move(*t));
    if (origin) origin->push_back(i);
  }
  return Status::Ok();
}

}  // namespace

TransformMap TransformsBySource(const std::vector<std::shared_ptr<const TableTransform>>& bound) {
  TransformMap out;
  for (const auto& t : bound) out[t->source().id] = t;
  return out;
}

Result<TransformMap> InverseTransforms(const TransformMap& forward, const TableOf& as_read,
                                       const DefaultedColumns& defaulted) {
  TransformMap out;
  for (const auto& [id, tr] : forward) {
    std::shared_ptr<const TableSchema> read = as_read ? as_read(tr->target()->id) : nullptr;
    std::set<std::string> filled;
    if (defaulted) {
      ASSIGN_OR_RETURN(filled, defaulted(tr->source()));
    }
    ASSIGN_OR_RETURN(auto inv, tr->Inverse(read, defaulted ? &filled : nullptr));
    out[inv->source().id] = inv;
  }
  return out;
}

Result<std::vector<Change>> TransformChanges(const TransformMap& transforms, std::span<const Change> changes) {
  std::vector<Change> out;
  RETURN_IF_ERROR(Rewrite(transforms, changes, &out, nullptr));
  return out;
}

Status TransformSink::ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint,
                                 BatchConflicts* conflicts) {
  std::vector<Change> out;
  std::vector<size_t> origin;
  RETURN_IF_ERROR(Rewrite(*transforms_, changes, &out, &origin));
  Status st = inner_->ApplyBatch(out, checkpoint, conflicts);
  // Conflicts point into `out`, which goes: point them at the source's
  // changes, which the applier holds (and names by source table and key).
  for (Conflict& c : conflicts->found)
    if (c.change >= out.data() && c.change < out.data() + out.size())
      c.change = &changes[origin[static_cast<size_t>(c.change - out.data())]];
  return st;
}

Status TransformSink::ApplyBarrier(const Change& change, uint32_t partitions) {
  if (change.kind == ChangeKind::kTruncate) {
    Change t = change;
    for (auto& table : t.truncated)
      if (auto it = transforms_->find(table->id); it != transforms_->end()) table = it->second->target();
    if (t.table)
      if (auto it = transforms_->find(t.table->id); it != transforms_->end()) t.table = it->second->target();
    return inner_->ApplyBarrier(t, partitions);
  }
  auto it = change.table ? transforms_->find(change.table->id) : transforms_->end();
  if (it == transforms_->end()) return inner_->ApplyBarrier(change, partitions);
  ASSIGN_OR_RETURN(std::optional<Change> t, it->second->Apply(change));
  // A barrier is a truncate or an update (never dropped: a filtered-out update is a delete).
  if (!t) return Internal("a transform dropped a barrier change of " + change.table->id.ToString());
  return inner_->ApplyBarrier(*t, partitions);
}

Result<int64_t> TransformSink::DeleteRows(const std::shared_ptr<const TableSchema>& table, const std::string& column,
                                          std::optional<int64_t> lo, std::optional<int64_t> hi,
                                          const std::function<bool(const Change&)>& mine) {
  if (transforms_->count(table->id))
    return OperatorError(fmt::format(
        "table {}: a replay cannot reset a chunk of a transformed table (the copy of that chunk was started again); "
        "copy the target again, or replay from an offset after the copy ended",
        table->id.ToString()));
  return inner_->DeleteRows(table, column, lo, hi, mine);
}

Result<bool> TransformSink::HoldsRows(const TableSchema& table) {
  auto it = transforms_->find(table.id);
  return inner_->HoldsRows(it == transforms_->end() ? table : *it->second->target());
}

}  // namespace midflight
