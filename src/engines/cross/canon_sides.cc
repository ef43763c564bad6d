#include "engines/cross/canon_sides.h"

#include <fmt/format.h>

#include "base/parse.h"
#include "core/position.h"
#include "engines/mysql/binlog_pos.h"
#include "engines/mysql/my_conn.h"
#include "engines/postgres/pg_conn.h"

namespace midflight::cross {
namespace {

class MySide final : public CanonSide {
 public:
  MySide(std::string uri, std::string label, std::shared_ptr<const std::map<TableId, TableCast>> casts)
      : uri_(std::move(uri)), label_(std::move(label)), casts_(std::move(casts)) {}

  std::string_view label() const override { return label_; }
  Status Connect() override {
    mysql::ConnOptions o;
    o.program_name = "midflight-verify";
    shadow_of_.reset();
    ASSIGN_OR_RETURN(conn_, mysql::MyConn::Connect(uri_, o));
    return conn_->Exec("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ");
  }
  Result<std::vector<Row>> Select(const std::string& sql) override {
    ASSIGN_OR_RETURN(mysql::MyResult r, conn_->Query(sql));
    std::vector<Row> out(r.rows());
    for (int i = 0; i < r.rows(); ++i)
      for (int c = 0; c < r.cols(); ++c)
        out[i].push_back(r.IsNull(i, c) ? std::nullopt : std::optional<std::string>(r.Get(i, c)));
    return out;
  }
  Result<uint64_t> BeginSnapshot() override {
    RETURN_IF_ERROR(conn_->Exec("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"));
    ASSIGN_OR_RETURN(mysql::MyResult snap, conn_->Query("SHOW STATUS LIKE 'binlog_snapshot_%'"));
    std::string file, offset;
    for (int i = 0; i < snap.rows(); ++i) {
      if (snap.Get(i, 0) == "Binlog_snapshot_file") file = snap.Get(i, 1);
      if (snap.Get(i, 0) == "Binlog_snapshot_position") offset = snap.Get(i, 1);
    }
    if (file.empty()) {
      // MySQL has no Binlog_snapshot_*: the position now is past what the snapshot sees.
      ASSIGN_OR_RETURN(mysql::MyResult ms, conn_->Query("SHOW MASTER STATUS"));
      if (ms.rows() == 0) return OperatorError(label_ + ": SHOW MASTER STATUS is empty; is log_bin on?");
      file = ms.Get(0, 0);
      offset = ms.Get(0, 1);
    }
    auto number = mysql::ParseBinlogFileNumber(file);
    uint64_t off = 0;
    if (!number || !ParseU64(offset, &off) || off > UINT32_MAX)
      return OperatorError(fmt::format("{}: '{}:{}' is not a binlog position", label_, file, offset));
    base_ = mysql::BinlogBaseName(file);
    return mysql::EncodeBinlogPos(*number, static_cast<uint32_t>(off));
  }
  Status EndSnapshot(bool commit) override {
    if (conn_->IsBroken()) return RetryCall(label_ + ": connection lost");
    return conn_->Exec(commit ? "COMMIT" : "ROLLBACK");
  }
  std::string FormatPosition(uint64_t pos) const override { return mysql::FormatBinlogPos(base_, pos); }

  // A temporary table like the target table, refilled for each call: the
  // values are written as the applier writes them (quoted text), so MySQL
  // converts them as it converted the target's. The session does not log
  // to the binlog (a reverse flow or a replica must not see the scratch rows).
  Result<std::string> Shadow(const CanonTable& t, const std::vector<std::vector<Datum>>& rows) override {
    constexpr const char* kShadow = "mf_verify_shadow";
    if (!shadow_of_ || *shadow_of_ != t.my_id) {
      if (!shadow_of_)
        RETURN_IF_ERROR(conn_->Exec("SET SESSION sql_log_bin = 0")
                            .WithContext(label_ + ": verifying a transformed table needs its scratch table kept out "
                                                  "of the binlog (SET sql_log_bin: BINLOG ADMIN or SUPER)"));
      RETURN_IF_ERROR(conn_->Exec(fmt::format("DROP TEMPORARY TABLE IF EXISTS {}", kShadow)));
      RETURN_IF_ERROR(conn_->Exec(fmt::format("CREATE TEMPORARY TABLE {} LIKE {}", kShadow, From(t)))
                          .WithContext(fmt::format("{}: a scratch copy of {}", label_, t.my_id.ToString())));
      shadow_of_ = t.my_id;
    }
    RETURN_IF_ERROR(conn_->Exec(fmt::format("DELETE FROM {}", kShadow)));
    std::vector<std::string> cols;
    for (const auto& c : t.columns) cols.push_back(mysql::QuoteIdent(c.my.name));
    constexpr size_t kBatch = 500;
    for (size_t begin = 0; begin < rows.size(); begin += kBatch) {
      std::string values;
      for (size_t r = begin; r < std::min(rows.size(), begin + kBatch); ++r) {
        if (rows[r].size() != t.columns.size())
          return Internal(fmt::format("{}: a row of {} has {} values, {} columns expected", label_, t.id.ToString(),
                                      rows[r].size(), t.columns.size()));
        values += values.empty() ? "(" : ", (";
        for (size_t i = 0; i < rows[r].size(); ++i) {
          if (i) values += ", ";
          values += rows[r][i].is_null() ? std::string("NULL") : mysql::QuoteString(rows[r][i].text);
        }
        values += ")";
      }
      RETURN_IF_ERROR(conn_->Exec(fmt::format("INSERT INTO {} ({}) VALUES {}", kShadow, fmt::join(cols, ", "), values))
                          .WithContext(fmt::format("{}: the transformed rows of {}", label_, t.id.ToString())));
    }
    return std::string(kShadow);
  }
  // The snapshot copy's select list: the binlog's text forms.
  Result<std::string> StreamList(const CanonTable& t) const override { return SnapshotSelectList(*t.table); }

  std::string From(const CanonTable& t) const override { return mysql::QuoteQualified(t.my_id.schema, t.my_id.name); }
  std::string Ident(const CanonColumn& c) const override { return mysql::QuoteIdent(c.my.name); }
  std::string CanonExpr(const CanonColumn& c) const override { return MyCanonExpr(c); }
  std::string PieceExpr(const std::string& x) const override { return MyPieceExpr(x); }
  std::string RowMd5(const std::vector<std::string>& p) const override { return MyRowMd5(p); }
  Result<std::string> KeyLiteral(const CanonColumn& c, const std::string& v) const override {
    return MyKeyLiteral(c, v);
  }
  std::string RangeExpr(const CanonColumn& c) const override { return MyRangeExpr(c); }
  std::string IntOfTextExpr(const CanonColumn& c) const override {
    const std::string q = mysql::QuoteIdent(c.my.name);
    return fmt::format("(CASE WHEN CAST({0} AS BINARY) REGEXP '^-?[0-9]{{1,20}}$' THEN CAST({0} AS DECIMAL(21,0)) END)",
                       q);
  }
  std::string TextOfIntExpr(const CanonColumn& c) const override {
    return fmt::format("CAST(CAST({} AS CHAR) AS BINARY)", mysql::QuoteIdent(c.my.name));
  }
  Result<std::string> RangeLiteral(const CanonColumn& c, const std::string& v) const override {
    return MyRangeLiteral(c, v);
  }

  // The current row of each key in the binlog's text forms (the snapshot
  // copy's SELECT list), or a delete of the key. The other side compares
  // keys byte for byte (PostgreSQL; a MySQL target would need the
  // same-engine verifier's care with collations).
  Result<std::vector<Change>> Repairs(const CanonTable& t, const std::vector<CanonKey>& keys) override {
    if (!casts_ || !casts_->count(t.table->id)) return OperatorError(label_ + ": no casting table for repairs");
    const TableCast& cast = casts_->at(t.table->id);
    const TableSchema& s = *t.table;
    std::vector<std::string> key_sel;
    for (int k : t.key) key_sel.push_back(MyCanonExpr(t.columns[k]));
    std::vector<Change> out;
    for (const CanonKey& key : keys) {
      std::vector<std::string> eq;
      for (size_t i = 0; i < t.key.size(); ++i) {
        ASSIGN_OR_RETURN(std::string lit, MyKeyLiteral(t.columns[t.key[i]], key[i]));
        eq.push_back(fmt::format("{} = {}", mysql::QuoteIdent(t.columns[t.key[i]].my.name), lit));
      }
      const std::string sql = fmt::format("SELECT {}, {} FROM {} WHERE {}", fmt::join(key_sel, ", "),
                                          SnapshotSelectList(s), From(t), fmt::join(eq, " AND "));
      auto rows = Select(sql);
      if (!rows.ok()) return rows.status().WithContext(fmt::format("reading {} for its repair", t.id.ToString()));
      const size_t n = t.key.size();
      Change c;
      c.table = t.table;
      bool found = false;
      for (const Row& r : *rows) {
        CanonKey got;
        for (size_t i = 0; i < n; ++i) got.push_back(r[i].value_or(""));
        if (got != key) continue;
        c.kind = ChangeKind::kInsert;
        for (int w : s.writable) {
          const auto& v = r[n + static_cast<size_t>(w)];
          c.values.push_back(v ? Datum::Text(*v) : Datum::Null());
        }
        found = true;
        break;
      }
      // No byte-exact row (a row equal only by MySQL's collation, 'a' for
      // 'A', may be there): a delete of exactly this key, which PostgreSQL
      // matches byte for byte, so the other row stays.
      if (!found) {
        c.kind = ChangeKind::kDelete;
        c.old.assign(s.writable.size(), Datum::Null());
        for (size_t i = 0; i < s.key_writable.size() && i < key.size(); ++i) {
          auto v = CanonToMyText(cast.columns[s.key[i]], key[i]);
          if (!v.ok()) return v.status().WithContext(fmt::format("repair of {}", t.id.ToString()));
          c.old[s.key_writable[i]] = Datum::Text(std::move(*v));
        }
      }
      out.push_back(std::move(c));
    }
    return out;
  }

 private:
  const std::string uri_, label_;
  std::shared_ptr<const std::map<TableId, TableCast>> casts_;
  std::unique_ptr<mysql::MyConn> conn_;
  std::string base_ = "binlog";
  std::optional<TableId> shadow_of_;  // the table the temporary table is like
};

class PgSide final : public CanonSide {
 public:
  PgSide(std::string uri, std::string label) : uri_(std::move(uri)), label_(std::move(label)) {}

  std::string_view label() const override { return label_; }
  Status Connect() override {
    pg::ConnOptions o;
    o.application_name = "midflight-verify";
    ASSIGN_OR_RETURN(conn_, pg::PgConn::Connect(uri_, o));
    return conn_->Exec("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1; "
                       "SET IntervalStyle = 'postgres'");
  }
  Result<std::vector<Row>> Select(const std::string& sql) override {
    ASSIGN_OR_RETURN(pg::PgResult r, conn_->Query(sql));
    std::vector<Row> out(r.rows());
    for (int i = 0; i < r.rows(); ++i)
      for (int c = 0; c < r.cols(); ++c)
        out[i].push_back(r.IsNull(i, c) ? std::nullopt : std::optional<std::string>(r.GetString(i, c)));
    return out;
  }
  Result<uint64_t> BeginSnapshot() override {
    RETURN_IF_ERROR(conn_->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"));
    // The insert position (not the write position, which an asynchronous
    // commit's record may still be ahead of while the commit is already visible).
    ASSIGN_OR_RETURN(std::string lsn, conn_->QueryValue("SELECT pg_current_wal_insert_lsn()::text"));
    ASSIGN_OR_RETURN(PgLsn l, PgLsn::Parse(lsn));
    return l.value();
  }
  Status EndSnapshot(bool commit) override { return conn_->Exec(commit ? "COMMIT" : "ROLLBACK"); }

  // The columns by name: each column's output function, as pgoutput sends it.
  Result<std::string> StreamList(const CanonTable& t) const override {
    std::vector<std::string> cols;
    for (const auto& c : t.columns) cols.push_back(pg::QuoteIdent(c.pg.name));
    return fmt::format("{}", fmt::join(cols, ", "));
  }

  // The rows as values of the table's row type: each text goes through its
  // column type's input function, as the applier's COPY and INSERT send it.
  Result<std::string> Shadow(const CanonTable& t, const std::vector<std::vector<Datum>>& rows) override {
    const std::string type = pg::QuoteQualified(t.pg_id.schema, t.pg_id.name);
    std::string values;
    for (const auto& r : rows) {
      if (r.size() != t.columns.size())
        return Internal(fmt::format("{}: a row of {} has {} values, {} columns expected", label_, t.id.ToString(),
                                    r.size(), t.columns.size()));
      values += values.empty() ? "(ROW(" : ", (ROW(";
      for (size_t i = 0; i < r.size(); ++i) {
        if (i) values += ", ";
        values += r[i].is_null() ? std::string("NULL") : pg::QuoteLiteral(r[i].text);
      }
      values += ")::" + type + ")";
    }
    return fmt::format("(SELECT (mf_v.mf_r).* FROM (VALUES {}) AS mf_v(mf_r)) AS mf_shadow", values);
  }

  std::string From(const CanonTable& t) const override { return pg::QuoteQualified(t.pg_id.schema, t.pg_id.name); }
  std::string Ident(const CanonColumn& c) const override { return pg::QuoteIdent(c.pg.name); }
  std::string CanonExpr(const CanonColumn& c) const override { return PgCanonExpr(c); }
  std::string PieceExpr(const std::string& x) const override { return PgPieceExpr(x); }
  std::string RowMd5(const std::vector<std::string>& p) const override { return PgRowMd5(p); }
  Result<std::string> KeyLiteral(const CanonColumn& c, const std::string& v) const override {
    return PgKeyLiteral(c, v);
  }
  std::string RangeExpr(const CanonColumn& c) const override { return PgRangeExpr(c); }
  std::string IntOfTextExpr(const CanonColumn& c) const override {
    return fmt::format("(CASE WHEN {0}::text ~ '^-?[0-9]{{1,20}}$' THEN {0}::text::numeric END)",
                       pg::QuoteIdent(c.pg.name));
  }
  std::string TextOfIntExpr(const CanonColumn& c) const override {
    return fmt::format("({}::text COLLATE \"C\")", pg::QuoteIdent(c.pg.name));
  }
  Result<std::string> RangeLiteral(const CanonColumn& c, const std::string& v) const override {
    return PgRangeLiteral(c, v);
  }
  Result<std::optional<std::string>> Canonical(const CanonColumn& c,
                                                const std::optional<std::string>& raw) const override {
    if (!c.pg_cast || !raw) return CanonRaw(c.kind, raw);
    auto cast = c.pg_cast(*raw);
    if (!cast.ok()) return cast.status();
    return CanonRaw(c.kind, *cast);
  }

  // The current row of each key as pgoutput sends it (each column's output
  // function, under the stream's session settings: UTC, ISO dates, hex
  // bytea), in the layout of t.table, or a delete of the key (its values
  // printed by PostgreSQL from the canonical key). Rows are matched by
  // canonical key byte for byte, as the verifier matched them.
  Result<std::vector<Change>> Repairs(const CanonTable& t, const std::vector<CanonKey>& keys) override {
    const TableSchema& s = *t.table;
    if (s.columns.size() != t.columns.size() || s.writable.size() != s.columns.size())
      return Internal(fmt::format("{}: table {} is not in its stream's layout", label_, t.id.ToString()));
    std::vector<std::string> key_sel, cols;
    for (int k : t.key) key_sel.push_back(PgCanonExpr(t.columns[k]));
    for (const auto& c : t.columns) cols.push_back(pg::QuoteIdent(c.pg.name));
    std::vector<Change> out;
    for (const CanonKey& key : keys) {
      std::vector<std::string> eq, lits;
      for (size_t i = 0; i < t.key.size(); ++i) {
        ASSIGN_OR_RETURN(std::string lit, PgKeyLiteral(t.columns[t.key[i]], key[i]));
        eq.push_back(fmt::format("{} = {}", pg::QuoteIdent(t.columns[t.key[i]].pg.name), lit));
        lits.push_back(std::move(lit));
      }
      auto rows = Select(fmt::format("SELECT {}, {} FROM {} WHERE {}", fmt::join(key_sel, ", "), fmt::join(cols, ", "),
                                     From(t), fmt::join(eq, " AND ")));
      if (!rows.ok()) return rows.status().WithContext(fmt::format("reading {} for its repair", t.id.ToString()));
      const size_t n = t.key.size();
      Change c;
      c.table = t.table;
      bool found = false;
      for (const Row& r : *rows) {
        CanonKey got;
        for (size_t i = 0; i < n; ++i) got.push_back(r[i].value_or(""));
        if (got != key) continue;
        c.kind = ChangeKind::kInsert;
        for (size_t i = 0; i < t.columns.size(); ++i) c.values.push_back(r[n + i] ? Datum::Text(*r[n + i]) : Datum::Null());
        found = true;
        break;
      }
      if (!found) {
        auto printed = Select(fmt::format("SELECT {}", fmt::join(lits, ", ")));
        if (!printed.ok())
          return printed.status().WithContext(fmt::format("repair of {}: the key's text form", t.id.ToString()));
        if (printed->size() != 1 || (*printed)[0].size() != n)
          return Internal(fmt::format("repair of {}: the key's text form came back as {} rows", t.id.ToString(),
                                      printed->size()));
        c.kind = ChangeKind::kDelete;
        c.old.assign(s.writable.size(), Datum::Null());
        for (size_t i = 0; i < s.key_writable.size() && i < n; ++i)
          c.old[s.key_writable[i]] = Datum::Text((*printed)[0][i].value_or(""));
      }
      out.push_back(std::move(c));
    }
    return out;
  }

 private:
  const std::string uri_, label_;
  std::unique_ptr<pg::PgConn> conn_;
};

}  // namespace

std::unique_ptr<CanonSide> MySqlCanonSide(std::string uri, std::string label,
                                          std::shared_ptr<const std::map<TableId, TableCast>> casts) {
  return std::make_unique<MySide>(std::move(uri), std::move(label), std::move(casts));
}

std::unique_ptr<CanonSide> PostgresCanonSide(std::string uri, std::string label) {
  return std::make_unique<PgSide>(std::move(uri), std::move(label));
}

std::vector<CanonTable> CanonTablesOf(const std::vector<TableCast>& casts, bool zero_dates_null) {
  std::vector<CanonTable> out;
  for (const TableCast& cast : casts) {
    CanonTable t;
    t.table = cast.source;
    t.id = t.my_id = cast.source->id;
    t.pg_id = cast.target->id;
    t.key = cast.source->key;
    for (size_t i = 0; i < cast.columns.size(); ++i) {
      const ColumnCast& cc = cast.columns[i];
      CanonColumn c;
      c.kind = CanonOfCast(cc);
      c.my = cast.source->columns[i];
      c.pg = cast.target->columns[i];
      c.bits = cc.length;
      c.my_geometry = cc.conv == Conv::kGeometry;
      c.my_zero_dates_null =
          zero_dates_null && (cc.conv == Conv::kDate || cc.conv == Conv::kDateTime || cc.conv == Conv::kTimestamp);
      t.columns.push_back(std::move(c));
    }
    if (t.key.empty()) t.skipped = "no primary key or unique index on NOT NULL columns";
    for (int k : t.key)
      if (t.skipped.empty() && CanonInMidflight(t.columns[k].kind))
        t.skipped = fmt::format("key column {} is {}, which is not compared across engines as a key",
                                t.columns[k].my.name, CanonName(t.columns[k].kind));
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<CanonTable> PgCanonTablesOf(const std::vector<PgTableCast>& casts, bool out_of_range_null) {
  std::vector<CanonTable> out;
  for (const PgTableCast& cast : casts) {
    CanonTable t;
    t.id = t.pg_id = cast.source->id;
    t.my_id = cast.target->id;
    t.key = cast.target->key;  // the target's columns are the layout's, in the same order
    auto layout = std::make_shared<TableSchema>(*cast.source);
    layout->columns.clear();
    for (size_t i = 0; i < cast.columns.size(); ++i) {
      const ColumnSchema& pg = cast.source->columns[cast.source_index[i]];
      layout->columns.push_back(pg);
      std::string not_compared;
      t.columns.push_back(
          CanonOfPgCast(cast.columns[i], pg, cast.target->columns[i], out_of_range_null, &not_compared));
      if (t.skipped.empty() && !not_compared.empty()) t.skipped = not_compared;
    }
    layout->key = cast.target->key;
    layout->Finalize();
    t.table = std::move(layout);
    if (t.key.empty()) t.skipped = "no primary key or unique index on NOT NULL columns";
    for (int k : t.key)
      if (t.skipped.empty() && CanonInMidflight(t.columns[k].kind))
        t.skipped = fmt::format("key column {} is {}, which is not compared across engines as a key",
                                t.columns[k].pg.name, CanonName(t.columns[k].kind));
    out.push_back(std::move(t));
  }
  return out;
}

namespace {
// The canonical kind of a PostgreSQL column by its type: for a column a
// transform cast or computed, and for PostgreSQL -> PostgreSQL, whose two
// sides run the same SQL (anything without a kind of its own is compared
// as its text output).
Canon CanonOfType(const ColumnType& type) {
  switch (type.kind) {
    case TypeKind::kBool:
    case TypeKind::kInt:
    case TypeKind::kDecimal: return Canon::kNumber;
    case TypeKind::kFloat: return Canon::kFloat;
    case TypeKind::kBytes: return Canon::kBytes;
    case TypeKind::kJson: return Canon::kJson;
    case TypeKind::kDate: return Canon::kDate;
    case TypeKind::kTime: return Canon::kTime;
    case TypeKind::kTimestamp: return Canon::kTimestamp;
    default: return Canon::kText;
  }
}

// The column of `base` (by its PostgreSQL name) that source column
// `source_index` of `tr` is; -1 for none.
int BaseColumn(const CanonTable& base, const TableTransform& tr, int source_index) {
  if (source_index < 0) return -1;
  const std::string& name = tr.source().columns[static_cast<size_t>(source_index)].name;
  for (size_t j = 0; j < base.columns.size(); ++j)
    if (base.columns[j].pg.name == name) return static_cast<int>(j);
  return -1;
}

// Why the target's key of `tr` cannot be matched to `base`'s, the source
// table ("" when it can): each target key column must be the source's key
// column at the same place, renamed or not, or cast by one of the key casts
// verify maps back (core/transform.h: int_to_text, timestamp_to_timestamptz),
// which it sets in *casts (left empty when no key column is cast).
std::string KeyProblem(const CanonTable& base, const TableTransform& tr, std::vector<Reshape::KeyCast>* casts) {
  const TableSchema& target = *tr.target();
  casts->clear();
  if (target.key.size() != base.key.size()) return "its target key is not its source key";
  std::vector<Reshape::KeyCast> found;
  bool any = false;
  for (size_t i = 0; i < target.key.size(); ++i) {
    const size_t k = static_cast<size_t>(target.key[i]);
    const int from = tr.SourceColumn(k);
    if (BaseColumn(base, tr, from) != base.key[i])
      return fmt::format("target key column {} is not source key column {}", target.columns[k].name,
                         base.columns[static_cast<size_t>(base.key[i])].pg.name);
    const std::string& was = tr.source().columns[static_cast<size_t>(from)].type.native;
    const std::string& cast = tr.ColumnCast(k);
    Reshape::KeyCast kc;
    if (cast == "int_to_text" || cast == "timestamp_to_timestamptz") {
      kc.cast = cast;
      kc.zone_minutes = tr.ColumnZoneMinutes(k);
      any = true;
    } else if (!cast.empty() || was != target.columns[k].type.native) {
      return fmt::format("key column {} is cast ({} -> {}{}), which verify cannot map back to the source's key",
                         target.columns[k].name, was, target.columns[k].type.native, cast.empty() ? "" : " by " + cast);
    }
    found.push_back(std::move(kc));
  }
  if (any) *casts = std::move(found);
  return "";
}

// The source table of `tr` (PostgreSQL) in the stream's layout: its columns
// less generated ones, each compared by its type's canonical form.
CanonTable PgLayoutBase(const TableTransform& tr) {
  const TableSchema& s = tr.source();
  auto layout = std::make_shared<TableSchema>(s);
  layout->columns.clear();
  for (int w : s.writable) layout->columns.push_back(s.columns[static_cast<size_t>(w)]);
  layout->key = s.key_writable;
  layout->Finalize();
  CanonTable base;
  base.table = layout;
  base.id = base.my_id = base.pg_id = s.id;
  for (const ColumnSchema& col : layout->columns) {
    CanonColumn c;
    c.kind = CanonOfType(col.type);
    c.pg = c.my = col;
    base.columns.push_back(std::move(c));
  }
  base.key = layout->key;
  if (base.key.empty()) base.skipped = "no primary key or unique index on NOT NULL columns";
  for (int k : base.key)
    if (base.skipped.empty() && CanonInMidflight(base.columns[static_cast<size_t>(k)].kind))
      base.skipped = fmt::format("key column {} is {}, which is not compared as a key through a transform",
                                 base.columns[static_cast<size_t>(k)].pg.name,
                                 CanonName(base.columns[static_cast<size_t>(k)].kind));
  return base;
}
}  // namespace

CanonTable ReshapedToPg(const CanonTable& base, const TableTransform& tr,
                        std::function<Result<std::optional<std::vector<Datum>>>(const CanonSide::Row&)> row) {
  CanonTable t;
  t.table = base.table;
  t.id = base.id;
  t.my_id = base.my_id;
  t.transformed = true;
  const TableSchema& target = *tr.target();
  t.pg_id = target.id;
  auto shaped = std::make_shared<Reshape>();
  shaped->source = base;
  shaped->row = std::move(row);
  for (size_t i = 0; i < target.columns.size(); ++i) {
    const ColumnSchema& col = target.columns[i];
    const int from = tr.SourceColumn(i);
    const int b = BaseColumn(base, tr, from);
    if (from < 0) shaped->computed.push_back(static_cast<int>(i));
    CanonColumn c;
    if (b >= 0 && tr.source().columns[static_cast<size_t>(from)].type.native == col.type.native) {
      c = base.columns[static_cast<size_t>(b)];  // kept (renamed or not), or a cast that keeps the type
    } else {
      c.kind = CanonOfType(col.type);
    }
    c.pg = col;
    c.my = col;  // names the target's column in reports
    c.pg_cast = nullptr;
    t.columns.push_back(std::move(c));
  }
  t.key = target.key;
  t.skipped = base.skipped.empty() ? KeyProblem(base, tr, &shaped->key_casts) : base.skipped;
  shaped->where = tr.where();
  if (t.skipped.empty()) t.reshape = std::move(shaped);
  return t;
}

namespace {
// One reference row in the stream's text forms, through `tr` as it is.
std::function<Result<std::optional<std::vector<Datum>>>(const CanonSide::Row&)> RowThrough(
    std::shared_ptr<const TableTransform> tr) {
  return [tr](const CanonSide::Row& raw) -> Result<std::optional<std::vector<Datum>>> {
    std::vector<Datum> values;
    for (const auto& v : raw) values.push_back(v ? Datum::Text(*v) : Datum::Null());
    return tr->Row(values);
  };
}
}  // namespace

CanonTable PgReshaped(std::shared_ptr<const TableTransform> tr) {
  const CanonTable base = PgLayoutBase(*tr);
  return ReshapedToPg(base, *tr, RowThrough(tr));
}

CanonTable MyReshaped(std::shared_ptr<const TableTransform> tr, const std::string& target_db) {
  // The source's columns by their types' canonical forms, as for
  // PostgreSQL: both digests come from the target's SQL over columns of one
  // type. The scratch table is filled with quoted text: a kept BIT, SET,
  // UUID or INET column's binlog form (a number, raw bytes) would not read
  // back as its value there.
  CanonTable base = PgLayoutBase(*tr);
  for (const CanonColumn& c : base.columns) {
    const std::string& type = c.my.type.native_base;
    if (base.skipped.empty() && (type == "bit" || type == "set" || type == "uuid" || type == "inet4" || type == "inet6"))
      base.skipped = fmt::format("column {} is {}, which is not compared through a transform here", c.my.name, type);
  }
  CanonTable t = ReshapedToPg(base, *tr, RowThrough(tr));
  t.my_id = t.pg_id = TableId{target_db, tr->target()->id.name};
  if (!t.reshape && t.skipped.find(tr->where()) == std::string::npos) t.skipped += fmt::format(" ({})", tr->where());
  return t;
}

CanonTable ReshapedToMy(CanonTable t, const TableTransform& tr,
                        std::function<Result<std::optional<std::vector<Datum>>>(const CanonSide::Row&)> row) {
  CanonTable base = PgLayoutBase(tr);
  t.id = t.pg_id = base.id;
  t.transformed = true;
  if (!t.skipped.empty()) return t;
  std::vector<Reshape::KeyCast> key_casts;
  t.skipped = base.skipped.empty() ? KeyProblem(base, tr, &key_casts) : base.skipped;
  const TableSchema& target = *tr.target();
  if (t.skipped.empty() && t.key.size() != target.key.size()) t.skipped = "its MySQL key is not its transformed key";
  for (size_t i = 0; i < t.key.size() && t.skipped.empty(); ++i)
    if (t.columns[static_cast<size_t>(t.key[i])].pg.name != target.columns[static_cast<size_t>(target.key[i])].name)
      t.skipped = "its MySQL key is not its transformed key";
  if (!t.skipped.empty()) return t;
  // The source's key columns are compared as the target's are (the same
  // values, renamed): ranges and key conditions then select the same rows.
  // A cast one keeps its own kind: its values are mapped (Reshape::key_casts).
  for (size_t i = 0; i < base.key.size(); ++i) {
    if (!key_casts.empty() && !key_casts[i].cast.empty()) continue;
    CanonColumn c = t.columns[static_cast<size_t>(t.key[i])];
    c.pg = base.columns[static_cast<size_t>(base.key[i])].pg;
    base.columns[static_cast<size_t>(base.key[i])] = std::move(c);
  }
  auto shaped = std::make_shared<Reshape>();
  shaped->source = std::move(base);
  shaped->row = std::move(row);
  shaped->key_casts = std::move(key_casts);
  shaped->where = tr.where();
  for (size_t i = 0; i < target.columns.size(); ++i)
    if (tr.SourceColumn(i) < 0) shaped->computed.push_back(static_cast<int>(i));
  t.reshape = std::move(shaped);
  return t;
}

CanonTable Reversed(CanonTable t, TablePtr layout) {
  if (!t.reshape) return t;
  for (int c : t.reshape->computed) t.columns[static_cast<size_t>(c)].compared = false;
  if (layout) t.table = std::move(layout);
  t.reversed = true;
  return t;
}

Result<std::vector<CanonTable>> PgReshapedTables(const std::vector<TableTransformSpec>& specs,
                                                 const std::vector<TablePtr>& tables) {
  std::vector<CanonTable> out;
  for (const auto& t : tables) {
    const TableTransformSpec* spec = TransformFor(specs, t->id);
    if (!spec) continue;
    ASSIGN_OR_RETURN(auto bound, TableTransform::Bind(*spec, t));
    CanonTable c = PgReshaped(std::move(bound));
    if (!c.reshape) c.skipped += fmt::format(" ({})", spec->where());
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace midflight::cross
