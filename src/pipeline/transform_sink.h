// The change side of the spec's transforms (core/transform.h): a ChangeSink
// that rewrites each change of a transformed table into the target's shape
// (renamed table and columns, casts, added columns, the row filter) before
// the engine's own sink applies it. Changes of other tables pass unchanged.
//
//   Applier p ─► TransformSink ─► engine's ChangeSink p ─► target
//
// It sits after routing and collapsing, which read the source's shape: the
// key is kept (only renamed or cast one-to-one, TableTransform::Bind), so
// routing by the source key keeps per-key order on the target. A change the
// transform cannot apply fails the batch with the table, key, column and
// value named; the applier stops the migration (nothing is skipped).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/transform.h"
#include "pipeline/applier.h"

namespace midflight {

using TransformMap = std::map<TableId, std::shared_ptr<const TableTransform>>;  // by source table

// The transforms of `bound` keyed by source table.
TransformMap TransformsBySource(const std::vector<std::shared_ptr<const TableTransform>>& bound);

// Reverse replication (target -> source): the inverse of each transform of
// `forward` (TableTransform::Inverse), keyed by its target table. `as_read`
// gives a target table as the reverse stream reads it (null or empty: the
// transform's own target()); `defaulted` the columns of a source table the
// server fills on an insert (empty: not checked; TableTransform::Inverse).
// Error: the first transform with no inverse, named ("transforms.public.
// orders.filter: ..."), a target table that does not have the transform's
// columns, or `defaulted`'s own error.
using TableOf = std::function<std::shared_ptr<const TableSchema>(const TableId&)>;
using DefaultedColumns = std::function<Result<std::set<std::string>>(const TableSchema& source)>;
Result<TransformMap> InverseTransforms(const TransformMap& forward, const TableOf& as_read = {},
                                       const DefaultedColumns& defaulted = {});

// Rewrites `changes` for the target, one for one (a change a transform would
// drop leaves no entry; none does today: a row the filter refuses is a delete).
Result<std::vector<Change>> TransformChanges(const TransformMap& transforms, std::span<const Change> changes);

class TransformSink final : public ChangeSink {
 public:
  TransformSink(std::unique_ptr<ChangeSink> inner, std::shared_ptr<const TransformMap> transforms)
      : inner_(std::move(inner)), transforms_(std::move(transforms)) {}
  Result<ChangePosition> LoadCheckpoint() override { return inner_->LoadCheckpoint(); }
  Status ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint, BatchConflicts* conflicts) override;
  Status ApplyBarrier(const Change& change, uint32_t partitions) override;
  Status Reconnect() override { return inner_->Reconnect(); }
  // What apply workers and replays ask of a sink (kafka/apply_worker.h),
  // answered by the engine's sink; a transformed table's under its target
  // shape. A chunk reset of a transformed table is refused, naming it: its
  // range and the partition test run on the source's key columns, which the
  // target's rows would have to be mapped back to.
  Result<int64_t> DeleteRows(const std::shared_ptr<const TableSchema>& table, const std::string& column,
                             std::optional<int64_t> lo, std::optional<int64_t> hi,
                             const std::function<bool(const Change&)>& mine) override;
  Result<bool> HoldsRows(const TableSchema& table) override;
  Result<int64_t> LoadLogOffset() override { return inner_->LoadLogOffset(); }
  Result<CheckpointRow> LoadCheckpointRow() override { return inner_->LoadCheckpointRow(); }
  void SetWorker(std::string worker) override { inner_->SetWorker(std::move(worker)); }
  Status EnableFencing() override { return inner_->EnableFencing(); }
  uint64_t batches_refused() const override { return inner_->batches_refused(); }

 private:
  std::unique_ptr<ChangeSink> inner_;
  std::shared_ptr<const TransformMap> transforms_;
};

}  // namespace midflight
