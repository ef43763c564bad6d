#include "engines/postgres/engine.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/once_ok.h"
#include "base/parse.h"
#include "base/uri.h"
#include "control/http.h"
#include "control/compare.h"
#include "control/runtime.h"
#include "engines/cross/canon_sides.h"
#include "engines/postgres/replication_ops.h"
#include "proxy/pg_proxy.h"
#include "control/phase_driver.h"
#include "control/run_util.h"
#include "control/state_store.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/catalog.h"
#include "engines/postgres/early_indexes.h"
#include "engines/postgres/snapshot_copier.h"
#include "engines/postgres/pg_applier.h"
#include "engines/postgres/schema_loader.h"
#include "pipeline/transform_sink.h"

namespace midflight {
namespace {

using pg::PgConn;
using pg::PgResult;
using TablePtr = std::shared_ptr<const TableSchema>;

// Preflight's questions to each side, one round trip each.
constexpr const char* kSourceFactsSql = R"sql(
SELECT current_setting('wal_level'), current_setting('server_encoding'), current_database(),
       (SELECT (rolsuper OR rolreplication)::text FROM pg_roles WHERE rolname = current_user),
       current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots),
       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
       EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $2),
       (SELECT system_identifier::text FROM pg_control_system()) || '/' || current_database()
)sql";
constexpr const char* kTargetFactsSql = R"sql(
SELECT current_setting('server_encoding'),
       (SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user),
       (SELECT system_identifier::text FROM pg_control_system()) || '/' || current_database()
)sql";

class PgEngine final : public Engine {
 public:
  PgEngine(const MigrationSpec& spec, MigrationRuntime& runtime, StateStore& store)
      : spec_(spec), runtime_(runtime), store_(store) {
    dump_path_ = spec_.state_dir + "/schema.dump";
  }

  std::string_view name() const override { return "postgres"; }
  Status Preflight(bool fresh, std::vector<std::string>* problems) override;
  const std::vector<TablePtr>& tables() const override { return tables_; }
  std::string Sides() const override {
    return fmt::format("source {}, target {}", RedactUri(spec_.source), RedactUri(spec_.target));
  }
  std::vector<std::pair<std::string, std::string>> InitialState() const override {
    return {{"source", RedactUri(spec_.source)}, {"target", RedactUri(spec_.target)}};
  }
  std::string TableProblem(const TableSchema& t) const override {
    if (t.key_kind != KeyKind::kNone) return "";
    return fmt::format(
        "table {} has no primary key and no replica identity: add a primary key, or run "
        "ALTER TABLE {} REPLICA IDENTITY FULL (its updates and deletes then match the whole row), "
        "or add it to exclude",
        t.id.ToString(), pg::DisplayQualified(t.id.schema, t.id.name));
  }
  Status CreateSchema() override;
  Result<std::vector<Chunk>> PlanChunks(int64_t chunk_rows) override { return pg::PlanChunks(*src_, tables_, chunk_rows); }
  Result<DoneChunks> LoadDoneChunks() override;
  Status PrepareCopy(const std::vector<Chunk>& plan, DoneChunks* done, bool todo) override;
  Status CopyChunks(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                    std::function<void(int)> on_chunk_committed) override;
  Status PublishCopy(CopyPublisher* publisher) override {
    publisher_ = publisher;
    return Status::Ok();
  }
  Status FinishSchema() override;
  ReplicationOps& Replication() override;
  std::string FormatPosition(uint64_t pos) const override { return PgLsn::FromU64(pos).ToString(); }

 private:
  Status ReconnectControl();

  const MigrationSpec& spec_;
  MigrationRuntime& runtime_;
  StateStore& store_;
  std::unique_ptr<PgConn> src_, dst_;
  std::vector<TablePtr> tables_;
  std::map<TableId, TablePtr> by_id_;
  // Tables with a spec transform (core/transform.h), by source table; the
  // others (plain_) get the source's own DDL through pg_dump / pg_restore.
  std::map<TableId, std::shared_ptr<const TableTransform>> transforms_;
  std::vector<TablePtr> plain_;
  std::string dump_path_;
  bool have_slot_ = false;  // PrepareCopy: the migration's slot exists on the source
  CopyPublisher* publisher_ = nullptr;  // PublishCopy's (transport.publish_snapshot)
  std::unique_ptr<ReplicationOps> replication_;
};

Status PgEngine::Preflight(bool fresh, std::vector<std::string>* problems_out) {
  std::vector<std::string>& problems = *problems_out;
  const auto began = std::chrono::steady_clock::now();
  pg::ConnOptions o;
  o.application_name = "midflight-control";
  // Both sides at once: a resumed run waits for this before it streams.
  Result<std::unique_ptr<PgConn>> dst = Internal("not connected");
  std::thread dst_connect([&] { dst = PgConn::Connect(spec_.target, o); });
  auto src = PgConn::Connect(spec_.source, o);
  dst_connect.join();
  if (!src.ok()) problems.push_back("source: " + src.status().message());
  if (!dst.ok()) problems.push_back("target: " + dst.status().message());
  if (!problems.empty()) return Status::Ok();
  src_ = std::move(*src);
  dst_ = std::move(*dst);
  // What the checks below need, in one round trip per side, both sides at once.
  Result<PgResult> target_facts = Internal("not read");
  std::thread target_read([&] { target_facts = dst_->Query(kTargetFactsSql); });
  Result<PgResult> source_facts = src_->Query(kSourceFactsSql, {spec_.slot_name(), spec_.publication_name()});
  target_read.join();
  if (!source_facts.ok()) return source_facts.status();
  if (!target_facts.ok()) return target_facts.status();
  const PgResult& sf = *source_facts;
  const PgResult& tf = *target_facts;
  const std::string wal_level = sf.GetString(0, 0), src_enc = sf.GetString(0, 1), src_db = sf.GetString(0, 2);
  const std::string dst_enc = tf.GetString(0, 0);
  if (wal_level != "logical")
    problems.push_back(fmt::format("source: wal_level is '{}'; set wal_level = logical in postgresql.conf and "
                                   "restart the source server",
                                   wal_level));
  // SQL_ASCII stores bytes unchecked: text the target (another encoding)
  // would refuse stops the copy halfway. Between two SQL_ASCII databases the
  // bytes pass through unchanged (PgConn talks SQL_ASCII to such servers).
  if (src_enc == "SQL_ASCII" && dst_enc != "SQL_ASCII")
    problems.push_back(fmt::format(
        "source: database {} has encoding SQL_ASCII (bytes stored unchecked) and the target has {}: text that is not "
        "valid {} would stop the copy; create the target database with ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE "
        "'C' TEMPLATE template0, or convert the source's text first",
        src_db, dst_enc, dst_enc));
  if (sf.GetString(0, 3) != "true")
    problems.push_back("source: the connecting role lacks the REPLICATION attribute; run ALTER ROLE <user> REPLICATION");
  const int64_t free_slots = sf.GetInt(0, 4);
  const bool have_slot = sf.GetBool(0, 5);
  if (!have_slot && free_slots < 1)
    problems.push_back("source: no free replication slot (max_replication_slots is used up); raise "
                       "max_replication_slots or drop an unused slot");
  // A new migration creates its slot and publication; finding them means
  // another migration of the same name owns them (two consumers of one slot
  // would each lose the changes the other took).
  if (fresh && (have_slot || sf.GetBool(0, 6)))
    problems.push_back(fmt::format(
        "source: replication slot or publication {} already exists, so another migration named {} uses this source; "
        "give this migration another name, or drop them if that migration is gone (SELECT "
        "pg_drop_replication_slot('{}'); DROP PUBLICATION {})",
        spec_.slot_name(), spec_.name, spec_.slot_name(), spec_.publication_name()));
  if (tf.GetString(0, 1) != "true")
    problems.push_back("target: the connecting role must be a superuser (apply sessions set "
                       "session_replication_role = replica so foreign keys and triggers do not fire twice)");
  // Same database on both sides?
  const std::string src_id = sf.GetString(0, 7), dst_id = tf.GetString(0, 2);
  if (src_id == dst_id) problems.push_back("source and target are the same database");

  auto tables = pg::LoadTables(*src_, spec_.tables, spec_.exclude);
  if (!tables.ok()) return tables.status().WithContext("source catalog");
  tables_ = *tables;
  for (const auto& t : tables_) by_id_[t->id] = t;
  auto bound = BindTransforms(spec_.transforms, tables_);
  if (!bound.ok()) problems.push_back(bound.status().message());
  else transforms_ = TransformsBySource(*bound);
  plain_.clear();
  for (const auto& t : tables_)
    if (!transforms_.count(t->id)) plain_.push_back(t);
  if (fresh) {
    ASSIGN_OR_RETURN(auto existing, pg::ListUserTables(*dst_));
    if (!existing.empty() && !spec_.allow_nonempty_target)
      problems.push_back(fmt::format("target is not empty: it already has table {}{}; use an empty database, or set "
                                     "allow_nonempty_target: true",
                                     existing.front().ToString(),
                                     existing.size() > 1 ? fmt::format(" and {} more", existing.size() - 1) : ""));
    std::set<TableId> targets;
    for (const auto& t : tables_)
      targets.insert(transforms_.count(t->id) ? transforms_.at(t->id)->target()->id : t->id);
    for (const auto& e : existing)
      if (spec_.allow_nonempty_target && targets.count(e))
        problems.push_back(fmt::format("target already has table {}", e.ToString()));
  }
  // Through Kafka, a row too large for a change message would stop the
  // stream when it changes: refuse it now, by table and key (one scan each).
  if (fresh && spec_.transport.kind == TransportSpec::Kind::kKafka) {
    for (const auto& t : tables_) {
      std::vector<std::string> keys;
      for (int k : t->key) keys.push_back(pg::QuoteIdent(t->columns[k].name) + "::text");
      if (keys.empty()) keys.push_back("ctid::text");
      ASSIGN_OR_RETURN(PgResult big,
                       src_->Query(fmt::format("SELECT concat_ws(', ', {}), octet_length(r::text) FROM {} r "
                                               "WHERE octet_length(r::text) > $1 ORDER BY 2 DESC LIMIT 1",
                                               fmt::join(keys, ", "), pg::QuoteQualified(t->id.schema, t->id.name)),
                                   {std::to_string(spec_.transport.max_row_text_bytes())}));
      if (big.rows() > 0)
        problems.push_back(spec_.transport.OversizedRow(t->id.ToString(), big.GetString(0, 0), big.GetInt(0, 1)));
    }
  }
  // One owner per source/target pair: a session advisory lock on the target,
  // held by this connection for the life of the process.
  ASSIGN_OR_RETURN(std::string locked,
                   dst_->QueryValue("SELECT pg_try_advisory_lock(hashtext('midflight:' || $1 || '->' || current_database()))::text",
                                    {src_id}));
  if (locked != "true")
    problems.push_back("another midflight migration is already running from this source database to this target "
                       "database (it holds the target's advisory lock)");
  LOG_INFO("preflight: source and target checked, {} tables read from the source catalog, in {:.0f} ms",
           tables_.size(), std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count());
  return Status::Ok();
}

Status PgEngine::CreateSchema() {
  ASSIGN_OR_RETURN(auto all, pg::ListUserTables(*src_));
  // Transformed tables are left out of the dump: midflight creates them in
  // their new shape below (the dump still brings their schemas' types).
  RETURN_IF_ERROR(pg::DumpSchema(spec_.source, plain_, all, dump_path_));
  // The pre-data restore is one transaction: either every table exists or none.
  ASSIGN_OR_RETURN(auto existing, pg::ListUserTables(*dst_));
  std::set<TableId> have(existing.begin(), existing.end());
  bool all_there = true;
  for (const auto& t : plain_) all_there = all_there && have.count(t->id);
  if (plain_.empty())
    for (const auto& [id, tr] : transforms_) all_there = all_there && have.count(tr->target()->id);
  if (!all_there) RETURN_IF_ERROR(pg::RestorePreData(*src_, *dst_, spec_.target, dump_path_, spec_.state_dir));
  for (const auto& [id, tr] : transforms_) RETURN_IF_ERROR(dst_->Exec(pg::TransformedTableDdl(*tr)));
  RETURN_IF_ERROR(pg::EnsureBookkeeping(*dst_));
  Say(fmt::format("schema: {} tables created on the target (indexes and constraints follow {})", tables_.size(),
                  spec_.early_indexes ? "each table's copy" : "the copy"));
  return Status::Ok();
}

Result<DoneChunks> PgEngine::LoadDoneChunks() {
  DoneChunks done;
  ASSIGN_OR_RETURN(PgResult r, dst_->Query("SELECT table_name, chunk, snapshot_lsn::text, rows_copied, bytes_copied "
                                           "FROM midflight.chunks WHERE migration = $1",
                                           {spec_.name}));
  for (int i = 0; i < r.rows(); ++i) {
    ASSIGN_OR_RETURN(PgLsn lsn, PgLsn::Parse(r.Get(i, 2)));
    done[{r.GetString(i, 0), static_cast<int>(r.GetInt(i, 1))}] = {Position(lsn), r.GetInt(i, 3), r.GetInt(i, 4)};
  }
  return done;
}

Status PgEngine::PrepareCopy(const std::vector<Chunk>& plan, DoneChunks* done, bool todo) {
  // Publication (the one object besides the slot that midflight creates on the source).
  ASSIGN_OR_RETURN(PgResult pub, src_->Query("SELECT 1 FROM pg_publication WHERE pubname = $1", {spec_.publication_name()}));
  std::string table_list;
  for (const auto& t : tables_) table_list += (table_list.empty() ? "" : ", ") + pg::QuoteQualified(t->id.schema, t->id.name);
  if (pub.rows() == 0)
    RETURN_IF_ERROR(src_->Exec(fmt::format("CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
                                           pg::QuoteIdent(spec_.publication_name()), table_list)));

  // Tables that must come from one snapshot as a whole (not split by key
  // value) and were left half-copied start over: their target rows go.
  std::map<TableId, int> total, finished;
  for (const auto& c : plan) {
    ++total[c.table];
    if (done->count({c.table.ToString(), c.number})) ++finished[c.table];
  }
  for (const auto& [id, n] : total) {
    int f = finished[id];
    if (f == 0 || f == n) continue;
    bool by_value = false;
    for (const auto& c : plan)
      if (c.table == id && c.kind == Chunk::Kind::kIntRange) by_value = true;
    if (by_value) continue;
    Say(fmt::format("copying: {} was partly copied from an older snapshot; copying it again whole", id.ToString()));
    const TableId target = transforms_.count(id) ? transforms_.at(id)->target()->id : id;
    RETURN_IF_ERROR(dst_->Exec(fmt::format("BEGIN; TRUNCATE {}; DELETE FROM midflight.chunks WHERE migration = {} AND "
                                           "table_name = {}; COMMIT",
                                           pg::QuoteQualified(target.schema, target.name), pg::QuoteLiteral(spec_.name),
                                           pg::QuoteLiteral(id.ToString()))));
    for (auto it = done->begin(); it != done->end();)
      it = it->first.first == id.ToString() ? done->erase(it) : std::next(it);
    todo = true;
  }

  ASSIGN_OR_RETURN(PgResult slot, src_->Query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {spec_.slot_name()}));
  have_slot_ = slot.rows() > 0;
  if (!have_slot_ && !done->empty())
    return DataLoss(fmt::format("replication slot {} is gone from the source, so the changes made since the copy "
                                "began are lost; abort this migration and start a new one",
                                spec_.slot_name()));
  if (!have_slot_ && !todo)
    return DataLoss(fmt::format("replication slot {} is missing on the source", spec_.slot_name()));
  return Status::Ok();
}

Status PgEngine::CopyChunks(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                            std::function<void(int)> on_chunk_committed) {
  pg::CopyJob job;
  job.source_uri = spec_.source;
  job.target_uri = spec_.target;
  job.migration = spec_.name;
  job.workers = spec_.copy_workers;
  job.knobs = &runtime_.knobs;
  job.rate = &runtime_.copy_rate;
  job.throttle = &runtime_.throttle;
  job.tables = by_id_;
  job.transforms = transforms_;
  job.chunks = std::move(chunks);
  job.on_chunk_committed = std::move(on_chunk_committed);
  job.publisher = publisher_;
  job.on_chunk_flushed = [](int n) { CrashPoint("snapshot-chunk-published", n); };
  // The slot (first run) or a temporary one (a resumed copy) exports the
  // snapshot every worker imports; its connection stays open until they have.
  pg::ConnOptions ro;
  ro.kind = pg::ConnKind::kReplication;
  ro.application_name = "midflight-snapshot";
  ASSIGN_OR_RETURN(std::unique_ptr<PgConn> repl, PgConn::Connect(spec_.source, ro));
  std::string cmd = have_slot_
      ? fmt::format("CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT",
                    pg::QuoteIdent(fmt::format("{}_r{}", spec_.slot_name(), getpid())))
      : fmt::format("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT", pg::QuoteIdent(spec_.slot_name()));
  PgResult created(PQexec(repl->raw(), cmd.c_str()));
  if (PQresultStatus(created.raw()) != PGRES_TUPLES_OK)
    return pg::StatusFromResult(repl->raw(), created.raw(), "creating replication slot " + spec_.slot_name());
  ASSIGN_OR_RETURN(job.snapshot_lsn, PgLsn::Parse(created.Get(0, 1)));
  job.snapshot_name = created.GetString(0, 2);
  if (!have_slot_) RETURN_IF_ERROR(store_.Put("slot_lsn", job.snapshot_lsn.ToString()));
  Say(fmt::format("copying: {} chunks with {} workers from the snapshot at {}{}", job.chunks.size(),
                  runtime_.knobs.Int(Knob::kParallelism), job.snapshot_lsn.ToString(),
                  have_slot_ ? " (a newer snapshot: resuming)" : ""));
  // Each table's keys and indexes are built as soon as its last chunk
  // commits, beside the copy of the others (early_indexes.h); FinishSchema
  // builds the rest. The pool has as many sessions as the copy has workers
  // when it starts, so the target runs at most twice `parallelism` sessions
  // (as pgcopydb's equal --table-jobs and --index-jobs do).
  std::unique_ptr<pg::EarlyIndexBuilder> early;
  if (spec_.early_indexes) {
    RETURN_IF_ERROR(ReconnectControl());
    pg::EarlyIndexOptions eo;
    eo.target_uri = spec_.target;
    eo.dump_path = dump_path_;
    eo.work_dir = spec_.state_dir;
    eo.migration = spec_.name;
    eo.jobs = static_cast<int>(std::clamp<int64_t>(runtime_.knobs.Int(Knob::kParallelism), 1, 64));
    eo.index_memory_mb = spec_.index_memory_mb;
    ASSIGN_OR_RETURN(early, pg::EarlyIndexBuilder::Start(*src_, *dst_, plain_, std::move(eo)));
    std::set<TableId> copying;
    for (const auto& c : job.chunks) copying.insert(c.table);
    for (const auto& t : tables_)
      if (!copying.count(t->id)) early->TableCopied(t->id);  // copied whole by an earlier run
    job.on_table_copied = [b = early.get()](const TableId& t) { b->TableCopied(t); };
  }
  auto started = std::chrono::steady_clock::now();
  Status st = pg::CopyChunks(job, progress, stop, [&] { repl.reset(); });
  if (!early) return st;
  if (!st.ok()) early->Cancel();  // the builds running end; the rest is left to the next run
  Status built = early->Finish();
  if (st.ok() && built.ok() && early->entries_total() > 0)
    Say(fmt::format("schema: {} primary keys, unique constraints and indexes built as their tables' copy ended "
                    "({:.1f} s after the copy began)",
                    early->entries_total(),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  return st.ok() ? built : st;
}

// The control connections outlive long steps (a copy of hours) during which
// a server may restart: reconnect before the next step uses them.
Status PgEngine::ReconnectControl() {
  pg::ConnOptions o;
  o.application_name = "midflight-control";
  // A session the server dropped still looks fine until it is used.
  auto alive = [](std::unique_ptr<PgConn>& c) { return c && !c->IsBroken() && c->Exec("SELECT 1").ok(); };
  if (!alive(src_)) {
    ASSIGN_OR_RETURN(src_, PgConn::Connect(spec_.source, o));
  }
  if (!alive(dst_)) {
    ASSIGN_OR_RETURN(dst_, PgConn::Connect(spec_.target, o));
  }
  return Status::Ok();
}

Status PgEngine::FinishSchema() {
  RETURN_IF_ERROR(ReconnectControl());
  Say("schema: building primary keys, indexes and constraints");
  auto started = std::chrono::steady_clock::now();
  CrashPoint("before-post-data");
  RETURN_IF_ERROR(pg::EndOrphanIndexSessions(*dst_, spec_.name));
  RETURN_IF_ERROR(pg::RestorePostData(*src_, *dst_, spec_.target, dump_path_, spec_.copy_workers,
                                      spec_.index_memory_mb, spec_.state_dir, pg::IndexSessionName(spec_.name)));
  CrashPoint("after-post-data");
  RETURN_IF_ERROR(pg::SyncSequences(*src_, *dst_, plain_));
  // Replicated rows carry the values of GENERATED ALWAYS identity columns, which
  // an UPDATE may only set to DEFAULT: while midflight applies changes, such
  // columns are GENERATED BY DEFAULT on the target (recorded in the state, to be
  // restored when the migration completes).
  std::string always;
  for (const auto& t : plain_)
    for (const auto& c : t->columns)
      if (c.identity_always) {
        RETURN_IF_ERROR(dst_->Exec(fmt::format("ALTER TABLE {} ALTER COLUMN {} SET GENERATED BY DEFAULT",
                                               pg::QuoteQualified(t->id.schema, t->id.name), pg::QuoteIdent(c.name))));
        always += t->id.ToString() + "." + c.name + "\n";
      }
  if (!always.empty()) {
    RETURN_IF_ERROR(store_.Put("identity_always_columns", always));
    Say("schema: GENERATED ALWAYS identity columns are GENERATED BY DEFAULT on the target while replicating");
  }
  Say(fmt::format("schema: indexes and constraints built in {:.1f} s; sequences set",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  return Status::Ok();
}

ReplicationOps& PgEngine::Replication() {
  // The ops open their own connections (the control ones may have died during a long copy).
  if (!replication_) replication_ = NewPgReplicationOps(spec_, store_, runtime_);
  return *replication_;
}

Result<proxy::ProxyConfig> ProxyConfigFor(const MigrationSpec& spec) {
  proxy::ProxyConfig pc;
  pc.migration = spec.name;
  pc.listen_rw = spec.proxy.listen;
  pc.listen_ro = spec.proxy.listen_readonly;
  pc.auth = spec.proxy.auth;
  pc.tls_cert = spec.proxy.tls_cert;
  pc.tls_key = spec.proxy.tls_key;
  pc.max_clients = spec.proxy.max_clients;
  pc.loops = spec.proxy.loops;
  pc.max_unauthenticated = spec.proxy.max_unauthenticated;
  pc.auth_timeout = std::chrono::milliseconds(static_cast<int64_t>(spec.proxy.auth_timeout_seconds * 1000));
  for (const auto& u : spec.proxy.users) pc.users.push_back({u.name, u.password});
  const std::string* uris[2] = {&spec.source, &spec.target};
  for (int i = 0; i < 2; ++i) {
    ASSIGN_OR_RETURN(UriParts u, ParseUri(*uris[i]));
    proxy::ServerAddress& a = pc.servers[i];
    a.host = u.host.empty() ? "127.0.0.1" : u.host;
    a.port = u.port ? u.port : 5432;
    a.database = u.database.empty() ? u.user : u.database;
    a.user = u.user;
    a.password = u.password;
    auto tls = pgwire::TlsFromUriParams(u.params);
    if (!tls.ok()) return tls.status().WithContext(i == 0 ? "source" : "target");
    a.tls = std::move(*tls);
  }
  return pc;
}

Result<std::unique_ptr<proxy::TrafficSwitch>> StartPgProxy(const MigrationSpec& spec, StateStore& store) {
  ASSIGN_OR_RETURN(proxy::ProxyConfig pc, ProxyConfigFor(spec));
  ASSIGN_OR_RETURN(auto proxy, proxy::PgProxy::Start(std::move(pc)));
  Phase phase = store.phase();
  if (phase == Phase::kFailed || phase == Phase::kPaused)
    phase = ParsePhase(store.Get("resume_phase").value_or("created")).value_or(Phase::kCreated);
  if (phase == Phase::kWritesSwitched || phase == Phase::kCompleted) proxy->SetWriteSide(proxy::Side::kTarget);
  int64_t percent = 0;
  const std::string stored = store.Get("read_percent").value_or("0");
  if (!ParseI64(stored, &percent) || percent < 0 || percent > 100)
    return Internal(fmt::format("state store: read_percent '{}' is not a percentage", stored));
  proxy->SetReadPercent(static_cast<int>(percent));
  RETURN_IF_ERROR(store.PutMany({{"proxy_rw", proxy->rw_address()}, {"proxy_ro", proxy->ro_address()}}));
  Say(fmt::format("proxy: read-write {} and read-only {}, writes to the {}, {}% of reads to the target",
                  proxy->rw_address(), proxy->ro_address().empty() ? "(none)" : proxy->ro_address(),
                  proxy::SideName(proxy->write_side()), proxy->read_percent()));
  return std::unique_ptr<proxy::TrafficSwitch>(std::move(proxy));
}

Status CleanUpAbort(const MigrationSpec& spec) {
  pg::ConnOptions o;
  o.application_name = "midflight-abort";
  std::vector<std::string> problems;
  auto drop = [&](const std::string& uri, const char* side, const std::string& slot, const std::string& pub) {
    auto conn = PgConn::Connect(uri, o);
    if (!conn.ok()) {
      problems.push_back(fmt::format("{}: {}", side, conn.status().message()));
      return;
    }
    // A slot still active (a killed run's walsender) is terminated first.
    Status st = (*conn)->Query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                               "WHERE slot_name = $1 AND active_pid IS NOT NULL", {slot}).status();
    for (int i = 0; st.ok() && i < 50; ++i) {
      auto r = (*conn)->Query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                              "WHERE slot_name = $1 AND NOT active", {slot});
      auto left = (*conn)->Query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {slot});
      if (r.ok() && left.ok() && left->rows() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (st.ok()) st = (*conn)->Exec(fmt::format("DROP PUBLICATION IF EXISTS {}", pg::QuoteIdent(pub)));
    auto left = (*conn)->Query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {slot});
    if (st.ok() && left.ok() && left->rows() > 0) st = OperatorError(fmt::format("replication slot {} is still in use", slot));
    if (!st.ok()) problems.push_back(fmt::format("{}: {}", side, st.message()));
  };
  drop(spec.source, "source", spec.slot_name(), spec.publication_name());
  drop(spec.target, "target", spec.slot_name() + "_rev", spec.publication_name() + "_rev");
  if (!problems.empty())
    return OperatorError(fmt::format("abort could not clean up: {}", fmt::join(problems, "; ")));
  return Status::Ok();
}

class PgEngineKind final : public EngineKind {
 public:
  std::string_view name() const override { return "postgres"; }
  std::unique_ptr<Engine> New(const MigrationSpec& spec, MigrationRuntime& runtime, StateStore& store) const override {
    return std::make_unique<PgEngine>(spec, runtime, store);
  }
  Result<std::string> CleanUpAbort(const MigrationSpec& spec) const override {
    RETURN_IF_ERROR(midflight::CleanUpAbort(spec));
    return std::string("slot and publication dropped");
  }
  // The tables CompareTables leaves out because a transform reshapes them are
  // compared through their transforms (cross/cross_verify.h CrossCompare).
  Result<std::vector<TableComparison>> Compare(const MigrationSpec& spec) const override {
    ASSIGN_OR_RETURN(std::vector<TableComparison> out, CompareTables(spec));
    if (spec.transforms.empty()) return out;
    pg::ConnOptions o;
    o.application_name = "midflight-compare";
    ASSIGN_OR_RETURN(auto src, pg::PgConn::Connect(spec.source, o));
    ASSIGN_OR_RETURN(auto tables, pg::LoadTables(*src, spec.tables, spec.exclude));
    ASSIGN_OR_RETURN(std::vector<cross::CanonTable> canon, cross::PgReshapedTables(spec.transforms, tables));
    auto source = cross::PostgresCanonSide(spec.source, "source (PostgreSQL)");
    auto target = cross::PostgresCanonSide(spec.target, "target (PostgreSQL)");
    ASSIGN_OR_RETURN(std::vector<TableComparison> compared,
                     cross::CrossCompare(*source, *target, canon, spec.verify.chunk_rows));
    for (auto& c : compared)
      for (auto& mine : out)
        if (mine.table == c.table) mine = c;
    return out;
  }
  Result<std::unique_ptr<proxy::TrafficSwitch>> StartTrafficSwitch(const MigrationSpec& spec,
                                                                  StateStore& store) const override {
    return StartPgProxy(spec, store);
  }
  bool has_traffic_plane() const override { return true; }
  // Same engine: the tables without a transform are created by pg_restore as
  // the source has them; the transformed ones by midflight, shown here.
  Result<std::string> SchemaDdl(const MigrationSpec& spec) const override {
    if (spec.transforms.empty()) return EngineKind::SchemaDdl(spec);
    pg::ConnOptions o;
    o.application_name = "midflight-schema";
    ASSIGN_OR_RETURN(auto src, PgConn::Connect(spec.source, o));
    ASSIGN_OR_RETURN(auto tables, pg::LoadTables(*src, spec.tables, spec.exclude));
    ASSIGN_OR_RETURN(auto bound, BindTransforms(spec.transforms, tables));
    std::string out = fmt::format(
        "-- midflight: PostgreSQL -> PostgreSQL: {} tables; {} transformed (created by midflight as below: columns "
        "and primary key only), the others created by pg_dump / pg_restore as the source has them\n",
        tables.size(), bound.size());
    for (const auto& tr : bound) {
      out += fmt::format("-- {} -> {}\n", tr->source().id.ToString(), tr->target()->id.ToString());
      for (const auto& line : tr->Describe()) out += "--   " + line + "\n";
      out += pg::TransformedTableDdl(*tr);
    }
    return out;
  }

  Result<ApplyEnds> ApplyEndsOf(const MigrationSpec& spec) const override {
    ApplyEnds ends;
    ends.load_tables = [spec]() -> Result<std::vector<TablePtr>> {
      pg::ConnOptions co;
      co.application_name = "midflight-worker-catalog";
      ASSIGN_OR_RETURN(auto conn, pg::PgConn::Connect(spec.source, co));
      return pg::LoadTables(*conn, spec.tables, spec.exclude);
    };
    // The checkpoint columns workers record (added to an older target), once;
    // a failure (the target down) is tried again by the next sink.
    auto ensured = std::make_shared<OnceOk>();
    ends.open_sink = [spec, ensured](PartitionId p,
                                     const std::string& key) -> Result<std::unique_ptr<ChangeSink>> {
      RETURN_IF_ERROR(ensured->Run([&]() -> Status {
        pg::ConnOptions co;
        co.application_name = "midflight-worker";
        ASSIGN_OR_RETURN(auto conn, pg::PgConn::Connect(spec.target, co));
        return pg::EnsureBookkeeping(*conn);
      }));
      // The migration's own rows: the forward flow's origin of p, so reverse
      // replication never sends the worker's writes back. Others (a replay):
      // an origin of the migration the reverse stream skips as well.
      const std::string origin = key == spec.name ? fmt::format("midflight_{}_f{}", spec.name, p.value)
                                                  : fmt::format("midflight_{}_x{}", spec.name, p.value);
      ASSIGN_OR_RETURN(auto sink, pg::PgChangeSink::Open(spec.target, key, p, origin));
      if (spec.transforms.empty()) return std::unique_ptr<ChangeSink>(std::move(sink));
      // The spec's transforms, bound to the source's tables as the worker
      // reads them: the topic carries the source's rows, as the run's own
      // sinks receive them (pg_flow.cc).
      pg::ConnOptions co;
      co.application_name = "midflight-worker-catalog";
      ASSIGN_OR_RETURN(auto conn, pg::PgConn::Connect(spec.source, co));
      ASSIGN_OR_RETURN(auto tables, pg::LoadTables(*conn, spec.tables, spec.exclude));
      ASSIGN_OR_RETURN(auto bound, BindTransforms(spec.transforms, tables));
      return std::unique_ptr<ChangeSink>(
          std::make_unique<TransformSink>(std::move(sink), std::make_shared<const TransformMap>(TransformsBySource(bound))));
    };
    return ends;
  }
};

}  // namespace

const EngineKind& PostgresEngine() {
  static const PgEngineKind kind;
  return kind;
}

}  // namespace midflight
