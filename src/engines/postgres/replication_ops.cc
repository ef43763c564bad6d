// PostgreSQL's side of the cutover (engines/engine.h ReplicationOps): the flows
// in both directions (slots, publications, replication origins), positions,
// sequences, the clean-up at `complete`, and live verification.
#include "engines/postgres/replication_ops.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "base/thread_annotations.h"
#include "control/runtime.h"
#include "control/spec.h"
#include "control/state_store.h"
#include "engines/cross/canon_sides.h"
#include "engines/postgres/catalog.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/pg_flow.h"
#include "engines/postgres/pg_applier.h"
#include "engines/postgres/pg_verify.h"
#include "engines/postgres/schema_loader.h"
#include "proxy/traffic_switch.h"

namespace midflight {
namespace {

using pg::PgConn;
using pg::PgResult;
using proxy::Side;

Result<std::unique_ptr<PgConn>> Control(const std::string& uri) {
  pg::ConnOptions o;
  o.application_name = "midflight-cutover";
  return PgConn::Connect(uri, o);
}

Result<PgLsn> InsertLsn(PgConn& conn) {
  ASSIGN_OR_RETURN(std::string v, conn.QueryValue("SELECT pg_current_wal_insert_lsn()::text"));
  return PgLsn::Parse(v);
}

// A position every transaction committed so far on `conn`'s server is before,
// and that is already flushed (so a walsender can decode past it at once):
// a transactional logical-decoding message committed with synchronous_commit
// on flushes the WAL up to its commit, which is after every earlier commit.
// It writes a WAL record only (no table, no object); servers that refuse it
// fall back to the insert position, which may take a WAL-writer cycle to flush.
Result<PgLsn> FlushedPosition(PgConn& conn) {
  Status st = conn.Exec("BEGIN; SET LOCAL synchronous_commit = on; "
                        "SELECT pg_logical_emit_message(true, 'midflight', 'position'); COMMIT");
  if (!st.ok()) {
    (void)conn.Exec("ROLLBACK");
    return InsertLsn(conn);
  }
  ASSIGN_OR_RETURN(std::string v, conn.QueryValue("SELECT pg_current_wal_flush_lsn()::text"));
  return PgLsn::Parse(v);
}

std::string TableList(const std::vector<TablePtr>& tables) {
  std::string out;
  for (const auto& t : tables) out += (out.empty() ? "" : ", ") + pg::QuoteQualified(t->id.schema, t->id.name);
  return out;
}

// Reverse replication's prerequisites (target -> source, started by the first
// write switch), checked by that switch, by its dry run and by StartFlow.
std::vector<GateCheck> ReverseChecks(PgConn& src, PgConn& dst) {
  std::vector<GateCheck> out;
  auto value = [](PgConn& c, const char* sql) -> std::string {
    auto v = c.QueryValue(sql);
    return v.ok() ? *v : "error: " + v.status().message();
  };
  const std::string wal_level = value(dst, "SHOW wal_level");
  if (wal_level == "logical")
    out.push_back(GatePass("target wal_level", "logical"));
  else
    out.push_back(GateFail("target wal_level",
                           fmt::format("target: wal_level is '{}'; reverse replication (which keeps a rollback "
                                       "possible after the write switch) needs wal_level = logical on the target: "
                                       "set it in the target's postgresql.conf and restart the target",
                                       wal_level)));
  // Reverse apply sessions on the source set session_replication_role and a
  // replication origin, both superuser-only on PostgreSQL 15.
  const std::string src_user = value(src, "SELECT current_user");
  if (value(src, "SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user") == "true")
    out.push_back(GatePass("source user", fmt::format("{} is a superuser (applies the reverse stream)", src_user)));
  else
    out.push_back(GateFail("source user",
                           fmt::format("source: reverse replication (which keeps a rollback possible after the write "
                                       "switch) applies changes on the source as the spec's source user, which must "
                                       "then be a superuser (session_replication_role and replication origins): "
                                       "ALTER ROLE {} SUPERUSER",
                                       src_user)));
  const std::string dst_user = value(dst, "SELECT current_user");
  if (value(dst, "SELECT (rolsuper OR rolreplication)::text FROM pg_roles WHERE rolname = current_user") == "true")
    out.push_back(GatePass("target user", fmt::format("{} may replicate (reads the reverse stream)", dst_user)));
  else
    out.push_back(GateFail("target user",
                           fmt::format("target: user {} has neither REPLICATION nor SUPERUSER; reverse replication "
                                       "reads the target's changes through a replication slot: ALTER ROLE {} "
                                       "REPLICATION",
                                       dst_user, dst_user)));
  const std::string free_slots =
      value(dst, "SELECT (current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots))"
                 "::text");
  if (std::atoi(free_slots.c_str()) > 0 || free_slots.starts_with("error"))
    out.push_back(free_slots.starts_with("error") ? GateFail("target slots", "target: " + free_slots)
                                                  : GatePass("target slots", free_slots + " free replication slot(s)"));
  else
    out.push_back(GateFail("target slots", "target: no free replication slot (max_replication_slots is used up); "
                                           "raise max_replication_slots on the target or drop an unused slot"));
  return out;
}

class PgReplicationOps final : public ReplicationOps {
 public:
  PgReplicationOps(const MigrationSpec& spec, StateStore& store, MigrationRuntime& runtime)
      : spec_(spec), store_(store), runtime_(runtime) {}

  Result<StartedFlow> StartFlow(Side from, const std::vector<TablePtr>& tables, const ReplicateStart& start) override;
  Status PrepareSwitch() override {
    MutexLock lock(&control_mu_);
    for (Side side : {Side::kSource, Side::kTarget}) RETURN_IF_ERROR(ControlConn(side, /*ping=*/true).status());
    return Status::Ok();
  }
  Result<uint64_t> CommittedPosition(Side side) override {
    MutexLock lock(&control_mu_);
    Result<PgLsn> lsn = PgLsn();
    RETURN_IF_ERROR(OnControl({side}, [&](PgConn* const* c) {
      lsn = FlushedPosition(*c[0]);
      return lsn.status();
    }));
    return lsn->value();
  }
  uint64_t CurrentPosition(Side side) override {
    PgConn* conn = Monitor(side);
    if (!conn) return 0;
    // The insert position: with asynchronous commits a committed transaction
    // may not be flushed yet, and it still counts as lag.
    auto l = InsertLsn(*conn);
    return l.ok() ? l->value() : 0;
  }
  Result<std::vector<TableId>> TablesInScope() override {
    PgConn* conn = Monitor(Side::kSource);
    if (!conn) return RetryCall("source: no monitor connection");
    ASSIGN_OR_RETURN(auto listed, pg::ListUserTables(*conn));
    std::vector<TableId> out;
    for (const auto& id : listed)
      if (TableSelected(spec_.tables, spec_.exclude, id)) out.push_back(id);
    return out;
  }
  std::optional<std::pair<double, std::string>> TargetReplicaLag() override {
    PgConn* conn = Monitor(Side::kTarget);
    if (!conn) return std::nullopt;
    auto v = conn->QueryValue(
        "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8::text || ' ' || "
        "coalesce((array_agg(application_name ORDER BY replay_lag DESC NULLS LAST))[1], '') "
        "FROM pg_stat_replication WHERE application_name NOT LIKE 'midflight%'");
    if (!v.ok()) return std::nullopt;
    const double lag = std::atof(v->c_str());
    return std::make_pair(lag, v->substr(std::min(v->size(), v->find(' ') + 1)));
  }
  Status SyncSequences(Side from) override {
    MutexLock lock(&control_mu_);
    const Side to = from == Side::kSource ? Side::kTarget : Side::kSource;
    return OnControl({from, to}, [&](PgConn* const* c) { return pg::SyncSequences(*c[0], *c[1], tables_); });
  }
  std::vector<GateCheck> SwitchChecks(Side to, bool reverse_needed) override;
  std::vector<std::string> CleanUpOnComplete() override;
  Result<VerifyOutcome> Verify(Side reference, Flow& flow, const std::map<TableId, TablePtr>& tables, bool repair,
                               std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
                               const VerifyRun& run) override;

 private:
  // The tables of ctx.skip (transformed) through the cross verifier
  // (cross/cross_verify.h): the source's rows read by key range, transformed
  // by midflight as the flow transforms them, hashed by the target's SQL
  // over a derived table typed as the target table; repairs are the source's
  // rows, applied through the flow's transform. After the write switch
  // (`reference` the target) the same the other way round (cross::Reversed):
  // repairs are the target's rows, applied through the inverse transform.
  Result<cross::CrossVerified> VerifyTransformed(Side reference, const verify::Context& ctx, Flow& flow,
                                                 const std::map<TableId, TablePtr>& tables, bool repair,
                                                 std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
                                                 const VerifyRun& run);
  const std::string& Uri(Side side) const { return side == Side::kSource ? spec_.source : spec_.target; }
  // The monitor thread's connection to `side`, reopened when broken; null
  // when the server cannot be reached now.
  PgConn* Monitor(Side side) {
    auto& c = monitor_[static_cast<int>(side)];
    if (!c || c->IsBroken()) {
      pg::ConnOptions o;
      o.application_name = "midflight-monitor";
      auto m = PgConn::Connect(Uri(side), o);
      c = m.ok() ? std::move(*m) : nullptr;
    }
    return c.get();
  }
  // The operations' connection to `side`, kept open between switches;
  // `ping` finds a session the server dropped (PrepareSwitch, before a pause).
  Result<PgConn*> ControlConn(Side side, bool ping = false) REQUIRES(control_mu_) {
    auto& c = control_[static_cast<int>(side)];
    if (!c || c->IsBroken() || (ping && !c->Exec("SELECT 1").ok())) {
      ASSIGN_OR_RETURN(c, Control(Uri(side)));
    }
    return c.get();
  }
  // Runs `fn` on the control connections of `sides` (no ping: inside a
  // pause every round trip counts); a connection found lost is opened again
  // and `fn` runs once more.
  template <typename Fn>
  Status OnControl(std::initializer_list<Side> sides, const Fn& fn) REQUIRES(control_mu_) {
    for (int attempt = 0;; ++attempt) {
      PgConn* conns[2] = {nullptr, nullptr};
      size_t i = 0;
      for (Side s : sides) {
        ASSIGN_OR_RETURN(conns[i++], ControlConn(s));
      }
      Status st = fn(conns);
      if (st.ok() || attempt > 0 || st.code() != StatusCode::kRetryCall) return st;
      for (Side s : sides)
        if (control_[static_cast<int>(s)]->IsBroken()) control_[static_cast<int>(s)].reset();
    }
  }
  // The settings both directions share.
  FlowConfig Config(bool forward, const std::vector<TablePtr>& tables, uint32_t partitions) const;

  const MigrationSpec& spec_;
  StateStore& store_;
  MigrationRuntime& runtime_;
  std::vector<TablePtr> tables_;           // the migrated tables as the source has them (StartFlow)
  std::unique_ptr<PgConn> monitor_[2];     // monitor thread only
  Mutex control_mu_;                       // the operation's and the stop's connections
  std::unique_ptr<PgConn> control_[2] GUARDED_BY(control_mu_);
};

FlowConfig PgReplicationOps::Config(bool forward, const std::vector<TablePtr>& tables, uint32_t partitions) const {
  FlowConfig fc;
  fc.label = forward ? "forward" : "reverse";
  fc.from_uri = forward ? spec_.source : spec_.target;
  fc.to_uri = forward ? spec_.target : spec_.source;
  fc.checkpoint_key = forward ? spec_.name : spec_.name + "/reverse";
  fc.origin_prefix = fmt::format("midflight_{}_{}", spec_.name, forward ? "f" : "r");
  fc.skip_origin_prefix = fmt::format("midflight_{}_", spec_.name);  // both directions' origins
  for (const auto& t : tables) fc.tables[t->id] = t;
  fc.partitions = partitions;
  fc.runtime = &runtime_;
  fc.partition_log_mb = spec_.partition_log_mb;
  return fc;
}

Result<ReplicationOps::StartedFlow> PgReplicationOps::StartFlow(Side from, const std::vector<TablePtr>& tables,
                                                               const ReplicateStart& start) {
  const uint32_t partitions = start.partitions;
  FlowConfig fc;
  if (from == Side::kSource) {
    // A target set up by an older midflight lacks the checkpoint columns
    // apply workers record (kafka_offset, worker): added when missing.
    {
      ASSIGN_OR_RETURN(auto dst, Control(spec_.target));
      RETURN_IF_ERROR(pg::EnsureBookkeeping(*dst));
    }
    tables_ = tables;
    fc = Config(/*forward=*/true, tables, partitions);
    fc.slot = spec_.slot_name();
    fc.publication = spec_.publication_name();
    fc.filter = start.filter;
    fc.log_factory = start.log_factory;
    ASSIGN_OR_RETURN(auto bound, BindTransforms(spec_.transforms, tables));
    fc.transforms = std::make_shared<const TransformMap>(TransformsBySource(bound));
    fc.external_apply = start.external_apply;
  } else {
    // A restart after the write switch starts only this flow: verify still
    // needs the source's tables (a transformed table is verified through them).
    if (tables_.empty()) tables_ = tables;
    // The spec's transforms run backwards (core/transform.h Inverse): the
    // reverse stream reads the target's tables (renamed, reshaped) and each
    // change is written back into the source table's carried columns.
    ASSIGN_OR_RETURN(auto bound, BindTransforms(spec_.transforms, tables));
    const TransformMap forward = TransformsBySource(bound);
    std::vector<TablePtr> shapes;  // the migrated tables as the target has them
    std::vector<std::string> names;
    for (const auto& t : tables) {
      auto tr = forward.find(t->id);
      shapes.push_back(tr == forward.end() ? t : tr->second->target());
      names.push_back(shapes.back()->id.ToString());
    }
    const std::string slot = spec_.slot_name() + "_rev", pub = spec_.publication_name() + "_rev";
    ASSIGN_OR_RETURN(auto dst, Control(spec_.target));
    ASSIGN_OR_RETURN(auto src, Control(spec_.source));
    const DefaultedColumns defaulted = [&src](const TableSchema& t) { return pg::ColumnsWithDefault(*src, t.id); };
    if (auto refused = InverseTransforms(forward, {}, defaulted); !refused.ok())
      return OperatorError("reverse replication cannot start: " + refused.status().message());
    // The slot may be there already (a restarted run): a full slot table is no refusal then.
    ASSIGN_OR_RETURN(PgResult had_slot, dst->Query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {slot}));
    for (const GateCheck& c : ReverseChecks(*src, *dst))
      if (!c.ok && !(c.name == "target slots" && had_slot.rows() > 0)) return OperatorError(c.detail);
    // The reverse checkpoints live next to the data they cover: on the source.
    RETURN_IF_ERROR(pg::EnsureBookkeeping(*src));
    ASSIGN_OR_RETURN(PgResult have_pub, dst->Query("SELECT 1 FROM pg_publication WHERE pubname = $1", {pub}));
    if (have_pub.rows() == 0)
      RETURN_IF_ERROR(dst->Exec(fmt::format("CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
                                            pg::QuoteIdent(pub), TableList(shapes))));
    ASSIGN_OR_RETURN(PgResult have_slot, dst->Query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {slot}));
    if (have_slot.rows() == 0) {
      pg::ConnOptions ro;
      ro.kind = pg::ConnKind::kReplication;
      ro.application_name = "midflight-cutover";
      ASSIGN_OR_RETURN(auto repl, PgConn::Connect(spec_.target, ro));
      std::string cmd = fmt::format("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput NOEXPORT_SNAPSHOT", pg::QuoteIdent(slot));
      PgResult created(PQexec(repl->raw(), cmd.c_str()));
      if (PQresultStatus(created.raw()) != PGRES_TUPLES_OK)
        return pg::StatusFromResult(repl->raw(), created.raw(), "creating replication slot " + slot + " on the target");
    }
    // The tables as the target has them (the reverse stream's "source").
    ASSIGN_OR_RETURN(auto target_tables, pg::LoadTables(*dst, names, {}));
    fc = Config(/*forward=*/false, target_tables, partitions);
    fc.slot = slot;
    fc.publication = pub;
    if (!forward.empty()) {
      const TableOf as_read = [&fc](const TableId& id) -> TablePtr {
        auto it = fc.tables.find(id);
        return it == fc.tables.end() ? nullptr : it->second;
      };
      ASSIGN_OR_RETURN(TransformMap inverse, InverseTransforms(forward, as_read, defaulted));
      fc.transforms = std::make_shared<const TransformMap>(std::move(inverse));
    }
  }
  StartedFlow out;
  ASSIGN_OR_RETURN(out.flow, StartPgFlow(fc));
  out.tables = std::move(fc.tables);
  return out;
}

std::vector<GateCheck> PgReplicationOps::SwitchChecks(Side to, bool reverse_needed) {
  std::vector<GateCheck> out;
  // On the operations' own connections (kept open between switches): the
  // switch runs these just before its pause, so no connection set-up here.
  MutexLock lock(&control_mu_);
  auto src = ControlConn(Side::kSource, /*ping=*/true);
  auto dst = ControlConn(Side::kTarget, /*ping=*/true);
  if (!src.ok() || !dst.ok()) {
    out.push_back(GateFail("servers", fmt::format("cannot connect: {}", (src.ok() ? dst.status() : src.status()).message())));
    return out;
  }
  if (reverse_needed) {
    out = ReverseChecks(**src, **dst);
    if (!spec_.transforms.empty()) {
      auto bound = BindTransforms(spec_.transforms, tables_);
      PgConn* source = *src;
      const DefaultedColumns defaulted = [source](const TableSchema& t) {
        return pg::ColumnsWithDefault(*source, t.id);
      };
      Status reversible =
          bound.ok() ? InverseTransforms(TransformsBySource(*bound), {}, defaulted).status() : bound.status();
      out.push_back(reversible.ok() ? GatePass("reverse transforms",
                                               fmt::format("{} transformed table(s) can be carried back",
                                                           bound->size()))
                                    : GateFail("reverse transforms", reversible.message()));
    }
  }
  // Sequences are carried from the side writes leave to the side they go to.
  PgConn& from = to == Side::kTarget ? **src : **dst;
  PgConn& into = to == Side::kTarget ? **dst : **src;
  int checked = 0;
  auto problems = pg::SequenceProblems(from, into, tables_, to == Side::kTarget ? "source" : "target",
                                       to == Side::kTarget ? "target" : "source", &checked);
  if (!problems.ok())
    out.push_back(GateFail("sequences", "reading the sequences: " + problems.status().message()));
  else if (problems->empty())
    out.push_back(GatePass("sequences", fmt::format("{} sequence(s) readable on the {} and settable on the {}", checked,
                                                    to == Side::kTarget ? "source" : "target",
                                                    to == Side::kTarget ? "target" : "source")));
  else
    out.push_back(GateFail("sequences", fmt::format("{}", fmt::join(*problems, "; "))));
  return out;
}

std::vector<std::string> PgReplicationOps::CleanUpOnComplete() {
  std::vector<std::string> done;
  auto src = Control(spec_.source);
  auto dst = Control(spec_.target);
  if (!src.ok() || !dst.ok()) {
    LOG_WARN("complete: cannot connect to clean up: {}", (src.ok() ? dst.status() : src.status()).message());
    return done;
  }
  auto drop = [&](PgConn& conn, const char* where, const std::string& sql, const std::string& what) {
    if (Status st = conn.Exec(sql); !st.ok())
      LOG_WARN("complete: dropping {} on the {}: {}", what, where, st.message());
    else
      done.push_back(fmt::format("{} on the {}", what, where));
  };
  // Slots may still be held by a stream session for a moment after it stops.
  auto drop_slot = [&](PgConn& conn, const char* where, const std::string& slot) {
    for (int i = 0; i < 50; ++i) {
      auto r = conn.Query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                          {slot});
      if (r.ok()) {
        done.push_back(fmt::format("slot {} on the {}", slot, where));
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    LOG_WARN("complete: could not drop replication slot {} on the {}", slot, where);
  };
  drop_slot(**src, "source", spec_.slot_name());
  drop_slot(**dst, "target", spec_.slot_name() + "_rev");
  drop(**src, "source", "DROP PUBLICATION IF EXISTS " + pg::QuoteIdent(spec_.publication_name()), "publication");
  drop(**dst, "target", "DROP PUBLICATION IF EXISTS " + pg::QuoteIdent(spec_.publication_name() + "_rev"), "publication");
  const std::string origins = fmt::format(
      "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE {}",
      pg::QuoteLiteral("midflight\\_" + spec_.name + "\\_%"));
  // An apply session that just closed may hold its origin for a moment.
  auto drop_origins = [&](PgConn& conn, const char* where) {
    for (int i = 0; i < 50; ++i) {
      if (conn.Exec(origins).ok()) {
        done.push_back(fmt::format("replication origins on the {}", where));
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    LOG_WARN("complete: could not drop the replication origins midflight_{}_* on the {}", spec_.name, where);
  };
  drop_origins(**src, "source");
  drop_origins(**dst, "target");
  drop(**src, "source", "DROP SCHEMA IF EXISTS midflight CASCADE", "schema midflight");
  drop(**dst, "target", "DROP SCHEMA IF EXISTS midflight CASCADE", "schema midflight");
  // GENERATED ALWAYS identity columns go back to ALWAYS on the target.
  std::string always = store_.Get("identity_always_columns").value_or("");
  for (size_t start = 0; start < always.size();) {
    size_t end = always.find('\n', start);
    std::string col = always.substr(start, end - start);
    start = end == std::string::npos ? always.size() : end + 1;
    auto last = col.rfind('.'), first = col.find('.');
    if (last == std::string::npos || first == last) continue;
    drop(**dst, "target",
         fmt::format("ALTER TABLE {} ALTER COLUMN {} SET GENERATED ALWAYS",
                     pg::QuoteQualified(col.substr(0, first), col.substr(first + 1, last - first - 1)),
                     pg::QuoteIdent(col.substr(last + 1))),
         "identity " + col);
  }
  return done;
}

Result<ReplicationOps::VerifyOutcome> PgReplicationOps::Verify(Side reference, Flow& flow,
                                                       const std::map<TableId, TablePtr>& tables, bool repair,
                                                       std::function<int64_t()> rows_per_s,
                                                       const std::atomic<bool>* stop, const VerifyRun& run) {
  verify::Context ctx;
  ctx.source_uri = Uri(reference);
  ctx.target_uri = Uri(reference == Side::kSource ? Side::kTarget : Side::kSource);
  // A transformed table is verified after the others, through its
  // transform (VerifyTransformed): named by its source table before the
  // write switch, by its target table after it (the reverse flow's tables
  // are the target's).
  std::map<TableId, std::string> transformed_ids;
  if (reference == Side::kSource) {
    for (const auto& [id, t] : tables)
      if (const TableTransformSpec* tr = TransformFor(spec_.transforms, id)) transformed_ids[id] = tr->where();
  } else if (!spec_.transforms.empty()) {
    ASSIGN_OR_RETURN(auto bound, BindTransforms(spec_.transforms, tables_));
    for (const auto& tr : bound) transformed_ids[tr->target()->id] = tr->where();
  }
  for (const auto& [id, t] : tables) {
    ctx.tables.push_back(t);
    if (auto tr = transformed_ids.find(id); tr != transformed_ids.end())
      ctx.skip[id] = fmt::format("its rows are transformed on the way ({})", tr->second);
    if (!run.start_after.table.empty() && id.ToString() == run.start_after.table) {
      ctx.start_table = id;
      ctx.start_after = run.start_after.key;
    }
  }
  if (!run.start_after.table.empty() && !ctx.start_table)
    LOG_WARN("verify: table {} to resume at is no longer migrated; verifying every table", run.start_after.table);
  if (run.on_progress)
    ctx.on_progress = [&run](const verify::Progress& p) {
      VerifyProgress out;
      out.table = p.table.ToString();
      out.table_done = !p.done_through;
      out.done_through.table = out.table;
      if (p.done_through) out.done_through.key = *p.done_through;
      out.table_rows = p.rows_done;
      out.table_rows_estimate = p.rows_total_estimate;
      if (p.result)
        for (const auto& d : p.result->differences)
          out.lines.push_back(fmt::format("{} {}: {}", out.table, d.key_display, d.kind));
      run.on_progress(out);
    };
  ctx.target_applied_through = [&flow] {
    flow.Poke();
    return PgLsn::FromU64(flow.AppliedThrough());
  };
  ctx.stop = stop;
  verify::Options opt;
  opt.chunk_rows = spec_.verify.chunk_rows;
  opt.rows_per_s = rows_per_s;
  ASSIGN_OR_RETURN(verify::Report report, verify::Run(ctx, opt));
  cross::CrossVerified transformed;
  if (!ctx.skip.empty()) {
    ASSIGN_OR_RETURN(transformed,
                     VerifyTransformed(reference, ctx, flow, tables, repair, std::move(rows_per_s), stop, run));
    for (auto& tr : transformed.report.tables)
      for (auto& mine : report.tables)
        if (mine.table == tr.table) {
          report.rows += tr.rows;
          mine = tr;
        }
    report.seconds += transformed.report.seconds;
  }
  VerifyOutcome out;
  out.clean = report.clean();
  out.summary = report.Summary();
  out.json = report.ToJson();
  std::unique_ptr<PgConn> ref;
  if (repair) {
    ASSIGN_OR_RETURN(ref, Control(ctx.source_uri));
  }
  for (auto& c : transformed.repairs) out.repairs.push_back(std::move(c));
  for (auto& line : transformed.not_repaired) out.lines.push_back(std::move(line));
  for (const auto& t : report.tables) {
    if (std::any_of(transformed.report.tables.begin(), transformed.report.tables.end(),
                    [&t](const verify::TableResult& x) { return x.table == t.table; })) {
      for (auto& line : cross::CrossLines(t)) out.lines.push_back(std::move(line));
      continue;
    }
    if (!t.skipped.empty()) out.lines.push_back(fmt::format("{}: not verified: {}", t.table.ToString(), t.skipped));
    for (const auto& d : t.differences) {
      out.lines.push_back(fmt::format("{} {}: {}", t.table.ToString(), d.key_display, d.kind));
      if (!repair) continue;
      const TablePtr& schema = tables.at(t.table);
      ASSIGN_OR_RETURN(verify::RowImage row, verify::ReadSourceRow(*ref, *schema, d.key));
      Change c;
      c.table = schema;
      if (row.exists) {
        c.kind = ChangeKind::kInsert;
        for (const auto& v : row.values) c.values.push_back(v ? Datum::Text(*v) : Datum::Null());
      } else {
        c.kind = ChangeKind::kDelete;
        c.old.assign(schema->writable.size(), Datum::Null());
        for (size_t i = 0; i < schema->key_writable.size() && i < d.key.size(); ++i)
          c.old[schema->key_writable[i]] = d.key[i] ? Datum::Text(*d.key[i]) : Datum::Null();
      }
      out.repairs.push_back(std::move(c));
    }
    for (const auto& k : t.unsettled)
      out.lines.push_back(fmt::format("{} {}: changed on every look, not settled", t.table.ToString(), k));
    if (t.truncated) out.lines.push_back(fmt::format("{}: more differences not listed", t.table.ToString()));
  }
  return out;
}

Result<cross::CrossVerified> PgReplicationOps::VerifyTransformed(Side reference, const verify::Context& ctx,
                                                                 Flow& flow, const std::map<TableId, TablePtr>& tables,
                                                                 bool repair, std::function<int64_t()> rows_per_s,
                                                                 const std::atomic<bool>* stop, const VerifyRun& run) {
  std::vector<cross::CanonTable> canon;
  if (reference == Side::kSource) {
    std::vector<TablePtr> list;
    for (const auto& [id, t] : tables)
      if (ctx.skip.count(id)) list.push_back(t);
    ASSIGN_OR_RETURN(canon, cross::PgReshapedTables(spec_.transforms, list));
  } else {
    // After the write switch: the target is the reference, the source's rows
    // go through the forward transform (cross::Reversed), each table named
    // by its target name; repairs are the target's rows in the reverse
    // stream's layout, applied through the inverse transform.
    ASSIGN_OR_RETURN(auto bound, BindTransforms(spec_.transforms, tables_));
    for (const auto& tr : bound) {
      auto it = tables.find(tr->target()->id);
      if (it == tables.end()) continue;
      cross::CanonTable c = cross::PgReshaped(tr);
      if (!c.reshape) c.skipped += fmt::format(" ({})", tr->where());
      c.id = tr->target()->id;
      auto layout = std::make_shared<TableSchema>(*it->second);
      layout->columns.clear();
      for (int w : it->second->writable) layout->columns.push_back(it->second->columns[static_cast<size_t>(w)]);
      layout->key = it->second->key_writable;
      layout->Finalize();
      canon.push_back(cross::Reversed(std::move(c), std::move(layout)));
    }
  }
  const bool forward = reference == Side::kSource;
  auto ref = cross::PostgresCanonSide(ctx.source_uri, forward ? "source (PostgreSQL)" : "target (PostgreSQL)");
  auto other = cross::PostgresCanonSide(ctx.target_uri, forward ? "target (PostgreSQL)" : "source (PostgreSQL)");
  // Resumed inside a transformed table: from there; else every one (those
  // before the resume point in the whole order are verified again).
  VerifyRun from;
  from.on_progress = run.on_progress;
  for (const auto& c : canon)
    if (c.id.ToString() == run.start_after.table) from.start_after = run.start_after;
  return cross::CrossVerifyReport(cross::JobAlong(flow, *ref, *other, std::move(canon), repair, std::move(rows_per_s),
                                                  stop, spec_.verify.chunk_rows, from));
}

}  // namespace

std::unique_ptr<ReplicationOps> NewPgReplicationOps(const MigrationSpec& spec, StateStore& store, MigrationRuntime& runtime) {
  return std::make_unique<PgReplicationOps>(spec, store, runtime);
}

}  // namespace midflight
