#include "engines/postgres/cutover.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/uri.h"
#include "control/phase_driver.h"
#include "control/run_util.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/catalog.h"
#include "engines/postgres/pg_applier.h"
#include "engines/postgres/schema_loader.h"
#include "engines/postgres/pg_verify.h"

namespace midflight {
namespace {

using pg::PgConn;
using pg::PgResult;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

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

std::string TableList(const std::vector<PgCutover::TablePtr>& tables) {
  std::string out;
  for (const auto& t : tables) out += (out.empty() ? "" : ", ") + pg::QuoteQualified(t->id.schema, t->id.name);
  return out;
}

std::string Ms(double seconds) { return fmt::format("{:.0f} ms", seconds * 1000); }

}  // namespace

PgCutover::PgCutover(const MigrationSpec& spec, StateStore& store, proxy::TrafficSwitch* proxy, MigrationRuntime& runtime)
    : spec_(spec), store_(store), proxy_(proxy), runtime_(runtime) {
  // Conflicts counted by an earlier process keep counting.
  runtime_.conflicts.LoadOnce(store_.Get("conflicts").value_or("{}"));
}

Status PgCutover::RequirePhase(std::initializer_list<Phase> allowed, const char* op) {
  Phase now = store_.phase();
  for (Phase p : allowed)
    if (p == now) return Status::Ok();
  std::string names;
  for (Phase p : allowed) names += (names.empty() ? "" : " or ") + std::string(PhaseName(p));
  return OperatorError(fmt::format("{} is allowed in phase {}; migration {} is in phase {}", op, names, spec_.name,
                                   PhaseName(now)));
}

// --- replication ---------------------------------------------------------------

FlowConfig PgCutover::Flow(bool forward, const std::vector<TablePtr>& tables) {
  FlowConfig fc;
  fc.label = forward ? "forward" : "reverse";
  fc.from_uri = forward ? spec_.source : spec_.target;
  fc.to_uri = forward ? spec_.target : spec_.source;
  fc.checkpoint_key = forward ? spec_.name : spec_.name + "/reverse";
  fc.origin_prefix = fmt::format("midflight_{}_{}", spec_.name, forward ? "f" : "r");
  fc.skip_origin_prefix = fmt::format("midflight_{}_", spec_.name);  // both directions' origins
  for (const auto& t : tables) fc.tables[t->id] = t;
  fc.partitions = partitions_;
  fc.runtime = &runtime_;
  fc.partition_log_mb = spec_.partition_log_mb;
  return fc;
}

Status PgCutover::StartReverse() {
  const std::string slot = spec_.slot_name() + "_rev", pub = spec_.publication_name() + "_rev";
  ASSIGN_OR_RETURN(auto dst, Control(spec_.target));
  ASSIGN_OR_RETURN(auto src, Control(spec_.source));
  ASSIGN_OR_RETURN(std::string wal_level, dst->QueryValue("SHOW wal_level"));
  if (wal_level != "logical")
    return OperatorError(fmt::format("target: wal_level is '{}'; reverse replication (which keeps a rollback possible "
                                     "after the write switch) needs wal_level = logical on the target",
                                     wal_level));
  // Reverse apply sessions on the source set session_replication_role and a
  // replication origin, both superuser-only on PostgreSQL 15.
  ASSIGN_OR_RETURN(std::string source_super,
                   src->QueryValue("SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user"));
  if (source_super != "true")
    return OperatorError("source: reverse replication (which keeps a rollback possible after the write switch) applies "
                         "changes on the source as the spec's source user, which must then be a superuser "
                         "(session_replication_role and replication origins)");
  // The reverse checkpoints live next to the data they cover: on the source.
  RETURN_IF_ERROR(pg::EnsureBookkeeping(*src));
  ASSIGN_OR_RETURN(PgResult have_pub, dst->Query("SELECT 1 FROM pg_publication WHERE pubname = $1", {pub}));
  if (have_pub.rows() == 0)
    RETURN_IF_ERROR(dst->Exec(fmt::format("CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
                                          pg::QuoteIdent(pub), TableList(tables_))));
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
  ASSIGN_OR_RETURN(auto target_tables, pg::LoadTables(*dst, spec_.tables, spec_.exclude));
  FlowConfig fc = Flow(/*forward=*/false, target_tables);
  fc.slot = slot;
  fc.publication = pub;
  ASSIGN_OR_RETURN(auto flow, PgFlow::Start(std::move(fc)));
  RETURN_IF_ERROR(store_.Put("reverse_started", "true"));
  std::lock_guard lock(state_mu_);
  reverse_ = std::move(flow);
  return Status::Ok();
}

Status PgCutover::Run(std::vector<TablePtr> tables, SnapshotFilter filter, uint32_t partitions,
                      const std::atomic<bool>& stop) {
  tables_ = std::move(tables);
  partitions_ = partitions;
  if (store_.phase() == Phase::kCompleted) {
    completed_ = true;
    Say("migration completed; the proxy keeps serving from the target until stopped");
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return Status::Ok();
  }
  FlowConfig fc = Flow(/*forward=*/true, tables_);
  fc.slot = spec_.slot_name();
  fc.publication = spec_.publication_name();
  fc.filter = std::move(filter);
  ASSIGN_OR_RETURN(auto forward, PgFlow::Start(std::move(fc)));
  {
    std::lock_guard lock(state_mu_);
    forward_ = std::move(forward);
  }
  if (store_.Get("reverse_started").value_or("") == "true") {
    if (Status st = StartReverse(); !st.ok()) {
      std::lock_guard lock(state_mu_);
      forward_->Stop();
      return st;
    }
  }
  {
    // Operations are taken from here on: every flow this phase needs runs.
    std::lock_guard lock(state_mu_);
    running_ = true;
  }

  pg::ConnOptions mo;
  mo.application_name = "midflight-monitor";
  std::unique_ptr<PgConn> mon[2];
  auto current_lsn = [&](int side) -> uint64_t {
    const std::string& uri = side == 0 ? spec_.source : spec_.target;
    if (!mon[side] || mon[side]->IsBroken()) {
      auto m = PgConn::Connect(uri, mo);
      mon[side] = m.ok() ? std::move(*m) : nullptr;
    }
    if (!mon[side]) return 0;
    // The insert position: with asynchronous commits a committed transaction
    // may not be flushed yet, and it still counts as lag.
    auto v = mon[side]->QueryValue("SELECT pg_current_wal_insert_lsn()::text");
    if (!v.ok()) return 0;
    auto l = PgLsn::Parse(*v);
    return l.ok() ? l->value() : 0;
  };

  Status result;
  auto now_s = [] { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); };
  double last_replica_check = 0, last_untracked_check = 0;
  auto last_print = Clock::now() - std::chrono::seconds(10);
  uint64_t last_applied = 0;
  auto last_rate_at = Clock::now();
  double rate = 0;
  while (!stop && !completed_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::shared_ptr<PgFlow> fwd, rev;
    {
      std::lock_guard lock(state_mu_);
      fwd = forward_;
      rev = reverse_;
    }
    if (completed_) break;
    if (Status st = fwd->flow().health(); !st.ok()) {
      (void)store_.Put("conflicts", runtime_.conflicts.ToJson());  // the one that stopped it, if it was one
      result = st;
      break;
    }
    if (rev)
      if (Status st = rev->flow().health(); !st.ok()) {
        result = st;
        break;
      }
    uint64_t source_lsn = current_lsn(0);
    if (now_s() - last_untracked_check >= 3.0 && mon[0]) {
      last_untracked_check = now_s();
      CheckUntracked(*mon[0]);
    }
    // The target's own physical replicas: when one lags more than the
    // replica_max_lag_seconds knob, the appliers hold their next batch until
    // it catches up (the board shows why).
    if (now_s() - last_replica_check >= 1.0) {
      last_replica_check = now_s();
      double max_lag = runtime_.knobs.Get(Knob::kReplicaMaxLagSeconds);
      if (max_lag > 0 && current_lsn(1) != 0 && mon[1]) {
        auto v = mon[1]->QueryValue(
            "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8::text || ' ' || "
            "coalesce((array_agg(application_name ORDER BY replay_lag DESC NULLS LAST))[1], '') "
            "FROM pg_stat_replication WHERE application_name NOT LIKE 'midflight%'");
        if (v.ok()) {
          double lag = std::atof(v->c_str());
          std::string who = v->substr(std::min(v->size(), v->find(' ') + 1));
          if (lag > max_lag)
            runtime_.throttle.SetReplicaLagPause(
                true, fmt::format("target replica {} replays {:.1f} s behind (knob replica_max_lag_seconds is {:.1f}); "
                                  "applying waits for it",
                                  who.empty() ? "?" : who, lag, max_lag));
          else if (lag <= max_lag * 0.8 || lag == 0)
            runtime_.throttle.SetReplicaLagPause(false, "");
        }
      } else {
        runtime_.throttle.SetReplicaLagPause(false, "");
      }
    }
    FlowMetrics m = fwd->flow().metrics();
    uint64_t lag_bytes = source_lsn > m.applied_through ? source_lsn - m.applied_through : 0;
    auto now = Clock::now();
    double dt = std::chrono::duration<double>(now - last_rate_at).count();
    if (dt >= 1.0) {
      rate = (m.changes_applied - last_applied) / dt;
      last_applied = m.changes_applied;
      last_rate_at = now;
    }
    std::vector<std::pair<std::string, std::string>> kv = {
        {"heartbeat", std::to_string(NowUnixMicros())},
        {"pid", std::to_string(getpid())},
        {"source_lsn", PgLsn::FromU64(source_lsn).ToString()},
        {"applied_lsn", PgLsn::FromU64(m.applied_through).ToString()},
        {"confirmed_lsn", PgLsn::FromU64(m.confirmed).ToString()},
        {"received_lsn", PgLsn::FromU64(m.received).ToString()},
        {"lag_bytes", std::to_string(lag_bytes)},
        {"lag_seconds", fmt::format("{:.3f}", m.lag_seconds)},
        {"changes_applied", std::to_string(m.changes_applied)},
        {"changes_per_s", fmt::format("{:.0f}", rate)},
        {"apply_retries", std::to_string(m.retries)},
        {"conflicts", runtime_.conflicts.ToJson()},
        {"stream_connected", m.connected ? "true" : "false"}};
    std::string reverse_line;
    if (rev) {
      uint64_t target_lsn = current_lsn(1);
      FlowMetrics r = rev->flow().metrics();
      uint64_t rlag = target_lsn > r.applied_through ? target_lsn - r.applied_through : 0;
      kv.push_back({"reverse_lag_bytes", std::to_string(rlag)});
      kv.push_back({"reverse_applied_lsn", PgLsn::FromU64(r.applied_through).ToString()});
      kv.push_back({"reverse_lag_seconds", fmt::format("{:.3f}", r.lag_seconds)});
      kv.push_back({"reverse_changes_applied", std::to_string(r.changes_applied)});
      reverse_line = fmt::format("; reverse lag {} bytes, {} changes applied", Commas(rlag), Commas(r.changes_applied));
    }
    if (proxy_) {
      proxy::ProxyStats ps = proxy_->stats();
      kv.push_back({"proxy_clients", std::to_string(ps.clients_rw + ps.clients_ro)});
      kv.push_back({"proxy_transactions_source", std::to_string(ps.transactions[0])});
      kv.push_back({"proxy_transactions_target", std::to_string(ps.transactions[1])});
    }
    (void)store_.PutMany(kv);
    CrashPoint("apply-changes", static_cast<int64_t>(m.changes_applied));
    if (now - last_print >= std::chrono::seconds(5)) {
      last_print = now;
      Say(fmt::format("[{}] lag {} bytes / {:.2f} s, {} changes applied ({:.0f}/s){}{}", PhaseName(store_.phase()),
                      Commas(lag_bytes), m.lag_seconds, Commas(m.changes_applied), rate,
                      m.connected ? "" : ", source disconnected: retrying", reverse_line));
    }
  }
  std::shared_ptr<PgFlow> fwd, rev;
  {
    std::lock_guard lock(state_mu_);
    running_ = false;
    fwd = forward_;
    rev = reverse_;
  }
  // Wait for an operation in progress (it may use the flows) before stopping them.
  stopping_ = true;
  std::lock_guard op(op_mu_);
  if (fwd) fwd->Stop();
  if (rev) rev->Stop();
  if (completed_ && result.ok()) {
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return Status::Ok();
  }
  if (stop && result.ok() && store_.phase() != Phase::kWritesSwitched) {
    if (auto src = Control(spec_.source); src.ok())
      if (auto dst = Control(spec_.target); dst.ok()) (void)pg::SyncSequences(**src, **dst, tables_);
    Say("stopped; run again with the same spec to resume");
  }
  return result;
}

// --- the switches --------------------------------------------------------------

void PgCutover::CheckUntracked(pg::PgConn& source) {
  auto listed = pg::ListUserTables(source);
  if (!listed.ok()) return;  // the monitor connection is retried on the next round
  std::set<TableId> carried;
  for (const auto& t : tables_) carried.insert(t->id);
  std::vector<TableId> found;
  for (const auto& id : *listed)
    if (TableSelected(spec_.tables, spec_.exclude, id) && !carried.count(id)) found.push_back(id);
  {
    std::lock_guard lock(state_mu_);
    if (found == untracked_) return;
    untracked_ = found;
  }
  std::vector<std::string> names;
  for (const auto& id : found) names.push_back(id.ToString());
  (void)store_.Put("untracked_tables", fmt::format("{}", fmt::join(names, ",")));
  std::string msg =
      found.empty()
          ? "every table in scope on the source is migrated again"
          : fmt::format("table(s) {} appeared on the source and match the spec's tables, but the migration does not "
                        "carry them (created after it started): switches are refused until they are added to exclude "
                        "(spec, then restart midflight) or dropped",
                        fmt::join(names, ", "));
  if (!found.empty()) LOG_WARN("{}", msg);
  (void)store_.AddEvent(msg);
  Say(fmt::format("[{}] {}", PhaseName(store_.phase()), msg));
}

Status PgCutover::RefuseIfUntracked(const char* op) {
  std::lock_guard lock(state_mu_);
  if (untracked_.empty()) return Status::Ok();
  std::vector<std::string> names;
  for (const auto& id : untracked_) names.push_back(id.ToString());
  return OperatorError(fmt::format(
      "refused: {}: table(s) {} exist on the source in the spec's scope but not in the migration (created after it "
      "started); the application would not find them on the target. Add them to exclude (spec, then restart "
      "midflight) or drop them",
      op, fmt::join(names, ", ")));
}

Result<std::string> PgCutover::SwitchReads(int percent, bool force) {
  if (!proxy_) return OperatorError("switch reads needs the proxy: add a proxy: section to the spec");
  if (percent < 0 || percent > 100) return InvalidArgument(fmt::format("percent {} is not between 0 and 100", percent));
  RETURN_IF_ERROR(RequirePhase({Phase::kReplicating, Phase::kReadsSwitched}, "switch reads"));
  if (percent > 0) RETURN_IF_ERROR(RefuseIfUntracked("switch reads"));
  std::shared_ptr<PgFlow> fwd;
  {
    std::lock_guard lock(state_mu_);
    fwd = forward_;
  }
  if (!fwd) return OperatorError("replication is not running yet");
  double lag = fwd->flow().metrics().lag_seconds;
  const double max_lag = runtime_.knobs.Get(Knob::kMaxLagSeconds);
  if (percent > 0 && lag > max_lag && !force)
    return OperatorError(fmt::format("refused: the target is {:.2f} s behind (knob max_lag_seconds is {:.2f}); reads "
                                     "there would be stale. Wait, or use --force",
                                     lag, max_lag));
  Phase now = store_.phase();
  std::string msg = percent == 0 ? "reads switched back to the source"
                                 : fmt::format("{}% of new read-only transactions go to the target", percent);
  if (percent > 0 && now == Phase::kReplicating) {
    RETURN_IF_ERROR(store_.PutMany({{"read_percent", std::to_string(percent)},
                                    {"reads_switched_at", std::to_string(NowUnixMicros())},
                                    {"approved", "false"}}));
    RETURN_IF_ERROR(store_.SetPhase(Phase::kReadsSwitched, "switch reads: " + msg));
  } else if (percent == 0 && now == Phase::kReadsSwitched) {
    RETURN_IF_ERROR(store_.Put("read_percent", "0"));
    RETURN_IF_ERROR(store_.SetPhase(Phase::kReplicating, "switch reads: " + msg));
  } else {
    RETURN_IF_ERROR(store_.Put("read_percent", std::to_string(percent)));
    RETURN_IF_ERROR(store_.AddEvent("switch reads: " + msg));
  }
  proxy_->SetReadPercent(percent);
  Say(fmt::format("[{}] {}", PhaseName(store_.phase()), msg));
  return msg;
}

Result<std::string> PgCutover::MoveWrites(proxy::Side to, PgFlow& flow, Phase next, bool force) {
  const bool forward = to == proxy::Side::kTarget;
  const char* from_name = forward ? "source" : "target";
  const char* to_name = forward ? "target" : "source";
  FlowMetrics m = flow.flow().metrics();
  const double max_lag = runtime_.knobs.Get(Knob::kMaxLagSeconds);
  if (m.lag_seconds > max_lag && !force)
    return OperatorError(fmt::format("refused: the {} is {:.2f} s behind the {} (knob max_lag_seconds is {:.2f}); "
                                     "wait for it to catch up, or use --force",
                                     to_name, m.lag_seconds, from_name, max_lag));
  // Connections first: nothing slow inside the pause.
  ASSIGN_OR_RETURN(auto from, Control(forward ? spec_.source : spec_.target));
  ASSIGN_OR_RETURN(auto into, Control(forward ? spec_.target : spec_.source));

  auto abandon = [&](const std::string& why) -> Status {
    proxy_->ResumeWrites();
    std::string msg = fmt::format("switch writes to the {} abandoned: {}; traffic stays on the {}", to_name, why, from_name);
    (void)store_.AddEvent(msg);
    Say(msg);
    return OperatorError(msg);
  };
  const auto t0 = Clock::now();
  if (Status st = proxy_->PauseWrites(std::chrono::milliseconds(
          static_cast<int64_t>(runtime_.knobs.Get(Knob::kDrainTimeoutSeconds) * 1000)));
      !st.ok())
    return abandon(st.message());
  const double drained = Since(t0);
  CrashPoint("switch-paused");
  auto lsn = FlushedPosition(*from);
  if (!lsn.ok()) return abandon(fmt::format("reading the {}'s position: {}", from_name, lsn.status().message()));
  const auto t1 = Clock::now();
  while (flow.flow().AppliedThrough() < lsn->value()) {
    if (Status st = flow.flow().health(); !st.ok()) return abandon(st.message());
    if (Since(t1) > spec_.cutover.catchup_timeout_seconds)
      return abandon(fmt::format("the {} did not apply the {}'s position {} within {:.0f} s (it has {})", to_name,
                                 from_name, lsn->ToString(), spec_.cutover.catchup_timeout_seconds,
                                 PgLsn::FromU64(flow.flow().AppliedThrough()).ToString()));
    flow.flow().Poke();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double caught_up = Since(t1);
  const auto t2 = Clock::now();
  if (Status st = pg::SyncSequences(*from, *into, tables_); !st.ok())
    return abandon("carrying sequences over: " + st.message());
  const double sequences = Since(t2);
  std::string what = fmt::format("writes switched to the {}", to_name);
  if (Status st = store_.SetPhase(next, what); !st.ok()) return abandon("recording the phase: " + st.message());
  proxy_->SetWriteSide(to);
  proxy_->ResumeWrites();
  const double pause = Since(t0);
  std::string msg = fmt::format(
      "{} at {}: write pause {} (drain {}, catch-up {}, sequences {})", what, lsn->ToString(), Ms(pause), Ms(drained),
      Ms(caught_up), Ms(sequences));
  std::string history = store_.Get("write_pauses_ms").value_or("");
  (void)store_.PutMany({{"write_pauses_ms", history + (history.empty() ? "" : ",") + fmt::format("{:.1f}", pause * 1000)},
                        {"last_write_pause_ms", fmt::format("{:.1f}", pause * 1000)}});
  (void)store_.AddEvent(msg);
  Say(fmt::format("[{}] {}", PhaseName(next), msg));
  return msg;
}

Result<std::string> PgCutover::SwitchWrites(bool force) {
  if (!proxy_) return OperatorError("switch writes needs the proxy: add a proxy: section to the spec");
  if (store_.phase() == Phase::kReplicating)
    return OperatorError("switch writes is allowed in phase reads_switched; migration " + spec_.name +
                         " is replicating: switch reads first (`midflight switch reads`), which opens the validation "
                         "window");
  RETURN_IF_ERROR(RequirePhase({Phase::kReadsSwitched}, "switch writes"));
  RETURN_IF_ERROR(RefuseIfUntracked("switch writes"));
  if (!force) {
    double window = (NowUnixMicros() - std::stoll(store_.Get("reads_switched_at").value_or("0"))) / 1e6;
    if (window < spec_.cutover.min_validation_seconds)
      return OperatorError(fmt::format("refused: reads switched {:.0f} s ago; the validation window "
                                       "(cutover.min_validation_seconds) is {:.0f} s",
                                       window, spec_.cutover.min_validation_seconds));
    if (spec_.cutover.require_approval && store_.Get("approved").value_or("") != "true")
      return OperatorError("refused: waiting for approval (cutover.require_approval): run `midflight approve SPEC`");
    if (spec_.cutover.require_verify && store_.Get("verify_clean").value_or("") != "true")
      return OperatorError(fmt::format("refused: verification has not passed ({}); run `midflight verify SPEC`, or "
                                       "use --force",
                                       store_.Get("verify_summary").value_or("never run")));
  }
  bool have_reverse;
  {
    std::lock_guard lock(state_mu_);
    have_reverse = reverse_ != nullptr;
  }
  if (!have_reverse) RETURN_IF_ERROR(StartReverse());
  std::shared_ptr<PgFlow> fwd;
  {
    std::lock_guard lock(state_mu_);
    fwd = forward_;
  }
  return MoveWrites(proxy::Side::kTarget, *fwd, Phase::kWritesSwitched, force);
}

Result<std::string> PgCutover::Rollback(bool force) {
  if (!proxy_) return OperatorError("rollback needs the proxy");
  RETURN_IF_ERROR(RequirePhase({Phase::kWritesSwitched}, "rollback"));
  std::shared_ptr<PgFlow> rev;
  {
    std::lock_guard lock(state_mu_);
    rev = reverse_;
  }
  if (!rev) return Internal("reverse replication is not running");
  return MoveWrites(proxy::Side::kSource, *rev, Phase::kReadsSwitched, force);
}

Result<std::string> PgCutover::Complete() {
  RETURN_IF_ERROR(RequirePhase({Phase::kWritesSwitched}, "complete"));
  std::shared_ptr<PgFlow> fwd, rev;
  {
    std::lock_guard lock(state_mu_);
    fwd = forward_;
    rev = reverse_;
  }
  // Every change made on the source before the switch is on the target
  // already (the switch waited for it); stop both directions.
  if (rev) rev->Stop();
  if (fwd) fwd->Stop();
  ASSIGN_OR_RETURN(auto src, Control(spec_.source));
  ASSIGN_OR_RETURN(auto dst, Control(spec_.target));
  std::vector<std::string> done;
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
  drop_slot(*src, "source", spec_.slot_name());
  drop_slot(*dst, "target", spec_.slot_name() + "_rev");
  drop(*src, "source", "DROP PUBLICATION IF EXISTS " + pg::QuoteIdent(spec_.publication_name()), "publication");
  drop(*dst, "target", "DROP PUBLICATION IF EXISTS " + pg::QuoteIdent(spec_.publication_name() + "_rev"), "publication");
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
  drop_origins(*src, "source");
  drop_origins(*dst, "target");
  drop(*src, "source", "DROP SCHEMA IF EXISTS midflight CASCADE", "schema midflight");
  drop(*dst, "target", "DROP SCHEMA IF EXISTS midflight CASCADE", "schema midflight");
  // GENERATED ALWAYS identity columns go back to ALWAYS on the target.
  std::string always = store_.Get("identity_always_columns").value_or("");
  for (size_t start = 0; start < always.size();) {
    size_t end = always.find('\n', start);
    std::string col = always.substr(start, end - start);
    start = end == std::string::npos ? always.size() : end + 1;
    auto last = col.rfind('.'), first = col.find('.');
    if (last == std::string::npos || first == last) continue;
    drop(*dst, "target",
         fmt::format("ALTER TABLE {} ALTER COLUMN {} SET GENERATED ALWAYS",
                     pg::QuoteQualified(col.substr(0, first), col.substr(first + 1, last - first - 1)),
                     pg::QuoteIdent(col.substr(last + 1))),
         "identity " + col);
  }
  if (proxy_) proxy_->SetReadPercent(100);
  RETURN_IF_ERROR(store_.Put("read_percent", "100"));
  std::string msg = fmt::format("completed: the target serves reads and writes; replication stopped; removed {}",
                                done.empty() ? "nothing" : fmt::format("{}", fmt::join(done, ", ")));
  RETURN_IF_ERROR(store_.SetPhase(Phase::kCompleted, msg));
  completed_ = true;
  Say("[completed] " + msg);
  return msg;
}

Result<std::string> PgCutover::Approve() {
  RETURN_IF_ERROR(RequirePhase({Phase::kReadsSwitched}, "approve"));
  RETURN_IF_ERROR(store_.Put("approved", "true"));
  RETURN_IF_ERROR(store_.AddEvent("write switch approved"));
  return std::string("write switch approved");
}

Result<std::string> PgCutover::Verify(bool repair, int64_t rate, bool* clean) {
  RETURN_IF_ERROR(RequirePhase({Phase::kReplicating, Phase::kReadsSwitched, Phase::kWritesSwitched}, "verify"));
  // Compare with the side applications write to as the reference.
  const bool writes_on_target = store_.phase() == Phase::kWritesSwitched;
  std::shared_ptr<PgFlow> flow;
  {
    std::lock_guard lock(state_mu_);
    flow = writes_on_target ? reverse_ : forward_;
  }
  if (!flow) return OperatorError("replication is not running yet");
  verify::Context ctx;
  ctx.source_uri = writes_on_target ? spec_.target : spec_.source;
  ctx.target_uri = writes_on_target ? spec_.source : spec_.target;
  for (const auto& [id, t] : flow->config().tables) ctx.tables.push_back(t);
  ctx.target_applied_through = [flow] {
    flow->flow().Poke();
    return PgLsn::FromU64(flow->flow().AppliedThrough());
  };
  ctx.stop = &stopping_;
  verify::Options opt;
  opt.chunk_rows = spec_.verify.chunk_rows;
  // An explicit --rate holds for this run; otherwise the verify_rows_per_s knob, read live.
  if (rate >= 0) opt.rows_per_s = [rate] { return rate; };
  else opt.rows_per_s = [this] { return runtime_.knobs.Int(Knob::kVerifyRowsPerS); };
  (void)store_.Put("verify_state", "running");
  Say(fmt::format("verify: comparing {} tables ({} -> {})", ctx.tables.size(), writes_on_target ? "target" : "source",
                  writes_on_target ? "source" : "target"));
  auto report = verify::Run(ctx, opt);
  if (!report.ok()) {
    (void)store_.PutMany({{"verify_state", "failed"}, {"verify_clean", "false"},
                          {"verify_summary", "failed: " + report.status().message()}});
    return report.status().WithContext("verify");
  }
  std::string out = report->Summary() + "\n";
  std::vector<Change> repairs;
  ASSIGN_OR_RETURN(auto ref, Control(ctx.source_uri));
  for (const auto& t : report->tables) {
    if (!t.skipped.empty()) out += fmt::format("  {}: not verified: {}\n", t.table.ToString(), t.skipped);
    for (const auto& d : t.differences) {
      out += fmt::format("  {} {}: {}\n", t.table.ToString(), d.key_display, d.kind);
      if (!repair) continue;
      auto schema = flow->config().tables.at(t.table);
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
      repairs.push_back(std::move(c));
    }
    for (const auto& k : t.unsettled) out += fmt::format("  {} {}: changed on every look, not settled\n", t.table.ToString(), k);
    if (t.truncated) out += fmt::format("  {}: more differences not listed\n", t.table.ToString());
  }
  if (!repairs.empty()) {
    size_t n = repairs.size();
    uint64_t routed = flow->flow().QueueRepairs(std::move(repairs));
    auto t0 = Clock::now();
    // Once the stream has routed them they are pending in their partitions;
    // then everything up to a position taken afterwards being applied
    // includes them.
    while (flow->flow().RepairsRouted() < routed && Since(t0) < 60) {
      flow->flow().Poke();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSIGN_OR_RETURN(PgLsn after, FlushedPosition(*ref));
    while (flow->flow().AppliedThrough() < after.value() && Since(t0) < 60) {
      flow->flow().Poke();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    out += fmt::format("repaired {} row(s) through the apply path; run verify again to confirm\n", n);
  }
  (void)store_.PutMany({{"verify_state", "done"},
                        {"verify_clean", report->clean() ? "true" : "false"},
                        {"verify_at", std::to_string(NowUnixMicros())},
                        {"verify_summary", report->Summary()},
                        {"verify_json", report->ToJson()}});
  (void)store_.AddEvent(report->Summary());
  Say("verify: " + report->Summary());
  *clean = report->clean();
  return out;
}

// --- control API -----------------------------------------------------------------

http::Response PgCutover::Handle(const http::Request& req) {
  if (req.method != "POST") return http::Text(405, "use POST\n");
  const bool force = req.QueryParam("force") == "1" || req.QueryParam("force") == "true";
  std::string op = req.path;
  std::unique_lock lock(op_mu_, std::try_to_lock);
  if (!lock.owns_lock()) {
    std::lock_guard s(state_mu_);
    return http::Text(409, fmt::format("refused: another operation is running ({}); wait for it to finish\n", op_running_));
  }
  {
    std::lock_guard s(state_mu_);
    if (!running_ && op != "/api/approve")
      return http::Text(409, fmt::format("refused: migration {} is in phase {}; replication is not running yet\n",
                                         spec_.name, PhaseName(store_.phase())));
    op_running_ = op.substr(op.rfind('/') + 1);
  }
  Result<std::string> r = InvalidArgument("unknown operation " + op);
  bool clean = true;
  try {
    if (op == "/api/switch-reads") {
      std::string p = req.QueryParam("percent");
      int percent = 100;
      if (!p.empty()) {
        char* end = nullptr;
        long v = std::strtol(p.c_str(), &end, 10);
        if (*end != '\0') return http::Text(400, fmt::format("percent '{}' is not a number\n", p));
        percent = static_cast<int>(v);
      }
      r = SwitchReads(percent, force);
    } else if (op == "/api/switch-writes") {
      r = SwitchWrites(force);
    } else if (op == "/api/rollback") {
      r = Rollback(force);
    } else if (op == "/api/complete") {
      r = Complete();
    } else if (op == "/api/approve") {
      r = Approve();
    } else if (op == "/api/verify") {
      std::string rate = req.QueryParam("rate");
      r = Verify(req.QueryParam("repair") == "1", rate.empty() ? -1 : std::stoll(rate), &clean);
    }
  } catch (const std::exception& e) {
    r = InvalidArgument(std::string("bad request: ") + e.what());
  }
  // 422: the verification ran and found differences (the CLI exits 1).
  if (r.ok()) return http::Text(clean ? 200 : 422, *r + (r->ends_with("\n") ? "" : "\n"));
  int code = r.status().code() == StatusCode::kInvalidArgument ? 400
             : r.status().code() == StatusCode::kOperator     ? 409
                                                               : 500;
  return http::Text(code, r.status().message() + "\n");
}

}  // namespace midflight
