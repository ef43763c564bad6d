// The migration's local state: an SQLite database in its state directory
// (state.db, WAL mode, so `midflight status` reads while `run` writes).
// It holds the phase and its audit trail, the copy plan, per-table progress
// and the live metrics that status prints. The checkpoints that decide what
// is applied live in the target, next to the data (target/postgres).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/thread_annotations.h"
#include "control/phase.h"

struct sqlite3;

namespace midflight {

struct TableRow {
  std::string name;
  std::string state;  // pending, copying, copied, replicating
  int64_t rows_copied = 0, bytes_copied = 0, est_rows = 0, est_bytes = 0;
  int chunks_done = 0, chunks_total = 0;
  double rows_per_s = 0;
};

struct ChunkRow {
  std::string table;
  int number = 0;
  int kind = 0;
  std::optional<int64_t> lo, hi;
};

struct EventRow {
  std::string time, phase, actor, message;
};

// Who the audit trail names for what this thread records: the API sets it
// around an operator's request ("api@127.0.0.1:5122", or the client's
// X-Midflight-Actor); otherwise "midflight" (the engine itself).
class ActorScope {
 public:
  explicit ActorScope(std::string actor);
  ~ActorScope();
  ActorScope(const ActorScope&) = delete;
  ActorScope& operator=(const ActorScope&) = delete;
  static std::string Current();

 private:
  std::string previous_;
};

class StateStore {
 public:
  // Opens (creating when `create`) DIR/state.db. Any number of threads and
  // processes may open the same store at once, a fresh one included: each
  // connection waits up to 10 s for another's lock rather than failing with
  // "database is locked".
  static Result<std::unique_ptr<StateStore>> Open(const std::string& dir, bool create);
  ~StateStore();

  Status Put(const std::string& key, const std::string& value);
  Status PutMany(const std::vector<std::pair<std::string, std::string>>& kvs);
  std::optional<std::string> Get(const std::string& key);
  // Every key and value, in one query (for answers that show many of them).
  std::map<std::string, std::string> GetAll();

  Phase phase();
  // The state machine's one door: checks that the current phase may move to
  // `phase` (phase.h; from paused/failed only back to the stored
  // resume_phase, or to aborted), then persists the phase and an audit event
  // (time, phase, actor, reason) in one transaction, before the caller acts
  // on it. A refused transition is an OperatorError naming the phases that
  // allow it. Moving to paused or failed records the phase left as
  // resume_phase.
  Status SetPhase(Phase phase, const std::string& reason);
  Status AddEvent(const std::string& message);
  // Called after every persisted transition (on the caller's thread): from, to, reason.
  void OnTransition(std::function<void(Phase, Phase, const std::string&)> fn);
  // The migration's connection strings (source, target, replica). Every event
  // message and phase reason is passed through Scrub before it is stored or
  // handed to OnTransition, so that no server or library text quoting one of
  // them (password and all) reaches the audit trail, the API or a webhook.
  // Call before threads start.
  void SetSecrets(std::vector<std::string> connection_strings);
  // `text` without the passwords of SetSecrets' connection strings (base/uri.h ScrubSecrets).
  std::string Scrub(const std::string& text);
  std::vector<EventRow> Events(int limit);

  Status SaveTables(const std::vector<TableRow>& rows);
  std::vector<TableRow> Tables();
  Status SaveChunks(const std::vector<ChunkRow>& chunks);
  std::vector<ChunkRow> Chunks();

 private:
  StateStore(sqlite3* db, std::string dir) : db_(db), dir_(std::move(dir)) {}
  // Every write's outcome passes here: a failing write (a full disk, a
  // read-only file system) is logged at once and then every 30 s while it
  // lasts, naming the directory, so status frozen by it is explained; the
  // first write that works again says so.
  Status Written(Status st) REQUIRES(mu_);
  // WAL mode and the schema (created or upgraded), safe against other
  // openers of the same file in this process and in others.
  Status Prepare() EXCLUDES(mu_);
  Status Exec(const std::string& sql) REQUIRES(mu_);
  // What the public methods of the same names do, for a caller holding mu_.
  std::optional<std::string> GetLocked(const std::string& key) REQUIRES(mu_);
  Phase PhaseLocked() REQUIRES(mu_);
  std::string ScrubLocked(const std::string& text) REQUIRES(mu_);

  // Constant after construction: db_ (the pointer; the connection itself is
  // used only under mu_), dir_.
  sqlite3* const db_;
  const std::string dir_;
  // One connection shared by the runner's threads (progress ticker, flows,
  // control operations): a transaction spans several SQLite calls, so each
  // public method holds this for its whole length. Not recursive: a method
  // that needs another's work under the lock calls its *Locked form.
  Mutex mu_;
  int64_t write_failing_since_ms_ GUARDED_BY(mu_) = 0;
  int64_t write_failure_logged_ms_ GUARDED_BY(mu_) = 0;
  // Set before threads start, read under mu_.
  std::function<void(Phase, Phase, const std::string&)> on_transition_ GUARDED_BY(mu_);
  std::vector<std::string> secrets_ GUARDED_BY(mu_);
};

// Holds an exclusive lock on DIR/lock for the life of the process; fails with
// a clear message when another `midflight run` of this migration holds it.
Result<int> LockStateDir(const std::string& dir);

}  // namespace midflight
