// The snapshot copy into a MySQL/MariaDB target that does not flush every
// commit: the part the MySQL -> MySQL and PostgreSQL -> MySQL copies share
// (engines/mysql/engine.cc, engines/cross/pg_to_my.cc).
//
// A chunk's rows and its midflight.chunks row commit in one target
// transaction. With innodb_flush_log_at_trx_commit = 1 a COMMIT that returned
// is on the target's disk. With 0 or 2 its log reaches the disk up to
// innodb_flush_log_at_timeout later, so a target that crashed (kill -9 of
// mariadbd with 0; the machine with 2) may lack chunks the copy counted done:
// their rows and their record vanish together. The migration would then stop
// at replication start ("not recorded on the target") on every run after,
// or, had it read the chunks before the crash, replicate without those rows.
// So when the copy workers finish, CopyUntilDurable waits that interval plus
// 2 s (the chunks the target records then are durable), reads them, and has
// the missing ones copied again, each from a newer snapshot (a table not
// split by key value again whole: its chunks must come from one snapshot),
// until none is missing.
//
// The change stream starts after the copy returns and builds its per-chunk
// filter from the chunks the target records then (control/runner.cc), so a
// chunk copied again from a newer snapshot skips the transactions that
// snapshot holds, no more: nothing applied is undone, nothing applied twice.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "core/copy.h"
#include "core/position.h"
#include "engines/engine.h"
#include "engines/mysql/my_conn.h"

namespace midflight {
class Knobs;
}

namespace midflight::mysql {

// How long after a COMMIT the target's log is surely on its disk, from its
// @@innodb_flush_log_at_trx_commit and @@innodb_flush_log_at_timeout as the
// server reports them: 0 with 1 (every commit is flushed), else the timeout
// (1 s when unreadable) plus 2 s.
std::chrono::milliseconds CommitDurableAfter(const std::string& flush_log_at_trx_commit,
                                             const std::string& flush_log_at_timeout);

// The chunks of `migration` the target's midflight.chunks records, their
// snapshot positions of kind `kind` (the source's: binlog or WAL).
Result<DoneChunks> LoadChunkRecords(MyConn& target, const std::string& migration, PositionKind kind);

// Empties `target_table` and deletes the chunks of source table `source`
// from midflight.chunks, in one transaction: a table not split by key value
// is copied again whole.
Status EmptyForCopyAgain(MyConn& target, const std::string& migration, const TableId& source,
                         const TableId& target_table);

// What CopyUntilDurable needs from its engine. Called on the copy's thread.
struct DurableCopy {
  std::chrono::milliseconds delay{0};  // CommitDurableAfter of the target; 0: one round, no check
  const Knobs* knobs = nullptr;        // fail_after_seconds: how long the target may stay unreachable
  // One pass of the copy workers over `chunks` (the first round: every chunk
  // to copy; a later one: those lost), each from its own or a newer snapshot.
  std::function<Status(std::vector<Chunk> chunks)> copy_round;
  // The chunks the target records (reconnecting first).
  std::function<Result<DoneChunks>()> load_done;
  // EmptyForCopyAgain for source table `id`.
  std::function<Status(const TableId& id)> empty_table;
};

// Copies `chunks` in rounds until the target holds every one durably (see
// above). `progress` counts a lost chunk out again (its rows stay counted:
// the copied-rows figure runs over by them; a table copied again whole
// starts from 0). Cancelled when `stop` is set; an OperatorError when the
// target stays unreachable longer than fail_after_seconds after a round.
Status CopyUntilDurable(const DurableCopy& how, std::vector<Chunk> chunks, CopyProgress& progress,
                        const std::atomic<bool>& stop);

}  // namespace midflight::mysql
