// The rest of a MariaDB/MySQL schema, so that the target can serve the
// application after the switch: stored functions and procedures, views,
// triggers and events of the source database, each re-created on the target
// from the source's own SHOW CREATE output, exactly as the source prints it:
// the DEFINER clause, SQL SECURITY, and the sql_mode, character_set_client,
// collation_connection (and, for events, time_zone) the object was created
// with. References qualified with the source database's name are rewritten to
// the target's. Statements are read with character_set_results = binary (as
// MyConn sets up) and sent back with the object's own character_set_client,
// as mysqldump does, so the bytes of the body do not change.
//
// When each kind is created (see docs/design.md "MySQL: the rest of the
// schema"):
//   CreateSchema  functions and procedures, then views (a view may call a
//                 function; views on views: a view that fails because a view
//                 it reads does not exist yet is retried after the others).
//   FinishSchema  triggers, guarded: the body becomes
//                   BEGIN IF @midflight_apply IS NULL THEN <body>; END IF; END
//                 and midflight's apply sessions set @midflight_apply = 1, so a
//                 trigger never fires on a change midflight applies (the
//                 source's trigger already fired there, and its effects come
//                 through the binlog as rows of their own); for every other
//                 session (the application after the switch) it runs as on
//                 the source. Created in the source's ACTION_ORDER.
//                 Events, created DISABLED: they must run on one side only,
//                 the one writes go to; the write switch and rollback move
//                 them (ListEvents, SetEventEnabled).
// Everything is idempotent: an object that exists on the target (same name)
// is left as it is, so a resumed run goes on where it stopped.
//
// All functions use the caller's connections on the caller's thread; the
// target connection's session settings are restored before they return.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace midflight::mysql {

class MyConn;

enum class ObjectKind { kFunction, kProcedure, kView, kTrigger, kEvent };
const char* ObjectKindName(ObjectKind k);  // "function", "procedure", "view", "trigger", "event"

struct SchemaObject {
  ObjectKind kind;
  std::string name;
  std::string definer_user, definer_host;  // host empty for a role
  std::string table;                       // triggers: the table it belongs to
  std::string status;                      // events: ENABLED, DISABLED or SLAVESIDE_DISABLED

  std::string Definer() const;  // 'user'@'host'
};

// The session variable midflight's apply sessions set (to 1) and the guard
// every migrated trigger checks.
inline constexpr std::string_view kApplyMarkerVariable = "@midflight_apply";

// The functions, procedures, views, events of `db` and the triggers of its
// tables named in `tables` (all tables when empty), in creation order:
// triggers by table, timing, event and ACTION_ORDER.
Result<std::vector<SchemaObject>> ListObjects(MyConn& src, const std::string& db, const std::set<std::string>& tables);

// Preflight: appends one line to `problems` per object whose definer account
// does not exist on the target, and one per missing privilege: the source
// user needs TRIGGER and EVENT on `source_db` (without them triggers and
// events are not even listed) and SHOW VIEW (to read views); the target user
// needs SUPER or SET USER to create objects for another definer. Fails only
// when the catalogs cannot be read at all.
Status CheckObjects(MyConn& src, const std::string& source_db, MyConn& dst, const std::set<std::string>& tables,
                    const std::string& reader, std::vector<std::string>* problems);

// Creates the functions and procedures, then the views, of `source_db` in
// `target_db`. A view that still cannot be created once no other one can
// (it reads a table that is not migrated) is left out with a warning naming
// it and the server's error; any other failure names the object.
Status CreateRoutinesAndViews(MyConn& src, MyConn& dst, const std::string& source_db, const std::string& target_db);

// Creates the triggers of `tables` (guarded, see above) and the events
// (DISABLED) of `source_db` in `target_db`.
Status CreateTriggersAndEvents(MyConn& src, MyConn& dst, const std::string& source_db, const std::string& target_db,
                               const std::set<std::string>& tables);

// Wraps the body of every trigger of `tables` in `db` on `conn`'s server in
// the apply guard, in place (CREATE OR REPLACE, in the trigger's creation
// context), so it stays quiet on midflight's apply sessions there too: for
// reverse replication onto the source, whose triggers would otherwise fire
// again on changes their twins on the target already made. Returns the
// triggers it changed (already guarded ones are left alone).
Result<std::vector<std::string>> GuardTriggersInPlace(MyConn& conn, const std::string& db,
                                                      const std::set<std::string>& tables);

// The events of `db` on `conn`'s server, with definer and status (ENABLED,
// DISABLED, SLAVESIDE_DISABLED), by name. For the write switch: the events
// ENABLED on the side writes leave are disabled there and enabled on the side
// they move to (MyReplicationOps::WritesGoTo).
Result<std::vector<SchemaObject>> ListEvents(MyConn& conn, const std::string& db);
// ALTER DEFINER = <its definer> EVENT db.name ENABLE / DISABLE; the error
// names the event.
Status SetEventEnabled(MyConn& conn, const std::string& db, const SchemaObject& event, bool enabled);

// Pure helpers, unit-tested.
// The trigger statement with its body wrapped in the apply guard; unchanged
// when it is guarded already. Internal error when there is no FOR EACH ROW.
Result<std::string> GuardTrigger(std::string_view create_trigger);
// The CREATE EVENT statement with its ENABLE / DISABLE [ON SLAVE] clause
// replaced by DISABLE.
Result<std::string> DisableEvent(std::string_view create_event);
// `sql` with every `from_db`.x (quoted or not) changed to `to_db`.x.
Result<std::string> RenameDatabase(std::string_view sql, std::string_view from_db, std::string_view to_db);

}  // namespace midflight::mysql
