#include "engines/mysql/schema_loader.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <system_error>
#include <thread>

#include "base/log.h"
#include "base/thread_annotations.h"
#include "core/transform.h"
#include "engines/mysql/my_conn.h"
#include "engines/mysql/sql_tokens.h"

namespace midflight::mysql {
namespace {

constexpr const char* kBookkeepingSql = R"sql(
CREATE DATABASE IF NOT EXISTS midflight DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE TABLE IF NOT EXISTS midflight.checkpoints (
  migration VARCHAR(128) NOT NULL,
  partition_id INT NOT NULL,
  commit_pos BIGINT UNSIGNED NOT NULL,
  seq INT UNSIGNED NOT NULL,
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  restart_pos BIGINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (migration, partition_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
ALTER TABLE midflight.checkpoints ADD COLUMN IF NOT EXISTS restart_pos BIGINT UNSIGNED NOT NULL DEFAULT 0;
-- Kafka apply workers (kafka/apply_worker.h): the change topic's offset of
-- the partition's last change applied, and the worker that applied it.
ALTER TABLE midflight.checkpoints ADD COLUMN IF NOT EXISTS kafka_offset BIGINT NULL;
ALTER TABLE midflight.checkpoints ADD COLUMN IF NOT EXISTS worker VARCHAR(255) NULL;
CREATE TABLE IF NOT EXISTS midflight.chunks (
  migration VARCHAR(128) NOT NULL,
  table_name VARCHAR(300) NOT NULL,
  chunk INT NOT NULL,
  snapshot_pos BIGINT UNSIGNED NOT NULL,
  rows_copied BIGINT NOT NULL,
  bytes_copied BIGINT NOT NULL,
  PRIMARY KEY (migration, table_name, chunk)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
)sql";

// Columns EnsureBookkeeping expects, as "table.column".
constexpr const char* kBookkeepingColumns[] = {
    "checkpoints.migration",  "checkpoints.partition_id", "checkpoints.commit_pos", "checkpoints.seq",
    "checkpoints.updated_at", "checkpoints.restart_pos", "checkpoints.kafka_offset", "checkpoints.worker", "chunks.migration",         "chunks.table_name",      "chunks.chunk",
    "chunks.snapshot_pos",    "chunks.rows_copied",       "chunks.bytes_copied"};

// Objects of the source databases that midflight does not move (views,
// routines, triggers and events are, by schema_objects.h). {0} is the quoted,
// comma-separated list of database names.
constexpr const char* kNotMigratedSql = R"sql(
SELECT LOWER(TABLE_TYPE), TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
 WHERE TABLE_SCHEMA IN ({0}) AND TABLE_TYPE = 'SEQUENCE'
UNION ALL
SELECT LOWER(ROUTINE_TYPE), ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES
 WHERE ROUTINE_SCHEMA IN ({0}) AND ROUTINE_TYPE NOT IN ('FUNCTION', 'PROCEDURE')
ORDER BY 1, 2, 3
)sql";

constexpr size_t kMaxNamesInWarning = 40;

// ---------------------------------------------------------------------------
// One definition of the CREATE TABLE body: a column, a key or a constraint.

enum class DefKind { kColumn, kPrimaryKey, kIndex, kForeignKey, kOther };

struct KeyPart {
  std::string column;
  bool prefix = false;  // `name`(10)
};

struct Definition {
  DefKind kind = DefKind::kOther;
  std::string text;  // as printed, without the separating comma
  std::string name;  // column, index or constraint name
  // Columns.
  bool not_null = false;
  bool auto_increment = false;
  // Keys.
  bool unique = false;  // UNIQUE (not FULLTEXT / SPATIAL)
  std::vector<KeyPart> parts;
  // Foreign keys: REFERENCES [`db`.]`table`, as a byte range in `text`.
  std::string ref_db, ref_table;
  size_t ref_begin = 0, ref_end = 0;
};

// Splits "(`a`(10),`b` DESC)" at tokens[open] into key parts.
std::vector<KeyPart> ParseKeyParts(const std::vector<Token>& tk, size_t open, size_t close) {
  std::vector<KeyPart> parts;
  bool start = true;
  for (size_t i = open + 1; i < close; ++i) {
    const Token& t = tk[i];
    if (t.depth == tk[open].depth + 1 && t.IsPunct(',')) {
      start = true;
      continue;
    }
    if (start) {
      parts.push_back({t.kind == TokenKind::kIdent ? t.value : std::string(), false});
      start = false;
    } else if (t.IsPunct('(') && t.depth == tk[open].depth + 1) {
      parts.back().prefix = true;
    }
  }
  return parts;
}

// Classifies the definition made of tokens [first, last) of `stmt` (depth 1).
Definition Classify(std::string_view stmt, const std::vector<Token>& all, size_t first, size_t last) {
  Definition d;
  d.text = std::string(stmt.substr(all[first].begin, all[last - 1].end - all[first].begin));
  std::vector<Token> tk(all.begin() + static_cast<std::ptrdiff_t>(first),
                        all.begin() + static_cast<std::ptrdiff_t>(last));
  for (auto& t : tk) {  // make positions relative to the definition, depth relative to 0
    t.begin -= all[first].begin;
    t.end -= all[first].begin;
    t.depth -= 1;
  }
  const Token& t0 = tk[0];
  if (t0.kind == TokenKind::kIdent) {
    d.kind = DefKind::kColumn;
    d.name = t0.value;
    for (size_t i = 1; i < tk.size(); ++i) {
      if (tk[i].depth != 0) continue;
      if (tk[i].Is("AUTO_INCREMENT")) d.auto_increment = true;
      if (tk[i].Is("NOT") && i + 1 < tk.size() && tk[i + 1].Is("NULL")) d.not_null = true;
    }
    return d;
  }
  size_t i = 0;
  if (t0.Is("CONSTRAINT")) {
    if (tk.size() < 2 || tk[1].kind != TokenKind::kIdent) return d;
    d.name = tk[1].value;
    i = 2;
  }
  if (i >= tk.size()) return d;
  if (tk[i].Is("PRIMARY")) {
    d.kind = DefKind::kPrimaryKey;
    for (size_t j = i; j < tk.size(); ++j)
      if (tk[j].IsPunct('(') && tk[j].depth == 0) {
        d.parts = ParseKeyParts(tk, j, MatchingParen(tk, j));
        break;
      }
    return d;
  }
  if (tk[i].Is("FOREIGN")) {
    for (size_t j = i; j < tk.size(); ++j) {
      if (!tk[j].Is("REFERENCES") || tk[j].depth != 0 || j + 1 >= tk.size()) continue;
      size_t k = j + 1;
      if (tk[k].kind != TokenKind::kIdent) return d;
      d.ref_begin = tk[k].begin;
      if (k + 2 < tk.size() && tk[k + 1].IsPunct('.') && tk[k + 2].kind == TokenKind::kIdent) {
        d.ref_db = tk[k].value;
        k += 2;
      }
      d.ref_table = tk[k].value;
      d.ref_end = tk[k].end;
      // Without a name the constraint cannot be found again on a re-run: it stays in the CREATE TABLE.
      if (!d.name.empty()) d.kind = DefKind::kForeignKey;
      return d;
    }
    return d;
  }
  if (tk[i].Is("UNIQUE") || tk[i].Is("KEY") || tk[i].Is("INDEX") || tk[i].Is("FULLTEXT") || tk[i].Is("SPATIAL") ||
      tk[i].Is("VECTOR")) {
    d.unique = tk[i].Is("UNIQUE");
    // "[UNIQUE|FULLTEXT|SPATIAL] KEY `name` (parts) options"
    size_t j = i;
    while (j < tk.size() && tk[j].kind == TokenKind::kWord) ++j;
    if (j < tk.size() && tk[j].kind == TokenKind::kIdent) {
      if (d.name.empty()) d.name = tk[j].value;
      ++j;
    }
    if (j >= tk.size() || !tk[j].IsPunct('(') || d.name.empty()) return d;  // unnamed: kept in the CREATE TABLE
    d.parts = ParseKeyParts(tk, j, MatchingParen(tk, j));
    d.kind = DefKind::kIndex;
    return d;
  }
  return d;  // CHECK, PERIOD FOR ...: part of the table
}

// What becomes of one source table.
struct TablePlan {
  std::string create_sql;
  DeferredDdl deferred;
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Turns the source's SHOW CREATE TABLE into the target's CREATE TABLE and the
// deferred clauses. `migrated` holds the names of the tables being moved
// from the same source database (for the warning about dangling references).
Result<TablePlan> PlanTable(const TableId& table, std::string_view show, const std::string& target_db,
                            const std::set<std::string>& migrated) {
  ASSIGN_OR_RETURN(std::vector<Token> tk, Tokenize(show));
  if (tk.size() < 4 || !tk[0].Is("CREATE") || !tk[1].Is("TABLE") || tk[2].kind != TokenKind::kIdent ||
      !tk[3].IsPunct('('))
    return OperatorError(
        fmt::format("{} is not a base table (SHOW CREATE TABLE begins \"{}\"); only tables are migrated",
                    table.ToString(), show.substr(0, 40)));
  const size_t open = 3, close = MatchingParen(tk, open);
  if (close >= tk.size()) return Internal("no closing parenthesis");

  std::vector<Definition> defs;
  for (size_t i = open + 1; i < close;) {
    size_t j = i;
    while (j < close && !(tk[j].depth == 1 && tk[j].IsPunct(','))) ++j;
    if (j > i) defs.push_back(Classify(show, tk, i, j));
    i = j + 1;
  }

  std::map<std::string, const Definition*> columns;
  const Definition* primary = nullptr;
  const Definition* auto_column = nullptr;
  for (const auto& d : defs) {
    if (d.kind == DefKind::kColumn) {
      columns[d.name] = &d;
      if (d.auto_increment) auto_column = &d;
    }
    if (d.kind == DefKind::kPrimaryKey) primary = &d;
  }
  auto starts_with = [](const Definition* d, const std::string& col) {
    return d && !d->parts.empty() && d->parts[0].column == col;
  };
  auto contains = [](const Definition* d, const std::string& col) {
    return d && std::any_of(d->parts.begin(), d->parts.end(), [&](const KeyPart& p) { return p.column == col; });
  };

  // The secondary indexes InnoDB needs at CREATE time (see the header).
  std::set<const Definition*> keep;
  if (auto_column && !starts_with(primary, auto_column->name)) {
    const Definition* pick = nullptr;
    for (const auto& d : defs)
      if (d.kind == DefKind::kIndex && !pick && starts_with(&d, auto_column->name)) pick = &d;
    if (!pick && !contains(primary, auto_column->name))
      for (const auto& d : defs)
        if (d.kind == DefKind::kIndex && !pick && contains(&d, auto_column->name)) pick = &d;
    // The indexes printed before it are kept too, so that the target lists
    // its indexes in the source's order.
    for (const auto& d : defs) {
      if (!pick) break;
      if (d.kind == DefKind::kIndex) keep.insert(&d);
      if (&d == pick) break;
    }
  }
  if (!primary) {
    for (const auto& d : defs) {
      if (d.kind != DefKind::kIndex || !d.unique || d.parts.empty()) continue;
      bool clustering = std::all_of(d.parts.begin(), d.parts.end(), [&](const KeyPart& p) {
        auto c = columns.find(p.column);
        return !p.prefix && c != columns.end() && c->second->not_null;
      });
      if (clustering) {
        keep.insert(&d);
        break;
      }
    }
  }

  TablePlan plan;
  plan.deferred.table = table;
  std::string body;
  for (const auto& d : defs) {
    if (d.kind == DefKind::kIndex && !keep.count(&d)) {
      plan.deferred.indexes.push_back("ADD " + d.text);
      continue;
    }
    if (d.kind == DefKind::kForeignKey) {
      if (d.ref_db.empty() || d.ref_db == table.schema) {
        if (!migrated.count(d.ref_table))
          LOG_WARN("schema: foreign key {} of {} references {}.{}, which is not migrated", d.name, table.ToString(),
                   table.schema, d.ref_table);
        plan.deferred.foreign_keys.push_back("ADD " + d.text.substr(0, d.ref_begin) +
                                             QuoteQualified(target_db, d.ref_table) + d.text.substr(d.ref_end));
      } else {
        LOG_WARN("schema: foreign key {} of {} references {}.{} in another database; kept as it is", d.name,
                 table.ToString(), d.ref_db, d.ref_table);
        plan.deferred.foreign_keys.push_back("ADD " + d.text);
      }
      continue;
    }
    body += (body.empty() ? "  " : ",\n  ") + d.text;
  }
  plan.create_sql = fmt::format("CREATE TABLE IF NOT EXISTS {} (\n{}\n{}", QuoteQualified(target_db, table.name), body,
                                show.substr(tk[close].begin));
  return plan;
}

// A source column's definition for a transformed table's target: renamed
// to `name`, without a generation clause (the target holds the values the
// source computed, as a plain column), and without AUTO_INCREMENT unless
// `auto_increment` (only the target key's first column may keep it).
Result<std::string> KeptColumnSql(const std::string& def, const std::string& name, bool auto_increment) {
  ASSIGN_OR_RETURN(std::vector<Token> tk, Tokenize(def));
  std::string out = QuoteIdent(name);
  size_t copied = tk.empty() ? def.size() : tk[0].end;
  auto skip_to = [&](size_t from, size_t to) {  // drops def[from, to)
    out += def.substr(copied, from - copied);
    copied = to;
  };
  for (size_t i = 1; i < tk.size(); ++i) {
    if (tk[i].depth != 0) continue;
    if (tk[i].Is("AUTO_INCREMENT") && !auto_increment) {
      skip_to(tk[i].begin, tk[i].end);
    } else if (tk[i].Is("GENERATED") || (tk[i].Is("AS") && i + 1 < tk.size() && tk[i + 1].IsPunct('('))) {
      size_t j = i;
      while (j < tk.size() && !tk[j].IsPunct('(')) ++j;
      if (j >= tk.size()) break;
      size_t end = MatchingParen(tk, j);
      if (end >= tk.size()) break;
      if (end + 1 < tk.size() &&
          (tk[end + 1].Is("VIRTUAL") || tk[end + 1].Is("STORED") || tk[end + 1].Is("PERSISTENT")))
        ++end;
      skip_to(tk[i].begin, tk[end].end);
      i = end;
    }
  }
  out += def.substr(copied);
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  return out;
}

// The MySQL type of a column a cast or an expression makes: the
// transform's own types (text, bigint, numeric) get one here; a computed
// column typed as a source column (coalesce(a, b)) takes that column's type.
// Empty when none fits (a boolean).
std::string MadeColumnType(const ColumnType& t, bool key) {
  // An integer's text is at most 20 characters; a key cannot be LONGTEXT.
  if (t.native == "text")
    return key ? "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
               : "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin";
  if (t.native == "bigint") return "BIGINT";
  if (t.native == "numeric") return "DECIMAL(65,30)";
  if (t.native.empty() || t.kind == TypeKind::kBool) return "";
  return t.charset.empty() ? t.native : fmt::format("{} CHARACTER SET {}", t.native, t.charset);
}

// The name a deferred clause adds: its first quoted identifier.
std::string ClauseName(std::string_view clause) {
  auto tk = Tokenize(clause);
  if (!tk.ok()) return "";
  for (const auto& t : *tk)
    if (t.kind == TokenKind::kIdent) return t.value;
  return "";
}

std::string QuotedList(const std::set<std::string>& values) {
  std::string out;
  for (const auto& v : values) out += (out.empty() ? "" : ", ") + QuoteString(v);
  return out;
}

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 4;
    if (n == 4 || i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n + 1;
  }
  return true;
}

Status CheckSqlMode(MyConn& conn, const char* which) {
  ASSIGN_OR_RETURN(std::string mode, conn.QueryValue("SELECT @@SESSION.sql_mode"));
  for (const char* bad : {"ANSI_QUOTES", "NO_BACKSLASH_ESCAPES"})
    if (mode.find(bad) != std::string::npos)
      return InvalidArgument(
          fmt::format("schema: the {} connection ({}) has sql_mode {}: {} changes how SHOW "
                      "CREATE TABLE quotes (use MyConn's session setup)",
                      which, conn.redacted_uri(), mode, bad));
  return Status::Ok();
}

void WarnNotMigrated(MyConn& src, const std::set<std::string>& databases) {
  auto r = src.Query(fmt::format(kNotMigratedSql, QuotedList(databases)));
  if (!r.ok()) {
    LOG_WARN("schema: cannot list the sequences and packages of the source: {}", r.status().message());
    return;
  }
  if (r->rows() == 0) return;
  std::string names;
  for (int i = 0; i < r->rows() && static_cast<size_t>(i) < kMaxNamesInWarning; ++i)
    names += fmt::format("{}{} {}.{}", i ? ", " : "", r->Get(i, 0), r->Get(i, 1), r->Get(i, 2));
  if (static_cast<size_t>(r->rows()) > kMaxNamesInWarning)
    names += fmt::format(" and {} more", static_cast<size_t>(r->rows()) - kMaxNamesInWarning);
  LOG_WARN("schema: not migrated (midflight moves tables, views, routines, triggers and events): {}", names);
}

Status CreateAll(MyConn& src, MyConn& dst, const std::vector<TableId>& tables, const std::string& target_db,
                 std::vector<DeferredDdl>* out) {
  std::map<std::string, std::set<std::string>> migrated;  // source database -> table names
  for (const auto& t : tables) migrated[t.schema].insert(t.name);
  ASSIGN_OR_RETURN(
      MyResult existing_rows,
      dst.Query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = " + QuoteString(target_db)));
  std::set<std::string> existing;
  for (int i = 0; i < existing_rows.rows(); ++i) existing.insert(existing_rows.Get(i, 0));

  int created = 0, kept = 0;
  size_t indexes = 0, foreign_keys = 0;
  for (const auto& table : tables) {
    const std::string source_name = QuoteQualified(table.schema, table.name);
    auto show_result = src.Query("SHOW CREATE TABLE " + source_name);
    if (!show_result.ok())
      return show_result.status().WithContext("schema: reading " + table.ToString() + " on the source");
    const MyResult& show = *show_result;
    if (show.rows() != 1 || show.cols() < 2 || show.names()[1] != "Create Table")
      return OperatorError(fmt::format("schema: {} on the source is not a base table", table.ToString()));
    auto plan = PlanTable(table, show.Get(0, 1), target_db, migrated[table.schema]);
    if (!plan.ok()) return plan.status().WithContext("schema: reading SHOW CREATE TABLE " + table.ToString());
    for (const auto* list : {&plan->deferred.indexes, &plan->deferred.foreign_keys})
      for (const auto& clause : *list)
        if (!IsValidUtf8(clause))
          return OperatorError(
              fmt::format("schema: {}: a definition is not valid UTF-8: {}", table.ToString(), clause.substr(0, 120)));
    if (existing.count(table.name)) {
      LOG_DEBUG("schema: {}.{} exists on the target already; left as it is", target_db, table.name);
      ++kept;
    } else {
      LOG_DEBUG("schema: {}", plan->create_sql);
      Status st = dst.Exec(plan->create_sql);
      if (!st.ok()) return st.WithContext(fmt::format("schema: creating {}.{} on the target", target_db, table.name));
      ++created;
    }
    indexes += plan->deferred.indexes.size();
    foreign_keys += plan->deferred.foreign_keys.size();
    out->push_back(std::move(plan->deferred));
  }
  LOG_INFO("schema: {} tables created in {}, {} there already; {} indexes and {} foreign keys deferred", created,
           target_db, kept, indexes, foreign_keys);
  return Status::Ok();
}

enum class Deferred { kIndexes, kForeignKeys };

// Lowercase names of the indexes or foreign keys `table` has in `db`.
Result<std::set<std::string>> ExistingNames(MyConn& conn, const std::string& db, const std::string& table,
                                            Deferred what) {
  const char* sql = what == Deferred::kIndexes
                        ? "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
                          "WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}"
                        : "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
                          "WHERE CONSTRAINT_SCHEMA = {} AND TABLE_NAME = {}";
  ASSIGN_OR_RETURN(MyResult r, conn.Query(fmt::format(fmt::runtime(sql), QuoteString(db), QuoteString(table))));
  std::set<std::string> names;
  for (int i = 0; i < r.rows(); ++i) names.insert(Lower(r.Get(i, 0)));
  return names;
}

// How an index clause is built: FULLTEXT and SPATIAL indexes block writes to
// the table while InnoDB builds them, and InnoDB builds two FULLTEXT indexes
// in one statement only by copying the whole table; B-tree indexes are built
// online. The first FULLTEXT index also rebuilds the table (to add its hidden
// FTS_DOC_ID column), which is cheapest before the other indexes exist.
enum class BuildOrder { kFulltext, kBtree, kSpatial };

BuildOrder OrderOf(std::string_view clause) {
  auto tk = Tokenize(clause);
  if (!tk.ok() || tk->size() < 2) return BuildOrder::kBtree;
  if ((*tk)[1].Is("FULLTEXT")) return BuildOrder::kFulltext;
  if ((*tk)[1].Is("SPATIAL") || (*tk)[1].Is("VECTOR")) return BuildOrder::kSpatial;
  return BuildOrder::kBtree;
}

// Adds to `target_db`.`table` those of `clauses` whose names it lacks. Foreign
// keys: one ALTER TABLE. Indexes: one ALTER TABLE for each FULLTEXT index,
// then one for all the B-tree indexes and one for each SPATIAL index (measured
// on 400k rows with 6 B-tree, 1 SPATIAL and 2 FULLTEXT indexes: 8.2s, writes
// blocked for 6.3s of it, against 11.3s, all blocked, for a single ALTER TABLE,
// which copies the table). When an ALTER TABLE fails but its names exist afterwards
// (an ALTER TABLE left running by a killed run finished first), it counts as
// done.
Status AddMissing(MyConn& conn, const std::string& target_db, const DeferredDdl& d,
                  const std::vector<std::string>& clauses, Deferred what) {
  const std::string& table = d.table.name;
  const char* noun = what == Deferred::kIndexes ? "indexes" : "foreign keys";
  ASSIGN_OR_RETURN(std::set<std::string> have, ExistingNames(conn, target_db, table, what));
  // FULLTEXT first, one each; then the others in the source's order, a run of
  // B-tree indexes in one ALTER TABLE and each SPATIAL index in its own, so
  // the target lists its indexes as the source does.
  std::vector<std::vector<const std::string*>> alters, rest(1);
  size_t missing = 0;
  for (const auto& c : clauses) {
    if (have.count(Lower(ClauseName(c)))) continue;
    ++missing;
    switch (what == Deferred::kIndexes ? OrderOf(c) : BuildOrder::kBtree) {
      case BuildOrder::kFulltext: alters.push_back({&c}); break;
      case BuildOrder::kSpatial:
        rest.push_back({&c});
        rest.emplace_back();
        break;
      case BuildOrder::kBtree: rest.back().push_back(&c); break;
    }
  }
  alters.insert(alters.end(), rest.begin(), rest.end());
  if (missing == 0) {
    LOG_DEBUG("schema: the {} of {}.{} are on the target already", noun, target_db, table);
    return Status::Ok();
  }
  if (missing < clauses.size())
    LOG_INFO("schema: {} of the {} {} of {}.{} are on the target already", clauses.size() - missing, clauses.size(),
             noun, target_db, table);
  auto start = std::chrono::steady_clock::now();
  LOG_INFO("schema: adding {} {} to {}.{}", missing, noun, target_db, table);
  for (const auto& alter : alters) {
    if (alter.empty()) continue;
    std::string sql = "ALTER TABLE " + QuoteQualified(target_db, table);
    for (size_t i = 0; i < alter.size(); ++i) sql += (i ? ", " : " ") + *alter[i];
    LOG_DEBUG("schema: {}", sql);
    Status st = conn.Exec(sql);
    if (st.ok()) continue;
    Status context = st.WithContext(fmt::format("schema: adding {} to {}.{}", noun, target_db, table));
    if (st.code() == StatusCode::kRetryCall) return context;
    ASSIGN_OR_RETURN(have, ExistingNames(conn, target_db, table, what));
    for (const auto* c : alter)
      if (!have.count(Lower(ClauseName(*c)))) return context;
    LOG_INFO("schema: {}.{}: {} (they exist now: done by an earlier run)", target_db, table, st.message());
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  LOG_INFO("schema: {} {} added to {}.{} in {:.1f}s", missing, noun, target_db, table, seconds);
  return Status::Ok();
}

// Adds the indexes of `jobs` on `workers` connections to `uri`, one table per
// worker at a time; returns the first error (the others finish their table).
Status BuildIndexes(const std::string& uri, const std::string& target_db, const std::vector<const DeferredDdl*>& jobs,
                    int workers) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  struct {
    Mutex mu;
    Status first_error GUARDED_BY(mu);
  } sh;
  auto fail = [&](const Status& st) {
    MutexLock lock(&sh.mu);
    if (sh.first_error.ok()) sh.first_error = st;
    failed = true;
  };
  auto work = [&] {
    auto conn = MyConn::Connect(uri, ConnOptions{});
    if (!conn.ok()) return fail(conn.status());
    while (!failed) {
      size_t i = next++;
      if (i >= jobs.size()) return;
      Status st = AddMissing(**conn, target_db, *jobs[i], jobs[i]->indexes, Deferred::kIndexes);
      if (!st.ok()) return fail(st);
    }
  };
  size_t n = std::min(jobs.size(), static_cast<size_t>(std::max(1, workers)));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) {
    try {
      threads.emplace_back(work);
    } catch (const std::system_error& e) {
      if (threads.empty()) return Internal(fmt::format("schema: cannot start an index builder: {}", e.what()));
      break;  // fewer workers
    }
  }
  for (auto& t : threads) t.join();
  MutexLock lock(&sh.mu);
  return sh.first_error;
}

}  // namespace

Result<std::vector<DeferredDdl>> CreateTables(MyConn& src, MyConn& dst, const std::vector<TableId>& tables,
                                              const std::string& target_db) {
  RETURN_IF_ERROR(CheckSqlMode(src, "source"));
  RETURN_IF_ERROR(CheckSqlMode(dst, "target"));
  std::set<std::string> databases;
  for (const auto& t : tables) databases.insert(t.schema);
  if (!databases.empty()) WarnNotMigrated(src, databases);

  ASSIGN_OR_RETURN(std::string fk_checks, dst.QueryValue("SELECT @@SESSION.foreign_key_checks"));
  RETURN_IF_ERROR(dst.Exec("SET SESSION foreign_key_checks = 0"));
  std::vector<DeferredDdl> out;
  Status st = CreateAll(src, dst, tables, target_db, &out);
  Status restore =
      dst.Exec(fk_checks == "0" ? "SET SESSION foreign_key_checks = 0" : "SET SESSION foreign_key_checks = 1");
  RETURN_IF_ERROR(st);
  RETURN_IF_ERROR(restore);
  return out;
}

Status CheckTransformedTypes(const TableTransform& tr) {
  const TableSchema& target = *tr.target();
  for (size_t i = 0; i < target.columns.size(); ++i) {
    const ColumnSchema& col = target.columns[i];
    const int from = tr.SourceColumn(i);
    if (from >= 0 && col.type.native == tr.source().columns[from].type.native) continue;
    if (MadeColumnType(col.type, false).empty())
      return OperatorError(fmt::format("{}: column {} would be {}, which has no column type on a mysql:// target (a "
                                       "true/false value: compute a number or a text instead)",
                                       tr.where(), col.name, col.type.native));
  }
  return Status::Ok();
}

Result<std::string> TransformedTableSql(const TableTransform& tr, std::string_view show, const std::string& target_db) {
  const TableSchema& target = *tr.target();
  const TableSchema& source = tr.source();
  ASSIGN_OR_RETURN(std::vector<Token> tk, Tokenize(show));
  if (tk.size() < 4 || !tk[0].Is("CREATE") || !tk[1].Is("TABLE") || !tk[3].IsPunct('('))
    return OperatorError(fmt::format("{} is not a base table", source.id.ToString()));
  const size_t open = 3, close = MatchingParen(tk, open);
  if (close >= tk.size()) return Internal("no closing parenthesis");
  std::map<std::string, std::string> defs;  // source column -> its definition
  for (size_t i = open + 1; i < close;) {
    size_t j = i;
    while (j < close && !(tk[j].depth == 1 && tk[j].IsPunct(','))) ++j;
    if (j > i) {
      Definition d = Classify(show, tk, i, j);
      if (d.kind == DefKind::kColumn) defs[d.name] = d.text;
    }
    i = j + 1;
  }
  std::vector<std::string> body;
  for (size_t i = 0; i < target.columns.size(); ++i) {
    const ColumnSchema& col = target.columns[i];
    const bool key = std::find(target.key.begin(), target.key.end(), static_cast<int>(i)) != target.key.end();
    const int from = tr.SourceColumn(i);
    if (from >= 0 && col.type.native == source.columns[from].type.native) {
      // Kept (renamed or not), or a cast that keeps the type (trim, lower, upper).
      auto def = defs.find(source.columns[from].name);
      if (def == defs.end())
        return Internal(fmt::format("SHOW CREATE TABLE {} has no column {}", source.id.ToString(),
                                    source.columns[from].name));
      const bool first_key = !target.key.empty() && target.key[0] == static_cast<int>(i);
      ASSIGN_OR_RETURN(std::string sql, KeptColumnSql(def->second, col.name, first_key));
      body.push_back(std::move(sql));
      continue;
    }
    const std::string type = MadeColumnType(col.type, key);
    if (type.empty()) {
      RETURN_IF_ERROR(CheckTransformedTypes(tr));
      return Internal(fmt::format("no MySQL type for column {} of {}", col.name, target.id.ToString()));
    }
    body.push_back(fmt::format("{} {}{}", QuoteIdent(col.name), type, col.not_null ? " NOT NULL" : ""));
  }
  std::vector<std::string> key;
  for (int k : target.key) key.push_back(QuoteIdent(target.columns[k].name));
  body.push_back(fmt::format("PRIMARY KEY ({})", fmt::join(key, ", ")));
  // The table options, without PARTITION BY (its columns may be gone or renamed).
  size_t options_end = show.size();
  for (size_t i = close + 1; i < tk.size(); ++i)
    if (tk[i].depth == 0 && tk[i].Is("PARTITION")) {
      options_end = tk[i].begin;
      break;
    }
  std::string options(show.substr(tk[close].begin + 1, options_end - tk[close].begin - 1));
  while (!options.empty() && std::isspace(static_cast<unsigned char>(options.back()))) options.pop_back();
  return fmt::format("CREATE TABLE IF NOT EXISTS {} (\n  {}\n){}", QuoteQualified(target_db, target.id.name),
                     fmt::join(body, ",\n  "), options);
}

Status BuildDeferred(const std::string& target_uri, const std::string& target_db, const std::vector<DeferredDdl>& ddl,
                     int workers) {
  ASSIGN_OR_RETURN(auto conn, MyConn::Connect(target_uri, ConnOptions{}));
  // Largest tables first, so the longest builds do not start last.
  ASSIGN_OR_RETURN(MyResult sizes,
                   conn->Query("SELECT TABLE_NAME, COALESCE(DATA_LENGTH, 0) FROM information_schema.TABLES "
                               "WHERE TABLE_SCHEMA = " +
                               QuoteString(target_db)));
  std::map<std::string, int64_t> bytes;
  for (int i = 0; i < sizes.rows(); ++i) bytes[sizes.Get(i, 0)] = sizes.GetInt(i, 1);
  std::vector<const DeferredDdl*> jobs;
  for (const auto& d : ddl)
    if (!d.indexes.empty()) jobs.push_back(&d);
  std::stable_sort(jobs.begin(), jobs.end(), [&](const DeferredDdl* a, const DeferredDdl* b) {
    return bytes[a->table.name] > bytes[b->table.name];
  });
  if (!jobs.empty()) RETURN_IF_ERROR(BuildIndexes(target_uri, target_db, jobs, workers));

  // Foreign keys last, when every referenced key exists. Without checks InnoDB
  // adds them in place (metadata only); with checks it would copy the table.
  RETURN_IF_ERROR(conn->Exec("SET SESSION foreign_key_checks = 0"));
  for (const auto& d : ddl)
    if (!d.foreign_keys.empty())
      RETURN_IF_ERROR(AddMissing(*conn, target_db, d, d.foreign_keys, Deferred::kForeignKeys));
  LOG_INFO("schema: the deferred indexes and foreign keys of {} tables are in place in {}", ddl.size(), target_db);
  return Status::Ok();
}

EarlyIndexBuilder::EarlyIndexBuilder(std::string target_uri, std::string target_db, const std::vector<DeferredDdl>& ddl,
                                     int jobs)
    : target_uri_(std::move(target_uri)), target_db_(std::move(target_db)) {
  for (const auto& d : ddl)
    if (!d.indexes.empty()) ddl_[d.table] = DeferredDdl{d.table, d.indexes, {}};
  for (int i = 0; i < std::max(1, jobs) && !ddl_.empty(); ++i) {
    try {
      threads_.emplace_back([this] { Work(); });
    } catch (const std::system_error& e) {
      LOG_WARN("schema: cannot start an index builder ({}); the indexes wait for the end of the copy", e.what());
      break;
    }
  }
}

EarlyIndexBuilder::~EarlyIndexBuilder() {
  Cancel();
  Finish();
}

void EarlyIndexBuilder::TableCopied(const TableId& table) {
  auto it = ddl_.find(table);
  if (it == ddl_.end()) return;
  {
    MutexLock lock(&mu_);
    if (cancelled_ || closing_ || threads_.empty()) return;
    queue_.push_back(&it->second);
  }
  wake_.NotifyOne();
}

void EarlyIndexBuilder::Cancel() {
  {
    MutexLock lock(&mu_);
    cancelled_ = true;
    queue_.clear();
  }
  wake_.NotifyAll();
}

int EarlyIndexBuilder::Finish() {
  {
    MutexLock lock(&mu_);
    closing_ = true;
  }
  wake_.NotifyAll();
  for (auto& t : threads_) t.join();
  threads_.clear();
  MutexLock lock(&mu_);
  return built_;
}

void EarlyIndexBuilder::Work() {
  std::unique_ptr<MyConn> conn;
  while (true) {
    const DeferredDdl* d = nullptr;
    {
      MutexLock lock(&mu_);
      wake_.Wait(&mu_, [&]() REQUIRES(mu_) { return !queue_.empty() || closing_ || cancelled_; });
      if (queue_.empty()) return;
      d = queue_.front();
      queue_.pop_front();
    }
    Status st;
    if (!conn || conn->IsBroken()) {
      ConnOptions o;
      o.program_name = "midflight-index";
      auto c = MyConn::Connect(target_uri_, o);
      if (c.ok()) conn = std::move(*c);
      else st = c.status();
    }
    if (st.ok()) st = AddMissing(*conn, target_db_, *d, d->indexes, Deferred::kIndexes);
    MutexLock lock(&mu_);
    if (st.ok()) {
      ++built_;
    } else {
      LOG_WARN("schema: the indexes of {}.{} are left to the end of the copy: {}", target_db_, d->table.name,
               st.message());
    }
  }
}

Status EnsureBookkeeping(MyConn& dst) {
  RETURN_IF_ERROR(dst.Exec(kBookkeepingSql).WithContext("creating midflight's bookkeeping tables on the target"));
  ASSIGN_OR_RETURN(MyResult cols,
                   dst.Query("SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME) FROM information_schema.COLUMNS "
                             "WHERE TABLE_SCHEMA = 'midflight'"));
  std::set<std::string> have;
  for (int i = 0; i < cols.rows(); ++i) have.insert(Lower(cols.Get(i, 0)));
  for (std::string_view c : kBookkeepingColumns)
    if (!have.count(std::string(c))) {
      size_t dot = c.find('.');
      return OperatorError(
          fmt::format("the target's midflight.{} has no column {}: it was made by another version "
                      "of midflight; drop it (when no migration is running) and start again",
                      c.substr(0, dot), c.substr(dot + 1)));
    }
  return Status::Ok();
}

std::string SerializeDeferred(const std::vector<DeferredDdl>& ddl) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& d : ddl)
    j.push_back({{"schema", d.table.schema},
                 {"table", d.table.name},
                 {"indexes", d.indexes},
                 {"foreign_keys", d.foreign_keys}});
  // CreateTables checked the clauses are UTF-8; names are UTF-8 in the catalog.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<std::vector<DeferredDdl>> ParseDeferred(const std::string& json) {
  try {
    std::vector<DeferredDdl> out;
    nlohmann::json j = nlohmann::json::parse(json);
    if (!j.is_array()) return Internal("state store: deferred DDL is not a JSON array");
    for (const auto& e : j) {
      DeferredDdl d;
      d.table.schema = e.at("schema").get<std::string>();
      d.table.name = e.at("table").get<std::string>();
      d.indexes = e.at("indexes").get<std::vector<std::string>>();
      d.foreign_keys = e.at("foreign_keys").get<std::vector<std::string>>();
      out.push_back(std::move(d));
    }
    return out;
  } catch (const nlohmann::json::exception& e) {
    return Internal(fmt::format("state store: deferred DDL is not readable: {}", e.what()));
  }
}

}  // namespace midflight::mysql
