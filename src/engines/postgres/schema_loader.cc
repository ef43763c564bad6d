#include "engines/postgres/schema_loader.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "base/log.h"
#include "engines/postgres/pg_conn.h"

namespace midflight::pg {
namespace {

std::string PgBin(const std::string& tool) {
  if (const char* dir = std::getenv("MIDFLIGHT_PG_BIN")) return std::string(dir) + "/" + tool;
  return tool;
}

// Runs a PostgreSQL client tool with the password in PGPASSWORD (never on the
// command line). stdout goes to `stdout_path` when given.
Status RunTool(const std::vector<std::string>& argv, const std::string& password, const std::string& stdout_path,
               const std::string& what, const std::string& settings = "", const std::string& application_name = "") {
  char err_template[] = "/tmp/midflight-tool-XXXXXX";
  int err_fd = mkstemp(err_template);
  if (err_fd < 0) return Internal("cannot create a temporary file for " + what);
  unlink(err_template);
  pid_t pid = fork();
  if (pid < 0) return Internal("cannot start " + what);
  if (pid == 0) {
    dup2(err_fd, 2);
    if (!stdout_path.empty()) {
      int out = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (out >= 0) dup2(out, 1);
    }
    if (!password.empty()) setenv("PGPASSWORD", password.c_str(), 1);
    if (!application_name.empty()) setenv("PGAPPNAME", application_name.c_str(), 1);
    // Dies with the thread that waits for it: a killed run leaves no client behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setenv("PGOPTIONS", ("-c client_min_messages=warning " + settings).c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::string err;
  lseek(err_fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = read(err_fd, buf, sizeof buf)) > 0) err.append(buf, n);
  close(err_fd);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  // First error line is the most useful one.
  std::string line;
  std::istringstream is(err);
  std::string first_error;
  while (std::getline(is, line)) {
    if (first_error.empty() && line.find("error") != std::string::npos) first_error = line;
  }
  if (first_error.empty()) first_error = err.substr(0, 300);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) first_error = argv[0] + " not found";
  return OperatorError(fmt::format("{} failed: {}", what, first_error));
}

// What the TOC entries of a dump are in the dumped database, as
// pg_identify_object names them ("index" / "\"s\".\"my idx\"", unique and
// quoted), keyed by catalog and oid. Entries whose object is gone are absent.
using ObjectKey = std::pair<uint32_t, uint32_t>;
Result<std::map<ObjectKey, std::string>> IdentifyObjects(PgConn& conn, const std::vector<TocEntry>& entries) {
  std::string catalogs, oids;
  for (const auto& e : entries) {
    if (e.oid == 0) continue;
    catalogs += fmt::format("{}{}", catalogs.empty() ? "" : ",", e.catalog);
    oids += fmt::format("{}{}", oids.empty() ? "" : ",", e.oid);
  }
  std::map<ObjectKey, std::string> out;
  if (oids.empty()) return out;
  ASSIGN_OR_RETURN(PgResult r, conn.Query(R"sql(
    SELECT e.catalog, e.oid, i.type || ' ' || i.identity
      FROM unnest($1::oid[], $2::oid[]) AS e(catalog, oid) CROSS JOIN LATERAL pg_identify_object(e.catalog, e.oid, 0) i
     WHERE i.identity IS NOT NULL)sql",
                                          {"{" + catalogs + "}", "{" + oids + "}"}));
  for (int i = 0; i < r.rows(); ++i)
    out.emplace(ObjectKey{static_cast<uint32_t>(r.GetInt(i, 0)), static_cast<uint32_t>(r.GetInt(i, 1))},
                r.GetString(i, 2));
  return out;
}

// The same names for every object on `conn` that a post-data entry creates
// (constraints, indexes, triggers, rules, policies, statistics) or a
// pre-data one the target may have already (schemas).
constexpr const char* kExistingObjectsSql = R"sql(
  SELECT i.type || ' ' || i.identity FROM pg_namespace x, pg_identify_object(x.tableoid, x.oid, 0) i
  UNION ALL SELECT i.type || ' ' || i.identity FROM pg_constraint x, pg_identify_object(x.tableoid, x.oid, 0) i
  UNION ALL SELECT i.type || ' ' || i.identity FROM pg_class x, pg_identify_object(x.tableoid, x.oid, 0) i
             WHERE x.relkind IN ('i', 'I')
  UNION ALL SELECT i.type || ' ' || i.identity FROM pg_trigger x, pg_identify_object(x.tableoid, x.oid, 0) i
             WHERE NOT x.tgisinternal
  UNION ALL SELECT i.type || ' ' || i.identity FROM pg_rewrite x, pg_identify_object(x.tableoid, x.oid, 0) i
  UNION ALL SELECT i.type || ' ' || i.identity FROM pg_policy x, pg_identify_object(x.tableoid, x.oid, 0) i
  UNION ALL SELECT i.type || ' ' || i.identity FROM pg_statistic_ext x, pg_identify_object(x.tableoid, x.oid, 0) i)sql";

// Comments out (";") the entries of the pg_restore TOC list at `list_path`
// whose object, identified in the dumped database `source`, exists on
// `target` already. Entries the source no longer has, and those without a
// catalog oid (INDEX ATTACH, SEQUENCE OWNED BY, ...), are kept.
Status SkipExisting(PgConn& source, PgConn& target, const std::string& list_path, int* kept, int* skipped) {
  std::vector<std::string> lines;
  std::vector<TocEntry> entries;
  {
    std::ifstream in(list_path);
    for (std::string line; std::getline(in, line);) {
      if (auto e = ParseTocLine(line)) entries.push_back(*e);
      lines.push_back(std::move(line));
    }
    if (in.bad()) return Internal("reading " + list_path);
  }
  ASSIGN_OR_RETURN(auto dumped, IdentifyObjects(source, entries));
  ASSIGN_OR_RETURN(PgResult existing, target.Query(kExistingObjectsSql));
  std::set<std::string> have;
  for (int r = 0; r < existing.rows(); ++r) have.insert(existing.GetString(r, 0));
  std::string filtered;
  for (const auto& line : lines) {
    std::optional<TocEntry> e = ParseTocLine(line);
    bool done = false;
    if (e) {
      auto it = dumped.find(ObjectKey{e->catalog, e->oid});
      done = it != dumped.end() && have.count(it->second) > 0;
      ++*(done ? skipped : kept);
    }
    filtered += (done ? ";" : "") + line + "\n";
  }
  std::ofstream out(list_path, std::ios::trunc);
  out << filtered;
  out.close();
  if (!out) return Internal("writing " + list_path);
  return Status::Ok();
}

}  // namespace

std::optional<TocEntry> ParseTocLine(std::string_view line) {
  // "<dump id>; <catalog oid> <object oid> ..." and nothing else is parsed:
  // the fields after the numbers are names printed unquoted.
  TocEntry e;
  auto number = [&](auto* value, char after) {
    const char* end = line.data() + line.size();
    auto [p, ec] = std::from_chars(line.data(), end, *value);
    if (ec != std::errc() || p == line.data() || p == end || *p != after) return false;
    line.remove_prefix(static_cast<size_t>(p - line.data()) + 1);
    return true;
  };
  if (!number(&e.dump_id, ';') || line.empty() || line[0] != ' ') return std::nullopt;
  line.remove_prefix(1);
  if (!number(&e.catalog, ' ') || !number(&e.oid, ' ')) return std::nullopt;
  return e;
}

std::string TransformedTableDdl(const TableTransform& transform) {
  const TableSchema& t = *transform.target();
  std::string cols, key;
  for (const auto& c : t.columns)
    cols += fmt::format("{}\n  {} {}{}", cols.empty() ? "" : ",", QuoteIdent(c.name), c.type.native,
                        c.not_null ? " NOT NULL" : "");
  for (int k : t.key) key += (key.empty() ? "" : ", ") + QuoteIdent(t.columns[k].name);
  return fmt::format("CREATE SCHEMA IF NOT EXISTS {};\nCREATE TABLE IF NOT EXISTS {} ({},\n  PRIMARY KEY ({})\n);\n",
                     QuoteIdent(t.id.schema), QuoteQualified(t.id.schema, t.id.name), cols, key);
}

Status DumpSchema(const std::string& source_uri, const std::vector<std::shared_ptr<const TableSchema>>& selected,
                  const std::vector<TableId>& all_source_tables, const std::string& dump_path) {
  ASSIGN_OR_RETURN(auto split, SplitPassword(source_uri));
  std::set<std::string> schemas;
  std::set<TableId> chosen;
  for (const auto& t : selected) {
    schemas.insert(t->id.schema);
    chosen.insert(t->id);
  }
  std::vector<std::string> argv = {PgBin("pg_dump"), "--schema-only", "--format=custom", "--no-owner",
                                   "--no-privileges", "--no-publications", "--no-subscriptions",
                                   "--file=" + dump_path};
  for (const auto& s : schemas) argv.push_back("--schema=" + QuoteIdent(s));
  for (const auto& t : all_source_tables)
    if (schemas.count(t.schema) && !chosen.count(t))
      argv.push_back("--exclude-table=" + QuoteQualified(t.schema, t.name));
  argv.push_back("--dbname=" + split.first);
  // The schema stays private like the rest of the state directory: pg_dump
  // truncates the file made here (0600) and keeps its mode.
  int fd = ::open(dump_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    if (fd >= 0) ::close(fd);
    return OperatorError(fmt::format("cannot create {} with mode 0600", dump_path));
  }
  ::close(fd);
  RETURN_IF_ERROR(RunTool(argv, split.second, "", "pg_dump of the source schema"));
  (void)::chmod(dump_path.c_str(), 0600);
  return Status::Ok();
}

Status RestorePreData(PgConn& source, PgConn& target, const std::string& target_uri, const std::string& dump_path,
                      const std::string& work_dir) {
  ASSIGN_OR_RETURN(auto split, SplitPassword(target_uri));
  std::string list_path = work_dir + "/pre-data.list";
  RETURN_IF_ERROR(RunTool({PgBin("pg_restore"), "--list", "--section=pre-data", dump_path}, "", list_path,
                          "listing the pre-data schema"));
  // Schemas that exist on the target already (public, usually) are not created again.
  int kept = 0, skipped = 0;
  RETURN_IF_ERROR(SkipExisting(source, target, list_path, &kept, &skipped).WithContext("filtering the pre-data list"));
  return RunTool({PgBin("pg_restore"), "--section=pre-data", "--single-transaction", "--exit-on-error", "--no-owner",
                  "--no-privileges", "--use-list=" + list_path, "--dbname=" + split.first, dump_path},
                 split.second, "", "pg_restore of the schema (pre-data) on the target");
}

Status RestorePostData(PgConn& source, PgConn& target, const std::string& target_uri, const std::string& dump_path,
                       int jobs, int index_memory_mb, const std::string& work_dir,
                       const std::string& application_name) {
  ASSIGN_OR_RETURN(auto split, SplitPassword(target_uri));
  std::string list_path = work_dir + "/post-data.list";
  RETURN_IF_ERROR(RunTool({PgBin("pg_restore"), "--list", "--section=post-data", dump_path}, "", list_path,
                          "listing the post-data schema"));
  // What already exists on the target (built early, or by a run that crashed) is not built again.
  int kept = 0, skipped = 0;
  RETURN_IF_ERROR(SkipExisting(source, target, list_path, &kept, &skipped).WithContext("filtering the post-data list"));
  if (skipped) LOG_INFO("schema: {} post-data objects already on the target, {} to build", skipped, kept);
  if (kept == 0) return Status::Ok();
  return RunTool({PgBin("pg_restore"), "--section=post-data", "--exit-on-error", "--no-owner", "--no-privileges",
                  fmt::format("--jobs={}", std::max(1, jobs)), "--use-list=" + list_path, "--dbname=" + split.first,
                  dump_path},
                 split.second, "", "pg_restore of indexes and constraints (post-data) on the target",
                 fmt::format("-c maintenance_work_mem={}MB", index_memory_mb), application_name);
}

// The post-data entries that belong to one table and need nothing but it:
// primary key, unique and exclusion constraints (pg_constraint) and indexes
// (pg_class), on a plain table that is not a partition. $1/$2: catalogs and
// oids of the entries; $3/$4: schemas and names of the tables.
constexpr const char* kTableLocalSql = R"sql(
  SELECT e.catalog, e.oid, n.nspname, c.relname
    FROM unnest($1::oid[], $2::oid[]) AS e(catalog, oid)
    JOIN LATERAL (
      SELECT x.conrelid AS rel, 0 AS ord FROM pg_constraint x
       WHERE e.catalog = 'pg_constraint'::regclass AND x.oid = e.oid AND x.contype IN ('p', 'u', 'x')
      UNION ALL
      SELECT x.indrelid, 1 FROM pg_index x WHERE e.catalog = 'pg_class'::regclass AND x.indexrelid = e.oid
    ) r ON true
    JOIN pg_class c ON c.oid = r.rel AND c.relkind = 'r' AND NOT c.relispartition
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN unnest($3::text[], $4::text[]) AS t(schema_name, table_name)
      ON t.schema_name = n.nspname AND t.table_name = c.relname
   ORDER BY r.ord)sql";

Result<std::map<TableId, std::vector<std::string>>> TableLocalPostData(
    PgConn& source, PgConn& target, const std::string& dump_path, const std::string& work_dir,
    const std::vector<std::shared_ptr<const TableSchema>>& tables) {
  std::string list_path = work_dir + "/early-index.list";
  RETURN_IF_ERROR(RunTool({PgBin("pg_restore"), "--list", "--section=post-data", dump_path}, "", list_path,
                          "listing the post-data schema"));
  std::map<ObjectKey, std::string> lines;
  std::vector<TocEntry> entries;
  {
    std::ifstream in(list_path);
    for (std::string line; std::getline(in, line);)
      if (auto e = ParseTocLine(line); e && e->oid != 0) {
        entries.push_back(*e);
        lines[ObjectKey{e->catalog, e->oid}] = line;
      }
    if (in.bad()) return Internal("reading " + list_path);
  }
  std::map<TableId, std::vector<std::string>> out;
  if (entries.empty()) return out;
  std::string catalogs, oids;
  for (const auto& e : entries) {
    catalogs += fmt::format("{}{}", catalogs.empty() ? "" : ",", e.catalog);
    oids += fmt::format("{}{}", oids.empty() ? "" : ",", e.oid);
  }
  std::vector<std::string> schemas, names;
  for (const auto& t : tables)
    if (!t->partitioned) {
      schemas.push_back(t->id.schema);
      names.push_back(t->id.name);
    }
  ASSIGN_OR_RETURN(PgResult local, source.Query(kTableLocalSql, {"{" + catalogs + "}", "{" + oids + "}",
                                                                TextArray(schemas), TextArray(names)}));
  ASSIGN_OR_RETURN(auto dumped, IdentifyObjects(source, entries));
  ASSIGN_OR_RETURN(PgResult existing, target.Query(kExistingObjectsSql));
  std::set<std::string> have;
  for (int r = 0; r < existing.rows(); ++r) have.insert(existing.GetString(r, 0));
  for (int r = 0; r < local.rows(); ++r) {
    ObjectKey key{static_cast<uint32_t>(local.GetInt(r, 0)), static_cast<uint32_t>(local.GetInt(r, 1))};
    auto name = dumped.find(key);
    if (name == dumped.end() || have.count(name->second)) continue;
    out[TableId{local.GetString(r, 2), local.GetString(r, 3)}].push_back(lines.at(key));
  }
  return out;
}

Status RestoreTocLines(const std::string& target_uri, const std::string& dump_path, const std::string& list_path,
                       const std::vector<std::string>& lines, int jobs, int index_memory_mb,
                       const std::string& application_name) {
  ASSIGN_OR_RETURN(auto split, SplitPassword(target_uri));
  {
    std::ofstream out(list_path, std::ios::trunc);
    for (const auto& l : lines) out << l << "\n";
    out.close();
    if (!out) return Internal("writing " + list_path);
  }
  return RunTool({PgBin("pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges",
                  fmt::format("--jobs={}", std::max(1, jobs)), "--use-list=" + list_path, "--dbname=" + split.first,
                  dump_path},
                 split.second, "", "pg_restore of an index or constraint on the target",
                 fmt::format("-c maintenance_work_mem={}MB", index_memory_mb), application_name);
}

Result<std::vector<ColumnSchema>> TargetWritableColumns(PgConn& target, const TableId& table) {
  ASSIGN_OR_RETURN(PgResult r, target.Query(R"sql(
    SELECT a.attname, format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, NULL)
      FROM pg_attribute a
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
     ORDER BY a.attnum)sql",
                                              {QuoteQualified(table.schema, table.name)}));
  if (r.rows() == 0) return NotFound(fmt::format("table {} does not exist on the target", table.ToString()));
  std::vector<ColumnSchema> out;
  for (int i = 0; i < r.rows(); ++i) {
    ColumnSchema c;
    c.name = r.GetString(i, 0);
    c.type.native = r.GetString(i, 1);
    c.type.native_base = r.GetString(i, 2);
    out.push_back(std::move(c));
  }
  return out;
}

// The sequences the tables (schema $1[i], name $2[i]) use: owned by one of
// them (serial: deptype 'a', identity: 'i') or named in a column default
// (nextval('s') depends on s, deptype 'n'), with the state to carry over.
constexpr const char* kUsedSequencesSql = R"sql(
  WITH rel AS (
    SELECT c.oid FROM unnest($1::text[], $2::text[]) AS t(schema_name, table_name)
      JOIN pg_namespace n ON n.nspname = t.schema_name
      JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
  ), used AS (
    SELECT d.objid AS seq FROM pg_depend d JOIN rel ON d.refobjid = rel.oid
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
    UNION
    SELECT d.refobjid FROM pg_attrdef ad JOIN rel ON ad.adrelid = rel.oid
      JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
  ), standalone AS (
    -- Sequences no table owns, in the migrated tables' schemas (an
    -- application calls nextval on them itself); those of other tables are not.
    SELECT c.oid AS seq FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'S' AND n.nspname = ANY($1::text[])
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
  ), chosen AS (
    SELECT seq, false AS optional FROM used
    UNION ALL
    SELECT seq, true FROM standalone WHERE seq NOT IN (SELECT seq FROM used)
  )
  SELECT s.schemaname, s.sequencename, s.last_value::text, s.last_value IS NOT NULL, s.increment_by > 0, used.optional
    FROM chosen AS used JOIN pg_class c ON c.oid = used.seq AND c.relkind = 'S'
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
   ORDER BY 1, 2)sql";

Status SyncSequences(PgConn& source, PgConn& target, const std::vector<std::shared_ptr<const TableSchema>>& selected) {
  std::vector<std::string> schemas, names;
  for (const auto& t : selected) {
    schemas.push_back(t->id.schema);
    names.push_back(t->id.name);
  }
  ASSIGN_OR_RETURN(PgResult seqs, source.Query(kUsedSequencesSql, {TextArray(schemas), TextArray(names)}));
  for (int r = 0; r < seqs.rows(); ++r) {
    if (!seqs.GetBool(r, 3)) continue;  // never used: keep the target's start value
    std::string name = QuoteQualified(seqs.Get(r, 0), seqs.Get(r, 1));
    if (seqs.GetBool(r, 5)) {  // a standalone sequence the target may not have (not dumped with a table)
      ASSIGN_OR_RETURN(std::string there, target.QueryValue("SELECT (to_regclass($1) IS NOT NULL)::text", {name}));
      if (there != "true") continue;
    }
    // Never backwards: a value the target already handed out stays used.
    auto st = target.Query(seqs.GetBool(r, 4)
                               ? "SELECT setval($1::regclass, greatest($2::bigint, coalesce(pg_sequence_last_value($1::regclass), $2::bigint)), true)"
                               : "SELECT setval($1::regclass, least($2::bigint, coalesce(pg_sequence_last_value($1::regclass), $2::bigint)), true)",
                           {name, seqs.GetString(r, 2)});
    if (!st.ok()) return st.status().WithContext("setting sequence " + name);
  }
  return Status::Ok();
}

Result<std::vector<std::string>> SequenceProblems(PgConn& source, PgConn& target,
                                                  const std::vector<std::shared_ptr<const TableSchema>>& selected,
                                                  const std::string& source_name, const std::string& target_name,
                                                  int* checked) {
  std::vector<std::string> schemas, names, out;
  for (const auto& t : selected) {
    schemas.push_back(t->id.schema);
    names.push_back(t->id.name);
  }
  // The same list SyncSequences carries (pg_sequences shows every sequence,
  // with last_value NULL where the user may not read it).
  ASSIGN_OR_RETURN(PgResult seqs, source.Query(kUsedSequencesSql, {TextArray(schemas), TextArray(names)}));
  *checked = seqs.rows();
  for (int r = 0; r < seqs.rows(); ++r) {
    const std::string name = QuoteQualified(seqs.Get(r, 0), seqs.Get(r, 1));
    ASSIGN_OR_RETURN(std::string readable,
                     source.QueryValue("SELECT has_sequence_privilege($1::regclass, 'SELECT')::text", {name}));
    if (readable != "true")
      out.push_back(fmt::format("sequence {}: the {} user may not read it (GRANT SELECT ON SEQUENCE {} TO the spec's "
                                "{} user)",
                                name, source_name, name, source_name));
    ASSIGN_OR_RETURN(std::string there,
                     target.QueryValue("SELECT CASE WHEN to_regclass($1) IS NULL THEN 'missing' WHEN "
                                       "has_sequence_privilege(to_regclass($1), 'UPDATE') THEN 'ok' ELSE 'denied' END",
                                       {name}));
    if (there == "denied")
      out.push_back(fmt::format("sequence {}: the {} user may not set it (GRANT UPDATE ON SEQUENCE {} TO the spec's "
                                "{} user)",
                                name, target_name, name, target_name));
    else if (there == "missing" && !seqs.GetBool(r, 5))
      out.push_back(fmt::format("sequence {}: missing on the {} (a table's sequence: create it there)", name,
                                target_name));
  }
  return out;
}

}  // namespace midflight::pg
