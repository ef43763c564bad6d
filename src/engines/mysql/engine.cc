#include "engines/mysql/engine.h"
#include "proxy/traffic_switch.h"

#include <fmt/format.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/once_ok.h"
#include "base/parse.h"
#include "base/thread_annotations.h"
#include "base/uri.h"
#include "control/compare.h"
#include "control/phase_driver.h"
#include "control/runtime.h"
#include "control/spec.h"
#include "control/run_util.h"
#include "control/state_store.h"
#include "engines/mysql/my_conn.h"
#include "pipeline/flow.h"
#include "pipeline/router.h"
#include "pipeline/transform_sink.h"
#include "engines/mysql/binlog_pos.h"
#include "engines/mysql/catalog.h"
#include "engines/mysql/change_stream.h"
#include "engines/mysql/durable_copy.h"
#include "engines/mysql/snapshot_copier.h"
#include "engines/mysql/my_applier.h"
#include "engines/mysql/schema_loader.h"
#include "engines/mysql/replication_ops.h"
#include "engines/mysql/schema_objects.h"
#include "engines/mysql/traffic.h"

namespace midflight {
namespace {

using mysql::MyConn;
using mysql::MyResult;
using TablePtr = std::shared_ptr<const TableSchema>;

}  // namespace

namespace mysql {

Result<MyResult> CheckSource(MyConn& src, const MigrationSpec& spec, std::vector<std::string>* problems_out) {
  std::vector<std::string>& problems = *problems_out;
  const std::string reader = spec.source_replica.empty() ? "source" : "source replica";
  ASSIGN_OR_RETURN(MyResult vars, src.Query(
      "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@log_slave_updates, @@server_id, "
      "@@max_allowed_packet, @@hostname, @@port, DATABASE()"));
  if (vars.Get(0, 0) != "1")
    problems.push_back(reader + ": the binary log is off; start the server with log_bin (and binlog_format=ROW)");
  if (vars.Get(0, 1) != "ROW")
    problems.push_back(fmt::format("{}: binlog_format is {}; set binlog_format=ROW (SET GLOBAL binlog_format=ROW and "
                                   "in the server's configuration)",
                                   reader, vars.Get(0, 1)));
  if (vars.Get(0, 2) != "FULL")
    problems.push_back(fmt::format("{}: binlog_row_image is {}; set binlog_row_image=FULL", reader, vars.Get(0, 2)));
  if (!spec.source_replica.empty() && vars.Get(0, 3) != "1")
    problems.push_back("source replica: log_slave_updates is off, so its binlog lacks the primary's changes; start it "
                       "with log_slave_updates=ON");
  ASSIGN_OR_RETURN(MyResult privs, src.Query(
      "SELECT GROUP_CONCAT(PRIVILEGE_TYPE) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = "
      "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"));
  const std::string granted = "," + privs.Get(0, 0) + ",";
  if (granted.find(",REPLICATION SLAVE,") == std::string::npos)
    problems.push_back(reader + ": the user lacks REPLICATION SLAVE (GRANT REPLICATION SLAVE ON *.* TO ...), needed "
                                "to read the binlog");
  if (granted.find(",BINLOG MONITOR,") == std::string::npos && granted.find(",REPLICATION CLIENT,") == std::string::npos &&
      granted.find(",SUPER,") == std::string::npos)
    problems.push_back(reader + ": the user lacks REPLICATION CLIENT / BINLOG MONITOR (GRANT REPLICATION CLIENT ON *.* "
                                "TO ...), needed to read binlog positions");
  // The copy watches the replica's lag (snapshot_copier.h).
  if (!spec.source_replica.empty())
    if (auto lag = ReadReplicaLag(src); !lag.ok())
      problems.push_back(fmt::format("source replica: {}; GRANT SLAVE MONITOR ON *.* TO the migration's user "
                                     "(REPLICATION CLIENT before MariaDB 10.5), needed to slow the copy while the "
                                     "replica lags",
                                     lag.status().message()));
  return vars;
}

Result<TransformMap> BindTransformsForMySql(const MigrationSpec& spec, const std::vector<TablePtr>& tables) {
  TransformMap out;
  if (spec.transforms.empty()) return out;
  ASSIGN_OR_RETURN(auto bound, BindTransforms(spec.transforms, tables));
  out = TransformsBySource(bound);
  for (const auto& [id, tr] : out) RETURN_IF_ERROR(CheckTransformedTypes(*tr));
  return out;
}

}  // namespace mysql

namespace {

class MyEngine final : public Engine {
 public:
  MyEngine(const MigrationSpec& spec, MigrationRuntime& runtime, StateStore& store, mysql::VerifyReshaped verify)
      : spec_(spec), store_(store), runtime_(runtime), verify_reshaped_(std::move(verify)) {
    reader_uri_ = spec.source_replica.empty() ? spec.source : spec.source_replica;
    // Conflicts counted by an earlier process keep counting.
    runtime_.conflicts.LoadOnce(store_.Get("conflicts").value_or("{}"));
  }

  std::string_view name() const override { return "mysql"; }
  Status Preflight(bool fresh, std::vector<std::string>* problems) override;
  const std::vector<TablePtr>& tables() const override { return tables_; }
  std::string Sides() const override {
    return fmt::format("reading {}{}, writing {}", RedactUri(reader_uri_),
                       spec_.source_replica.empty() ? "" : " (a replica: the primary is not read)",
                       RedactUri(spec_.target));
  }
  std::vector<std::pair<std::string, std::string>> InitialState() const override {
    return {{"source", RedactUri(spec_.source)},
            {"source_replica", RedactUri(spec_.source_replica)},
            {"target", RedactUri(spec_.target)}};
  }
  std::string TableProblem(const TableSchema& t) const override {
    if (t.key_kind != KeyKind::kNone) return "";
    return fmt::format("table {} has no primary key and no unique index on NOT NULL columns, so its "
                       "updates and deletes cannot be matched on the target: add a primary key "
                       "(ALTER TABLE {} ADD PRIMARY KEY (...)), or add it to exclude",
                       t.id.ToString(), mysql::QuoteQualified(t.id.schema, t.id.name));
  }
  Status CreateSchema() override;
  Result<std::vector<Chunk>> PlanChunks(int64_t chunk_rows) override {
    return mysql::PlanChunks(*src_, tables_, chunk_rows);
  }
  Result<DoneChunks> LoadDoneChunks() override;
  Status PrepareCopy(const std::vector<Chunk>&, DoneChunks*, bool) override { return Status::Ok(); }
  Status CopyChunks(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                    std::function<void(int)> on_chunk_committed) override;
  Status PublishCopy(CopyPublisher* publisher) override {
    publisher_ = publisher;
    return Status::Ok();
  }
  Status FinishSchema() override;
  // The replicate phase and the cutover (engines/mysql/replication_ops.h),
  // made on first use, after Preflight.
  ReplicationOps& Replication() override {
    if (!repl_) {
      mysql::ReplicationSetup setup;
      setup.spec = &spec_;
      setup.store = &store_;
      setup.runtime = &runtime_;
      setup.reader_uri = reader_uri_;
      setup.source_db = source_db_;
      setup.target_db = target_db_;
      setup.tables = by_id_;
      setup.transforms = transforms_;
      setup.verify_reshaped = verify_reshaped_;
      repl_ = mysql::MyReplicationOps::New(std::move(setup));
    }
    return *repl_;
  }
  std::string FormatPosition(uint64_t pos) const override {
    return repl_ ? repl_->FormatPosition(pos) : mysql::FormatBinlogPos("binlog", pos);
  }

 private:
  // Reconnects the control connections a server restart broke.
  Status ReconnectControl();
  std::set<std::string> TableNames() const {
    std::set<std::string> names;
    for (const auto& t : tables_) names.insert(t->id.name);
    return names;
  }
  // The table's name on the target (a transform may rename it).
  std::string TargetName(const TableId& id) const {
    auto tr = transforms_->find(id);
    return tr == transforms_->end() ? id.name : tr->second->target()->id.name;
  }

  const MigrationSpec& spec_;
  StateStore& store_;
  MigrationRuntime& runtime_;
  const mysql::VerifyReshaped verify_reshaped_;
  std::string reader_uri_;
  std::string source_db_, target_db_;
  std::unique_ptr<MyConn> src_, dst_;
  std::vector<TablePtr> tables_;
  std::map<TableId, TablePtr> by_id_;
  // The spec's transforms bound to the source tables, by source table (Preflight).
  std::shared_ptr<TransformMap> transforms_ = std::make_shared<TransformMap>();
  int64_t max_row_bytes_ = 0;
  // How long after a COMMIT the target's log is surely on its disk (0: at
  // once); the copy checks its chunks then (engines/mysql/durable_copy.h).
  std::chrono::milliseconds durable_after_{0};
  CopyPublisher* publisher_ = nullptr;  // PublishCopy's (transport.publish_snapshot)
  std::unique_ptr<mysql::MyReplicationOps> repl_;
};

Status MyEngine::Preflight(bool fresh, std::vector<std::string>* problems_out) {
  std::vector<std::string>& problems = *problems_out;
  mysql::ConnOptions o;
  o.program_name = "midflight-control";
  const std::string reader = spec_.source_replica.empty() ? "source" : "source replica";
  // Both sides at once: a resumed run waits for this before it streams.
  Result<std::unique_ptr<MyConn>> dst = Internal("not connected");
  std::thread dst_connect([&] { dst = MyConn::Connect(spec_.target, o); });
  auto src = MyConn::Connect(reader_uri_, o);
  dst_connect.join();
  if (!src.ok()) problems.push_back(reader + ": " + src.status().message());
  if (!dst.ok()) problems.push_back("target: " + dst.status().message());
  if (!problems.empty()) return Status::Ok();
  src_ = std::move(*src);
  dst_ = std::move(*dst);
  ASSIGN_OR_RETURN(auto su, mysql::ParseMyUri(reader_uri_));
  ASSIGN_OR_RETURN(auto tu, mysql::ParseMyUri(spec_.target));
  source_db_ = su.database;
  target_db_ = tu.database;

  ASSIGN_OR_RETURN(MyResult vars, mysql::CheckSource(*src_, spec_, &problems));
  const int64_t source_packet = vars.GetInt(0, 5);
  ASSIGN_OR_RETURN(MyResult tvars, dst_->Query("SELECT @@local_infile, @@max_allowed_packet, @@hostname, @@port, "
                                               "@@innodb_flush_log_at_trx_commit, @@innodb_flush_log_at_timeout"));
  if (tvars.Get(0, 0) != "1")
    problems.push_back("target: local_infile is off; SET GLOBAL local_infile = ON (the copy streams rows with LOAD "
                       "DATA LOCAL INFILE)");
  const int64_t target_packet = tvars.GetInt(0, 1);
  if (target_packet < source_packet)
    problems.push_back(fmt::format("target: max_allowed_packet is {}, below the source's {}: a row the source holds "
                                   "may not fit; SET GLOBAL max_allowed_packet = {} on the target",
                                   target_packet, source_packet, source_packet));
  if (!spec_.copy_binlog) {
    // Setting it is what needs the privilege: try, and put it back.
    Status off = dst_->Exec("SET SESSION sql_log_bin = 0");
    if (!off.ok())
      problems.push_back(fmt::format("target: copy_binlog: false needs SUPER or BINLOG ADMIN to set sql_log_bin = 0 "
                                     "on the copy's sessions: {}",
                                     off.message()));
    else
      RETURN_IF_ERROR(dst_->Exec("SET SESSION sql_log_bin = 1"));
  }
  max_row_bytes_ = spec_.max_row_bytes > 0 ? spec_.max_row_bytes : target_packet - 1024;
  durable_after_ = mysql::CommitDurableAfter(tvars.Get(0, 4), tvars.Get(0, 5));
  if (durable_after_.count() > 0)
    LOG_INFO("target: innodb_flush_log_at_trx_commit = {}: the copy checks the target still holds every chunk {} ms "
             "after its workers finish",
             tvars.Get(0, 4), durable_after_.count());
  if (vars.Get(0, 6) == tvars.Get(0, 2) && vars.Get(0, 7) == tvars.Get(0, 3) && source_db_ == target_db_)
    problems.push_back("source and target are the same database");

  auto tables = mysql::LoadTables(*src_, source_db_, spec_.tables, spec_.exclude);
  if (!tables.ok()) return tables.status().WithContext("source catalog");
  tables_ = *tables;
  for (const auto& t : tables_) by_id_[t->id] = t;
  // Transforms (core/transform.h) apply to the copy and the stream alike
  // (snapshot_copier.h, pipeline/transform_sink.h); each cast or computed
  // column needs a MySQL type.
  auto bound = mysql::BindTransformsForMySql(spec_, tables_);
  if (!bound.ok()) problems.push_back(bound.status().message());
  *transforms_ = bound.ok() ? std::move(*bound) : TransformMap();
  repl_.reset();
  (void)Replication();  // made here, before any other thread may format a position
  // Views, routines, triggers, events: readable, and their definers exist on the target.
  RETURN_IF_ERROR(mysql::CheckObjects(*src_, source_db_, *dst_, TableNames(), reader, &problems)
                      .WithContext("reading the views, routines, triggers and events"));
  if (fresh) {
    ASSIGN_OR_RETURN(auto existing, mysql::ListTables(*dst_, target_db_));
    if (!existing.empty() && !spec_.allow_nonempty_target)
      problems.push_back(fmt::format("target is not empty: database {} already has table {}{}; use an empty database, "
                                     "or set allow_nonempty_target: true",
                                     target_db_, existing.front().name,
                                     existing.size() > 1 ? fmt::format(" and {} more", existing.size() - 1) : ""));
  }
  // Through Kafka, a row too large for a change message would stop the
  // stream when it changes: refuse it now, by table and key (one scan each).
  if (fresh && spec_.transport.kind == TransportSpec::Kind::kKafka) {
    for (const auto& t : tables_) {
      std::vector<std::string> keys, lengths;
      for (int k : t->key) keys.push_back(mysql::QuoteIdent(t->columns[k].name));
      for (const auto& c : t->columns)
        lengths.push_back(fmt::format("COALESCE(LENGTH({}), 0)", mysql::QuoteIdent(c.name)));
      ASSIGN_OR_RETURN(MyResult big,
                       src_->Query(fmt::format(
                           "SELECT {}, {} AS n FROM {}.{} HAVING n > {} ORDER BY n DESC LIMIT 1",
                           keys.empty() ? "'(no key)'" : fmt::format("CONCAT_WS(', ', {})", fmt::join(keys, ", ")),
                           fmt::join(lengths, " + "), mysql::QuoteIdent(t->id.schema), mysql::QuoteIdent(t->id.name),
                           spec_.transport.max_row_text_bytes())));
      if (big.rows() > 0)
        problems.push_back(spec_.transport.OversizedRow(t->id.ToString(), big.Get(0, 0), big.GetInt(0, 1)));
    }
  }
  // One owner per migration and target: a named lock held by this connection.
  ASSIGN_OR_RETURN(std::string locked, dst_->QueryValue(fmt::format(
      "SELECT GET_LOCK({}, 0)", mysql::QuoteString(fmt::format("midflight:{}:{}", spec_.name, target_db_)))));
  if (locked != "1")
    problems.push_back(fmt::format("another midflight process is already running migration {} into this target", spec_.name));
  return Status::Ok();
}

Status MyEngine::CreateSchema() {
  RETURN_IF_ERROR(dst_->Exec("CREATE DATABASE IF NOT EXISTS midflight"));
  RETURN_IF_ERROR(mysql::EnsureBookkeeping(*dst_));
  std::vector<TableId> ids;
  for (const auto& t : tables_)
    if (!transforms_->count(t->id)) ids.push_back(t->id);
  ASSIGN_OR_RETURN(auto ddl, mysql::CreateTables(*src_, *dst_, ids, target_db_));
  // A transformed table is made in its new shape, with its key only (schema_loader.h).
  for (const auto& [id, tr] : *transforms_) {
    ASSIGN_OR_RETURN(MyResult show, src_->Query("SHOW CREATE TABLE " + mysql::QuoteQualified(id.schema, id.name)));
    if (show.rows() != 1 || show.cols() < 2)
      return OperatorError(fmt::format("schema: {} on the source is not a base table", id.ToString()));
    ASSIGN_OR_RETURN(std::string sql, mysql::TransformedTableSql(*tr, show.Get(0, 1), target_db_));
    RETURN_IF_ERROR(dst_->Exec(sql).WithContext(
        fmt::format("schema: creating {}.{} ({}) on the target", target_db_, tr->target()->id.name, tr->where())));
    LOG_INFO("schema: {} created as {}.{} through its transform: its key only, no secondary index, foreign key or "
             "trigger",
             id.ToString(), target_db_, tr->target()->id.name);
  }
  if (!store_.Get("deferred_ddl")) RETURN_IF_ERROR(store_.Put("deferred_ddl", mysql::SerializeDeferred(ddl)));
  RETURN_IF_ERROR(mysql::CreateRoutinesAndViews(*src_, *dst_, source_db_, target_db_));
  Say(fmt::format("schema: {} tables created on the target (secondary indexes and foreign keys follow the copy)",
                  tables_.size()));
  return Status::Ok();
}

Result<DoneChunks> MyEngine::LoadDoneChunks() {
  RETURN_IF_ERROR(ReconnectControl());
  return mysql::LoadChunkRecords(*dst_, spec_.name, PositionKind::kBinlog);
}

Status MyEngine::CopyChunks(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                            std::function<void(int)> on_chunk_committed) {
  mysql::CopyJob job;
  job.source_uri = reader_uri_;
  job.target_uri = spec_.target;
  job.target_db = target_db_;
  job.migration = spec_.name;
  job.workers = spec_.copy_workers;
  job.knobs = &runtime_.knobs;
  job.rate = &runtime_.copy_rate;
  job.throttle = &runtime_.throttle;
  job.tables = by_id_;
  job.transforms = transforms_;
  job.max_row_bytes = max_row_bytes_;
  job.log_bin = spec_.copy_binlog;
  job.chunks = std::move(chunks);
  job.on_chunk_committed = std::move(on_chunk_committed);
  job.publisher = publisher_;
  job.on_chunk_flushed = [](int n) { CrashPoint("snapshot-chunk-published", n); };
  Say(fmt::format("copying: {} chunks with {} workers, each from its own consistent snapshot", job.chunks.size(),
                  runtime_.knobs.Int(Knob::kParallelism)));
  // Each table's secondary indexes are added as soon as its last chunk
  // commits, beside the copy of the others (schema_loader.h); FinishSchema
  // adds what is still missing and the foreign keys. As many index sessions
  // as copy workers at the start, as for PostgreSQL.
  std::unique_ptr<mysql::EarlyIndexBuilder> early;
  if (spec_.early_indexes) {
    ASSIGN_OR_RETURN(auto ddl, mysql::ParseDeferred(store_.Get("deferred_ddl").value_or("[]")));
    early = std::make_unique<mysql::EarlyIndexBuilder>(
        spec_.target, target_db_, ddl, static_cast<int>(std::clamp<int64_t>(runtime_.knobs.Int(Knob::kParallelism), 1, 64)));
    // While copy_rows_per_s limits the copy, a table's indexes wait for the
    // end of the copy: an ALTER TABLE beside the copy would add load on the
    // target that the knob does not limit.
    job.on_table_copied = [b = early.get(), &knobs = runtime_.knobs](const TableId& t) {
      if (knobs.Get(Knob::kCopyRowsPerS) > 0) {
        LOG_INFO("schema: the indexes of {} wait for the end of the copy (knob copy_rows_per_s is set)", t.ToString());
        return;
      }
      b->TableCopied(t);
    };
    std::set<TableId> copying;
    for (const auto& c : job.chunks) copying.insert(c.table);
    for (const auto& t : tables_)
      if (!copying.count(t->id)) job.on_table_copied(t->id);  // copied whole by an earlier run
  }
  auto started = std::chrono::steady_clock::now();
  // A target that does not flush every commit may lose chunks it
  // acknowledged: they are copied again, each from a newer snapshot.
  mysql::DurableCopy how;
  how.delay = durable_after_;
  how.knobs = &runtime_.knobs;
  how.copy_round = [&](std::vector<Chunk> round) {
    job.chunks = std::move(round);
    Status copied = mysql::CopyChunks(job, progress, stop);
    job.on_table_copied = nullptr;  // a table copied again keeps its indexes; FinishSchema adds any missing
    return copied;
  };
  how.load_done = [this] { return LoadDoneChunks(); };
  how.empty_table = [this](const TableId& id) {
    return mysql::EmptyForCopyAgain(*dst_, spec_.name, id, TableId{target_db_, TargetName(id)});
  };
  Status st = mysql::CopyUntilDurable(how, std::move(job.chunks), progress, stop);
  if (!early) return st;
  if (!st.ok()) early->Cancel();  // the builds running end; the rest is left to FinishSchema
  const int built = early->Finish();
  if (st.ok() && built > 0)
    Say(fmt::format("schema: the secondary indexes of {} tables built as their copy ended ({:.1f} s after the copy "
                    "began)",
                    built, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  return st;
}

Status MyEngine::FinishSchema() {
  Say("schema: building secondary indexes and foreign keys");
  auto started = std::chrono::steady_clock::now();
  CrashPoint("before-post-data");
  ASSIGN_OR_RETURN(auto ddl, mysql::ParseDeferred(store_.Get("deferred_ddl").value_or("[]")));
  RETURN_IF_ERROR(mysql::BuildDeferred(spec_.target, target_db_, ddl, spec_.copy_workers));
  // Triggers (quiet on midflight's apply sessions) and events (disabled) once the copy is in.
  RETURN_IF_ERROR(ReconnectControl());
  // A transformed table gets no trigger: its columns or its name changed.
  std::set<std::string> plain;
  for (const auto& t : tables_)
    if (!transforms_->count(t->id)) plain.insert(t->id.name);
  if (plain.empty()) plain.insert("");  // no table is named "": no trigger (an empty set means every table)
  RETURN_IF_ERROR(mysql::CreateTriggersAndEvents(*src_, *dst_, source_db_, target_db_, plain));
  Say(fmt::format("schema: indexes and foreign keys built in {:.1f} s",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  return Status::Ok();
}

Status MyEngine::ReconnectControl() {
  mysql::ConnOptions co;
  co.program_name = "midflight-control";
  // A session the server dropped looks fine until it is used: ping it.
  auto alive = [](std::unique_ptr<MyConn>& c) { return c && !c->IsBroken() && c->Exec("SELECT 1").ok(); };
  if (!alive(src_)) {
    ASSIGN_OR_RETURN(src_, MyConn::Connect(reader_uri_, co));
  }
  if (!alive(dst_)) {
    ASSIGN_OR_RETURN(dst_, MyConn::Connect(spec_.target, co));
  }
  return Status::Ok();
}

Result<std::vector<TableComparison>> CompareMyTables(const MigrationSpec& spec) {
  mysql::ConnOptions o;
  o.program_name = "midflight-compare";
  const std::string reader = spec.source_replica.empty() ? spec.source : spec.source_replica;
  ASSIGN_OR_RETURN(auto src, MyConn::Connect(reader, o));
  ASSIGN_OR_RETURN(auto dst, MyConn::Connect(spec.target, o));
  ASSIGN_OR_RETURN(auto su, mysql::ParseMyUri(reader));
  ASSIGN_OR_RETURN(auto tu, mysql::ParseMyUri(spec.target));
  ASSIGN_OR_RETURN(auto tables, mysql::LoadTables(*src, su.database, spec.tables, spec.exclude));
  std::vector<TableComparison> out;
  for (const auto& t : tables) {
    if (auto skipped = SkippedAsTransformed(spec, t->id)) {
      out.push_back(std::move(*skipped));
      continue;
    }
    std::vector<std::string> cols, nulls;
    for (const auto& c : t->columns) {
      const std::string q = mysql::QuoteIdent(c.name);
      cols.push_back(q);
      nulls.push_back(fmt::format("ISNULL({})", q));
    }
    // The table hash is the sum of its rows' md5s (each half read as a 64-bit
    // number; SUM of integers is an exact DECIMAL): the same for the same
    // multiset of rows, in any order, in constant memory. GROUP_CONCAT of the
    // rows' md5s in key order would be cut at group_concat_max_len (1 MB by
    // default, 32 768 rows), silently, and the rows after it never compared.
    auto sql = [&](const std::string& db) {
      return fmt::format(
          "SELECT COUNT(*), COALESCE(MD5(CONCAT(SUM(CAST(CONV(SUBSTRING(mf_h, 1, 16), 16, 10) AS UNSIGNED)), ',', "
          "SUM(CAST(CONV(SUBSTRING(mf_h, 17, 16), 16, 10) AS UNSIGNED)))), '') "
          "FROM (SELECT MD5(CONCAT_WS(0x1f, CONCAT({}), {})) AS mf_h FROM {}) AS mf_rows",
          fmt::join(nulls, ", "), fmt::join(cols, ", "), mysql::QuoteQualified(db, t->id.name));
    };
    auto hash = [&sql](MyConn& conn, const std::string& db) -> Result<TableHash> {
      ASSIGN_OR_RETURN(MyResult r, conn.Query(sql(db)));
      return TableHash{r.GetInt(0, 0), r.Get(0, 1)};
    };
    ASSIGN_OR_RETURN(TableComparison c, CompareSides(t->id.ToString(), [&] { return hash(*src, su.database); },
                                                     [&] { return hash(*dst, tu.database); }));
    out.push_back(std::move(c));
  }
  return out;
}

class MyEngineKind final : public EngineKind {
 public:
  explicit MyEngineKind(ReshapedChecks checks = {}) : checks_(std::move(checks)) {}
  std::string_view name() const override { return "mysql"; }
  std::unique_ptr<Engine> New(const MigrationSpec& spec, MigrationRuntime& runtime, StateStore& store) const override {
    return std::make_unique<MyEngine>(spec, runtime, store, checks_.verify);
  }
  // Nothing of midflight's stays on a MySQL source (no slot, no publication).
  Result<std::string> CleanUpAbort(const MigrationSpec&) const override {
    return std::string("nothing to drop on the source (binlog reader)");
  }
  // The tables CompareMyTables leaves out because a transform reshapes them
  // are compared through their transforms (ReshapedChecks), when it is set.
  Result<std::vector<TableComparison>> Compare(const MigrationSpec& spec) const override {
    ASSIGN_OR_RETURN(std::vector<TableComparison> out, CompareMyTables(spec));
    if (spec.transforms.empty() || !checks_.compare) return out;
    ASSIGN_OR_RETURN(std::vector<TableComparison> compared, checks_.compare(spec));
    for (auto& c : compared)
      for (auto& mine : out)
        if (mine.table == c.table) mine = c;
    return out;
  }
  Result<std::unique_ptr<proxy::TrafficSwitch>> StartTrafficSwitch(const MigrationSpec& spec,
                                                                  StateStore& store) const override {
    return StartMySqlProxy(spec, store);
  }
  bool has_traffic_plane() const override { return true; }
  // Same engine: the tables without a transform are created from the
  // source's SHOW CREATE TABLE as they are; the transformed ones as shown here.
  Result<std::string> SchemaDdl(const MigrationSpec& spec) const override {
    if (spec.transforms.empty()) return EngineKind::SchemaDdl(spec);
    const std::string reader = spec.source_replica.empty() ? spec.source : spec.source_replica;
    ASSIGN_OR_RETURN(auto su, mysql::ParseMyUri(reader));
    ASSIGN_OR_RETURN(auto tu, mysql::ParseMyUri(spec.target));
    mysql::ConnOptions co;
    co.program_name = "midflight-schema";
    ASSIGN_OR_RETURN(auto conn, MyConn::Connect(reader, co));
    ASSIGN_OR_RETURN(auto tables, mysql::LoadTables(*conn, su.database, spec.tables, spec.exclude));
    ASSIGN_OR_RETURN(TransformMap bound, mysql::BindTransformsForMySql(spec, tables));
    std::string out = fmt::format(
        "-- midflight: MySQL -> MySQL: {} tables; {} transformed (created by midflight as below: columns and primary "
        "key only), the others as the source's SHOW CREATE TABLE has them\n",
        tables.size(), bound.size());
    for (const auto& [id, tr] : bound) {
      out += fmt::format("-- {} -> {}.{}\n", id.ToString(), tu.database, tr->target()->id.name);
      for (const auto& line : tr->Describe()) out += "--   " + line + "\n";
      ASSIGN_OR_RETURN(MyResult show, conn->Query("SHOW CREATE TABLE " + mysql::QuoteQualified(id.schema, id.name)));
      ASSIGN_OR_RETURN(std::string sql, mysql::TransformedTableSql(*tr, show.Get(0, 1), tu.database));
      out += sql + ";\n";
    }
    return out;
  }

  Result<ApplyEnds> ApplyEndsOf(const MigrationSpec& spec) const override {
    const std::string reader = spec.source_replica.empty() ? spec.source : spec.source_replica;
    ASSIGN_OR_RETURN(auto su, mysql::ParseMyUri(reader));
    ASSIGN_OR_RETURN(auto tu, mysql::ParseMyUri(spec.target));
    ApplyEnds ends;
    ends.load_tables = [spec, reader, db = su.database]() -> Result<std::vector<TablePtr>> {
      mysql::ConnOptions co;
      co.program_name = "midflight-worker-catalog";
      ASSIGN_OR_RETURN(auto conn, MyConn::Connect(reader, co));
      return mysql::LoadTables(*conn, db, spec.tables, spec.exclude);
    };
    // The checkpoint columns workers record (added to an older target), once
    // per process; tried again by the next sink when it failed.
    auto ensured = std::make_shared<OnceOk>();
    ends.open_sink = [target = spec.target, db = tu.database, ensured, spec, reader, source_db = su.database](
                         PartitionId p, const std::string& key) -> Result<std::unique_ptr<ChangeSink>> {
      RETURN_IF_ERROR(ensured->Run([&]() -> Status {
        mysql::ConnOptions co;
        co.program_name = "midflight-worker";
        ASSIGN_OR_RETURN(auto conn, MyConn::Connect(target, co));
        return mysql::EnsureBookkeeping(*conn);
      }));
      // No restart source: the run process keeps the restart marker (it
      // knows every partition); no target-lost flag: the Applier reconnects
      // and checks the target's checkpoint itself.
      ASSIGN_OR_RETURN(auto sink, mysql::MyChangeSink::Open(target, db, key, p));
      if (spec.transforms.empty()) return std::unique_ptr<ChangeSink>(std::move(sink));
      // The spec's transforms, bound to the source's tables as the worker reads them.
      mysql::ConnOptions co;
      co.program_name = "midflight-worker-catalog";
      ASSIGN_OR_RETURN(auto conn, MyConn::Connect(reader, co));
      ASSIGN_OR_RETURN(auto tables, mysql::LoadTables(*conn, source_db, spec.tables, spec.exclude));
      ASSIGN_OR_RETURN(TransformMap bound, mysql::BindTransformsForMySql(spec, tables));
      return std::unique_ptr<ChangeSink>(
          std::make_unique<TransformSink>(std::move(sink), std::make_shared<const TransformMap>(std::move(bound))));
    };
    return ends;
  }

 private:
  const ReshapedChecks checks_;  // constant
};

}  // namespace

const EngineKind& MySqlEngine() {
  static const MyEngineKind kind;
  return kind;
}

std::unique_ptr<EngineKind> NewMySqlEngineKind(ReshapedChecks checks) {
  return std::make_unique<MyEngineKind>(std::move(checks));
}

}  // namespace midflight
