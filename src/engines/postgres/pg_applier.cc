#include "engines/postgres/pg_applier.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <set>
#include <thread>

#include "base/log.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/pg_types.h"
#include "pipeline/batch.h"
#include "pipeline/chunk_reset.h"

namespace midflight::pg {
namespace {

constexpr const char* kBookkeepingSql = R"sql(
CREATE SCHEMA IF NOT EXISTS midflight;
CREATE TABLE IF NOT EXISTS midflight.checkpoints (
  migration text NOT NULL,
  part int NOT NULL,
  commit_lsn pg_lsn NOT NULL,
  seq int NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, part));
-- Kafka apply workers (kafka/apply_worker.h): the change topic's offset of
-- the partition's last change applied, and the worker that applied it.
ALTER TABLE midflight.checkpoints ADD COLUMN IF NOT EXISTS kafka_offset bigint;
ALTER TABLE midflight.checkpoints ADD COLUMN IF NOT EXISTS worker text;
CREATE TABLE IF NOT EXISTS midflight.chunks (
  migration text NOT NULL,
  table_name text NOT NULL,
  chunk int NOT NULL,
  snapshot_lsn pg_lsn NOT NULL,
  rows_copied bigint NOT NULL,
  bytes_copied bigint NOT NULL,
  copied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, table_name, chunk));
)sql";

// kBookkeepingSql has nothing to do: its tables and columns exist.
constexpr const char* kBookkeepingPresentSql = R"sql(
SELECT (SELECT count(*) FROM pg_attribute
        WHERE attrelid = to_regclass('midflight.checkpoints') AND NOT attisdropped
          AND attname IN ('migration', 'part', 'commit_lsn', 'seq', 'updated_at', 'kafka_offset', 'worker')) = 7
   AND to_regclass('midflight.chunks') IS NOT NULL
)sql";

// A checkpoint is stored as pg_lsn whatever the source engine: any 64-bit
// position (a MySQL binlog position, engines/cross) has an LSN text form.
constexpr const char* kSaveCheckpointSql = R"sql(
INSERT INTO midflight.checkpoints (migration, part, commit_lsn, seq, kafka_offset, worker)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (migration, part) DO UPDATE
  SET commit_lsn = EXCLUDED.commit_lsn, seq = EXCLUDED.seq, updated_at = now(),
      kafka_offset = COALESCE(EXCLUDED.kafka_offset, checkpoints.kafka_offset),
      worker = COALESCE(EXCLUDED.worker, checkpoints.worker)
)sql";

// Fencing (ChangeSink::EnableFencing): the partition's row, locked for the
// rest of the batch's transaction (created when missing, so that two workers
// never both insert it), and the offset recorded there.
constexpr const char* kFenceSql = R"sql(
INSERT INTO midflight.checkpoints (migration, part, commit_lsn, seq) VALUES ($1, $2, '0/0', 0)
ON CONFLICT (migration, part) DO UPDATE SET seq = checkpoints.seq
RETURNING COALESCE(kafka_offset, -1), COALESCE(worker, '')
)sql";

// A fenced worker's takeover mark: the worker's name, never the position (a
// worker that holds the partition may have moved it since it was read).
constexpr const char* kMarkWorkerSql = R"sql(
INSERT INTO midflight.checkpoints (migration, part, commit_lsn, seq, worker) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (migration, part) DO UPDATE SET worker = EXCLUDED.worker, updated_at = now()
)sql";

std::string Table(const TableSchema& t) { return QuoteQualified(t.id.schema, t.id.name); }

// "(tableoid, ctid) = (SELECT tableoid, ctid FROM t WHERE c1::text IS NOT DISTINCT FROM $n .. LIMIT 1)"
std::string MatchWholeRow(const TableSchema& t, int first_param, std::vector<int>* params) {
  std::string where;
  for (size_t i = 0; i < t.writable.size(); ++i) {
    if (i) where += " AND ";
    // Both sides as the column type's text output: some types have no
    // equality operator (json, point), and char(n) pads what it stores.
    const ColumnSchema& col = t.columns[t.writable[i]];
    where += fmt::format("{}::text IS NOT DISTINCT FROM ${}::{}::text", QuoteIdent(col.name),
                         first_param + static_cast<int>(i), AssignedFromTextAs(col.type.native));
    params->push_back(-1 - static_cast<int>(i));  // negative: from the old image
  }
  return fmt::format("(tableoid, ctid) = (SELECT tableoid, ctid FROM {} WHERE {} LIMIT 1)", Table(t), where);
}

std::string MatchKey(const TableSchema& t, int first_param, std::vector<int>* params, bool from_old) {
  std::string where;
  for (size_t i = 0; i < t.key_writable.size(); ++i) {
    if (i) where += " AND ";
    int w = t.key_writable[i];
    where += fmt::format("{} = ${}", QuoteIdent(t.columns[t.writable[w]].name), first_param + static_cast<int>(i));
    params->push_back(from_old ? -1 - w : w);
  }
  return where;
}

// Builds the SQL for one update or delete. `params` gets, per $n, the writable
// column it takes: w >= 0 from the new image, -1-w from the old image.
std::string BuildSql(const Change& c, std::vector<int>* params) {
  const TableSchema& t = *c.table;
  const bool keyed = !t.key_writable.empty();
  switch (c.kind) {
    case ChangeKind::kUpdate: {
      std::string set;
      int n = 0;
      for (size_t i = 0; i < t.writable.size(); ++i) {
        if (c.values[i].is_unchanged()) continue;
        if (!set.empty()) set += ", ";
        set += fmt::format("{} = ${}", QuoteIdent(t.columns[t.writable[i]].name), ++n);
        params->push_back(static_cast<int>(i));
      }
      std::string where = keyed ? MatchKey(t, n + 1, params, /*from_old=*/c.MovesKey())
                                : MatchWholeRow(t, n + 1, params);
      return fmt::format("UPDATE {} SET {} WHERE {}", Table(t), set, where);
    }
    case ChangeKind::kDelete: {
      std::string where = keyed ? MatchKey(t, 1, params, /*from_old=*/true) : MatchWholeRow(t, 1, params);
      return fmt::format("DELETE FROM {} WHERE {}", Table(t), where);
    }
    case ChangeKind::kInsert:    // always applied in bulk (BulkInsert)
    case ChangeKind::kTruncate:  // a barrier (ApplyBarrier)
      break;
  }
  return {};
}

// Shape of a change: what decides its statement text.
std::string ShapeOf(const Change& c) {
  std::string shape = fmt::format("{}|{}#{}|", static_cast<int>(c.kind), c.table->id.ToString(), c.table->version);
  if (c.kind == ChangeKind::kUpdate) {
    for (const auto& d : c.values) shape.push_back(d.is_unchanged() ? 'u' : 'v');
    shape.push_back(c.MovesKey() ? 'm' : 's');
  }
  return shape;
}

// One statement sent to the target: a single change, or many changes of one
// table and kind at once (text arrays unnested server-side).
// How an op's result tells which of its rows met a conflict (pipeline/conflicts.h).
enum class Probe : uint8_t {
  kNone,         // not checked (repairs, keyless inserts)
  kRowCount,     // a single change: the command's row count says whether the row existed
  kExisted,      // the result lists the 1-based ordinals of the rows that existed
  kWasMissing,   // ... of the rows that did not exist
};

struct ApplyOp {
  std::string shape;  // decides the statement text; prepared once per connection
  std::string sql;    // empty when `shape` is prepared already
  std::vector<Param> params;
  const Change* first = nullptr;
  size_t count = 1;
  Probe probe = Probe::kNone;
  std::vector<const Change*> rows;  // the changes, in parameter order

  std::string Describe() const {
    std::string key = first->KeyText();
    for (auto& k : key)
      if (k == '\x1f') k = ',';
    if (count == 1)
      return fmt::format("applying {} to {} key {}=({}) at {}", ChangeKindName(first->kind),
                         first->table->id.ToString(), first->table->KeyDescription(), key.substr(0, 200),
                         first->pos.ToString());
    return fmt::format("applying {} {}s to {} (first key {}=({}) at {})", count, ChangeKindName(first->kind),
                       first->table->id.ToString(), first->table->KeyDescription(), key.substr(0, 200),
                       first->pos.ToString());
  }
};

// Appends one element of a PostgreSQL array literal: NULL or "escaped".
void AppendElement(std::string& out, const Datum& d) {
  if (out.size() > 1) out.push_back(',');
  if (d.kind != Datum::Kind::kText) {
    out += "NULL";
    return;
  }
  out.push_back('"');
  for (char ch : d.text) {
    if (ch == '"' || ch == '\\') out.push_back('\\');
    out.push_back(ch);
  }
  out.push_back('"');
}

// "u.c0::integer, u.c1::text" and "unnest($1::text[], $2::text[]) AS u(c0, c1)" for writable columns `cols`.
void UnnestClause(const TableSchema& t, const std::vector<int>& cols, std::string* select, std::string* from) {
  std::string args, names;
  for (size_t i = 0; i < cols.size(); ++i) {
    const ColumnType& type = t.columns[t.writable[cols[i]]].type;
    if (i) {
      *select += ", ";
      args += ", ";
      names += ", ";
    }
    // The full type, modifiers included: bit(4), numeric(10,3) (without
    // them a cast to "bit" means length 1); but not a length of varchar(n)
    // or char(n), which an explicit cast would cut silently: the INSERT's
    // assignment refuses a value too long (AssignedFromTextAs).
    *select += fmt::format("u.c{}::{}", i, AssignedFromTextAs(type.native));
    args += fmt::format("${}::text[]", i + 1);
    names += fmt::format("c{}", i);
  }
  *from = fmt::format("unnest({}) AS u({})", args, names);
}

std::vector<Param> ArrayParams(const std::vector<const Change*>& changes, const std::vector<int>& cols, bool from_old) {
  std::vector<Param> out;
  for (int col : cols) {
    std::string a = "{";
    for (const Change* c : changes) AppendElement(a, from_old ? c->old.at(col) : c->values.at(col));
    a.push_back('}');
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<int> AllWritable(const TableSchema& t) {
  std::vector<int> out(t.writable.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int>(i);
  return out;
}

// The probe of rows that all share one ConflictCheck: a conflict is a row
// that existed for inserts, one that did not for updates and deletes.
Probe ProbeFor(const TableSchema& t, ConflictCheck check) {
  if (t.key_writable.empty()) return Probe::kNone;  // keyless: no key to conflict on
  switch (check) {
    case ConflictCheck::kNone: return Probe::kNone;
    case ConflictCheck::kInsert: return Probe::kExisted;
    case ConflictCheck::kUpdate:
    case ConflictCheck::kDelete: return Probe::kWasMissing;
  }
  return Probe::kNone;
}

// "SELECT o.n FROM unnest($k0::text[], ..) WITH ORDINALITY AS o(k0, .., n) WHERE [NOT] EXISTS
// (SELECT 1 FROM <cte> AS w WHERE w.key0 = o.k0::type .. [AND w.mf_existed])": the ordinals
// of the rows a probe reports. `first_param[i]`: the parameter holding key column i.
std::string ProbeSelect(const TableSchema& t, const std::vector<int>& key_params, const std::string& cte, bool exists,
                        const std::string& also) {
  std::string args, names, match;
  for (size_t i = 0; i < t.key_writable.size(); ++i) {
    const ColumnSchema& col = t.columns[t.writable[t.key_writable[i]]];
    args += fmt::format("{}${}::text[]", i ? ", " : "", key_params[i]);
    names += fmt::format("k{}, ", i);
    // Without a length (AssignedFromTextAs): a cast to varchar(n) would cut a
    // longer key to n characters and match another row.
    match += fmt::format("{}w.{} = o.k{}::{}", i ? " AND " : "", QuoteIdent(col.name), i,
                         AssignedFromTextAs(col.type.native));
  }
  return fmt::format("SELECT o.n FROM unnest({}) WITH ORDINALITY AS o({}n) WHERE {}EXISTS (SELECT 1 FROM {} AS w WHERE {}{})",
                     args, names, exists ? "" : "NOT ", cte, match, also);
}

// Inserts (upserts for keyed tables) of many rows in one statement. With a
// probe, the upsert returns each row's key and whether it existed (xmax is
// set on a row ON CONFLICT updated, zero on one inserted), and the statement
// answers the ordinals of the rows that conflict: normally none, so the check
// costs no round trip and no result rows.
ApplyOp BulkInsert(const std::vector<const Change*>& rows, const std::map<std::string, std::string>& prepared,
                   Probe probe = Probe::kNone) {
  const TableSchema& t = *rows.front()->table;
  // RETURNING cannot read xmax from a partitioned table ("cannot retrieve a
  // system column in this context"): its upserts go unchecked.
  if (t.partitioned) probe = Probe::kNone;
  ApplyOp op;
  op.shape = fmt::format("bulk-insert|{}#{}|{}", t.id.ToString(), t.version, static_cast<int>(probe));
  op.first = rows.front();
  op.count = rows.size();
  op.probe = probe;
  op.rows = rows;
  std::vector<int> cols = AllWritable(t);
  if (!prepared.count(op.shape)) {
    std::string select, from, names, set;
    UnnestClause(t, cols, &select, &from);
    for (size_t i = 0; i < cols.size(); ++i) {
      std::string name = QuoteIdent(t.columns[t.writable[i]].name);
      names += (i ? ", " : "") + name;
      bool is_key = false;
      for (int k : t.key_writable) is_key = is_key || k == static_cast<int>(i);
      if (!is_key) set += (set.empty() ? "" : ", ") + fmt::format("{0} = EXCLUDED.{0}", name);
    }
    op.sql = fmt::format("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}", Table(t), names, select, from);
    if (!t.key_writable.empty()) {
      std::string keys;
      for (size_t i = 0; i < t.key_writable.size(); ++i)
        keys += (i ? ", " : "") + QuoteIdent(t.columns[t.writable[t.key_writable[i]]].name);
      if (probe == Probe::kNone) {
        op.sql += set.empty() ? fmt::format(" ON CONFLICT ({}) DO NOTHING", keys)
                              : fmt::format(" ON CONFLICT ({}) DO UPDATE SET {}", keys, set);
      } else {
        // Every row must come back from RETURNING: a table of key columns
        // only "updates" its key to itself.
        if (set.empty())
          for (size_t i = 0; i < t.key_writable.size(); ++i) {
            std::string name = QuoteIdent(t.columns[t.writable[t.key_writable[i]]].name);
            set += (i ? ", " : "") + fmt::format("{0} = EXCLUDED.{0}", name);
          }
        std::vector<int> key_params;
        for (int k : t.key_writable) key_params.push_back(k + 1);
        op.sql = fmt::format("WITH mf_w AS ({} ON CONFLICT ({}) DO UPDATE SET {} RETURNING {}, xmax::text <> '0' AS "
                             "mf_existed) {}",
                             op.sql, keys, set, keys, ProbeSelect(t, key_params, "mf_w", true,
                                                                  probe == Probe::kExisted ? " AND w.mf_existed"
                                                                                           : " AND NOT w.mf_existed"));
      }
    }
  }
  op.params = ArrayParams(rows, cols, /*from_old=*/false);
  return op;
}

// Deletes of many keys in one statement. With a probe, the delete returns
// the keys it found and the statement answers the ordinals of the rows that
// conflict (missing, or for an insert then delete collapsed, found).
ApplyOp BulkDelete(const std::vector<const Change*>& rows, const std::map<std::string, std::string>& prepared,
                   Probe probe = Probe::kNone) {
  const TableSchema& t = *rows.front()->table;
  ApplyOp op;
  op.shape = fmt::format("bulk-delete|{}#{}|{}", t.id.ToString(), t.version, static_cast<int>(probe));
  op.first = rows.front();
  op.count = rows.size();
  op.probe = probe;
  op.rows = rows;
  if (!prepared.count(op.shape)) {
    std::string select, from, where;
    UnnestClause(t, t.key_writable, &select, &from);
    for (size_t i = 0; i < t.key_writable.size(); ++i) {
      const ColumnSchema& col = t.columns[t.writable[t.key_writable[i]]];
      where += fmt::format("{}t.{} = u.c{}::{}", i ? " AND " : "", QuoteIdent(col.name), i,
                           AssignedFromTextAs(col.type.native));  // no length: see ProbeSelect
    }
    op.sql = fmt::format("DELETE FROM {} AS t USING {} WHERE {}", Table(t), from, where);
    if (probe != Probe::kNone) {
      std::string keys;
      std::vector<int> key_params;
      for (size_t i = 0; i < t.key_writable.size(); ++i) {
        keys += fmt::format("{}t.{}", i ? ", " : "", QuoteIdent(t.columns[t.writable[t.key_writable[i]]].name));
        key_params.push_back(static_cast<int>(i) + 1);
      }
      op.sql = fmt::format("WITH mf_d AS ({} RETURNING {}) {}", op.sql, keys,
                           ProbeSelect(t, key_params, "mf_d", probe == Probe::kExisted, ""));
    }
  }
  op.params = ArrayParams(rows, t.key_writable, /*from_old=*/true);
  return op;
}

ApplyOp Single(const Change& c, const std::map<std::string, std::string>& prepared) {
  ApplyOp op;
  op.shape = ShapeOf(c);
  op.first = &c;
  op.rows = {&c};
  op.probe = c.check == ConflictCheck::kNone ? Probe::kNone : Probe::kRowCount;
  std::vector<int> param_columns;
  std::string sql = BuildSql(c, &param_columns);
  if (!prepared.count(op.shape)) op.sql = std::move(sql);
  for (int col : param_columns) {
    const Datum& d = col >= 0 ? c.values.at(col) : c.old.at(-1 - col);
    op.params.push_back(d.kind == Datum::Kind::kText ? Param(d.text) : std::nullopt);
  }
  return op;
}

// Turns a collapsed batch into statements. Per table:
//  - kByKey tables: every key appears once in a collapsed batch and keys do not
//    interact, so all deletes go in one statement, all full images in one
//    upsert, and updates carrying unchanged TOAST values one by one.
//  - kByTable tables: stream order is kept; runs of consecutive inserts (with
//    distinct keys) become one multi-row insert, which checks constraints row
//    by row in the same order.
std::vector<ApplyOp> PlanOps(std::span<const Change> changes, const std::map<std::string, std::string>& prepared) {
  std::vector<ApplyOp> ops;
  for (const auto& [t, list] : GroupByTable(changes)) {
    if (t->routing() == RoutingMode::kByKey) {
      // Keys are distinct: one statement per kind and probe.
      constexpr size_t kProbes = 4;
      std::array<std::vector<const Change*>, kProbes> deletes, upserts;
      std::vector<const Change*> singles;
      for (const Change* c : list) {
        size_t probe = static_cast<size_t>(ProbeFor(*t, c->check));
        if (c->kind == ChangeKind::kDelete) deletes[probe].push_back(c);
        else if (c->kind == ChangeKind::kInsert) upserts[probe].push_back(c);
        else singles.push_back(c);
      }
      for (size_t p = 0; p < kProbes; ++p)
        if (!deletes[p].empty()) ops.push_back(BulkDelete(deletes[p], prepared, static_cast<Probe>(p)));
      for (size_t p = 0; p < kProbes; ++p)
        if (!upserts[p].empty()) ops.push_back(BulkInsert(upserts[p], prepared, static_cast<Probe>(p)));
      for (const Change* c : singles) ops.push_back(Single(*c, prepared));
      continue;
    }
    std::vector<const Change*> run;
    std::set<std::string> run_keys;
    Probe run_probe = Probe::kNone;
    auto flush = [&] {
      if (!run.empty()) ops.push_back(BulkInsert(run, prepared, run_probe));
      run.clear();
      run_keys.clear();
    };
    for (const Change* c : list) {
      if (c->kind == ChangeKind::kInsert) {
        Probe probe = ProbeFor(*t, c->check);
        if (!run.empty() && probe != run_probe) flush();
        run_probe = probe;
        if (!t->key_writable.empty() && !run_keys.insert(c->KeyText()).second) flush();
        if (!t->key_writable.empty()) run_keys.insert(c->KeyText());
        run.push_back(c);
        continue;
      }
      flush();
      ops.push_back(Single(*c, prepared));
    }
    flush();
  }
  return ops;
}

// The conflicts `op`'s result `r` reports (see Probe).
void CollectConflicts(const ApplyOp& op, const PGresult* r, std::vector<Conflict>* out) {
  auto add = [&](const Change* c, bool existed) {
    if (auto kind = ConflictOf(*c, existed)) out->push_back({*kind, c});
  };
  switch (op.probe) {
    case Probe::kNone: return;
    case Probe::kRowCount:
      add(op.rows.front(), std::atoll(PQcmdTuples(const_cast<PGresult*>(r))) > 0);
      return;
    case Probe::kExisted:
    case Probe::kWasMissing:
      for (int i = 0; i < PQntuples(r); ++i) {
        long long n = std::atoll(PQgetvalue(r, i, 0));
        if (n >= 1 && static_cast<size_t>(n) <= op.rows.size()) add(op.rows[n - 1], op.probe == Probe::kExisted);
      }
      return;
  }
}

}  // namespace

// Every start (a resumed run included) comes here: when the tables and
// columns are there already, the DDL is skipped, since its ALTER TABLEs take
// an ACCESS EXCLUSIVE lock on midflight.checkpoints, which waits for every
// session that touched it (a killed run's apply sessions the server has not
// ended yet, a monitoring query's open transaction).
Status EnsureBookkeeping(PgConn& target) {
  auto present = target.QueryValue(kBookkeepingPresentSql);
  if (present.ok() && *present == "t") return Status::Ok();
  return target.Exec(kBookkeepingSql);
}

PgChangeSink::PgChangeSink(std::string uri, std::string migration, PartitionId p, std::string origin)
    : uri_(std::move(uri)), migration_(std::move(migration)), partition_(p), origin_(std::move(origin)) {}

PgChangeSink::~PgChangeSink() = default;

Result<std::unique_ptr<PgChangeSink>> PgChangeSink::Open(const std::string& target_uri, const std::string& migration,
                                                         PartitionId partition, std::string origin) {
  std::unique_ptr<PgChangeSink> sink(new PgChangeSink(target_uri, migration, partition, std::move(origin)));
  // A killed run's session may hold the origin for a moment: retry for a while.
  Status st = sink->Reconnect();
  for (int i = 0; i < 50 && !st.ok() && st.code() == StatusCode::kRetryCall; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    st = sink->Reconnect();
  }
  RETURN_IF_ERROR(st);
  return sink;
}

Status PgChangeSink::Reconnect() {
  conn_.reset();
  prepared_.clear();
  ConnOptions o;
  o.application_name = fmt::format("midflight-apply-{}", partition_.value);
  lock_timeout_set_ = lock_timeout_ms_ ? lock_timeout_ms_() : 10000;
  // synchronous_commit=local: a COMMIT returns once the target flushed it, so
  // a position is confirmed to the source only when the target holds it
  // durably, whatever the target's own setting (teams run apply targets with
  // synchronous_commit=off; a crash then loses acknowledged commits).
  o.settings = {"session_replication_role=replica", fmt::format("lock_timeout={}", lock_timeout_set_),
                "synchronous_commit=local"};
  ASSIGN_OR_RETURN(conn_, PgConn::Connect(uri_, o));
  if (!origin_.empty()) {
    RETURN_IF_ERROR(conn_->Query("SELECT pg_replication_origin_create($1) WHERE NOT EXISTS "
                                 "(SELECT 1 FROM pg_replication_origin WHERE roname = $1)",
                                 {origin_})
                        .status());
    auto setup = conn_->Query("SELECT pg_replication_origin_session_setup($1)", {origin_});
    if (!setup.ok()) {
      // "already active for PID n": the session of a killed run has not ended yet.
      if (setup.status().message().find("55000") != std::string::npos) {
        conn_.reset();
        return RetryCall(setup.status().message());
      }
      return setup.status().WithContext("replication origin " + origin_);
    }
  }
  return Status::Ok();
}

Result<ChangeSink::CheckpointRow> PgChangeSink::LoadCheckpointRow() {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  ASSIGN_OR_RETURN(PgResult r,
                   conn_->Query("SELECT commit_lsn::text, seq, COALESCE(kafka_offset, -1), COALESCE(worker, ''), "
                                "extract(epoch FROM now() - updated_at)::float8::text FROM midflight.checkpoints "
                                "WHERE migration = $1 AND part = $2",
                                {migration_, std::to_string(partition_.value)}));
  CheckpointRow row;
  if (r.rows() == 0) return row;
  ASSIGN_OR_RETURN(PgLsn lsn, PgLsn::Parse(r.Get(0, 0)));
  row.pos = ChangePosition{lsn, static_cast<uint32_t>(r.GetInt(0, 1))};
  row.log_offset = r.GetInt(0, 2);
  row.worker = r.GetString(0, 3);
  row.age_seconds = std::atof(r.GetString(0, 4).c_str());
  return row;
}

Result<bool> PgChangeSink::HoldsRows(const TableSchema& table) {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  ASSIGN_OR_RETURN(PgResult r, conn_->Query(fmt::format("SELECT EXISTS (SELECT 1 FROM {})", Table(table))));
  return r.rows() > 0 && r.GetString(0, 0) == "t";
}

Result<int64_t> PgChangeSink::LoadLogOffset() {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  ASSIGN_OR_RETURN(PgResult r, conn_->Query("SELECT kafka_offset FROM midflight.checkpoints "
                                            "WHERE migration = $1 AND part = $2 AND kafka_offset IS NOT NULL",
                                            {migration_, std::to_string(partition_.value)}));
  if (r.rows() == 0) return int64_t{-1};
  return static_cast<int64_t>(r.GetInt(0, 0));
}

Result<ChangePosition> PgChangeSink::LoadCheckpoint() {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  ASSIGN_OR_RETURN(PgResult r, conn_->Query("SELECT commit_lsn::text, seq FROM midflight.checkpoints "
                                            "WHERE migration = $1 AND part = $2",
                                            {migration_, std::to_string(partition_.value)}));
  if (r.rows() == 0) return ChangePosition{};
  ASSIGN_OR_RETURN(PgLsn lsn, PgLsn::Parse(r.Get(0, 0)));
  return ChangePosition{lsn, static_cast<uint32_t>(r.GetInt(0, 1))};
}

Status PgChangeSink::Abort(Status cause) {
  PGconn* c = conn_->raw();
  // Drain whatever is left of the pipeline, then leave it and roll back.
  while (PQpipelineStatus(c) != PQ_PIPELINE_OFF) {
    PGresult* r = PQgetResult(c);
    if (r) {
      PQclear(r);
      continue;
    }
    if (PQexitPipelineMode(c)) break;
    if (PQstatus(c) != CONNECTION_OK) break;
  }
  if (PQstatus(c) == CONNECTION_OK) {
    (void)conn_->Exec("ROLLBACK");
    (void)conn_->Exec("DEALLOCATE ALL");
  }
  prepared_.clear();
  return cause;
}

namespace {

// Data exceptions (class 22: invalid text representation, value too long,
// numeric out of range, ...) and a domain's CHECK (23514): a value the
// column's type refused.
bool RejectsValue(const std::string& state) { return state.starts_with("22") || state == "23514"; }

}  // namespace

// Each change's new values assigned alone into an unconstrained copy of its
// table's columns (CREATE TEMP TABLE .. AS .. WITH NO DATA keeps the types,
// their lengths and domains, not the table's NOT NULL or CHECK): the first
// change whose row fails, then the first of its columns that fails alone.
// All in one transaction rolled back (the copies go with it).
Status PgChangeSink::FindRejectedValue(std::span<const Change> changes, Status cause) {
  if (!conn_->Exec("BEGIN").ok()) return cause;
  std::map<const TableSchema*, std::string> copies;
  std::optional<Status> found;
  std::string last_sql;
  auto savepoint = [&](const std::string& sql, const std::vector<Param>& params) -> Status {
    if (Status st = conn_->Exec("SAVEPOINT midflight_probe"); !st.ok()) return st;
    last_sql = sql;
    Status st = conn_->Query(sql, params).status();
    (void)conn_->Exec(st.ok() ? "RELEASE SAVEPOINT midflight_probe" : "ROLLBACK TO SAVEPOINT midflight_probe");
    return st;
  };
  for (const Change& c : changes) {
    if (found || conn_->IsBroken()) break;
    if (c.kind == ChangeKind::kDelete || c.kind == ChangeKind::kTruncate || !c.table) continue;
    const TableSchema& t = *c.table;
    // Not a structured binding: the lambda below uses the name, and clang
    // (the sanitizer builds) refuses to capture a binding.
    const auto emplaced = copies.emplace(&t, fmt::format("pg_temp.midflight_probe_{}", copies.size()));
    const std::string& probe_table = emplaced.first->second;
    if (emplaced.second) {
      std::string cols;
      for (int i : t.writable) cols += (cols.empty() ? "" : ", ") + QuoteIdent(t.columns[i].name);
      if (!conn_->Exec(fmt::format("CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA", probe_table, cols,
                                   Table(t)))
               .ok())
        break;
    }
    std::vector<size_t> sent;
    for (size_t i = 0; i < c.values.size() && i < t.writable.size(); ++i)
      if (c.values[i].kind == Datum::Kind::kText) sent.push_back(i);
    auto insert = [&](std::span<const size_t> which) {
      std::string cols, params;
      std::vector<Param> values;
      for (size_t i : which) {
        cols += (cols.empty() ? "" : ", ") + QuoteIdent(t.columns[t.writable[i]].name);
        params += fmt::format("{}${}", params.empty() ? "" : ", ", values.size() + 1);
        values.push_back(Param(c.values[i].text));
      }
      return savepoint(fmt::format("INSERT INTO {} ({}) VALUES ({})", probe_table, cols, params), values);
    };
    if (sent.empty() || insert(sent).ok()) continue;
    for (size_t i : sent) {
      Status st = insert(std::span<const size_t>(&i, 1));
      if (st.ok()) continue;
      std::string key = c.KeyText();
      for (auto& k : key)
        if (k == '\x1f') k = ',';
      // The server's own words, without the statement (PgConn::Query's context: its first 60 characters).
      std::string why = std::string(st.message());
      const size_t context = std::min<size_t>(last_sql.size(), 60) + 2;
      if (why.size() > context) why = why.substr(context);
      found = OperatorError(fmt::format("table {} key {}=({}) column {}: PostgreSQL refused the value: {}",
                                        t.id.ToString(), t.KeyDescription(), key.substr(0, 200),
                                        t.columns[t.writable[i]].name, why));
      break;
    }
  }
  if (!conn_->IsBroken()) (void)conn_->Exec("ROLLBACK");
  return found ? *found : cause;
}

Result<bool> PgChangeSink::Fence(int64_t top) {
  RETURN_IF_ERROR(conn_->Exec("BEGIN"));
  auto rollback = [&] {
    if (!conn_->IsBroken()) (void)conn_->Exec("ROLLBACK");
  };
  Result<PgResult> r = conn_->Query(kFenceSql, {migration_, std::to_string(partition_.value)});
  if (!r.ok()) {
    rollback();
    return r.status().WithContext(fmt::format("apply partition {}: locking its checkpoint row", partition_.value));
  }
  const int64_t recorded = r->GetInt(0, 0);
  if (recorded < top) return false;
  rollback();
  ++refused_;
  LOG_WARN("apply partition {}: batch up to offset {} dropped: the target records offset {} applied by worker {} (this "
           "worker lost the partition and does not know yet)",
           partition_.value, top, recorded, r->GetString(0, 1));
  return true;
}

Status PgChangeSink::ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint,
                                BatchConflicts* conflicts) {
  // The applier reconnects, and reloads the checkpoint before it tries again.
  if (!conn_ || conn_->IsBroken()) return RetryCall(fmt::format("apply partition {}: target connection lost", partition_.value));
  if (lock_timeout_ms_ && lock_timeout_ms_() != lock_timeout_set_) {
    int64_t ms = lock_timeout_ms_();
    RETURN_IF_ERROR(conn_->Exec(fmt::format("SET lock_timeout = {}", ms)));
    lock_timeout_set_ = ms;
  }
  std::string part = std::to_string(partition_.value), lsn = PgLsn::FromU64(checkpoint.commit_lsn.value()).ToString(),
              seq = std::to_string(checkpoint.seq);
  int64_t log_offset = -1;
  for (const Change& ch : changes) log_offset = std::max(log_offset, ch.log_offset);
  // Fenced (an apply worker): the row is locked and checked before anything
  // of the batch is sent; the transaction stays open for the batch.
  bool began = false;
  if (fenced_) {
    if (log_offset < 0) {
      if (!changes.empty())
        return Internal(fmt::format("apply partition {}: a fenced batch without log offsets", partition_.value));
      return conn_->Query(kMarkWorkerSql, {migration_, part, lsn, seq, worker_}).status();
    }
    ASSIGN_OR_RETURN(bool stale, Fence(log_offset));
    if (stale) return Status::Ok();
    began = true;
  }
  std::vector<ApplyOp> ops = PlanOps(changes, prepared_);
  PGconn* c = conn_->raw();
  if (!PQenterPipelineMode(c)) return Abort(StatusFromResult(c, nullptr, "entering pipeline mode"));
  auto send = [&](const char* sql) { return PQsendQueryParams(c, sql, 0, nullptr, nullptr, nullptr, nullptr, 0); };
  // owners[i]: the op the i-th result belongs to, or -1; queries[i]: it is
  // the op's statement's result (not its prepare's).
  std::vector<int> owners = {-1};
  std::vector<bool> queries = {false};
  if (!began) {
    owners.push_back(-1);
    queries.push_back(false);
  }
  if ((!began && !send("BEGIN")) || !send("SET CONSTRAINTS ALL DEFERRED"))
    return Abort(StatusFromResult(c, nullptr, "starting apply transaction"));
  std::vector<const char*> values;
  for (size_t i = 0; i < ops.size(); ++i) {
    ApplyOp& op = ops[i];
    auto it = prepared_.find(op.shape);
    if (it == prepared_.end()) {
      std::string name = fmt::format("mf{}", next_statement_++);
      if (!PQsendPrepare(c, name.c_str(), op.sql.c_str(), 0, nullptr))
        return Abort(StatusFromResult(c, nullptr, "preparing apply statement"));
      it = prepared_.emplace(op.shape, name).first;
      owners.push_back(static_cast<int>(i));
      queries.push_back(false);
    }
    values.clear();
    for (const auto& p : op.params) values.push_back(p ? p->c_str() : nullptr);
    if (!PQsendQueryPrepared(c, it->second.c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr,
                             0))
      return Abort(StatusFromResult(c, nullptr, "sending change"));
    owners.push_back(static_cast<int>(i));
    queries.push_back(true);
  }
  // on_conflict=stop: COMMIT only once the results show no conflict (one
  // more round trip per batch, in that mode only).
  const bool hold_commit = conflicts->stop;
  const std::string offset = std::to_string(log_offset);
  const char* cp_values[] = {migration_.c_str(), part.c_str(), lsn.c_str(), seq.c_str(),
                             log_offset >= 0 ? offset.c_str() : nullptr, worker_.empty() ? nullptr : worker_.c_str()};
  if (!PQsendQueryParams(c, kSaveCheckpointSql, 6, nullptr, cp_values, nullptr, nullptr, 0) ||
      (!hold_commit && !send("COMMIT")) || !PQpipelineSync(c))
    return Abort(StatusFromResult(c, nullptr, "sending checkpoint"));

  // Read every result in order. The first failure decides the status; the
  // server skips the rest of the pipeline up to the sync.
  Status first_error;
  bool value_rejected = false;  // the first failure is a value the column's type refused
  size_t seen = 0;
  while (true) {
    PGresult* r = PQgetResult(c);
    if (!r) {
      if (PQstatus(c) != CONNECTION_OK) {
        first_error = StatusFromResult(c, nullptr, "applying batch");
        break;
      }
      continue;  // end of one query's results
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      break;
    }
    size_t index = seen++;
    if (st == PGRES_FATAL_ERROR && first_error.ok()) {
      std::string where = "applying batch";
      if (index < owners.size() && owners[index] >= 0) where = ops[owners[index]].Describe();
      first_error = StatusFromResult(c, r, where);
      value_rejected = RejectsValue(SqlState(r));
    }
    if ((st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) && index < owners.size() && owners[index] >= 0 &&
        queries[index])
      CollectConflicts(ops[owners[index]], r, &conflicts->found);
    PQclear(r);
  }
  if (!first_error.ok()) {
    conflicts->found.clear();
    Status st = Abort(first_error);
    return value_rejected && !conn_->IsBroken() ? FindRejectedValue(changes, st) : st;
  }
  if (!PQexitPipelineMode(c)) return Abort(StatusFromResult(c, nullptr, "leaving pipeline mode"));
  if (hold_commit) {
    if (!conflicts->found.empty()) return Abort(ConflictStopError(conflicts->found.front()));
    if (Status st = conn_->Exec("COMMIT"); !st.ok()) {
      conflicts->found.clear();
      return conn_->IsBroken() ? st : Abort(st);
    }
  }
  return Status::Ok();
}

Status PgChangeSink::ApplyBarrier(const Change& change, uint32_t partitions) {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  RETURN_IF_ERROR(conn_->Exec("BEGIN"));
  auto fail = [&](Status st) {
    (void)conn_->Exec("ROLLBACK");
    return st;
  };
  if (change.kind == ChangeKind::kTruncate) {
    std::string tables;
    for (const auto& t : change.truncated) {
      if (!tables.empty()) tables += ", ";
      tables += Table(*t);
    }
    std::string sql = fmt::format("TRUNCATE {}{}", tables, change.truncate_restart_identity ? " RESTART IDENTITY" : "");
    if (Status st = conn_->Exec(sql); !st.ok()) return fail(st.WithContext("truncate at " + change.pos.ToString()));
  } else {
    std::vector<int> params;
    std::string sql = BuildSql(change, &params);
    std::vector<Param> values;
    for (int col : params) {
      const Datum& d = col >= 0 ? change.values.at(col) : change.old.at(-1 - col);
      values.push_back(d.kind == Datum::Kind::kText ? Param(d.text) : std::nullopt);
    }
    auto r = conn_->Query(sql, values);
    if (!r.ok())
      return fail(r.status().WithContext(fmt::format("moving key of {} at {}", change.table->id.ToString(),
                                                     change.pos.ToString())));
  }
  for (uint32_t p = 0; p < partitions; ++p) {
    auto r = conn_->Query(kSaveCheckpointSql, {migration_, std::to_string(p), PgLsn::FromU64(change.pos.commit_lsn.value()).ToString(),
                                               std::to_string(change.pos.seq), std::nullopt, std::nullopt});
    if (!r.ok()) return fail(r.status());
  }
  return conn_->Exec("COMMIT");
}

// The rows are read with their (tableoid, ctid), locked, chosen in C++ (the
// router's hash has no SQL form) and deleted by (tableoid, ctid) in the same
// transaction.
Result<int64_t> PgChangeSink::DeleteRows(const std::shared_ptr<const TableSchema>& table, const std::string& column,
                                         std::optional<int64_t> lo, std::optional<int64_t> hi,
                                         const std::function<bool(const Change&)>& mine) {
  if (!conn_ || conn_->IsBroken()) RETURN_IF_ERROR(Reconnect());
  const TableSchema& t = *table;
  std::string keys;
  for (int k : t.key_writable) keys += fmt::format(", {}::text", QuoteIdent(t.columns[t.writable[k]].name));
  ASSIGN_OR_RETURN(std::string where,
                   ResetRangeWhere(t, column, lo, hi, [](std::string_view c) { return QuoteIdent(c); }));
  const std::string from = (t.partitioned ? "" : "ONLY ") + Table(t);
  RETURN_IF_ERROR(conn_->Exec("BEGIN"));
  auto fail = [&](Status st) {
    (void)conn_->Exec("ROLLBACK");
    return st.WithContext(fmt::format("replaying a chunk reset of {}", t.id.ToString()));
  };
  auto rows = conn_->Query(fmt::format("SELECT tableoid::oid::text, ctid::text{} FROM {}{} FOR UPDATE", keys, from, where));
  if (!rows.ok()) return fail(rows.status());
  std::string oids = "{", ctids = "{";
  int64_t n = 0;
  Change probe;
  probe.kind = ChangeKind::kInsert;
  probe.table = table;
  for (int i = 0; i < rows->rows(); ++i) {
    probe.values.assign(t.writable.size(), Datum::Null());
    for (size_t k = 0; k < t.key_writable.size(); ++k)
      if (!rows->IsNull(i, static_cast<int>(k) + 2))
        probe.values[t.key_writable[k]] = Datum::Text(rows->GetString(i, static_cast<int>(k) + 2));
    if (!mine(probe)) continue;
    oids += (n ? "," : "") + rows->GetString(i, 0);
    ctids += (n ? ",\"" : "\"") + rows->GetString(i, 1) + "\"";
    ++n;
  }
  oids += "}";
  ctids += "}";
  if (n > 0) {
    auto del = conn_->Query(fmt::format("DELETE FROM {} WHERE (tableoid, ctid) IN (SELECT * FROM unnest($1::oid[], "
                                        "$2::tid[]))",
                                        from),
                            {oids, ctids});
    if (!del.ok()) return fail(del.status());
  }
  RETURN_IF_ERROR(conn_->Exec("COMMIT"));
  return n;
}

}  // namespace midflight::pg
