#include "engines/mysql/schema_objects.h"

#include <fmt/format.h>
#include <mysql.h>

#include <algorithm>
#include <map>
#include <optional>

#include "base/log.h"
#include "engines/mysql/my_conn.h"
#include "engines/mysql/sql_tokens.h"

namespace midflight::mysql {
namespace {

// The guard around a migrated trigger's body (GuardTrigger).
constexpr std::string_view kGuardOpen = "BEGIN IF @midflight_apply IS NULL THEN\n";
constexpr std::string_view kGuardClose = "; END IF; END";

// {0}: the database, quoted; {1}: the tables whose triggers are wanted, quoted list.
constexpr const char* kListRoutinesSql = R"sql(
SELECT ROUTINE_TYPE, ROUTINE_NAME, DEFINER FROM information_schema.ROUTINES
 WHERE ROUTINE_SCHEMA = {0} AND ROUTINE_TYPE IN ('FUNCTION', 'PROCEDURE') ORDER BY ROUTINE_TYPE, ROUTINE_NAME
)sql";
constexpr const char* kListViewsSql = R"sql(
SELECT TABLE_NAME, DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {0} ORDER BY TABLE_NAME
)sql";
constexpr const char* kListTriggersSql = R"sql(
SELECT TRIGGER_NAME, DEFINER, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS
 WHERE TRIGGER_SCHEMA = {0} ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER
)sql";
constexpr const char* kListEventsSql = R"sql(
SELECT EVENT_NAME, DEFINER, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {0} ORDER BY EVENT_NAME
)sql";

// The privileges the current user holds globally or on database {0}.
constexpr const char* kPrivilegesSql = R"sql(
SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = @mf_grantee
UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = @mf_grantee AND TABLE_SCHEMA = {0}
)sql";
constexpr const char* kGranteeSql =
    "SET @mf_grantee = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', "
    "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')";

SchemaObject MakeObject(ObjectKind kind, const std::string& name, const std::string& definer) {
  SchemaObject o;
  o.kind = kind;
  o.name = name;
  // user@host: a user name may itself hold '@', a host may not.
  const size_t at = definer.rfind('@');
  o.definer_user = at == std::string::npos ? definer : definer.substr(0, at);
  if (at != std::string::npos) o.definer_host = definer.substr(at + 1);
  return o;
}

std::string Qualified(const std::string& db, const SchemaObject& o) { return fmt::format("{}.{}", db, o.name); }

// The SHOW CREATE statement for `o`, and which columns of its answer hold the
// statement, sql_mode, character_set_client, collation_connection, time_zone.
struct ShowShape {
  std::string sql;
  int statement, sql_mode, charset, collation, time_zone;  // -1: not in the answer
};
ShowShape ShowCreate(const std::string& db, const SchemaObject& o) {
  const std::string name = QuoteQualified(db, o.name);
  switch (o.kind) {
    case ObjectKind::kFunction: return {"SHOW CREATE FUNCTION " + name, 2, 1, 3, 4, -1};
    case ObjectKind::kProcedure: return {"SHOW CREATE PROCEDURE " + name, 2, 1, 3, 4, -1};
    case ObjectKind::kView: return {"SHOW CREATE VIEW " + name, 1, -1, 2, 3, -1};
    case ObjectKind::kTrigger: return {"SHOW CREATE TRIGGER " + name, 2, 1, 3, 4, -1};
    case ObjectKind::kEvent: return {"SHOW CREATE EVENT " + name, 3, 1, 4, 5, 2};
  }
  return {};
}

// One object's definition as the source prints it, with its creation context.
struct Definition {
  std::string statement, sql_mode, charset, collation, time_zone;
  bool has_sql_mode = false;  // views keep no sql_mode of their own
};

Result<Definition> ReadDefinition(MyConn& src, const std::string& db, const SchemaObject& o) {
  const ShowShape shape = ShowCreate(db, o);
  auto r = src.Query(shape.sql);
  if (!r.ok())
    return r.status().WithContext(
        fmt::format("{} {}: reading its definition on the source", ObjectKindName(o.kind), Qualified(db, o)));
  if (r->rows() != 1 || r->cols() <= shape.statement || r->IsNull(0, shape.statement))
    return OperatorError(fmt::format(
        "{} {}: the source shows no definition for it (the user lacks the privilege to read it: SHOW VIEW for "
        "views, TRIGGER for triggers, EVENT for events, SELECT on mysql.proc for routines)",
        ObjectKindName(o.kind), Qualified(db, o)));
  Definition d;
  d.statement = r->Get(0, shape.statement);
  if (shape.sql_mode >= 0) {
    d.sql_mode = r->Get(0, shape.sql_mode);
    d.has_sql_mode = true;
  }
  d.charset = r->Get(0, shape.charset);
  d.collation = r->Get(0, shape.collation);
  if (shape.time_zone >= 0) d.time_zone = r->Get(0, shape.time_zone);
  return d;
}

// Runs `sql` on `dst` in the creation context of `d` (sql_mode, client
// charset, connection collation, time zone), then restores the session.
// Returns the server's error number in *error_number (0 on success).
Status ExecInContext(MyConn& dst, const Definition& d, const std::string& sql, unsigned* error_number) {
  *error_number = 0;
  ASSIGN_OR_RETURN(MyResult saved,
                   dst.Query("SELECT @@SESSION.sql_mode, @@SESSION.character_set_client, "
                             "@@SESSION.collation_connection, @@SESSION.time_zone"));
  std::vector<std::string> sets;
  if (d.has_sql_mode) sets.push_back("sql_mode = " + QuoteString(d.sql_mode));
  if (!d.charset.empty()) sets.push_back("character_set_client = " + QuoteString(d.charset));
  if (!d.collation.empty()) sets.push_back("collation_connection = " + QuoteString(d.collation));
  if (!d.time_zone.empty()) sets.push_back("time_zone = " + QuoteString(d.time_zone));
  RETURN_IF_ERROR(dst.Exec(fmt::format("SET SESSION {}", fmt::join(sets, ", "))));
  Status st = dst.Exec(sql);
  if (!st.ok()) *error_number = mysql_errno(dst.raw());
  Status restore = dst.Exec(fmt::format(
      "SET SESSION sql_mode = {}, character_set_client = {}, collation_connection = {}, time_zone = {}",
      QuoteString(saved.Get(0, 0)), QuoteString(saved.Get(0, 1)), QuoteString(saved.Get(0, 2)),
      QuoteString(saved.Get(0, 3))));
  RETURN_IF_ERROR(st);
  return restore;
}

// The names of the objects of `kind` that exist in `db` on `conn`.
Result<std::set<std::string>> ExistingObjects(MyConn& conn, const std::string& db, ObjectKind kind) {
  std::string sql;
  switch (kind) {
    case ObjectKind::kFunction:
    case ObjectKind::kProcedure:
      sql = fmt::format("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {} AND "
                        "ROUTINE_TYPE = {}",
                        QuoteString(db), kind == ObjectKind::kFunction ? "'FUNCTION'" : "'PROCEDURE'");
      break;
    case ObjectKind::kView:
      sql = fmt::format("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {}", QuoteString(db));
      break;
    case ObjectKind::kTrigger:
      sql = fmt::format("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {}",
                        QuoteString(db));
      break;
    case ObjectKind::kEvent:
      sql = fmt::format("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {}", QuoteString(db));
      break;
  }
  ASSIGN_OR_RETURN(MyResult r, conn.Query(sql));
  std::set<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.insert(r.Get(i, 0));
  return out;
}

// The statement to run on the target for `o`: the source's, its database
// references renamed, a trigger guarded, an event disabled.
Result<std::string> TargetStatement(const SchemaObject& o, const Definition& d, const std::string& source_db,
                                    const std::string& target_db) {
  std::string sql = d.statement;
  if (source_db != target_db) {
    ASSIGN_OR_RETURN(sql, RenameDatabase(sql, source_db, target_db));
  }
  if (o.kind == ObjectKind::kTrigger) return GuardTrigger(sql);
  if (o.kind == ObjectKind::kEvent) return DisableEvent(sql);
  return sql;
}

// Creates `o` on the target unless it exists there. Returns the server's error
// number in *error_number when creating failed.
Status CreateOne(MyConn& src, MyConn& dst, const std::string& source_db, const std::string& target_db,
                 const SchemaObject& o, unsigned* error_number) {
  *error_number = 0;
  ASSIGN_OR_RETURN(Definition d, ReadDefinition(src, source_db, o));
  auto sql = TargetStatement(o, d, source_db, target_db);
  if (!sql.ok())
    return sql.status().WithContext(
        fmt::format("{} {}: reading its definition", ObjectKindName(o.kind), Qualified(source_db, o)));
  LOG_DEBUG("schema: {}", *sql);
  Status st = ExecInContext(dst, d, *sql, error_number);
  if (!st.ok())
    return st.WithContext(fmt::format("schema: creating {} {} on the target", ObjectKindName(o.kind),
                                      Qualified(target_db, o)));
  return Status::Ok();
}

// Makes `dst`'s current database `db` (objects are created where the
// session is), for the duration of the caller's work.
Status UseDatabase(MyConn& dst, const std::string& db) { return dst.Exec("USE " + QuoteIdent(db)); }

}  // namespace

const char* ObjectKindName(ObjectKind k) {
  switch (k) {
    case ObjectKind::kFunction: return "function";
    case ObjectKind::kProcedure: return "procedure";
    case ObjectKind::kView: return "view";
    case ObjectKind::kTrigger: return "trigger";
    case ObjectKind::kEvent: return "event";
  }
  return "?";
}

std::string SchemaObject::Definer() const {
  if (definer_host.empty()) return QuoteString(definer_user);
  return fmt::format("{}@{}", QuoteString(definer_user), QuoteString(definer_host));
}

Result<std::vector<SchemaObject>> ListObjects(MyConn& src, const std::string& db, const std::set<std::string>& tables) {
  std::vector<SchemaObject> out;
  const std::string q = QuoteString(db);
  ASSIGN_OR_RETURN(MyResult routines, src.Query(fmt::format(kListRoutinesSql, q)));
  for (int i = 0; i < routines.rows(); ++i)
    out.push_back(MakeObject(routines.Get(i, 0) == "FUNCTION" ? ObjectKind::kFunction : ObjectKind::kProcedure,
                             routines.Get(i, 1), routines.Get(i, 2)));
  ASSIGN_OR_RETURN(MyResult views, src.Query(fmt::format(kListViewsSql, q)));
  for (int i = 0; i < views.rows(); ++i) out.push_back(MakeObject(ObjectKind::kView, views.Get(i, 0), views.Get(i, 1)));
  ASSIGN_OR_RETURN(MyResult triggers, src.Query(fmt::format(kListTriggersSql, q)));
  for (int i = 0; i < triggers.rows(); ++i) {
    if (!tables.empty() && !tables.count(triggers.Get(i, 2))) continue;
    out.push_back(MakeObject(ObjectKind::kTrigger, triggers.Get(i, 0), triggers.Get(i, 1)));
    out.back().table = triggers.Get(i, 2);
  }
  ASSIGN_OR_RETURN(MyResult events, src.Query(fmt::format(kListEventsSql, q)));
  for (int i = 0; i < events.rows(); ++i) {
    out.push_back(MakeObject(ObjectKind::kEvent, events.Get(i, 0), events.Get(i, 1)));
    out.back().status = events.Get(i, 2);
  }
  return out;
}

Status CheckObjects(MyConn& src, const std::string& source_db, MyConn& dst, const std::set<std::string>& tables,
                    const std::string& reader, std::vector<std::string>* problems) {
  auto privileges = [](MyConn& conn, const std::string& db) -> Result<std::set<std::string>> {
    RETURN_IF_ERROR(conn.Exec(kGranteeSql));
    ASSIGN_OR_RETURN(MyResult r, conn.Query(fmt::format(kPrivilegesSql, QuoteString(db))));
    std::set<std::string> out;
    for (int i = 0; i < r.rows(); ++i) out.insert(r.Get(i, 0));
    return out;
  };
  ASSIGN_OR_RETURN(std::set<std::string> have, privileges(src, source_db));
  std::vector<std::string> lacking;
  for (const char* p : {"TRIGGER", "EVENT", "SHOW VIEW"})
    if (!have.count(p)) lacking.push_back(p);
  if (!lacking.empty())
    problems->push_back(fmt::format(
        "{}: the user lacks {} on {}: without them its triggers and events are not even listed and its views "
        "cannot be read, so the target would lack them; GRANT {} ON {}.* TO the migration's user",
        reader, fmt::join(lacking, ", "), source_db, fmt::join(lacking, ", "), QuoteIdent(source_db)));

  ASSIGN_OR_RETURN(std::vector<SchemaObject> objects, ListObjects(src, source_db, tables));
  if (objects.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(std::string target_user, dst.QueryValue("SELECT CURRENT_USER()"));
  std::map<std::string, bool> exists;  // definer -> exists on the target
  bool other_definer = false;
  for (const auto& o : objects) {
    const std::string definer = o.definer_user + "@" + o.definer_host;
    if (definer == target_user) continue;
    other_definer = true;
    auto it = exists.find(definer);
    if (it == exists.end()) {
      auto n = dst.QueryValue(fmt::format("SELECT COUNT(*) FROM mysql.user WHERE User = {} AND Host = {}",
                                          QuoteString(o.definer_user), QuoteString(o.definer_host)));
      if (!n.ok()) {
        problems->push_back(fmt::format("target: cannot check that the definer accounts of the migrated views, "
                                        "routines, triggers and events exist: {}; GRANT SELECT ON mysql.user to the "
                                        "migration's user",
                                        n.status().message()));
        return Status::Ok();
      }
      it = exists.emplace(definer, *n != "0").first;
    }
    if (!it->second)
      problems->push_back(fmt::format(
          "{} {}: its definer {} does not exist on the target; create that account there (with the privileges it "
          "has on the source), or the {} fails when used",
          ObjectKindName(o.kind), Qualified(source_db, o), o.Definer(), ObjectKindName(o.kind)));
  }
  if (other_definer) {
    ASSIGN_OR_RETURN(std::set<std::string> target_have, privileges(dst, source_db));
    if (!target_have.count("SUPER") && !target_have.count("SET USER"))
      problems->push_back(
          "target: the user lacks SET USER (or SUPER), needed to create views, routines, triggers and events whose "
          "DEFINER is another account; GRANT SET USER ON *.* TO the migration's user");
  }
  return Status::Ok();
}

Status CreateRoutinesAndViews(MyConn& src, MyConn& dst, const std::string& source_db, const std::string& target_db) {
  ASSIGN_OR_RETURN(std::vector<SchemaObject> objects, ListObjects(src, source_db, {}));
  RETURN_IF_ERROR(UseDatabase(dst, target_db));
  std::map<ObjectKind, std::set<std::string>> existing;
  for (ObjectKind k : {ObjectKind::kFunction, ObjectKind::kProcedure, ObjectKind::kView}) {
    ASSIGN_OR_RETURN(existing[k], ExistingObjects(dst, target_db, k));
  }
  int routines = 0, views = 0, kept = 0;
  std::vector<const SchemaObject*> pending;
  for (const auto& o : objects) {
    if (o.kind != ObjectKind::kFunction && o.kind != ObjectKind::kProcedure && o.kind != ObjectKind::kView) continue;
    if (existing[o.kind].count(o.name)) {
      ++kept;
      continue;
    }
    if (o.kind == ObjectKind::kView) {
      pending.push_back(&o);
      continue;
    }
    unsigned error = 0;
    RETURN_IF_ERROR(CreateOne(src, dst, source_db, target_db, o, &error));
    ++routines;
  }
  // Views in rounds: one that reads a view not created yet fails with "table
  // doesn't exist" (1146) or "references invalid table(s)" (1356) and is
  // tried again after the others, until a round creates nothing.
  std::map<const SchemaObject*, Status> failed;
  while (!pending.empty()) {
    std::vector<const SchemaObject*> again;
    failed.clear();
    for (const SchemaObject* o : pending) {
      unsigned error = 0;
      Status st = CreateOne(src, dst, source_db, target_db, *o, &error);
      if (st.ok()) {
        ++views;
        continue;
      }
      if (error != 1146 && error != 1356) return st;
      again.push_back(o);
      failed.emplace(o, st);
    }
    if (again.size() == pending.size()) break;
    pending = std::move(again);
  }
  for (const auto& [o, st] : failed)
    LOG_WARN("schema: view {}.{} is not migrated: it reads something the target does not have ({})", source_db,
             o->name, st.message());
  LOG_INFO("schema: {} functions and procedures and {} views created in {}, {} there already", routines, views,
           target_db, kept);
  return Status::Ok();
}

Status CreateTriggersAndEvents(MyConn& src, MyConn& dst, const std::string& source_db, const std::string& target_db,
                               const std::set<std::string>& tables) {
  ASSIGN_OR_RETURN(std::vector<SchemaObject> objects, ListObjects(src, source_db, tables));
  RETURN_IF_ERROR(UseDatabase(dst, target_db));
  ASSIGN_OR_RETURN(std::set<std::string> have_triggers, ExistingObjects(dst, target_db, ObjectKind::kTrigger));
  ASSIGN_OR_RETURN(std::set<std::string> have_events, ExistingObjects(dst, target_db, ObjectKind::kEvent));
  int triggers = 0, events = 0, kept = 0;
  for (const auto& o : objects) {
    if (o.kind != ObjectKind::kTrigger && o.kind != ObjectKind::kEvent) continue;
    if ((o.kind == ObjectKind::kTrigger ? have_triggers : have_events).count(o.name)) {
      ++kept;
      continue;
    }
    unsigned error = 0;
    RETURN_IF_ERROR(CreateOne(src, dst, source_db, target_db, o, &error));
    ++(o.kind == ObjectKind::kTrigger ? triggers : events);
  }
  LOG_INFO("schema: {} triggers (quiet on midflight's apply sessions) and {} events (disabled) created in {}, {} "
           "there already",
           triggers, events, target_db, kept);
  return Status::Ok();
}

Result<std::vector<std::string>> GuardTriggersInPlace(MyConn& conn, const std::string& db,
                                                      const std::set<std::string>& tables) {
  ASSIGN_OR_RETURN(std::vector<SchemaObject> objects, ListObjects(conn, db, tables));
  RETURN_IF_ERROR(UseDatabase(conn, db));
  std::vector<std::string> guarded;
  for (const auto& o : objects) {
    if (o.kind != ObjectKind::kTrigger) continue;
    ASSIGN_OR_RETURN(Definition d, ReadDefinition(conn, db, o));
    auto sql = GuardTrigger(d.statement);
    if (!sql.ok()) return sql.status().WithContext(fmt::format("trigger {}", Qualified(db, o)));
    if (*sql == d.statement) continue;  // guarded already
    // CREATE OR REPLACE swaps the trigger under the table's metadata lock:
    // no row change runs between the old body and the guarded one.
    if (sql->rfind("CREATE ", 0) != 0)
      return Internal(fmt::format("trigger {}: its definition does not start with CREATE", Qualified(db, o)));
    std::string replace = "CREATE OR REPLACE " + sql->substr(7);
    unsigned error = 0;
    if (Status st = ExecInContext(conn, d, replace, &error); !st.ok())
      return st.WithContext(fmt::format("guarding trigger {} (it needs the TRIGGER privilege)", Qualified(db, o)));
    guarded.push_back(o.name);
  }
  return guarded;
}

Result<std::vector<SchemaObject>> ListEvents(MyConn& conn, const std::string& db) {
  ASSIGN_OR_RETURN(MyResult r, conn.Query(fmt::format(kListEventsSql, QuoteString(db))));
  std::vector<SchemaObject> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(MakeObject(ObjectKind::kEvent, r.Get(i, 0), r.Get(i, 1)));
    out.back().status = r.Get(i, 2);
  }
  return out;
}

Status SetEventEnabled(MyConn& conn, const std::string& db, const SchemaObject& event, bool enabled) {
  // ALTER EVENT alone makes the user running it the event's definer (the
  // body would then run with midflight's rights): name the definer it has.
  // sql_mode and time_zone stay the event's own (the server keeps them).
  Status st = conn.Exec(fmt::format("ALTER DEFINER = {} EVENT {} {}", event.Definer(), QuoteQualified(db, event.name),
                                    enabled ? "ENABLE" : "DISABLE"));
  if (!st.ok())
    return st.WithContext(fmt::format("{} event {}.{} (definer {}; changing another definer's event needs SET USER or "
                                      "SUPER)",
                                      enabled ? "enabling" : "disabling", db, event.name, event.Definer()));
  return Status::Ok();
}

Result<std::string> GuardTrigger(std::string_view sql) {
  if (sql.find(kGuardOpen) != std::string_view::npos) return std::string(sql);
  ASSIGN_OR_RETURN(std::vector<Token> tk, Tokenize(sql));
  size_t body = tk.size();
  for (size_t i = 0; i + 2 < tk.size(); ++i)
    if (tk[i].depth == 0 && tk[i].Is("FOR") && tk[i + 1].Is("EACH") && tk[i + 2].Is("ROW")) {
      body = i + 3;
      break;
    }
  // FOLLOWS / PRECEDES other_trigger (MariaDB prints neither; the order is
  // kept by creating triggers in ACTION_ORDER).
  if (body + 1 < tk.size() && (tk[body].Is("FOLLOWS") || tk[body].Is("PRECEDES"))) body += 2;
  if (body >= tk.size()) return Internal("no FOR EACH ROW followed by a body in the trigger's statement");
  // The body ends at its last token that is neither a comment nor a ';'.
  size_t last = tk.size();
  while (last > body && (tk[last - 1].kind == TokenKind::kComment || tk[last - 1].IsPunct(';'))) --last;
  if (last == body) return Internal("the trigger's body is empty");
  return fmt::format("{}{}{}{}", sql.substr(0, tk[body].begin), kGuardOpen,
                     sql.substr(tk[body].begin, tk[last - 1].end - tk[body].begin), kGuardClose);
}

Result<std::string> DisableEvent(std::string_view sql) {
  ASSIGN_OR_RETURN(std::vector<Token> tk, Tokenize(sql));
  // The status clause comes before DO, the body: [ENABLE | DISABLE [ON SLAVE]].
  size_t do_at = tk.size();
  for (size_t i = 0; i < tk.size(); ++i)
    if (tk[i].depth == 0 && tk[i].Is("DO")) {
      do_at = i;
      break;
    }
  if (do_at == tk.size()) return Internal("no DO in the event's statement");
  for (size_t i = 0; i < do_at; ++i) {
    if (!tk[i].Is("ENABLE") && !tk[i].Is("DISABLE")) continue;
    size_t end = i + 1;
    if (tk[i].Is("DISABLE") && end + 1 < do_at && tk[end].Is("ON") && (tk[end + 1].Is("SLAVE") || tk[end + 1].Is("REPLICA")))
      end += 2;
    return fmt::format("{}DISABLE{}", sql.substr(0, tk[i].begin), sql.substr(tk[end - 1].end));
  }
  return fmt::format("{}DISABLE {}", sql.substr(0, tk[do_at].begin), sql.substr(tk[do_at].begin));
}

Result<std::string> RenameDatabase(std::string_view sql, std::string_view from_db, std::string_view to_db) {
  ASSIGN_OR_RETURN(std::vector<Token> tk, Tokenize(sql));
  std::string out;
  size_t copied = 0;
  for (size_t i = 0; i + 1 < tk.size(); ++i) {
    if (!tk[i].IsName() || tk[i].value != from_db || !tk[i + 1].IsPunct('.') || tk[i + 1].begin != tk[i].end) continue;
    if (i > 0 && tk[i - 1].IsPunct('.') && tk[i - 1].end == tk[i].begin) continue;  // x.`db`: a column, not a database
    out.append(sql.substr(copied, tk[i].begin - copied));
    out += QuoteIdent(to_db);
    copied = tk[i].end;
  }
  out.append(sql.substr(copied));
  return out;
}

}  // namespace midflight::mysql
