// Apply conflicts: a change that finds the target in a state the source's
// stream says it cannot be in. Today's appliers write idempotently (upsert by
// key, delete by key), so such a change would otherwise pass without a word.
//
//   insert_existing  the key's first change in the batch is an insert, and the
//                    target already has a row with that key (it is overwritten)
//   update_missing   ... an update, and the target has no such row (with
//                    on_conflict=overwrite a full image is inserted; a partial
//                    one, carrying unchanged TOAST values, is a no-op)
//   delete_missing   ... a delete, and the target has no such row (a no-op)
//
// What counts, and why nothing expected by design is counted:
//  - Only changes the stream routes are checked (RoutedLog::Append sets
//    Change::check). Verification repairs (RoutedLog::Inject), barriers
//    (truncates, TOAST-carrying key moves) and reverse replication are not.
//  - Collapsing keeps the check of the key's first change in the batch
//    (pipeline/batch.h), so delete+insert of one key within a batch is an
//    upsert that expects the row, not an insert_existing.
//  - The snapshot/stream overlap: PostgreSQL's stream starts exactly at the
//    exported snapshot; a resumed copy, and MySQL's per-chunk snapshots, make
//    the SnapshotFilter (pipeline/router.h) drop precisely the transactions a
//    chunk already holds (commit position below the chunk's snapshot), and
//    the stream is read only once the copy is done. A change that reaches an
//    applier therefore finds the row as the source had it before the change.
//  - Restarts: a partition skips changes at or below its checkpoint, which
//    commits with the batch; after a lost connection an applier whose batch
//    turns out committed does not apply it again (Applier::ApplyWithRetry).
// So every conflict counted here means the target was written by someone
// else (or lost rows): a true conflict.
//
// Thread-safety: ConflictBoard is self-synchronised; appliers call Record,
// status readers the rest.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/thread_annotations.h"
#include "core/change.h"

namespace midflight {

enum class ConflictKind : uint8_t { kInsertExisting, kUpdateMissing, kDeleteMissing };
inline constexpr size_t kConflictKinds = 3;
const char* ConflictKindName(ConflictKind kind);  // "insert_existing", ...

// A change of the batch (the collapsed one) that met a conflict.
struct Conflict {
  ConflictKind kind;
  const Change* change;
};

// The conflict a change meets when the target had (`existed`) or had not a
// row for its key before it; none when its check is kNone or the state fits.
std::optional<ConflictKind> ConflictOf(const Change& change, bool existed);

// Key, table, position and kind, for logs and errors:
// "insert_existing on public.t key id=(5) at 0/16B3748.3".
std::string DescribeConflict(const Conflict& c);

// The error that stops a migration under on_conflict=stop.
Status ConflictStopError(const Conflict& c);

// What one apply batch found, filled by a ChangeSink.
struct BatchConflicts {
  bool stop = false;  // on_conflict=stop: a conflict rolls the batch back and fails it
  std::vector<Conflict> found;
};

// Apply conflicts as status, the API and the dashboard show them, from
// ConflictBoard::ToJson's per-table form (as saved in the state store):
// {"total": n, "insert_existing": n, "update_missing": n, "delete_missing": n,
//  "tables": {"public.t": {"insert_existing": n, "update_missing": n, "delete_missing": n}}}
std::string ConflictSummaryJson(const std::string& by_table_json);

class ConflictBoard {
 public:
  using Counts = std::array<uint64_t, kConflictKinds>;
  // Counts the conflicts of a committed batch (or one that stopped the
  // migration) and logs their keys: the first kLoggedPerTable of each table,
  // then one line per kSummaryEvery with the table's count.
  void Record(const std::vector<Conflict>& conflicts);
  std::map<std::string, Counts> ByTable() const;
  uint64_t Total() const;
  // {"public.t": {"insert_existing": 1, "update_missing": 0, "delete_missing": 2}, ...}
  std::string ToJson() const;
  // Counts saved by an earlier run (ToJson's form); only the first call loads.
  void LoadOnce(const std::string& json);

  static constexpr uint64_t kLoggedPerTable = 5;
  static constexpr uint64_t kSummaryEvery = 1000;

 private:
  mutable Mutex mu_;
  std::map<std::string, Counts> by_table_ GUARDED_BY(mu_);
  std::map<std::string, uint64_t> logged_ GUARDED_BY(mu_);  // this process's count per table
  bool loaded_ GUARDED_BY(mu_) = false;
};

}  // namespace midflight
