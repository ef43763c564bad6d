#include "target/postgres/schema_loader.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "base/log.h"
#include "postgres/pg_conn.h"

namespace midflight::pg {
namespace {

std::string PgBin(const std::string& tool) {
  if (const char* dir = std::getenv("MIDFLIGHT_PG_BIN")) return std::string(dir) + "/" + tool;
  return tool;
}

// Runs a PostgreSQL client tool with the password in PGPASSWORD (never on the
// command line). stdout goes to `stdout_path` when given.
Status RunTool(const std::vector<std::string>& argv, const std::string& password, const std::string& stdout_path,
               const std::string& what, const std::string& settings = "") {
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

// Rewrites a pg_restore TOC list, commenting out (";") the entries `skip`
// says are done already. Entry lines are tokenised on spaces:
// "3345; 2606 16390 CONSTRAINT public pgbench_accounts pgbench_accounts_pkey owner".
void FilterToc(const std::string& list_path, const std::function<bool(const std::vector<std::string>&)>& skip,
               int* kept, int* skipped) {
  std::ifstream in(list_path);
  std::string line, filtered;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == ';') {
      filtered += line + "\n";
      continue;
    }
    std::istringstream ls(line);
    std::vector<std::string> tok;
    for (std::string w; ls >> w;) tok.push_back(w);
    bool done = skip(tok);
    ++*(done ? skipped : kept);
    filtered += (done ? ";" : "") + line + "\n";
  }
  in.close();
  std::ofstream(list_path) << filtered;
}

}  // namespace

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

Status RestorePreData(PgConn& target, const std::string& target_uri, const std::string& dump_path,
                      const std::string& work_dir) {
  ASSIGN_OR_RETURN(auto split, SplitPassword(target_uri));
  std::string list_path = work_dir + "/pre-data.list";
  RETURN_IF_ERROR(RunTool({PgBin("pg_restore"), "--list", "--section=pre-data", dump_path}, "", list_path,
                          "listing the pre-data schema"));
  // Schemas that exist on the target already (public, usually) are not created again.
  ASSIGN_OR_RETURN(PgResult existing, target.Query("SELECT nspname FROM pg_namespace"));
  std::set<std::string> have;
  for (int r = 0; r < existing.rows(); ++r) have.insert(existing.GetString(r, 0));
  int kept = 0, skipped = 0;
  FilterToc(
      list_path,
      [&](const std::vector<std::string>& tok) {  // "5; 2615 2200 SCHEMA - public owner"
        return tok.size() >= 6 && tok[3] == "SCHEMA" && tok[4] == "-" && have.count(tok[5]) > 0;
      },
      &kept, &skipped);
  return RunTool({PgBin("pg_restore"), "--section=pre-data", "--single-transaction", "--exit-on-error", "--no-owner",
                  "--no-privileges", "--use-list=" + list_path, "--dbname=" + split.first, dump_path},
                 split.second, "", "pg_restore of the schema (pre-data) on the target");
}

Status RestorePostData(PgConn& target, const std::string& target_uri, const std::string& dump_path, int jobs,
                       int index_memory_mb, const std::string& work_dir) {
  ASSIGN_OR_RETURN(auto split, SplitPassword(target_uri));
  std::string list_path = work_dir + "/post-data.list";
  RETURN_IF_ERROR(RunTool({PgBin("pg_restore"), "--list", "--section=post-data", dump_path}, "", list_path,
                          "listing the post-data schema"));
  // Names of what already exists on the target (a re-run after a crash).
  ASSIGN_OR_RETURN(PgResult existing, target.Query(R"sql(
    SELECT n.nspname || ' ' || c.conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
    UNION ALL SELECT n.nspname || ' ' || i.relname FROM pg_class i JOIN pg_namespace n ON n.oid = i.relnamespace
     WHERE i.relkind IN ('i', 'I')
    UNION ALL SELECT n.nspname || ' ' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal)sql"));
  std::set<std::string> have;
  for (int r = 0; r < existing.rows(); ++r) have.insert(existing.GetString(r, 0));
  int kept = 0, skipped = 0;
  // An entry is built already when a "<schema> <name>" pair of its tokens exists.
  FilterToc(
      list_path,
      [&](const std::vector<std::string>& tok) {
        for (size_t i = 3; i + 1 < tok.size(); ++i)
          for (size_t j = i + 1; j < tok.size(); ++j)
            if (have.count(tok[i] + " " + tok[j])) return true;
        return false;
      },
      &kept, &skipped);
  if (skipped) LOG_INFO("schema: {} post-data objects already on the target, {} to build", skipped, kept);
  if (kept == 0) return Status::Ok();
  return RunTool({PgBin("pg_restore"), "--section=post-data", "--exit-on-error", "--no-owner", "--no-privileges",
                  fmt::format("--jobs={}", std::max(1, jobs)), "--use-list=" + list_path, "--dbname=" + split.first,
                  dump_path},
                 split.second, "", "pg_restore of indexes and constraints (post-data) on the target",
                 fmt::format("-c maintenance_work_mem={}MB", index_memory_mb));
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

Status SyncSequences(PgConn& source, PgConn& target, const std::vector<std::shared_ptr<const TableSchema>>& selected) {
  std::set<std::string> schemas;
  for (const auto& t : selected) schemas.insert(t->id.schema);
  std::string list = "{";
  for (const auto& s : schemas) list += (list.size() > 1 ? "," : "") + QuoteIdent(s);
  list += "}";
  ASSIGN_OR_RETURN(PgResult seqs, source.Query("SELECT schemaname, sequencename, last_value::text, last_value IS NOT NULL, "
                                               "increment_by > 0 FROM pg_sequences WHERE schemaname = ANY($1::text[])",
                                               {list}));
  for (int r = 0; r < seqs.rows(); ++r) {
    if (!seqs.GetBool(r, 3)) continue;  // never used: keep the target's start value
    std::string name = QuoteQualified(seqs.Get(r, 0), seqs.Get(r, 1));
    // Never backwards: a value the target already handed out stays used.
    auto st = target.Query(seqs.GetBool(r, 4)
                               ? "SELECT setval($1::regclass, greatest($2::bigint, coalesce(pg_sequence_last_value($1::regclass), $2::bigint)), true)"
                               : "SELECT setval($1::regclass, least($2::bigint, coalesce(pg_sequence_last_value($1::regclass), $2::bigint)), true)",
                           {name, seqs.GetString(r, 2)});
    if (!st.ok()) return st.status().WithContext("setting sequence " + name);
  }
  return Status::Ok();
}

}  // namespace midflight::pg
