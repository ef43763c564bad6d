#include "control/state_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/uri.h"

namespace midflight {
namespace {

// How long any connection waits for another's lock (sqlite3_busy_timeout),
// and how long an opener retries the switch to WAL, for which SQLite does
// not always call the busy handler.
constexpr int kBusyTimeoutMs = 10000;

// Created in one write transaction (BEGIN IMMEDIATE waits for the write lock
// through the busy handler): a statement that reads the schema and then
// upgrades to a write lock can instead fail at once with SQLITE_BUSY when
// another connection is writing (SQLite's deadlock avoidance).
constexpr const char* kSchemaSql = R"sql(
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, time TEXT NOT NULL, phase TEXT NOT NULL,
                                   message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tables (name TEXT PRIMARY KEY, state TEXT, rows_copied INTEGER, bytes_copied INTEGER,
                                   est_rows INTEGER, est_bytes INTEGER, chunks_done INTEGER, chunks_total INTEGER,
                                   rows_per_s REAL);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (table_name TEXT, chunk INTEGER, kind INTEGER, lo INTEGER, hi INTEGER,
                                   PRIMARY KEY (table_name, chunk));
)sql";

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : prepare_rc_(sqlite3_prepare_v2(db, sql, -1, &s_, nullptr)) {}
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, std::optional<int64_t> v) {
    if (v) sqlite3_bind_int64(s_, i, *v);
    else sqlite3_bind_null(s_, i);
    return *this;
  }
  // A failed prepare (SQLITE_BUSY reading the schema, ...) is Step's answer.
  int Step() { return s_ ? sqlite3_step(s_) : prepare_rc_ != SQLITE_OK ? prepare_rc_ : SQLITE_ERROR; }
  std::string Text(int c) {
    auto p = sqlite3_column_text(s_, c);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  int64_t Int(int c) { return sqlite3_column_int64(s_, c); }
  double Real(int c) { return sqlite3_column_double(s_, c); }
  std::optional<int64_t> OptInt(int c) {
    if (sqlite3_column_type(s_, c) == SQLITE_NULL) return std::nullopt;
    return Int(c);
  }

 private:
  sqlite3_stmt* s_ = nullptr;
  int prepare_rc_;
};


thread_local std::string t_actor;

// The state directory holds the API token, the schema and the migration's
// history: 0700, and 0600 for state.db (SQLite gives its -wal and -shm the
// database file's mode). Applied to a directory made by an older version too.
Status MakePrivate(const std::string& dir, const std::string& db_path) {
  if (::chmod(dir.c_str(), 0700) != 0)
    return OperatorError(fmt::format("cannot make state directory {} private (chmod 0700): {}", dir, std::strerror(errno)));
  int fd = ::open(db_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    return OperatorError(fmt::format("cannot create {} with mode 0600: {}", db_path, std::strerror(err)));
  }
  ::close(fd);
  for (const char* suffix : {"-wal", "-shm"}) (void)::chmod((db_path + suffix).c_str(), 0600);
  return Status::Ok();
}

}  // namespace

ActorScope::ActorScope(std::string actor) : previous_(std::move(t_actor)) { t_actor = std::move(actor); }
ActorScope::~ActorScope() { t_actor = std::move(previous_); }
std::string ActorScope::Current() { return t_actor.empty() ? "midflight" : t_actor; }

void StateStore::OnTransition(std::function<void(Phase, Phase, const std::string&)> fn) {
  MutexLock lock(&mu_);
  on_transition_ = std::move(fn);
}

void StateStore::SetSecrets(std::vector<std::string> connection_strings) {
  MutexLock lock(&mu_);
  secrets_ = std::move(connection_strings);
}

std::string StateStore::Scrub(const std::string& text) {
  MutexLock lock(&mu_);
  return ScrubLocked(text);
}

std::string StateStore::ScrubLocked(const std::string& text) { return ScrubSecrets(text, secrets_); }

Result<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir, bool create) {
  std::string path = dir + "/state.db";
  if (create) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return OperatorError(fmt::format("cannot create state directory {}: {}", dir, ec.message()));
    RETURN_IF_ERROR(MakePrivate(dir, path));
  } else if (!std::filesystem::exists(path)) {
    return NotFound(fmt::format("no migration state at {} (has `midflight run` been started with this spec?)", path));
  }
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string m = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return OperatorError(fmt::format("cannot open {}: {}", path, m));
  }
  // Every connection waits for the others' locks instead of failing.
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  std::unique_ptr<StateStore> store(new StateStore(db, dir));
  RETURN_IF_ERROR(store->Prepare());
  return store;
}

Status StateStore::Prepare() {
  // One opener at a time in this process (the service's threads, tests);
  // other processes (`midflight status` while `run` starts) are held off by
  // SQLite's own locks, waited for below.
  static Mutex opener_mu;
  MutexLock opener(&opener_mu);
  MutexLock lock(&mu_);
  // WAL is persistent: only the first opener of a fresh file switches. The
  // switch needs the only lock on the file, and SQLite may answer BUSY (or
  // leave the mode as it was) without calling the busy handler, so it is
  // retried until kBusyTimeoutMs.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
  for (;;) {
    Stmt mode(db_, "PRAGMA journal_mode = WAL");
    int rc = mode.Step();
    if (rc == SQLITE_ROW && mode.Text(0) == "wal") break;
    bool busy = rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_ROW;
    if (!busy || std::chrono::steady_clock::now() >= deadline)
      return Internal(fmt::format("state store: switching to WAL: {}",
                                  rc == SQLITE_ROW ? "another process holds the database" : sqlite3_errmsg(db_)));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  RETURN_IF_ERROR(Exec("PRAGMA synchronous = NORMAL"));
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  Status st = Exec(kSchemaSql);
  // Version 2: the audit trail names the actor.
  if (st.ok()) {
    Stmt v(db_, "SELECT count(*) FROM pragma_table_info('events') WHERE name = 'actor'");
    if (v.Step() == SQLITE_ROW && v.Int(0) == 0)
      st = Exec("ALTER TABLE events ADD COLUMN actor TEXT NOT NULL DEFAULT 'midflight'");
  }
  if (!st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  return Exec("COMMIT");
}

StateStore::~StateStore() { sqlite3_close(db_); }

Status StateStore::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "unknown error";
    sqlite3_free(err);
    return Internal("state store: " + m);
  }
  return Status::Ok();
}

Status StateStore::Put(const std::string& key, const std::string& value) { return PutMany({{key, value}}); }

Status StateStore::Written(Status st) {
  const int64_t now = NowMonotonicMs();
  if (st.ok()) {
    if (write_failing_since_ms_) {
      LOG_INFO("state store {}: writing works again after {:.0f} s", dir_, (now - write_failing_since_ms_) / 1000.0);
      write_failing_since_ms_ = write_failure_logged_ms_ = 0;
    }
    return st;
  }
  if (!write_failing_since_ms_) write_failing_since_ms_ = now;
  if (!write_failure_logged_ms_ || now - write_failure_logged_ms_ >= 30000) {
    write_failure_logged_ms_ = now;
    std::string_view what = st.message();
    if (what.starts_with("state store: ")) what.remove_prefix(13);
    LOG_ERROR("state store {}: {}; status and progress are not recorded while this lasts (a full disk? free space "
              "there); replication goes on, and the target's checkpoints stay the truth",
              dir_, what);
  }
  return st;
}

Status StateStore::PutMany(const std::vector<std::pair<std::string, std::string>>& kvs) {
  MutexLock lock(&mu_);
  if (Status st = Exec("BEGIN IMMEDIATE"); !st.ok()) return Written(st);
  for (const auto& [k, v] : kvs) {
    Stmt s(db_, "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    if (s.Bind(1, k).Bind(2, v).Step() != SQLITE_DONE) {
      Status st = Internal(fmt::format("state store: writing {}: {}", k, sqlite3_errmsg(db_)));
      (void)Exec("ROLLBACK");
      return Written(st);
    }
  }
  return Written(Exec("COMMIT"));
}

std::optional<std::string> StateStore::Get(const std::string& key) {
  MutexLock lock(&mu_);
  return GetLocked(key);
}

std::optional<std::string> StateStore::GetLocked(const std::string& key) {
  Stmt s(db_, "SELECT value FROM kv WHERE key = ?");
  if (s.Bind(1, key).Step() == SQLITE_ROW) return s.Text(0);
  return std::nullopt;
}

std::map<std::string, std::string> StateStore::GetAll() {
  MutexLock lock(&mu_);
  std::map<std::string, std::string> out;
  Stmt s(db_, "SELECT key, value FROM kv");
  while (s.Step() == SQLITE_ROW) out[s.Text(0)] = s.Text(1);
  return out;
}

Phase StateStore::phase() {
  MutexLock lock(&mu_);
  return PhaseLocked();
}

Phase StateStore::PhaseLocked() {
  auto v = GetLocked("phase");
  if (!v) return Phase::kCreated;
  return ParsePhase(*v).value_or(Phase::kCreated);
}

Status StateStore::SetPhase(Phase phase, const std::string& unscrubbed_reason) {
  const std::string reason = Scrub(unscrubbed_reason);
  std::function<void(Phase, Phase, const std::string&)> notify;
  Phase from;
  {
    MutexLock lock(&mu_);
    from = PhaseLocked();
    std::optional<Phase> resume;
    if (auto r = GetLocked("resume_phase")) resume = ParsePhase(*r);
    if (!TransitionAllowed(from, phase, resume)) {
      std::string allowed = WhereAllowed(phase);
      if ((from == Phase::kPaused || from == Phase::kFailed) && resume)
        return OperatorError(fmt::format("cannot move to {}: the migration is {} (in {}); from {} it can only resume to {}{}",
                                         PhaseName(phase), PhaseName(from), PhaseName(*resume), PhaseName(from),
                                         PhaseName(*resume), *resume < Phase::kWritesSwitched ? " or be aborted" : ""));
      return OperatorError(fmt::format("cannot move to {} from {}; {} is reached from {}", PhaseName(phase),
                                       PhaseName(from), PhaseName(phase), allowed));
    }
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    Stmt kv(db_, "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    Stmt ev(db_, "INSERT INTO events (time, phase, actor, message) VALUES (?, ?, ?, ?)");
    bool ok = kv.Bind(1, std::string("phase")).Bind(2, std::string(PhaseName(phase))).Step() == SQLITE_DONE &&
              ev.Bind(1, NowIsoUtc()).Bind(2, std::string(PhaseName(phase))).Bind(3, ActorScope::Current()).Bind(4, reason)
                      .Step() == SQLITE_DONE;
    if (ok && (phase == Phase::kPaused || phase == Phase::kFailed) && from != Phase::kPaused && from != Phase::kFailed) {
      Stmt rp(db_, "INSERT INTO kv (key, value) VALUES ('resume_phase', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
      ok = rp.Bind(1, std::string(PhaseName(from))).Step() == SQLITE_DONE;
    }
    if (!ok) {
      std::string m = sqlite3_errmsg(db_);
      (void)Exec("ROLLBACK");
      return Internal(fmt::format("state store: recording phase {}: {}", PhaseName(phase), m));
    }
    RETURN_IF_ERROR(Exec("COMMIT"));
    notify = on_transition_;
  }
  if (notify) notify(from, phase, reason);
  return Status::Ok();
}

Status StateStore::AddEvent(const std::string& unscrubbed_message) {
  MutexLock lock(&mu_);
  const std::string message = ScrubLocked(unscrubbed_message);
  Stmt ev(db_, "INSERT INTO events (time, phase, actor, message) VALUES (?, ?, ?, ?)");
  if (ev.Bind(1, NowIsoUtc()).Bind(2, std::string(PhaseName(PhaseLocked()))).Bind(3, ActorScope::Current()).Bind(4, message)
          .Step() != SQLITE_DONE)
    return Written(Internal(fmt::format("state store: recording event: {}", sqlite3_errmsg(db_))));
  return Written(Status::Ok());
}

std::vector<EventRow> StateStore::Events(int limit) {
  MutexLock lock(&mu_);
  std::vector<EventRow> out;
  Stmt s(db_, "SELECT time, phase, actor, message FROM (SELECT * FROM events ORDER BY id DESC LIMIT ?) ORDER BY id");
  s.Bind(1, static_cast<int64_t>(limit));
  while (s.Step() == SQLITE_ROW) out.push_back({s.Text(0), s.Text(1), s.Text(2), s.Text(3)});
  return out;
}

Status StateStore::SaveTables(const std::vector<TableRow>& rows) {
  MutexLock lock(&mu_);
  if (Status st = Exec("BEGIN IMMEDIATE"); !st.ok()) return Written(st);
  for (const auto& r : rows) {
    Stmt s(db_,
           "INSERT INTO tables (name, state, rows_copied, bytes_copied, est_rows, est_bytes, chunks_done, "
           "chunks_total, rows_per_s) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET "
           "state = excluded.state, rows_copied = excluded.rows_copied, bytes_copied = excluded.bytes_copied, "
           "est_rows = excluded.est_rows, est_bytes = excluded.est_bytes, chunks_done = excluded.chunks_done, "
           "chunks_total = excluded.chunks_total, rows_per_s = excluded.rows_per_s");
    s.Bind(1, r.name).Bind(2, r.state).Bind(3, r.rows_copied).Bind(4, r.bytes_copied).Bind(5, r.est_rows);
    s.Bind(6, r.est_bytes).Bind(7, static_cast<int64_t>(r.chunks_done)).Bind(8, static_cast<int64_t>(r.chunks_total));
    s.Bind(9, r.rows_per_s);
    if (s.Step() != SQLITE_DONE) {
      Status st = Internal(fmt::format("state store: saving table {}: {}", r.name, sqlite3_errmsg(db_)));
      (void)Exec("ROLLBACK");
      return Written(st);
    }
  }
  return Written(Exec("COMMIT"));
}

std::vector<TableRow> StateStore::Tables() {
  MutexLock lock(&mu_);
  std::vector<TableRow> out;
  Stmt s(db_, "SELECT name, state, rows_copied, bytes_copied, est_rows, est_bytes, chunks_done, chunks_total, "
              "rows_per_s FROM tables ORDER BY name");
  while (s.Step() == SQLITE_ROW)
    out.push_back({s.Text(0), s.Text(1), s.Int(2), s.Int(3), s.Int(4), s.Int(5), static_cast<int>(s.Int(6)),
                   static_cast<int>(s.Int(7)), s.Real(8)});
  return out;
}

Status StateStore::SaveChunks(const std::vector<ChunkRow>& chunks) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE; DELETE FROM chunks;"));
  for (const auto& c : chunks) {
    Stmt s(db_, "INSERT INTO chunks (table_name, chunk, kind, lo, hi) VALUES (?,?,?,?,?)");
    s.Bind(1, c.table).Bind(2, static_cast<int64_t>(c.number)).Bind(3, static_cast<int64_t>(c.kind));
    s.Bind(4, c.lo).Bind(5, c.hi);
    if (s.Step() != SQLITE_DONE) {
      (void)Exec("ROLLBACK");
      return Internal(fmt::format("state store: saving chunk plan: {}", sqlite3_errmsg(db_)));
    }
  }
  return Exec("COMMIT");
}

std::vector<ChunkRow> StateStore::Chunks() {
  MutexLock lock(&mu_);
  std::vector<ChunkRow> out;
  Stmt s(db_, "SELECT table_name, chunk, kind, lo, hi FROM chunks ORDER BY rowid");
  while (s.Step() == SQLITE_ROW)
    out.push_back({s.Text(0), static_cast<int>(s.Int(1)), static_cast<int>(s.Int(2)), s.OptInt(3), s.OptInt(4)});
  return out;
}

Result<int> LockStateDir(const std::string& dir) {
  std::string path = dir + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return OperatorError(fmt::format("cannot open {}", path));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return OperatorError(fmt::format("another midflight process is already running this migration (lock {} is held)", path));
  }
  return fd;
}

}  // namespace midflight
