#include "engines/cross/pg_to_my.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <mysql.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "base/log.h"
#include "base/parse.h"
#include "base/uri.h"
#include "control/compare.h"
#include "control/phase_driver.h"
#include "control/run_util.h"
#include "control/runtime.h"
#include "control/spec.h"
#include "control/state_store.h"
#include "core/transform.h"
#include "engines/cross/canon_sides.h"
#include "engines/cross/cross_verify.h"
#include "engines/cross/my_to_pg.h"
#include "engines/cross/my_to_pg_types.h"
#include "engines/cross/pg_to_my_types.h"
#include "engines/mysql/binlog_pos.h"
#include "engines/mysql/catalog.h"
#include "engines/mysql/change_stream.h"
#include "engines/mysql/durable_copy.h"
#include "engines/mysql/infile_feed.h"
#include "engines/mysql/my_applier.h"
#include "engines/mysql/my_conn.h"
#include "engines/mysql/replication_ops.h"
#include "engines/mysql/schema_loader.h"
#include "engines/postgres/catalog.h"
#include "engines/postgres/change_stream.h"
#include "engines/postgres/pg_applier.h"
#include "engines/postgres/pg_conn.h"
#include "engines/postgres/pg_types.h"
#include "engines/postgres/snapshot_copier.h"
#include "pipeline/flow.h"
#include "pipeline/transform_sink.h"
#include "proxy/traffic_switch.h"

namespace midflight {
namespace {

using mysql::MyConn;
using mysql::MyResult;
using pg::PgConn;
using pg::PgResult;
using Casts = std::map<TableId, cross::PgTableCast>;

cross::PgCastOptions OptionsOf(const MigrationSpec& spec, const std::string& target_db, bool mariadb) {
  cross::PgCastOptions o;
  o.numeric_decimal = spec.casting.numeric_decimal;
  o.out_of_range_null = spec.casting.out_of_range_null;
  o.collation = spec.casting.collation;
  o.mariadb = mariadb;
  o.target_db = target_db;
  o.column_types = spec.casting.columns;
  return o;
}

std::string OidList(const std::vector<TablePtr>& tables) {
  std::string out = "{";
  for (const auto& t : tables) out += (out.size() > 1 ? "," : "") + std::to_string(t->source_oid);
  return out + "}";
}

// Enum labels, domains, identity/serial columns and secondary unique
// columns of `tables`, from pg_catalog.
Result<std::map<TableId, cross::PgTableFacts>> LoadFacts(PgConn& src, const std::vector<TablePtr>& tables) {
  std::map<TableId, cross::PgTableFacts> out;
  if (tables.empty()) return out;
  const std::string oids = OidList(tables);
  ASSIGN_OR_RETURN(PgResult en, src.Query(R"sql(
SELECT n.nspname, c.relname, a.attname, e.enumlabel
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_enum e ON e.enumtypid = a.atttypid
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY n.nspname, c.relname, a.attnum, e.enumsortorder)sql",
                                          {oids}));
  for (int i = 0; i < en.rows(); ++i)
    out[{en.GetString(i, 0), en.GetString(i, 1)}].enum_labels[en.GetString(i, 2)].push_back(en.GetString(i, 3));
  ASSIGN_OR_RETURN(PgResult dom, src.Query(R"sql(
SELECT n.nspname, c.relname, a.attname, format_type(t.oid, NULL), bt.oid, format_type(t.typbasetype, t.typtypmod),
       bt.typtype, coalesce(be.oid, 0), coalesce(format_type(be.oid, NULL), ''), format_type(bt.oid, NULL)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_type t ON t.oid = a.atttypid AND t.typtype = 'd'
  JOIN pg_type bt ON bt.oid = t.typbasetype
  LEFT JOIN pg_type be ON be.oid = bt.typelem AND bt.typcategory = 'A'
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped)sql",
                                           {oids}));
  for (int i = 0; i < dom.rows(); ++i) {
    const char typtype = dom.Get(i, 6).empty() ? 'b' : dom.Get(i, 6)[0];
    ColumnType base = pg::PgColumnType(static_cast<uint32_t>(dom.GetInt(i, 4)), dom.GetString(i, 5), typtype,
                                       static_cast<uint32_t>(dom.GetInt(i, 7)), dom.GetString(i, 8));
    base.native_base = dom.GetString(i, 9);
    out[{dom.GetString(i, 0), dom.GetString(i, 1)}].domains[dom.GetString(i, 2)] = {dom.GetString(i, 3), base};
  }
  ASSIGN_OR_RETURN(PgResult ident, src.Query(R"sql(
SELECT n.nspname, c.relname, a.attname
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
   AND pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) IS NOT NULL)sql",
                                             {oids}));
  for (int i = 0; i < ident.rows(); ++i)
    out[{ident.GetString(i, 0), ident.GetString(i, 1)}].identity = ident.GetString(i, 2);
  ASSIGN_OR_RETURN(PgResult uq, src.Query(R"sql(
SELECT n.nspname, c.relname, a.attname
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
 WHERE i.indrelid = ANY($1::oid[]) AND i.indisunique AND NOT i.indisprimary)sql",
                                          {oids}));
  for (int i = 0; i < uq.rows(); ++i)
    out[{uq.GetString(i, 0), uq.GetString(i, 1)}].unique_columns.insert(uq.GetString(i, 2));
  return out;
}

// The spec's transforms (core/transform.h) bound to the PostgreSQL tables, by
// source table; a transform that does not fit adds a problem. They apply
// before the casting table, on PostgreSQL's own text forms (the forms they
// are defined on). A MySQL target holds every table in the URI's database,
// so a rename names a table, not a schema.
TransformMap BindAll(const MigrationSpec& spec, const std::vector<TablePtr>& tables,
                     std::vector<std::string>* problems) {
  for (const auto& s : spec.transforms)
    if (s.rename.find('.') != std::string::npos) {
      problems->push_back(
          fmt::format("{}.rename: '{}' names a schema, and a MySQL target puts every table in the "
                      "database its URI names: rename to a table name",
                      s.where(), s.rename));
      return {};
    }
  auto bound = BindTransforms(spec.transforms, tables);
  if (!bound.ok()) {
    problems->push_back(bound.status().message());
    return {};
  }
  return TransformsBySource(*bound);
}

// The facts of a transformed table's PostgreSQL shape: those of each column
// it keeps with its type, under its new name; a computed column, or one a
// cast retypes, has none.
cross::PgTableFacts FactsAfter(const TableTransform& tr, const cross::PgTableFacts& f) {
  cross::PgTableFacts out;
  const TableSchema& target = *tr.target();
  for (size_t i = 0; i < target.columns.size(); ++i) {
    const int from = tr.SourceColumn(i);
    if (from < 0) continue;
    const ColumnSchema& was = tr.source().columns[from];
    const std::string& now = target.columns[i].name;
    if (f.unique_columns.count(was.name)) out.unique_columns.insert(now);
    if (target.columns[i].type.native != was.type.native) continue;
    if (auto e = f.enum_labels.find(was.name); e != f.enum_labels.end()) out.enum_labels[now] = e->second;
    if (auto d = f.domains.find(was.name); d != f.domains.end()) out.domains[now] = d->second;
    if (f.identity == was.name) out.identity = now;
  }
  return out;
}

// The casts of every table of the spec, by source table; a table with no
// cast adds a problem. A transformed table is cast as its transform leaves it
// (renamed, its columns kept, cast and added).
Casts CastAll(const std::vector<TablePtr>& tables, const TransformMap& transforms,
              const std::map<TableId, cross::PgTableFacts>& facts, const cross::PgCastOptions& options,
              std::vector<std::string>* problems) {
  Casts out;
  std::map<std::string, TableId> names;
  for (const auto& t : tables) {
    auto f = facts.find(t->id);
    cross::PgTableFacts table_facts = f == facts.end() ? cross::PgTableFacts{} : f->second;
    const TableSchema* shape = t.get();
    if (auto tr = transforms.find(t->id); tr != transforms.end()) {
      shape = tr->second->target().get();
      table_facts = FactsAfter(*tr->second, table_facts);
    }
    auto [it, fresh] = names.emplace(shape->id.name, t->id);
    if (!fresh) {
      problems->push_back(fmt::format("tables {} and {} would both be {}.{} in MySQL (one database): exclude one",
                                      it->second.ToString(), t->id.ToString(), options.target_db, shape->id.name));
      continue;
    }
    auto cast = cross::CastPgTable(*shape, table_facts, options);
    if (!cast.ok()) {
      problems->push_back(cast.status().message());
      continue;
    }
    out[t->id] = std::move(*cast);
  }
  return out;
}

// "(id=42)" for a row error, from the target-order fields.
std::string KeyOf(const TableSchema& target, const std::vector<std::optional<std::string>>& row) {
  std::string out = "(";
  for (size_t i = 0; i < target.key.size(); ++i) {
    const auto& v = row[target.key[i]];
    out += fmt::format("{}{}={}", i ? ", " : "", target.columns[target.key[i]].name,
                       v ? v->substr(0, 64) : std::string("NULL"));
  }
  return out + ")";
}

// Splits a COPY text line into its fields (escapes undone; nullopt for \N).
void SplitCopyLine(std::string_view line, std::vector<std::optional<std::string>>* out) {
  out->clear();
  size_t start = 0;
  for (;;) {
    size_t tab = line.find('\t', start);
    std::string_view f = line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start);
    if (f == "\\N")
      out->push_back(std::nullopt);
    else
      out->push_back(cross::UnescapeCopyField(f));
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
}

// ---- the copy's target side ---------------------------------------------------

// Feeds LOAD DATA LOCAL INFILE from a chunk's COPY rows, each value cast, in
// LOAD DATA's default text format (tab, newline, backslash escapes, \N). A
// transformed table's rows go through its transform first; one its filter
// leaves out is read and counted, not written.
struct Feed final : mysql::InfileFeed {
  pg::CopyRows* rows = nullptr;
  const cross::PgTableCast* cast = nullptr;
  const TableTransform* transform = nullptr;
  bool out_of_range_null = false;
  std::vector<std::optional<std::string>> fields, cast_fields;
  std::vector<Datum> datums;

  bool Fill() override {
    if (stop->load()) {
      error = Cancelled("stopped");
      return false;
    }
    std::string_view line;
    auto more = rows->Next(&line);
    if (!more.ok()) {
      error = more.status();
      return false;
    }
    if (!*more) {
      eof = true;
      return false;
    }
    const TableSchema& t = *cast->target;
    SplitCopyLine(line, &fields);
    const size_t expected = transform ? transform->source().writable.size() : cast->columns.size();
    if (fields.size() != expected) {
      error = Internal(
          fmt::format("copy of {}: {} fields read, {} expected", cast->source->id.ToString(), fields.size(), expected));
      return false;
    }
    int64_t row_bytes = 0;
    for (const auto& f : fields) row_bytes += f ? static_cast<int64_t>(f->size()) : 0;
    if (transform) {
      datums.clear();
      for (auto& f : fields) datums.push_back(f ? Datum::Text(std::move(*f)) : Datum::Null());
      auto out = transform->Row(datums);
      if (!out.ok()) {
        error = out.status();
        return false;
      }
      if (!*out) {
        Counted(row_bytes);
        return true;
      }
      fields.clear();
      for (Datum& d : **out)
        fields.push_back(d.is_null() ? std::nullopt : std::optional<std::string>(std::move(d.text)));
    }
    cast_fields.assign(fields.size(), std::nullopt);
    for (size_t i = 0; i < fields.size(); ++i) {
      if (!fields[i]) continue;
      auto v = cross::ToMyText(cast->columns[i], *fields[i], out_of_range_null);
      if (!v.ok()) {
        error = DataLoss(
            fmt::format("table {} key {} {}", cast->source->id.ToString(), KeyOf(t, fields), v.status().message()));
        return false;
      }
      cast_fields[i] = std::move(*v);
    }
    if (max_row_bytes > 0 && row_bytes > max_row_bytes) {
      error = OperatorError(fmt::format("table {} key {}: the row has {} bytes, above max_row_bytes {}",
                                        cast->source->id.ToString(), KeyOf(t, fields), row_bytes, max_row_bytes));
      return false;
    }
    for (size_t i = 0; i < cast_fields.size(); ++i) {
      if (i) buf.push_back('\t');
      if (!cast_fields[i]) {
        buf += "\\N";
        continue;
      }
      for (char ch : *cast_fields[i]) {
        switch (ch) {
          case '\\': buf += "\\\\"; break;
          case '\t': buf += "\\t"; break;
          case '\n': buf += "\\n"; break;
          case '\r': buf += "\\r"; break;
          case '\0': buf += "\\0"; break;
          default: buf.push_back(ch);
        }
      }
    }
    buf.push_back('\n');
    Counted(row_bytes);
    return true;
  }
};

// One copy worker's MySQL connection: a chunk's rows, cast, by LOAD DATA,
// and its midflight.chunks row, in one transaction.
class MyChunkTarget final : public pg::ChunkTarget {
 public:
  MyChunkTarget(std::unique_ptr<MyConn> conn, std::string migration, std::shared_ptr<const Casts> casts,
                std::shared_ptr<const TransformMap> transforms, bool out_of_range_null, int64_t max_row_bytes)
      : conn_(std::move(conn)),
        migration_(std::move(migration)),
        casts_(std::move(casts)),
        transforms_(std::move(transforms)),
        null_(out_of_range_null),
        max_row_bytes_(max_row_bytes) {}

  Status Load(const TableSchema& t, const Chunk& c, PgLsn snapshot, pg::CopyRows& rows, TableProgress& progress,
              RateLimiter* rate, const std::atomic<bool>& stop, int64_t* written) override {
    const cross::PgTableCast& cast = casts_->at(t.id);
    const TableSchema& mt = *cast.target;
    std::vector<std::string> load, sets;
    for (size_t i = 0; i < mt.columns.size(); ++i) {
      const std::string q = mysql::QuoteIdent(mt.columns[i].name);
      if (mt.columns[i].type.native_base == "bit") {
        // LOAD DATA cannot read b'..': the number goes through a variable.
        load.push_back(fmt::format("@v{}", i));
        sets.push_back(fmt::format("{} = CAST(@v{} AS UNSIGNED)", q, i));
      } else {
        load.push_back(q);
      }
    }
    Feed feed;
    feed.rows = &rows;
    feed.cast = &cast;
    if (auto tr = transforms_->find(t.id); tr != transforms_->end()) feed.transform = tr->second.get();
    feed.out_of_range_null = null_;
    feed.stop = &stop;
    feed.max_row_bytes = max_row_bytes_;
    feed.progress = &progress;
    feed.rate = rate;
    const std::string sql = fmt::format(
        "LOAD DATA LOCAL INFILE 'midflight-{}' INTO TABLE {} CHARACTER SET binary FIELDS TERMINATED BY '\\t' "
        "ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({}){}",
        c.number, mysql::QuoteQualified(mt.id.schema, mt.id.name), fmt::join(load, ", "),
        sets.empty() ? "" : fmt::format(" SET {}", fmt::join(sets, ", ")));
    Status st = feed.Load(*conn_, sql);
    if (st.ok() && mysql_warning_count(conn_->raw()) > 0) {
      auto w = conn_->Query("SHOW WARNINGS LIMIT 1");
      st = DataLoss(fmt::format("loading table {} into MySQL changed a value: {}", t.id.ToString(),
                                w.ok() && w->rows() > 0 ? w->Get(0, 2) : "a warning"));
    }
    if (st.ok())
      st = conn_->Exec(fmt::format(
          "INSERT INTO midflight.chunks (migration, table_name, chunk, snapshot_pos, rows_copied, bytes_copied) "
          "VALUES ({}, {}, {}, {}, {}, {})",
          mysql::QuoteString(migration_), mysql::QuoteString(t.id.ToString()), c.number, snapshot.value(),
          feed.row_count, feed.byte_count));
    if (st.ok()) st = conn_->Exec("COMMIT");
    feed.Settle(st.ok());
    if (!st.ok()) {
      (void)conn_->Exec("ROLLBACK");
      return st;
    }
    *written = feed.row_count;
    LOG_DEBUG("copied {} chunk {}: {} rows", t.id.ToString(), c.number, feed.row_count);
    return Status::Ok();
  }

 private:
  std::unique_ptr<MyConn> conn_;
  std::string migration_;
  std::shared_ptr<const Casts> casts_;
  std::shared_ptr<const TransformMap> transforms_;  // by source table
  bool null_;
  int64_t max_row_bytes_;
};

// ---- the stream's target side ---------------------------------------------------

// A partition's MyChangeSink behind the casting table: every change's
// PostgreSQL values become MySQL text forms of its MySQL twin table. A value
// that cannot cross stops the flow, naming table, key and column. An update
// that left TOASTed values unchanged (pgoutput does not resend them) takes
// them from the target's current row, which holds every earlier change of
// that key (per-key order; the applier already merged the batch's own).
class CastingSink final : public ChangeSink {
 public:
  CastingSink(std::unique_ptr<mysql::MyChangeSink> inner, std::shared_ptr<const Casts> casts, bool null,
              std::string target_uri)
      : inner_(std::move(inner)), casts_(std::move(casts)), null_(null), target_uri_(std::move(target_uri)) {}

  // MyChangeSink stores any 64-bit position; here it is an LSN.
  Result<ChangePosition> LoadCheckpoint() override {
    ASSIGN_OR_RETURN(ChangePosition cp, inner_->LoadCheckpoint());
    return ChangePosition{Position::Pg(cp.commit_lsn.value()), cp.seq};
  }
  Status Reconnect() override {
    lookup_.reset();
    return inner_->Reconnect();
  }
  Status ApplyBatch(std::span<const Change> changes, ChangePosition checkpoint, BatchConflicts* conflicts) override {
    std::vector<Change> out;
    out.reserve(changes.size());
    for (const Change& c : changes) {
      ASSIGN_OR_RETURN(Change cast, Cast(c));
      out.push_back(std::move(cast));
    }
    return inner_->ApplyBatch(out, checkpoint, conflicts);
  }
  Status ApplyBarrier(const Change& change, uint32_t partitions) override {
    ASSIGN_OR_RETURN(Change cast, Cast(change));
    return inner_->ApplyBarrier(cast, partitions);
  }

 private:
  // Target column i comes from layout column map[i] (by name: the layout is
  // what the source's Relation message said, cached per layout).
  Result<const std::vector<int>*> MapOf(const TablePtr& layout, const cross::PgTableCast& cast) {
    auto it = maps_.find(layout.get());
    if (it != maps_.end()) return &it->second.second;
    std::vector<int> map;
    for (const auto& c : cast.columns) {
      int idx = layout->ColumnIndex(c.name);
      if (idx < 0)
        return OperatorError(
            fmt::format("table {}: the source no longer sends column {}; drop it on the target too "
                        "(or add it back on the source), then run again",
                        layout->id.ToString(), c.name));
      map.push_back(idx);
    }
    auto [pos, _] = maps_.emplace(layout.get(), std::make_pair(layout, std::move(map)));
    return &pos->second.second;
  }

  Result<std::vector<Datum>> Values(const Change& c, const cross::PgTableCast& cast, const std::vector<int>& map,
                                    const std::vector<Datum>& in) {
    std::vector<Datum> out;
    if (in.empty()) return out;
    out.reserve(map.size());
    for (size_t i = 0; i < map.size(); ++i) {
      const Datum& d = static_cast<size_t>(map[i]) < in.size() ? in[map[i]] : Datum::Null();
      if (d.kind != Datum::Kind::kText) {
        out.push_back(d);
        continue;
      }
      auto v = cross::ToMyText(cast.columns[i], d.text, null_);
      if (!v.ok())
        return DataLoss(fmt::format("table {} key ({}) {}", c.table->id.ToString(), c.KeyText(), v.status().message()));
      out.push_back(*v ? Datum::Text(std::move(**v)) : Datum::Null());
    }
    return out;
  }

  // Fills the unchanged values of an update from the target's current row.
  Status FillUnchanged(const cross::PgTableCast& cast, Change* c) {
    const TableSchema& t = *cast.target;
    std::vector<std::string> cols, where;
    std::vector<size_t> missing;
    for (size_t i = 0; i < c->values.size(); ++i) {
      if (!c->values[i].is_unchanged()) continue;
      missing.push_back(i);
      const std::string q = mysql::QuoteIdent(t.columns[i].name);
      cols.push_back(t.columns[i].type.native_base == "bit" ? fmt::format("CAST({} AS UNSIGNED)", q) : q);
    }
    // The row is still under its old key when the update moves it.
    const std::vector<Datum>& key_image = c->MovesKey() && !c->old.empty() ? c->old : c->values;
    for (int k : t.key) {
      const Datum& d = key_image[k];
      if (d.kind != Datum::Kind::kText)
        return DataLoss(
            fmt::format("table {}: key column {} has no value in an update", t.id.ToString(), t.columns[k].name));
      std::string lit;
      switch (mysql::LiteralKindOf(t.columns[k])) {
        case mysql::LiteralKind::kNumber: lit = d.text; break;
        case mysql::LiteralKind::kQuoted: lit = mysql::QuoteString(d.text); break;
        case mysql::LiteralKind::kText: lit = "_" + t.columns[k].type.charset + " " + mysql::HexLiteral(d.text); break;
        case mysql::LiteralKind::kBinary: lit = mysql::HexLiteral(d.text); break;
      }
      where.push_back(fmt::format("{} = {}", mysql::QuoteIdent(t.columns[k].name), lit));
    }
    if (!lookup_ || lookup_->IsBroken()) {
      mysql::ConnOptions o;
      o.program_name = "midflight-apply-lookup";
      ASSIGN_OR_RETURN(lookup_, MyConn::Connect(target_uri_, o));
    }
    ASSIGN_OR_RETURN(MyResult r, lookup_->Query(fmt::format("SELECT {} FROM {} WHERE {}", fmt::join(cols, ", "),
                                                            mysql::QuoteQualified(t.id.schema, t.id.name),
                                                            fmt::join(where, " AND "))));
    if (r.rows() != 1)
      return DataLoss(
          fmt::format("table {} key ({}): an update left values unchanged (TOAST) and the target has no "
                      "row to take them from; set REPLICA IDENTITY FULL on the source table, or compare "
                      "and repair the row",
                      t.id.ToString(), c->KeyText()));
    for (size_t j = 0; j < missing.size(); ++j)
      c->values[missing[j]] =
          r.IsNull(0, static_cast<int>(j)) ? Datum::Null() : Datum::Text(r.Get(0, static_cast<int>(j)));
    if (!filled_logged_)
      LOG_INFO(
          "table {}: an update left TOASTed values unchanged; they are taken from the target's row (logged once "
          "per partition)",
          t.id.ToString());
    filled_logged_ = true;
    return Status::Ok();
  }

  Result<Change> Cast(const Change& c) {
    Change out = c;
    if (c.table) {
      auto it = casts_->find(c.table->id);
      if (it == casts_->end()) return Internal(fmt::format("table {} has no cast", c.table->id.ToString()));
      ASSIGN_OR_RETURN(const std::vector<int>* map, MapOf(c.table, it->second));
      out.table = it->second.target;
      ASSIGN_OR_RETURN(out.values, Values(c, it->second, *map, c.values));
      ASSIGN_OR_RETURN(out.old, Values(c, it->second, *map, c.old));
      if (out.kind == ChangeKind::kUpdate && out.HasUnchangedValues()) RETURN_IF_ERROR(FillUnchanged(it->second, &out));
    }
    out.truncated.clear();
    for (const auto& t : c.truncated) {
      auto it = casts_->find(t->id);
      if (it == casts_->end()) return Internal(fmt::format("table {} has no cast", t->id.ToString()));
      out.truncated.push_back(it->second.target);
    }
    return out;
  }

  std::unique_ptr<mysql::MyChangeSink> inner_;
  std::shared_ptr<const Casts> casts_;
  const bool null_;
  const std::string target_uri_;
  // Applier thread only.
  std::map<const TableSchema*, std::pair<TablePtr, std::vector<int>>> maps_;
  std::unique_ptr<MyConn> lookup_;
  bool filled_logged_ = false;
};

// What the slot may be told is consumed. With innodb_flush_log_at_trx_commit
// = 1 a commit is on disk when it returns: what the appliers committed. With
// 0 or 2 the log reaches the disk once every innodb_flush_log_at_timeout
// seconds, so a commit is only known durable that long (plus a margin) after
// it returned: the feedback confirms the committed position seen `delay` ago.
class DurableHorizon {
 public:
  explicit DurableHorizon(std::chrono::milliseconds delay) : delay_(delay) {}
  uint64_t operator()(uint64_t committed) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (delay_.count() == 0) return committed;
    if (samples_.empty() || samples_.back().second != committed) samples_.emplace_back(now, committed);
    while (!samples_.empty() && now - samples_.front().first >= delay_) {
      confirmed_ = std::max(confirmed_, samples_.front().second);
      samples_.pop_front();
    }
    return confirmed_;
  }

 private:
  const std::chrono::milliseconds delay_;
  std::mutex mu_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>> samples_;  // guarded by mu_
  uint64_t confirmed_ = 0;                                                          // guarded by mu_
};

// Flushed WAL position of the PostgreSQL source (see engines/postgres/replication_ops.cc FlushedPosition).
Result<uint64_t> FlushedPosition(PgConn& conn) {
  Status st = conn.Exec(
      "BEGIN; SET LOCAL synchronous_commit = on; "
      "SELECT pg_logical_emit_message(true, 'midflight', 'position'); COMMIT");
  if (!st.ok()) (void)conn.Exec("ROLLBACK");
  ASSIGN_OR_RETURN(std::string v, conn.QueryValue(st.ok() ? "SELECT pg_current_wal_flush_lsn()::text"
                                                          : "SELECT pg_current_wal_insert_lsn()::text"));
  ASSIGN_OR_RETURN(PgLsn lsn, PgLsn::Parse(v));
  return lsn.value();
}

// Sets each AUTO_INCREMENT from its PostgreSQL sequence's next value.
Status SyncAutoIncrements(PgConn& src, MyConn& dst, const Casts& casts, const TransformMap& transforms) {
  for (const auto& [id, cast] : casts) {
    auto tr = transforms.find(id);
    for (size_t i = 0; i < cast.columns.size(); ++i) {
      const cross::PgColumnCast& c = cast.columns[i];
      if (!c.auto_increment) continue;
      // A transformed table's column may be renamed: the sequence is the source column's.
      std::string column = c.name;
      if (tr != transforms.end()) {
        const int from = tr->second->SourceColumn(static_cast<size_t>(cast.source_index[i]));
        if (from < 0) continue;
        column = tr->second->source().columns[from].name;
      }
      ASSIGN_OR_RETURN(std::string seq, src.QueryValue("SELECT coalesce(pg_get_serial_sequence($1, $2), '')",
                                                       {pg::QuoteQualified(id.schema, id.name), column}));
      if (seq.empty()) continue;
      ASSIGN_OR_RETURN(std::string next,
                       src.QueryValue(fmt::format(
                           "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {}", seq)));
      RETURN_IF_ERROR(dst.Exec(fmt::format("ALTER TABLE {} AUTO_INCREMENT = {}",
                                           mysql::QuoteQualified(cast.target->id.schema, cast.target->id.name), next))
                          .WithContext(fmt::format("table {} AUTO_INCREMENT", cast.target->id.ToString())));
    }
  }
  return Status::Ok();
}

// The tables `verify` and `compare` read (cross/cross_verify.h), of `casts`
// in `only` (all when null). A transformed table (in `transforms`, by source
// table; PostgreSQL the reference) is verified through its transform
// (cross/canon_sides.h ReshapedToMy): its PostgreSQL rows transformed and
// cast by midflight as the flow does, hashed by MySQL (after the write
// switch the caller turns it round: cross::Reversed). Without `transforms`
// it is named, by its source name, as not verified (not compared).
std::vector<cross::CanonTable> CanonTablesOf(const Casts& casts, const TransformMap* transforms,
                                             const std::map<TableId, TablePtr>* only, const MigrationSpec& spec) {
  std::vector<cross::PgTableCast> list;
  std::vector<TableId> ids;
  for (const auto& [id, cast] : casts) {
    if (only && !only->count(id)) continue;
    list.push_back(cast);
    ids.push_back(id);
  }
  std::vector<cross::CanonTable> out = cross::PgCanonTablesOf(list, spec.casting.out_of_range_null);
  for (size_t i = 0; i < out.size(); ++i) {
    const TableTransformSpec* tr = TransformFor(spec.transforms, ids[i]);
    if (!tr) continue;
    auto bound = transforms ? transforms->find(ids[i]) : TransformMap::const_iterator();
    if (!transforms || bound == transforms->end()) {
      out[i].id = out[i].pg_id = ids[i];
      cross::SkipTransformed(&out[i], tr->where());
      continue;
    }
    auto cast = std::make_shared<const cross::PgTableCast>(casts.at(ids[i]));
    std::shared_ptr<const TableTransform> transform = bound->second;
    const bool out_of_range_null = spec.casting.out_of_range_null;
    auto row = [cast, transform, out_of_range_null](const cross::CanonSide::Row& raw)
        -> Result<std::optional<std::vector<Datum>>> {
      std::vector<Datum> values;
      for (const auto& v : raw) values.push_back(v ? Datum::Text(*v) : Datum::Null());
      ASSIGN_OR_RETURN(std::optional<std::vector<Datum>> shaped, transform->Row(values));
      if (!shaped) return shaped;
      std::vector<std::optional<std::string>> fields;
      for (const Datum& d : *shaped) fields.push_back(d.is_null() ? std::nullopt : std::optional<std::string>(d.text));
      std::vector<Datum> out;
      for (size_t c = 0; c < fields.size() && c < cast->columns.size(); ++c) {
        if (!fields[c]) {
          out.push_back(Datum::Null());
          continue;
        }
        auto v = cross::ToMyText(cast->columns[c], *fields[c], out_of_range_null);
        if (!v.ok())
          return DataLoss(fmt::format("table {} key {} {}", transform->source().id.ToString(),
                                      KeyOf(*cast->target, fields), v.status().message()));
        out.push_back(*v ? Datum::Text(std::move(**v)) : Datum::Null());
      }
      return std::optional<std::vector<Datum>>(std::move(out));
    };
    out[i] = cross::ReshapedToMy(std::move(out[i]), *transform, std::move(row));
    if (!out[i].reshape && out[i].skipped.find(tr->where()) == std::string::npos)
      out[i].skipped += fmt::format(" ({})", tr->where());
  }
  return out;
}

// ---- replication ---------------------------------------------------------------

// Forward PostgreSQL -> MySQL, and, from the first write switch on (operator-
// recorded: `--external`), reverse MySQL -> PostgreSQL (see StartReverse).
// Connections: the monitor's (CurrentPosition, TablesInScope) on the monitor
// thread; the operation's (CommittedPosition, SyncSequences, SwitchChecks,
// StartFlow's reverse) under mu_.
class CrossReplication final : public ReplicationOps {
 public:
  CrossReplication(const MigrationSpec& spec, MigrationRuntime& runtime, StateStore& store, std::string target_db,
                   std::map<TableId, TablePtr> tables, std::shared_ptr<const Casts> casts,
                   std::shared_ptr<const TransformMap> transforms, std::chrono::milliseconds feedback_delay)
      : spec_(spec),
        runtime_(runtime),
        store_(store),
        target_db_(std::move(target_db)),
        tables_(std::move(tables)),
        casts_(std::move(casts)),
        transforms_(std::move(transforms)),
        feedback_delay_(feedback_delay) {}

  Result<StartedFlow> StartFlow(proxy::Side from, const std::vector<TablePtr>&, const ReplicateStart& rs) override {
    if (from != proxy::Side::kSource) return StartReverse(rs);
    pg::StreamConfig sc;
    sc.source_uri = spec_.source;
    sc.slot = spec_.slot_name();
    sc.publication = spec_.publication_name();
    sc.tables = tables_;
    sc.application_name = "midflight-stream-forward";
    // The reverse appliers apply as replication origins midflight_<name>_r<p>:
    // nothing they write on PostgreSQL comes back to MySQL.
    sc.skip_origin_prefix = fmt::format("midflight_{}_", spec_.name);
    // The stream's layouts keep the source's column types (the casting
    // table reads PostgreSQL text forms); a column the MySQL twin lacks stops
    // it. A transformed table's layout is the one its transform was bound to.
    sc.target_columns = [tables = tables_, casts = casts_,
                         transforms = transforms_](const TableId& id) -> Result<std::vector<ColumnSchema>> {
      const TableSchema& t = *tables.at(id);
      std::vector<ColumnSchema> out;
      if (transforms->count(id)) {
        for (int i : t.writable) out.push_back(t.columns[i]);
        return out;
      }
      for (int i : casts->at(id).source_index) out.push_back(t.columns[i]);
      return out;
    };
    auto horizon = std::make_shared<DurableHorizon>(feedback_delay_);
    sc.durable = [horizon](uint64_t committed) { return (*horizon)(committed); };
    FlowOptions fo = FlowOptionsFor("forward", rs);
    fo.filter = rs.filter;
    fo.log_factory = rs.log_factory;
    // Set by a sink that lost its MySQL connection: the target may have lost
    // commits it acknowledged; the flow starts again from its checkpoints.
    auto lost = std::make_shared<std::atomic<bool>>(false);
    // A transformed table's changes reach the casting sink rewritten by the
    // TransformSink, as changes of the transform's target: its cast is
    // found under that name (the cast's PostgreSQL table).
    auto sink_casts = std::make_shared<Casts>();
    for (const auto& [id, cast] : *casts_) (*sink_casts)[cast.source->id] = cast;
    SinkFactory open_sink = [target = spec_.target, db = target_db_, name = spec_.name,
                             casts = std::shared_ptr<const Casts>(sink_casts), transforms = transforms_,
                             null = spec_.casting.out_of_range_null,
                             lost](PartitionId p, const ApplyTracker&) -> Result<std::unique_ptr<ChangeSink>> {
      ASSIGN_OR_RETURN(auto sink, mysql::MyChangeSink::Open(target, db, name, p));
      sink->SetTargetLostFlag(lost.get());
      std::unique_ptr<ChangeSink> cast = std::make_unique<CastingSink>(std::move(sink), casts, null, target);
      if (transforms->empty()) return cast;
      return std::unique_ptr<ChangeSink>(std::make_unique<TransformSink>(std::move(cast), transforms));
    };
    StartedFlow out;
    ASSIGN_OR_RETURN(out.flow,
                     Flow::Start(std::move(fo), std::make_unique<pg::ChangeStream>(std::move(sc)), open_sink));
    out.tables = tables_;
    out.restart = lost;
    Say(fmt::format("replicating: slot {} of {} into MySQL database {}{}", spec_.slot_name(), RedactUri(spec_.source),
                    target_db_,
                    feedback_delay_.count() ? fmt::format(" (slot feedback held {} ms: the target flushes its log "
                                                          "on a timer)",
                                                          feedback_delay_.count())
                                            : ""));
    return out;
  }

  // Forward: PostgreSQL LSNs, which count bytes; reverse: MySQL's binlog,
  // across files with their sizes (read by the monitor with the position).
  uint64_t LagBytes(proxy::Side side, uint64_t current, uint64_t applied) const override {
    if (side == proxy::Side::kSource) return current > applied ? current - applied : 0;
    return my_sizes_.BytesBetween(applied, current);
  }

  // The reverse flow's positions are MySQL binlog positions of the target.
  std::string FormatPositionOf(proxy::Side side, uint64_t pos) const override {
    if (side != proxy::Side::kTarget) return "";
    std::lock_guard<std::mutex> lock(base_mu_);
    return mysql::FormatBinlogPos(base_.empty() ? "binlog" : base_, pos);
  }

  Result<uint64_t> CommittedPosition(proxy::Side side) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (side != proxy::Side::kSource) {
      ASSIGN_OR_RETURN(MyConn * c, MyControl());
      const uint64_t pos = mysql::MasterPosition(*c);
      if (pos == 0) return RetryCall("target: SHOW MASTER STATUS gave no position");
      return pos;
    }
    ASSIGN_OR_RETURN(PgConn * c, PgControl());
    return FlushedPosition(*c);
  }

  uint64_t CurrentPosition(proxy::Side side) override {
    if (side != proxy::Side::kSource) {
      if (!my_monitor_ || my_monitor_->IsBroken()) {
        mysql::ConnOptions o;
        o.program_name = "midflight-monitor";
        auto c = MyConn::Connect(spec_.target, o);
        my_monitor_ = c.ok() ? std::move(*c) : nullptr;
      }
      if (!my_monitor_) return my_last_pos_;
      if (uint64_t pos = mysql::MasterPosition(*my_monitor_)) my_last_pos_ = pos;
      mysql::RefreshBinlogSizes(*my_monitor_, my_last_pos_, my_sizes_);
      return my_last_pos_;
    }
    if (!monitor_ || monitor_->IsBroken()) {
      pg::ConnOptions o;
      o.application_name = "midflight-monitor";
      auto c = PgConn::Connect(spec_.source, o);
      monitor_ = c.ok() ? std::move(*c) : nullptr;
    }
    if (!monitor_) return 0;
    auto v = monitor_->QueryValue("SELECT pg_current_wal_insert_lsn()::text");
    if (!v.ok()) return 0;
    auto lsn = PgLsn::Parse(*v);
    return lsn.ok() ? lsn->value() : 0;
  }

  Result<std::vector<TableId>> TablesInScope() override {
    if (!monitor_ || monitor_->IsBroken()) return RetryCall("source: no monitor connection");
    ASSIGN_OR_RETURN(auto listed, pg::ListUserTables(*monitor_));
    std::vector<TableId> out;
    for (const auto& id : listed)
      if (TableSelected(spec_.tables, spec_.exclude, id)) out.push_back(id);
    return out;
  }

  std::optional<std::pair<double, std::string>> TargetReplicaLag() override { return std::nullopt; }

  // Forward: each AUTO_INCREMENT from its sequence. Back to PostgreSQL (a
  // rollback): each identity or serial sequence past every key in use on
  // either side (PostgreSQL's highest value, MySQL's AUTO_INCREMENT), so
  // the applications' next inserts there take no key the reverse flow wrote.
  Status SyncSequences(proxy::Side from) override {
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(PgConn * src, PgControl());
    ASSIGN_OR_RETURN(MyConn * dst, MyControl());
    if (from == proxy::Side::kSource) return SyncAutoIncrements(*src, *dst, *casts_, *transforms_);
    return SyncPgSequences(*src, *dst);
  }

  std::vector<GateCheck> SwitchChecks(proxy::Side to, bool reverse_needed) override {
    std::vector<GateCheck> out;
    if (to != proxy::Side::kTarget || !reverse_needed) return out;
    // Reverse replication MySQL -> PostgreSQL: what it can carry back, and what it needs.
    if (std::string why = ReverseRefusal(); !why.empty())
      out.push_back(GateFail("reverse replication", why));
    else
      out.push_back(GatePass("reverse replication", "every migrated column can be carried back to PostgreSQL"));
    std::lock_guard<std::mutex> lock(mu_);
    auto my = MyControl();
    if (!my.ok()) {
      out.push_back(GateFail("target", "cannot connect: " + my.status().message()));
    } else if (std::string why = BinlogProblems(**my); !why.empty()) {
      out.push_back(GateFail("target binlog", why));
    } else {
      out.push_back(GatePass("target binlog", "log_bin on, binlog_format ROW, binlog_row_image FULL"));
    }
    auto pg = PgControl();
    if (!pg.ok()) {
      out.push_back(GateFail("source", "cannot connect: " + pg.status().message()));
      return out;
    }
    auto super = (*pg)->QueryValue("SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user");
    if (super.ok() && *super == "true")
      out.push_back(GatePass("source user", "a superuser (applies the reverse stream as a replication origin)"));
    else
      out.push_back(GateFail("source user",
                             "source: reverse replication applies MySQL's changes on PostgreSQL as replication "
                             "origins (so the forward stream skips them) with session_replication_role = replica, "
                             "both superuser-only on PostgreSQL 15: ALTER ROLE <the spec's source user> SUPERUSER"));
    return out;
  }

  // `complete`: the slot and publication on the source; once reverse ran,
  // its replication origins and checkpoints there too.
  std::vector<std::string> CleanUpOnComplete() override {
    std::vector<std::string> done;
    pg::ConnOptions o;
    o.application_name = "midflight-control";
    auto src = PgConn::Connect(spec_.source, o);
    if (!src.ok()) {
      LOG_WARN("complete: cannot connect to the source to clean up: {}", src.status().message());
      return done;
    }
    PgConn& c = **src;
    // A stream session may hold the slot, or an apply session its origin, for a moment after it stops.
    auto retry = [&](const std::string& sql, const std::string& param, const std::string& what) {
      for (int i = 0; i < 50; ++i) {
        if (c.Query(sql, {param}).ok()) {
          done.push_back(what);
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      LOG_WARN("complete: could not drop {}", what);
    };
    retry("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
          spec_.slot_name(), "source: replication slot " + spec_.slot_name() + " dropped");
    if (c.Exec(fmt::format("DROP PUBLICATION IF EXISTS {}", pg::QuoteIdent(spec_.publication_name()))).ok())
      done.push_back("source: publication " + spec_.publication_name() + " dropped");
    if (store_.Get("reverse_start_pos").value_or("").empty()) return done;
    retry("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE $1",
          "midflight\\_" + spec_.name + "\\_%", "source: replication origins midflight_" + spec_.name + "_*");
    auto cleaned = [&]() -> Result<std::string> {
      ASSIGN_OR_RETURN(std::string exists, c.QueryValue("SELECT (to_regclass('midflight.checkpoints') IS NOT NULL)"
                                                        "::text"));
      if (exists != "true") return std::string();
      RETURN_IF_ERROR(c.Query("DELETE FROM midflight.checkpoints WHERE migration = $1", {ReverseKey()}).status());
      ASSIGN_OR_RETURN(std::string left, c.QueryValue("SELECT count(*)::text FROM midflight.checkpoints"));
      if (left != "0") return fmt::format("source: midflight.checkpoints rows of {}", ReverseKey());
      RETURN_IF_ERROR(c.Exec("DROP SCHEMA midflight CASCADE"));
      return fmt::format("source: schema midflight (checkpoints of {})", ReverseKey());
    }();
    if (!cleaned.ok())
      LOG_WARN("complete: removing the reverse checkpoints on the source: {}", cleaned.status().message());
    else if (!cleaned->empty())
      done.push_back(*cleaned);
    return done;
  }

  // Live verification across engines (cross/cross_verify.h): the side the
  // applications write to is the reference (a snapshot and its change-stream
  // position), the other is read once the flow has applied through it.
  // Before the write switch PostgreSQL's repairs are its rows in pgoutput's
  // text forms, which the flow's CastingSink casts like any change; after
  // it MySQL is the reference and repairs into PostgreSQL are not built.
  Result<VerifyOutcome> Verify(proxy::Side reference, Flow& flow, const std::map<TableId, TablePtr>& tables,
                               bool repair, std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
                               const VerifyRun& run) override {
    const bool forward = reference == proxy::Side::kSource;
    if (!forward && repair)
      return OperatorError("verify --repair after switch writes (postgres -> mysql): repairs back into PostgreSQL are "
                           "not built; verify without --repair, then fix the rows named");
    // The reverse flow's tables are MySQL's: the casts start from PostgreSQL's.
    const std::map<TableId, TablePtr>& scope = forward ? tables : tables_;
    for (const auto& [id, t] : scope)
      if (!casts_->count(id)) return Internal(fmt::format("table {} has no cast", id.ToString()));
    auto pg_side = cross::PostgresCanonSide(spec_.source, "source (PostgreSQL)");
    auto my_side = cross::MySqlCanonSide(spec_.target, "target (MySQL)");
    // After the switch a transformed table's PostgreSQL rows are transformed
    // and cast forward as the migration did, and MySQL hashes them against
    // its own rows (cross::Reversed).
    std::vector<cross::CanonTable> canon = CanonTablesOf(*casts_, transforms_.get(), &scope, spec_);
    if (!forward)
      for (auto& c : canon)
        if (c.transformed) c = cross::Reversed(std::move(c), nullptr);
    return cross::CrossVerifyAlong(flow, forward ? *pg_side : *my_side, forward ? *my_side : *pg_side, std::move(canon),
                                   repair, std::move(rows_per_s), stop, spec_.verify.chunk_rows, run);
  }

 private:
  std::string ReverseKey() const { return spec_.name + "/reverse"; }

  Result<PgConn*> PgControl() {
    if (!control_ || control_->IsBroken()) {
      pg::ConnOptions o;
      o.application_name = "midflight-control";
      ASSIGN_OR_RETURN(control_, PgConn::Connect(spec_.source, o));
    }
    return control_.get();
  }
  Result<MyConn*> MyControl() {
    if (!my_control_ || my_control_->IsBroken()) {
      mysql::ConnOptions o;
      o.program_name = "midflight-control";
      ASSIGN_OR_RETURN(my_control_, MyConn::Connect(spec_.target, o));
      // What it writes (AUTO_INCREMENT) is midflight's own: the reverse reader skips it.
      if (Status st = my_control_->Exec("SET SESSION skip_replication = 1"); !st.ok()) {
        my_control_.reset();
        return st.WithContext("target: setting skip_replication (midflight's own writes must be recognisable)");
      }
    }
    return my_control_.get();
  }

  FlowOptions FlowOptionsFor(const char* label, const ReplicateStart& rs) {
    FlowOptions fo;
    fo.label = label;
    fo.partitions = rs.partitions;
    fo.partition_log_bytes = static_cast<size_t>(spec_.partition_log_mb) << 20;
    MigrationRuntime* rt = &runtime_;
    fo.applier.settings = [rt] { return rt->ApplyNow(); };
    fo.applier.throttle = &rt->throttle;
    fo.applier.rate = &rt->apply_rate;
    fo.applier.conflicts = &rt->conflicts;
    return fo;
  }

  // What keeps MySQL's binlog from carrying its changes back ("" when nothing).
  static std::string BinlogProblems(MyConn& my) {
    auto v = my.Query("SELECT @@log_bin, @@binlog_format, @@binlog_row_image");
    if (!v.ok()) return "target: " + v.status().message();
    std::vector<std::string> problems;
    if (v->Get(0, 0) != "1")
      problems.push_back("the binary log is off; start the target with log_bin (binlog_format=ROW, "
                         "binlog_row_image=FULL)");
    if (v->Get(0, 1) != "ROW")
      problems.push_back(fmt::format("binlog_format is {}; SET GLOBAL binlog_format=ROW (and in its configuration)",
                                     v->Get(0, 1)));
    if (v->Get(0, 2) != "FULL")
      problems.push_back(fmt::format("binlog_row_image is {}; set binlog_row_image=FULL", v->Get(0, 2)));
    if (problems.empty()) return "";
    return fmt::format("target: reverse replication (which keeps a rollback possible after the write switch) reads "
                       "MySQL's binlog: {}",
                       fmt::join(problems, "; "));
  }

  // Why MySQL's changes cannot be carried back into the PostgreSQL tables
  // ("" when they can). Refused: a transform with no inverse (core/transform.h
  // Inverse: a filter, a lossy cast), an override's type (no way back to the PostgreSQL type),
  // arrays (their JSON is not cast back yet), and `out_of_range: null`
  // (MySQL holds NULL where PostgreSQL holds a value: a row updated on MySQL
  // would carry the NULL back over it).
  std::string ReverseRefusal() const {
    if (spec_.casting.out_of_range_null)
      return "casting.out_of_range: null stored NULL in MySQL for values it cannot hold; a row updated on MySQL "
             "would carry that NULL back over PostgreSQL's value: keep writes on PostgreSQL";
    if (auto inverse = InverseTransforms(*transforms_); !inverse.ok())
      return inverse.status().message();
    for (const auto& [id, cast] : *casts_)
      for (const auto& c : cast.columns) {
        // A column a transform adds is dropped on the way back, whatever its type.
        if (auto tr = transforms_->find(id); tr != transforms_->end()) {
          const int i = tr->second->target()->ColumnIndex(c.name);
          if (i >= 0 && tr->second->SourceColumn(static_cast<size_t>(i)) < 0) continue;
        }
        if (c.overridden)
          return fmt::format("table {} column {}: casting.columns stores it as {}, which has no way back to its "
                             "PostgreSQL type; keep writes on PostgreSQL",
                             id.ToString(), c.name, c.my_type);
        if (c.conv == cross::PgConv::kArray)
          return fmt::format("table {} column {}: the array travels to MySQL as a JSON array, which is not cast back "
                             "into {} yet; exclude the table or keep writes on PostgreSQL",
                             id.ToString(), c.name, c.source_type.native);
      }
    return "";
  }

  // Each PostgreSQL identity or serial sequence past the highest key of its
  // table on PostgreSQL and past MySQL's AUTO_INCREMENT (never lowered).
  Status SyncPgSequences(PgConn& src, MyConn& dst) {
    std::vector<TablePtr> list;
    for (const auto& [id, t] : tables_) list.push_back(t);
    ASSIGN_OR_RETURN(auto facts, LoadFacts(src, list));
    for (const auto& [id, f] : facts) {
      if (f.identity.empty()) continue;
      const std::string table = pg::QuoteQualified(id.schema, id.name);
      ASSIGN_OR_RETURN(std::string seq,
                       src.QueryValue("SELECT coalesce(pg_get_serial_sequence($1, $2), '')", {table, f.identity}));
      if (seq.empty()) continue;
      ASSIGN_OR_RETURN(PgResult r, src.Query(fmt::format(
          "SELECT coalesce(max({})::text, ''), (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END "
          "FROM {})::text FROM {}",
          pg::QuoteIdent(f.identity), seq, table)));
      int64_t top = 0, next = 0;
      if (!r.GetString(0, 0).empty() && !ParseI64(r.GetString(0, 0), &top))
        return DataLoss(fmt::format("table {}: max({}) is '{}', not an integer", id.ToString(), f.identity,
                                    r.GetString(0, 0)));
      (void)ParseI64(r.GetString(0, 1), &next);
      // The MySQL table under its transformed name, if a transform renamed it.
      std::string my_schema = target_db_, my_name = id.name;
      if (auto c = casts_->find(id); c != casts_->end() && c->second.target) {
        my_schema = c->second.target->id.schema;
        my_name = c->second.target->id.name;
      }
      ASSIGN_OR_RETURN(std::string ai, dst.QueryValue(fmt::format(
          "SELECT COALESCE(MAX(AUTO_INCREMENT), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND "
          "TABLE_NAME = {}",
          mysql::QuoteString(my_schema), mysql::QuoteString(my_name))));
      int64_t my_next = 0;
      if (ParseI64(ai, &my_next)) top = std::max(top, my_next - 1);
      if (top < next) continue;
      RETURN_IF_ERROR(src.Query("SELECT setval($1::regclass, $2::bigint)", {seq, std::to_string(top)})
                          .status()
                          .WithContext(fmt::format("table {} sequence {}", id.ToString(), seq)));
      LOG_INFO("table {}: sequence {} set past {} (the highest key in use)", id.ToString(), seq, top);
    }
    return Status::Ok();
  }

  // Reverse: MySQL (the migration's target) -> the PostgreSQL source, once
  // the first write switch asks for it. The target's binlog is read from
  // its position at that first start (kept in the state store: nothing the
  // applications wrote there is older); the reader skips the forward
  // appliers' transactions (skip_replication). Each change crosses
  // my_to_pg's casting table (ToPgText) into the original PostgreSQL table,
  // applied as replication origin midflight_<name>_r<p>, which the forward
  // stream skips. Checkpoints: <name>/reverse in PostgreSQL's midflight schema.
  Result<StartedFlow> StartReverse(const ReplicateStart& rs) {
    if (std::string why = ReverseRefusal(); !why.empty())
      return OperatorError("reverse replication MySQL -> PostgreSQL cannot start: " + why);
    std::lock_guard<std::mutex> lock(mu_);
    // MySQL change -> the PostgreSQL shape the transform gave the table ->
    // the inverse transform -> the PostgreSQL table's carried columns.
    ASSIGN_OR_RETURN(PgConn * source, PgControl());
    const DefaultedColumns defaulted = [source](const TableSchema& t) { return pg::ColumnsWithDefault(*source, t.id); };
    auto inverse_map = InverseTransforms(*transforms_, {}, defaulted);
    if (!inverse_map.ok())
      return OperatorError("reverse replication MySQL -> PostgreSQL cannot start: " + inverse_map.status().message());
    auto inverse = std::make_shared<const TransformMap>(std::move(*inverse_map));
    ASSIGN_OR_RETURN(MyConn * my, MyControl());
    if (std::string why = BinlogProblems(*my); !why.empty())
      return OperatorError("reverse replication MySQL -> PostgreSQL cannot start: " + why);
    std::string base;
    const uint64_t now = mysql::MasterPosition(*my, &base);
    if (now == 0) return OperatorError("target: SHOW MASTER STATUS is empty; is log_bin on?");
    {
      std::lock_guard<std::mutex> b(base_mu_);
      base_ = base;
    }
    uint64_t start = 0;
    if (auto saved = store_.Get("reverse_start_pos"); saved && !saved->empty()) {
      if (!ParseU64(*saved, &start))
        return Internal(fmt::format("state store: reverse_start_pos '{}' is not a position", *saved));
    } else {
      start = now;
      RETURN_IF_ERROR(store_.Put("reverse_start_pos", std::to_string(start)));
    }
    ASSIGN_OR_RETURN(PgConn * pg, PgControl());
    // The reverse checkpoints live next to the data they cover: on PostgreSQL.
    RETURN_IF_ERROR(pg::EnsureBookkeeping(*pg).WithContext("source: reverse checkpoints"));
    ASSIGN_OR_RETURN(auto casts, ReverseCasts(*my));
    std::map<TableId, TablePtr> from;
    for (const auto& [id, cast] : *casts) from[id] = cast.source;

    mysql::StreamConfig config;
    config.source_uri = spec_.target;
    config.binlog_base = base;
    const std::string seed = spec_.name + "/reverse";
    config.server_id = 0x40000000u | static_cast<uint32_t>(XXH64(seed.data(), seed.size(), 7) & 0x3fffffff);
    config.tables = from;
    // Schema changes are not translated across engines: a DDL statement that
    // changes a migrated table's columns stops the stream once everything
    // before it is applied; one that leaves them alone (an ALTER TABLE ...
    // AUTO_INCREMENT of the operator's) is passed over.
    auto reload = [uri = spec_.target, db = target_db_](const TableId& id) -> Result<TablePtr> {
      mysql::ConnOptions o;
      o.program_name = "midflight-control";
      ASSIGN_OR_RETURN(auto c, MyConn::Connect(uri, o));
      ASSIGN_OR_RETURN(auto listed, mysql::LoadTables(*c, db, {db + "." + id.name}, {}));
      if (listed.size() != 1) return OperatorError(fmt::format("table {} is gone from MySQL", id.ToString()));
      return listed.front();
    };
    config.target_differs = [reload, from](const TableId& id) -> Result<std::string> {
      ASSIGN_OR_RETURN(TablePtr now, reload(id));
      const TableSchema& was = *from.at(id);
      bool same = now->columns.size() == was.columns.size();
      for (size_t i = 0; same && i < was.columns.size(); ++i)
        same = now->columns[i].name == was.columns[i].name && now->columns[i].type.native == was.columns[i].type.native;
      if (same) return std::string();
      return fmt::format("schema changes are not carried from MySQL back to PostgreSQL; apply the change to {} on "
                         "PostgreSQL by hand, or keep writes on PostgreSQL",
                         id.ToString());
    };
    config.reload_table = reload;
    FlowOptions fo = FlowOptionsFor("reverse", rs);
    // Every partition's checkpoint is on PostgreSQL; the sequencer skips
    // what each one holds.
    fo.start = start;
    // Test-only: a kill -9 after a batch and its checkpoint committed on
    // PostgreSQL (tests/integration/cross_reverse_pg_to_my_crash.sh).
    fo.applier.on_committed = [](uint64_t n) { CrashPoint("reverse-batch-committed", static_cast<int64_t>(n)); };
    MigrationRuntime* rt = &runtime_;
    SinkFactory open_sink = [uri = spec_.source, key = ReverseKey(), name = spec_.name, casts, inverse,
                             rt](PartitionId p, const ApplyTracker&) -> Result<std::unique_ptr<ChangeSink>> {
      ASSIGN_OR_RETURN(auto sink, pg::PgChangeSink::Open(uri, key, p, fmt::format("midflight_{}_r{}", name, p.value)));
      sink->SetLockTimeoutSource([rt] { return rt->knobs.Int(Knob::kLockTimeoutMs); });
      std::unique_ptr<ChangeSink> into = std::move(sink);
      if (!inverse->empty()) into = std::make_unique<TransformSink>(std::move(into), inverse);
      return cross::NewPgCastingSink(std::move(into), casts);
    };
    StartedFlow out;
    ASSIGN_OR_RETURN(out.flow, Flow::Start(std::move(fo), std::make_unique<mysql::ChangeStream>(std::move(config)),
                                           open_sink));
    out.tables = from;
    Say(fmt::format("reverse replication: binlog of {} from {} into PostgreSQL {} (skipping midflight's own, "
                    "flagged skip_replication)",
                    RedactUri(spec_.target), mysql::FormatBinlogPos(base, start), RedactUri(spec_.source)));
    return out;
  }

  // The casts of the MySQL tables (as the target's catalog has them: the
  // binlog reader's layouts) back into the original PostgreSQL tables, keyed
  // by MySQL table. my_to_pg's per-column conversion of each MySQL column,
  // adjusted to the PostgreSQL type it came from: TINYINT(1) as boolean,
  // DATETIME holding UTC as timestamptz, DECIMAL(65,30) without its trailing
  // zeros for a numeric without scale. The values keep their order: the
  // twin's columns are the PostgreSQL table's writable ones (generated
  // columns left to PostgreSQL).
  Result<std::shared_ptr<const std::map<TableId, cross::TableCast>>> ReverseCasts(MyConn& my) {
    ASSIGN_OR_RETURN(auto listed, mysql::LoadTables(my, target_db_, {}, {}));
    std::map<std::string, TablePtr> by_name;
    for (const auto& t : listed) by_name[t->id.name] = t;
    cross::CastOptions options;
    options.tinyint1_boolean = true;
    auto out = std::make_shared<std::map<TableId, cross::TableCast>>();
    for (const auto& [id, fwd] : *casts_) {
      auto m = by_name.find(fwd.target->id.name);
      if (m == by_name.end())
        return OperatorError(fmt::format("reverse replication: table {} is gone from MySQL database {}; were some "
                                         "dropped or renamed?",
                                         fwd.target->id.name, target_db_));
      const TableSchema& my_table = *m->second;
      // A transformed table's changes come back as its transform left it
      // (PostgreSQL-typed); its inverse (open_sink) takes them on to the table.
      auto tr = transforms_->find(id);
      const TablePtr& pg_table = tr == transforms_->end() ? tables_.at(id) : tr->second->target();
      std::vector<std::string> want, have;
      for (const auto& c : fwd.columns) want.push_back(c.name);
      for (const auto& c : my_table.columns) have.push_back(c.name);
      if (want != have || fwd.source_index != pg_table->writable)
        return OperatorError(fmt::format("reverse replication: table {} has columns ({}) in MySQL, not the ({}) it "
                                         "was created with; make them match, or keep writes on PostgreSQL",
                                         my_table.id.ToString(), fmt::join(have, ", "), fmt::join(want, ", ")));
      options.target_schema = id.schema;
      ASSIGN_OR_RETURN(cross::TableCast cast, cross::CastTable(my_table, {}, options));
      for (size_t i = 0; i < cast.columns.size(); ++i) {
        const ColumnType& pg_type = pg_table->columns[fwd.source_index[i]].type;
        cross::ColumnCast& c = cast.columns[i];
        if (pg_type.kind == TypeKind::kTimestamp && pg_type.with_zone) c.conv = cross::Conv::kTimestamp;
        if (c.conv == cross::Conv::kDecimal && pg_type.scale < 0) c.trim_zeros = true;
      }
      cast.source = m->second;
      cast.target = pg_table;
      (*out)[m->second->id] = std::move(cast);
    }
    return std::shared_ptr<const std::map<TableId, cross::TableCast>>(out);
  }

  const MigrationSpec& spec_;
  MigrationRuntime& runtime_;
  StateStore& store_;
  const std::string target_db_;
  const std::map<TableId, TablePtr> tables_;
  const std::shared_ptr<const Casts> casts_;              // by source table
  const std::shared_ptr<const TransformMap> transforms_;  // by source table
  const std::chrono::milliseconds feedback_delay_;
  std::mutex mu_;
  std::unique_ptr<PgConn> control_;     // guarded by mu_
  std::unique_ptr<MyConn> my_control_;  // guarded by mu_
  mutable std::mutex base_mu_;
  std::string base_;                    // the target's binlog base name; guarded by base_mu_
  std::unique_ptr<PgConn> monitor_;     // monitor thread only
  std::unique_ptr<MyConn> my_monitor_;  // monitor thread only
  uint64_t my_last_pos_ = 0;            // monitor thread only
  mysql::BinlogSizes my_sizes_;        // MySQL's binlog files (the reverse lag); self-synchronised
};

// ---- the engine ------------------------------------------------------------------

class PgToMyEngine final : public Engine {
 public:
  PgToMyEngine(const MigrationSpec& spec, MigrationRuntime& runtime, StateStore& store)
      : spec_(spec), store_(store), runtime_(runtime) {
    runtime_.conflicts.LoadOnce(store_.Get("conflicts").value_or("{}"));
  }

  std::string_view name() const override { return "postgres-to-mysql"; }
  Status Preflight(bool fresh, std::vector<std::string>* problems) override;
  const std::vector<TablePtr>& tables() const override { return tables_; }
  std::string Sides() const override {
    return fmt::format("reading PostgreSQL {}, writing MySQL {}", RedactUri(spec_.source), RedactUri(spec_.target));
  }
  std::vector<std::pair<std::string, std::string>> InitialState() const override {
    return {{"source", RedactUri(spec_.source)}, {"target", RedactUri(spec_.target)}};
  }
  std::string TableProblem(const TableSchema& t) const override {
    if (!t.key.empty()) return "";
    return fmt::format(
        "table {} has no primary key and no replica identity index, so its updates and deletes "
        "cannot be matched in MySQL: add a primary key, or add it to exclude",
        t.id.ToString());
  }
  Status CreateSchema() override;
  Result<std::vector<Chunk>> PlanChunks(int64_t chunk_rows) override {
    RETURN_IF_ERROR(ReconnectControl());
    return pg::PlanChunks(*src_, tables_, chunk_rows);
  }
  Result<DoneChunks> LoadDoneChunks() override;
  Status PrepareCopy(const std::vector<Chunk>& plan, DoneChunks* done, bool todo) override;
  Status CopyChunks(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                    std::function<void(int)> on_chunk_committed) override;
  Status FinishSchema() override;
  ReplicationOps& Replication() override {
    if (!repl_)
      repl_ = std::make_unique<CrossReplication>(spec_, runtime_, store_, target_db_, by_id_, casts_, transforms_,
                                                 feedback_delay_);
    return *repl_;
  }
  std::string FormatPosition(uint64_t pos) const override { return PgLsn::FromU64(pos).ToString(); }

 private:
  Status ReconnectControl() {
    if (!src_ || src_->IsBroken() || !src_->Exec("SELECT 1").ok()) {
      pg::ConnOptions o;
      o.application_name = "midflight-control";
      ASSIGN_OR_RETURN(src_, PgConn::Connect(spec_.source, o));
    }
    if (!dst_ || dst_->IsBroken() || !dst_->Exec("SELECT 1").ok()) {
      mysql::ConnOptions o;
      o.program_name = "midflight-control";
      ASSIGN_OR_RETURN(dst_, MyConn::Connect(spec_.target, o));
    }
    return Status::Ok();
  }

  const MigrationSpec& spec_;
  StateStore& store_;
  MigrationRuntime& runtime_;
  std::string target_db_;
  std::unique_ptr<PgConn> src_;
  std::unique_ptr<MyConn> dst_;
  std::vector<TablePtr> tables_;
  std::map<TableId, TablePtr> by_id_;
  std::shared_ptr<Casts> casts_ = std::make_shared<Casts>();                      // by source table
  std::shared_ptr<TransformMap> transforms_ = std::make_shared<TransformMap>();  // by source table
  std::chrono::milliseconds feedback_delay_{0};
  int64_t max_row_bytes_ = 0;
  bool have_slot_ = false;
  std::unique_ptr<CrossReplication> repl_;

  // One pass of the copy workers over `chunks` from one snapshot.
  Status CopyRound(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                   std::function<void(int)> on_chunk_committed);
  // Empties table `id` on the target and forgets its copied chunks, in one
  // transaction: a table not split by key value is copied again whole.
  Status EmptyForCopyAgain(const TableId& id) {
    const cross::PgTableCast& cast = casts_->at(id);
    return mysql::EmptyForCopyAgain(*dst_, spec_.name, id, cast.target->id);
  }
};

Status PgToMyEngine::Preflight(bool fresh, std::vector<std::string>* problems) {
  pg::ConnOptions po;
  po.application_name = "midflight-control";
  auto src = PgConn::Connect(spec_.source, po);
  if (!src.ok()) problems->push_back("source: " + src.status().message());
  mysql::ConnOptions mo;
  mo.program_name = "midflight-control";
  auto dst = MyConn::Connect(spec_.target, mo);
  if (!dst.ok()) problems->push_back("target: " + dst.status().message());
  if (!problems->empty()) return Status::Ok();
  src_ = std::move(*src);
  dst_ = std::move(*dst);
  ASSIGN_OR_RETURN(auto tu, mysql::ParseMyUri(spec_.target));
  target_db_ = tu.database;
  if (target_db_.empty()) problems->push_back("target: the URI names no database (mysql://user@host:port/DATABASE)");

  // The source side: as a PostgreSQL -> PostgreSQL migration's.
  ASSIGN_OR_RETURN(std::string wal_level, src_->QueryValue("SHOW wal_level"));
  if (wal_level != "logical")
    problems->push_back(
        fmt::format("source: wal_level is '{}'; set wal_level = logical in postgresql.conf and "
                    "restart the source server",
                    wal_level));
  ASSIGN_OR_RETURN(std::string encoding, src_->QueryValue("SHOW server_encoding"));
  if (encoding != "UTF8")
    problems->push_back(
        fmt::format("source: the database's encoding is {}; its text goes to MySQL as utf8mb4, so "
                    "only UTF8 databases are migrated",
                    encoding));
  ASSIGN_OR_RETURN(
      std::string can_replicate,
      src_->QueryValue("SELECT (rolsuper OR rolreplication)::text FROM pg_roles WHERE rolname = current_user"));
  if (can_replicate != "true")
    problems->push_back(
        "source: the connecting role lacks the REPLICATION attribute; run ALTER ROLE <user> REPLICATION");
  ASSIGN_OR_RETURN(
      PgResult slots,
      src_->Query("SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots), "
                  "EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1), "
                  "EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $2)",
                  {spec_.slot_name(), spec_.publication_name()}));
  const bool have_slot = slots.GetBool(0, 1);
  if (!have_slot && slots.GetInt(0, 0) < 2)  // the slot, and a temporary one when a copy resumes
    problems->push_back(
        "source: fewer than 2 free replication slots (max_replication_slots); raise it or drop an "
        "unused slot");
  if (fresh && (have_slot || slots.GetBool(0, 2)))
    problems->push_back(
        fmt::format("source: replication slot or publication {} already exists, so another migration "
                    "named {} uses this source; give this migration another name, or drop them if "
                    "that migration is gone",
                    spec_.slot_name(), spec_.name));

  // The target side: as a MySQL -> MySQL migration's.
  ASSIGN_OR_RETURN(MyResult vars, dst_->Query("SELECT @@local_infile, @@innodb_flush_log_at_trx_commit, "
                                              "@@innodb_flush_log_at_timeout, VERSION()"));
  if (vars.Get(0, 0) != "1")
    problems->push_back(
        "target: local_infile is OFF; the copy loads rows with LOAD DATA LOCAL INFILE: SET GLOBAL "
        "local_infile = ON (and in the server's configuration)");
  const bool mariadb = vars.Get(0, 3).find("MariaDB") != std::string::npos;
  feedback_delay_ = mysql::CommitDurableAfter(vars.Get(0, 1), vars.Get(0, 2));
  if (feedback_delay_.count() > 0) {
    LOG_INFO(
        "target: innodb_flush_log_at_trx_commit = {}: the slot is told a position {} ms after the target "
        "committed it",
        vars.Get(0, 1), feedback_delay_.count());
  }
  max_row_bytes_ = spec_.max_row_bytes > 0 ? spec_.max_row_bytes : 0;

  auto tables = pg::LoadTables(*src_, spec_.tables, spec_.exclude);
  if (!tables.ok()) return tables.status().WithContext("source catalog");
  tables_ = *tables;
  by_id_.clear();
  for (const auto& t : tables_) by_id_[t->id] = t;
  ASSIGN_OR_RETURN(auto facts, LoadFacts(*src_, tables_));
  *transforms_ = BindAll(spec_, tables_, problems);
  *casts_ = CastAll(tables_, *transforms_, facts, OptionsOf(spec_, target_db_, mariadb), problems);

  if (fresh && !target_db_.empty()) {
    ASSIGN_OR_RETURN(
        MyResult existing,
        dst_->Query(fmt::format("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} ORDER BY 1",
                                mysql::QuoteString(target_db_))));
    if (existing.rows() > 0 && !spec_.allow_nonempty_target)
      problems->push_back(fmt::format(
          "target is not empty: database {} already has table {}{}; use an empty "
          "database, or set allow_nonempty_target: true",
          target_db_, existing.Get(0, 0), existing.rows() > 1 ? fmt::format(" and {} more", existing.rows() - 1) : ""));
  }
  // One owner per migration and target: a named lock held by this session.
  ASSIGN_OR_RETURN(std::string locked,
                   dst_->QueryValue(fmt::format(
                       "SELECT GET_LOCK({}, 0)",
                       mysql::QuoteString(fmt::format("midflight:{}:{}", spec_.name, target_db_).substr(0, 64)))));
  if (locked != "1")
    problems->push_back(
        fmt::format("another midflight process is already running migration {} into this target", spec_.name));
  repl_.reset();
  (void)Replication();
  return Status::Ok();
}

Status PgToMyEngine::CreateSchema() {
  RETURN_IF_ERROR(ReconnectControl());
  RETURN_IF_ERROR(mysql::EnsureBookkeeping(*dst_));
  int flagged = 0;
  for (const auto& [id, cast] : *casts_) {
    RETURN_IF_ERROR(
        dst_->Exec(cross::CreateMyTableSql(cast)).WithContext("creating table " + cast.target->id.ToString()));
    for (const auto& c : cast.columns) flagged += c.notes.empty() ? 0 : 1;
  }
  Say(
      fmt::format("schema: {} tables created in MySQL database {} through the casting table ({} columns flagged; "
                  "`midflight schema SPEC --dry-run` lists them; secondary indexes follow the copy)",
                  casts_->size(), target_db_, flagged));
  return Status::Ok();
}

Result<DoneChunks> PgToMyEngine::LoadDoneChunks() {
  RETURN_IF_ERROR(ReconnectControl());
  RETURN_IF_ERROR(mysql::EnsureBookkeeping(*dst_));
  return mysql::LoadChunkRecords(*dst_, spec_.name, PositionKind::kPgLsn);
}

Status PgToMyEngine::PrepareCopy(const std::vector<Chunk>& plan, DoneChunks* done, bool todo) {
  RETURN_IF_ERROR(ReconnectControl());
  ASSIGN_OR_RETURN(PgResult pub,
                   src_->Query("SELECT 1 FROM pg_publication WHERE pubname = $1", {spec_.publication_name()}));
  if (pub.rows() == 0) {
    std::vector<std::string> names;
    for (const auto& t : tables_) names.push_back(pg::QuoteQualified(t->id.schema, t->id.name));
    RETURN_IF_ERROR(
        src_->Exec(fmt::format("CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
                               pg::QuoteIdent(spec_.publication_name()), fmt::join(names, ", "))));
  }
  // Tables copied from one snapshot as a whole (not split by key value) and
  // left half-copied start over (engines/postgres/README.md).
  std::map<TableId, int> total, finished;
  std::set<TableId> by_value;
  for (const auto& c : plan) {
    ++total[c.table];
    if (done->count({c.table.ToString(), c.number})) ++finished[c.table];
    if (c.kind == Chunk::Kind::kIntRange) by_value.insert(c.table);
  }
  for (const auto& [id, n] : total) {
    const int f = finished[id];
    if (f == 0 || f == n || by_value.count(id)) continue;
    Say(fmt::format("copying: {} was partly copied from an older snapshot; copying it again whole", id.ToString()));
    RETURN_IF_ERROR(EmptyForCopyAgain(id));
    for (auto it = done->begin(); it != done->end();)
      it = it->first.first == id.ToString() ? done->erase(it) : std::next(it);
    todo = true;
  }
  ASSIGN_OR_RETURN(PgResult slot,
                   src_->Query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {spec_.slot_name()}));
  have_slot_ = slot.rows() > 0;
  if (!have_slot_ && !done->empty())
    return DataLoss(
        fmt::format("replication slot {} is gone from the source, so the changes made since the copy "
                    "began are lost; abort this migration and start a new one",
                    spec_.slot_name()));
  if (!have_slot_ && !todo)
    return DataLoss(fmt::format("replication slot {} is missing on the source", spec_.slot_name()));
  return Status::Ok();
}

// A target that does not flush every commit may lose chunks it acknowledged:
// they are copied again, from a newer snapshot (engines/mysql/durable_copy.h).
Status PgToMyEngine::CopyChunks(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                                std::function<void(int)> on_chunk_committed) {
  mysql::DurableCopy how;
  how.delay = feedback_delay_;
  how.knobs = &runtime_.knobs;
  how.copy_round = [&](std::vector<Chunk> round) {
    RETURN_IF_ERROR(CopyRound(std::move(round), progress, stop, on_chunk_committed));
    have_slot_ = true;  // a later round resumes from a temporary slot's snapshot
    return Status::Ok();
  };
  how.load_done = [this] { return LoadDoneChunks(); };
  how.empty_table = [this](const TableId& id) { return EmptyForCopyAgain(id); };
  return mysql::CopyUntilDurable(how, std::move(chunks), progress, stop);
}

Status PgToMyEngine::CopyRound(std::vector<Chunk> chunks, CopyProgress& progress, const std::atomic<bool>& stop,
                               std::function<void(int)> on_chunk_committed) {
  pg::CopyJob job;
  job.source_uri = spec_.source;
  job.migration = spec_.name;
  job.workers = spec_.copy_workers;
  job.knobs = &runtime_.knobs;
  job.rate = &runtime_.copy_rate;
  job.throttle = &runtime_.throttle;
  job.tables = by_id_;
  job.chunks = std::move(chunks);
  job.on_chunk_committed = std::move(on_chunk_committed);
  job.open_target = [uri = spec_.target, name = spec_.name, casts = std::shared_ptr<const Casts>(casts_),
                     transforms = std::shared_ptr<const TransformMap>(transforms_),
                     null = spec_.casting.out_of_range_null,
                     max = max_row_bytes_]() -> Result<std::unique_ptr<pg::ChunkTarget>> {
    mysql::ConnOptions o;
    o.program_name = "midflight-copy";
    o.local_infile = true;
    ASSIGN_OR_RETURN(auto conn, MyConn::Connect(uri, o));
    // @midflight_apply: the target's triggers stay quiet on midflight's sessions.
    RETURN_IF_ERROR(conn->Exec("SET foreign_key_checks = 0, unique_checks = 0, autocommit = 0, @midflight_apply = 1"));
    return std::unique_ptr<pg::ChunkTarget>(
        std::make_unique<MyChunkTarget>(std::move(conn), name, casts, transforms, null, max));
  };
  // The slot (first run) or a temporary one (a resumed copy) exports the
  // snapshot every worker imports (engines/postgres/README.md).
  pg::ConnOptions ro;
  ro.kind = pg::ConnKind::kReplication;
  ro.application_name = "midflight-snapshot";
  ASSIGN_OR_RETURN(std::unique_ptr<PgConn> repl, PgConn::Connect(spec_.source, ro));
  const std::string cmd = have_slot_
                              ? fmt::format("CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT",
                                            pg::QuoteIdent(fmt::format("{}_r{}", spec_.slot_name(), getpid())))
                              : fmt::format("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT",
                                            pg::QuoteIdent(spec_.slot_name()));
  PgResult created(PQexec(repl->raw(), cmd.c_str()));
  if (PQresultStatus(created.raw()) != PGRES_TUPLES_OK)
    return pg::StatusFromResult(repl->raw(), created.raw(), "creating replication slot " + spec_.slot_name());
  ASSIGN_OR_RETURN(job.snapshot_lsn, PgLsn::Parse(created.Get(0, 1)));
  job.snapshot_name = created.GetString(0, 2);
  if (!have_slot_) RETURN_IF_ERROR(store_.Put("slot_lsn", job.snapshot_lsn.ToString()));
  Say(fmt::format("copying: {} chunks with {} workers from the snapshot at {}{}, cast into MySQL", job.chunks.size(),
                  runtime_.knobs.Int(Knob::kParallelism), job.snapshot_lsn.ToString(),
                  have_slot_ ? " (a newer snapshot: resuming)" : ""));
  return pg::CopyChunks(job, progress, stop, [&] { repl.reset(); });
}

Status PgToMyEngine::FinishSchema() {
  Say("schema: building secondary indexes and carrying sequence values to AUTO_INCREMENT");
  CrashPoint("before-post-data");
  RETURN_IF_ERROR(ReconnectControl());
  // Plain column indexes (no expression, no predicate); the others are named and left.
  ASSIGN_OR_RETURN(PgResult idx, src_->Query(R"sql(
SELECT n.nspname, c.relname, ic.relname, i.indisunique,
       i.indexprs IS NULL AND i.indpred IS NULL AND am.amname = 'btree',
       array_to_string(ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
                             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord),
                       chr(31))
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
 WHERE i.indrelid = ANY($1::oid[]) AND NOT i.indisprimary AND NOT (i.indisreplident AND NOT i.indisprimary
   AND NOT EXISTS (SELECT 1 FROM pg_index p WHERE p.indrelid = i.indrelid AND p.indisprimary))
 ORDER BY 1, 2, 3)sql",
                                             {OidList(tables_)}));
  ASSIGN_OR_RETURN(
      MyResult have,
      dst_->Query(fmt::format(
          "SELECT DISTINCT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {}",
          mysql::QuoteString(target_db_))));
  std::set<std::pair<std::string, std::string>> existing;
  for (int i = 0; i < have.rows(); ++i) existing.insert({have.Get(i, 0), have.Get(i, 1)});
  int built = 0;
  for (int i = 0; i < idx.rows(); ++i) {
    const TableId id{idx.GetString(i, 0), idx.GetString(i, 1)};
    const std::string name = idx.GetString(i, 2).substr(0, 64);
    auto it = casts_->find(id);
    if (it == casts_->end() || existing.count({id.name, name})) continue;
    if (transforms_->count(id)) {
      LOG_WARN("table {}: index {} not built in MySQL (the table is transformed: it gets its primary key only)",
               id.ToString(), name);
      continue;
    }
    std::vector<std::string> cols;
    bool usable = idx.GetBool(i, 4);
    std::string_view list = idx.Get(i, 5);
    for (size_t s = 0; usable && s <= list.size();) {
      size_t e = list.find('\x1f', s);
      if (e == std::string_view::npos) e = list.size();
      const std::string col(list.substr(s, e - s));
      const int ci = it->second.target->ColumnIndex(col);
      // LONGTEXT, LONGBLOB and JSON need a prefix length in a MySQL index.
      if (ci < 0 || it->second.target->columns[ci].type.native_base.starts_with("long") ||
          it->second.target->columns[ci].type.native_base == "json")
        usable = false;
      cols.push_back(mysql::QuoteIdent(col));
      s = e + 1;
    }
    if (!usable) {
      LOG_WARN(
          "table {}: index {} not built in MySQL (an expression, a predicate, a method other than btree, or a "
          "column MySQL indexes only by prefix)",
          id.ToString(), name);
      continue;
    }
    RETURN_IF_ERROR(
        dst_->Exec(fmt::format("CREATE {}INDEX {} ON {} ({})", idx.GetBool(i, 3) ? "UNIQUE " : "",
                               mysql::QuoteIdent(name), mysql::QuoteQualified(target_db_, it->second.target->id.name),
                               fmt::join(cols, ", ")))
            .WithContext(fmt::format("index {} of table {}", name, id.ToString())));
    ++built;
  }
  RETURN_IF_ERROR(SyncAutoIncrements(*src_, *dst_, *casts_, *transforms_));
  Say(fmt::format("schema: {} secondary indexes built", built));
  return Status::Ok();
}

// What a command without a migration (compare, schema --dry-run) reads of
// the source: the tables, their transforms and their casts.
struct SourcePlan {
  std::vector<TablePtr> tables;
  TransformMap transforms;
  Casts casts;
};
Result<SourcePlan> PlanOf(const MigrationSpec& spec, PgConn& src, const std::string& target_db, bool mariadb) {
  SourcePlan out;
  ASSIGN_OR_RETURN(out.tables, pg::LoadTables(src, spec.tables, spec.exclude));
  ASSIGN_OR_RETURN(auto facts, LoadFacts(src, out.tables));
  std::vector<std::string> problems;
  out.transforms = BindAll(spec, out.tables, &problems);
  out.casts = CastAll(out.tables, out.transforms, facts, OptionsOf(spec, target_db, mariadb), &problems);
  if (!problems.empty()) return InvalidArgument(problems.front());
  return out;
}

class PgToMyKind final : public EngineKind {
 public:
  std::string_view name() const override { return "postgres-to-mysql"; }
  std::unique_ptr<Engine> New(const MigrationSpec& spec, MigrationRuntime& runtime, StateStore& store) const override {
    return std::make_unique<PgToMyEngine>(spec, runtime, store);
  }
  Result<std::string> CleanUpAbort(const MigrationSpec& spec) const override {
    pg::ConnOptions o;
    o.application_name = "midflight-abort";
    ASSIGN_OR_RETURN(auto src, PgConn::Connect(spec.source, o));
    RETURN_IF_ERROR(src->Query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 "
                               "AND active_pid IS NOT NULL",
                               {spec.slot_name()})
                        .status());
    for (int i = 0; i < 50; ++i) {
      auto r = src->Query(
          "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 "
          "AND NOT active",
          {spec.slot_name()});
      ASSIGN_OR_RETURN(PgResult left,
                       src->Query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {spec.slot_name()}));
      if (r.ok() && left.rows() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    RETURN_IF_ERROR(src->Exec(fmt::format("DROP PUBLICATION IF EXISTS {}", pg::QuoteIdent(spec.publication_name()))));
    return std::string("slot and publication dropped on the source");
  }
  // Both servers hash every row's canonical form (cross/cross_verify.h CrossCompare).
  Result<std::vector<TableComparison>> Compare(const MigrationSpec& spec) const override {
    pg::ConnOptions o;
    o.application_name = "midflight-compare";
    ASSIGN_OR_RETURN(auto src, PgConn::Connect(spec.source, o));
    ASSIGN_OR_RETURN(auto tu, mysql::ParseMyUri(spec.target));
    mysql::ConnOptions mo;
    mo.program_name = "midflight-compare";
    ASSIGN_OR_RETURN(auto dst, MyConn::Connect(spec.target, mo));
    ASSIGN_OR_RETURN(std::string version, dst->QueryValue("SELECT VERSION()"));
    ASSIGN_OR_RETURN(SourcePlan plan, PlanOf(spec, *src, tu.database, version.find("MariaDB") != std::string::npos));
    auto source = cross::PostgresCanonSide(spec.source, "source (PostgreSQL)");
    auto target = cross::MySqlCanonSide(spec.target, "target (MySQL)");
    return cross::CrossCompare(*source, *target, CanonTablesOf(plan.casts, &plan.transforms, nullptr, spec),
                               spec.verify.chunk_rows);
  }
  Result<std::unique_ptr<proxy::TrafficSwitch>> StartTrafficSwitch(const MigrationSpec&, StateStore&) const override {
    return OperatorError(
        "a proxy across engines (postgres -> mysql) is not built: applications move by their own "
        "configuration");
  }
  // No proxy (it cannot translate between the two wire protocols): the
  // operator moves the applications and records it (`--external`).
  bool has_traffic_plane() const override { return true; }
  Result<std::string> SchemaDdl(const MigrationSpec& spec) const override {
    pg::ConnOptions o;
    o.application_name = "midflight-schema";
    ASSIGN_OR_RETURN(auto src, PgConn::Connect(spec.source, o));
    ASSIGN_OR_RETURN(auto tu, mysql::ParseMyUri(spec.target));
    // The target's flavour names the binary collation; MariaDB unless the target says otherwise.
    bool mariadb = true;
    mysql::ConnOptions mo;
    mo.program_name = "midflight-schema";
    if (auto dst = MyConn::Connect(spec.target, mo); dst.ok())
      if (auto v = (*dst)->QueryValue("SELECT VERSION()"); v.ok()) mariadb = v->find("MariaDB") != std::string::npos;
    ASSIGN_OR_RETURN(SourcePlan plan, PlanOf(spec, *src, tu.database, mariadb));
    std::string out = fmt::format(
        "-- midflight: PostgreSQL -> MySQL database {}: {} tables; lines marked "
        "LOSSY/SEMANTIC change a value or its meaning\n",
        tu.database, plan.casts.size());
    for (const auto& [id, c] : plan.casts) {
      if (auto tr = plan.transforms.find(id); tr != plan.transforms.end()) {
        out += fmt::format("-- {} -> {} (transformed before the casting table; columns and primary key only)\n",
                           id.ToString(), c.target->id.ToString());
        for (const auto& line : tr->second->Describe()) out += "--   " + line + "\n";
      }
      out += cross::CreateMyTableSql(c);
    }
    return out;
  }
};

}  // namespace

namespace cross {

Result<std::map<TableId, PgTableFacts>> LoadPgFacts(pg::PgConn& conn, const std::vector<TablePtr>& tables) {
  return LoadFacts(conn, tables);
}

std::unique_ptr<ChangeSink> NewCastingSink(std::unique_ptr<mysql::MyChangeSink> inner,
                                           std::shared_ptr<const std::map<TableId, PgTableCast>> casts,
                                           bool out_of_range_null, std::string my_uri) {
  return std::make_unique<CastingSink>(std::move(inner), std::move(casts), out_of_range_null, std::move(my_uri));
}

std::function<uint64_t(uint64_t)> MySqlDurableHorizon(std::chrono::milliseconds delay) {
  auto horizon = std::make_shared<DurableHorizon>(delay);
  return [horizon](uint64_t committed) { return (*horizon)(committed); };
}

}  // namespace cross

const EngineKind& PostgresToMySqlEngine() {
  static const PgToMyKind kind;
  return kind;
}

}  // namespace midflight
