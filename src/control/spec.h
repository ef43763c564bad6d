// The migration spec: what the operator writes in SPEC.yaml, parsed once at
// the edge into a typed struct. Unknown or malformed fields are errors that
// name the field.
//
// Secrets need not be written in it. At load time:
// - `${VAR}` anywhere in a string value is replaced by the environment
//   variable VAR (unset: an error naming VAR and the field); `$${` is a
//   literal `${`. The value goes in as it is: inside a URI it must be
//   %-escaped like the rest of the URI.
// - `source_password_file`, `target_password_file`,
//   `source_replica_password_file` and a proxy user's `password_file` name a
//   file holding the password (one trailing newline is dropped). The file
//   must be open to its owner only (mode 0600 or 0400, as libpq asks of
//   .pgpass); a relative path is relative to the current directory.
// - A URI with a user and no password, and no password file, takes
//   PGPASSWORD (postgres://) or MYSQL_PWD (mysql://) when it is set.
// The password so found is put into the URI (base/uri.h WithPassword) or the
// proxy user, so the rest of midflight sees a URI with a password, as if it
// had been written there; errors never quote it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "control/transport_spec.h"
#include "core/transform.h"

namespace midflight {

// The proxy the applications connect to (proxy/pg_proxy.h). Absent: no proxy.
struct ProxySpec {
  std::string listen;           // read-write endpoint, HOST:PORT
  std::string listen_readonly;  // read-only endpoint, HOST:PORT (optional)
  struct User {
    std::string name, password;
  };
  std::vector<User> users;       // who may log in; default: the source URI's user
  std::string auth = "scram-sha-256";  // or md5
  std::string tls_cert, tls_key;       // PEM files; TLS offered to clients when set
  int max_clients = 2000;              // authenticated client sessions
  int max_unauthenticated = 200;       // connections still logging in, counted apart
  double auth_timeout_seconds = 10;    // startup + TLS + authentication must finish within this
  int loops = 0;                       // event-loop threads; 0: one per two cores (1..8)
};

// How the switches behave (control/cutover).
struct CutoverSpec {
  double max_lag_seconds = 1.0;        // switch writes refused above this (unless forced)
  double drain_timeout_seconds = 5.0;  // open transactions get this long; past it the switch is abandoned
  double catchup_timeout_seconds = 30; // the target must apply the source's last position within this
  double min_validation_seconds = 0;   // reads switched at least this long before switch writes
  bool require_approval = false;       // switch writes waits for `midflight approve`
  bool require_verify = true;          // switch writes needs a clean verification (unless forced)
  double verify_max_age_seconds = 0;   // ... finished at most this long ago; 0 = any age
};

struct VerifySpec {
  int64_t rows_per_s = 200000;  // source rows read per second; 0 = unlimited
  int64_t chunk_rows = 10000;
  // Continuous verification (control/verify_job.h): while the migration
  // replicates, the background job runs pass after pass at its own slow rate,
  // so the write switch's verification gate always has a recent result.
  bool continuous = false;
  int64_t continuous_rows_per_s = 1000;   // default of the continuous_verify_rows_per_s knob; 0 = unlimited
  double continuous_pause_seconds = 60;   // from the end of one pass to the start of the next
  bool continuous_repair = false;         // re-copy the rows a pass finds different (through the apply path)
};

// Across engines: the casting table's choices (engines/README.md, "Casting
// MySQL to PostgreSQL" and "Casting PostgreSQL to MySQL").
struct CastingSpec {
  bool tinyint1_boolean = false;  // `tinyint1: boolean` (default smallint)
  bool zero_dates_null = false;   // `zero_dates: null` (default refuse: the row is named and the run stops)
  std::string target_schema;      // PostgreSQL schema; default the MySQL database's name
  std::map<std::string, std::string> columns;  // "table.column" -> the target's type
  // PostgreSQL -> MySQL ("Casting PostgreSQL to MySQL"):
  bool numeric_decimal = false;    // `numeric: decimal`: numeric without precision -> DECIMAL(65,30) (default refuse)
  bool out_of_range_null = false;  // `out_of_range: null`: values MySQL cannot hold -> NULL (default refuse)
  std::string collation;           // non-key text columns' collation (default the binary one)
};

// Where phase changes, failures, lag alerts and write pauses are posted
// (Slack-compatible JSON; service/notify.h).
struct NotifySpec {
  std::string webhook;  // http:// or https:// URL; a secret (never printed)
  std::string ca_file;  // PEM bundle to trust instead of the system's (optional)
};

struct MigrationSpec {
  std::string name;    // [a-z0-9_], names the slot, publication and state directory
  std::string source;  // postgres://user:pass@host:port/db or mysql://user:pass@host:port/db
  std::string target;
  std::vector<std::string> tables;   // include patterns ("public.*"); empty = every user table
  std::vector<std::string> exclude;  // exclude patterns
  std::string state_dir;             // default ./.midflight/<name>
  int copy_workers = 4;              // parallel COPY connections
  int partitions = 0;                // apply partitions (fixed for the life of the migration); 0 = default
  int batch_size = 2000;             // changes per apply transaction
  // Apply conflicts (pipeline/conflicts.h): "overwrite" (counted and logged)
  // or "stop" (the migration fails naming table, key, position and kind).
  // The default of the stop_on_conflict knob, which can change it at run time.
  std::string on_conflict = "overwrite";
  int64_t chunk_rows = 250000;       // rows per copy chunk
  int64_t partition_log_mb = 64;     // memory bound of each partition's queue
  int index_memory_mb = 512;         // maintenance_work_mem of each index-building session on the target
  bool allow_nonempty_target = false;
  // Build a table's keys and indexes (MySQL: secondary indexes) as soon as
  // its copy ends, while other tables copy (engines/postgres/early_indexes.h,
  // engines/mysql/schema_loader.h); false builds them all after the copy.
  bool early_indexes = true;
  // MySQL/MariaDB: a replica of `source` (log_slave_updates on) that every
  // snapshot read and the binlog stream come from; midflight then never
  // connects to the primary.
  std::string source_replica;
  int64_t max_row_bytes = 0;  // MySQL: a larger row stops the copy, naming it; 0 = the target's max_allowed_packet
  // MySQL/MariaDB target: false runs the copy's LOAD DATA sessions with
  // sql_log_bin = 0 (as myloader does by default), so the copied rows are
  // not written a second time into the target's binlog. Replicas of the
  // target and point-in-time recovery from its binlog then lack them; the
  // change stream, reverse replication (it reads the target's binlog from
  // the switch on) and the schema DDL are logged as always. Needs SUPER or
  // BINLOG ADMIN on the target.
  bool copy_binlog = true;
  bool has_proxy = false;
  ProxySpec proxy;
  CutoverSpec cutover;
  VerifySpec verify;
  NotifySpec notify;
  CastingSpec casting;
  // Per-table transforms (core/transform.h): rename, include/exclude,
  // casts, added columns, a row filter. Checked for syntax at load, against
  // the source's tables at preflight.
  std::vector<TableTransformSpec> transforms;
  TransportSpec transport;  // the partition logs: memory (default) or kafka (control/transport_spec.h)
  // Starting values of the runtime knobs (control/knobs.h), by knob name.
  std::map<std::string, double> knobs;
  // The control endpoint `midflight switch/verify/...` talks to:
  // "unix:PATH" or "HOST:PORT"; default unix:<state_dir>/control.sock.
  std::string control;

  std::string slot_name() const { return "midflight_" + name; }
  std::string publication_name() const { return "midflight_" + name; }
};

// Apply partitions when the spec does not say: the machine's cores, 2 to 8.
int DefaultPartitions();

// Where ${VAR}, PGPASSWORD and MYSQL_PWD are looked up: a variable's value,
// or nullopt when it is unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
// The process's environment (getenv).
EnvLookup ProcessEnvironment();

// Parses YAML text. `origin` names the file in messages. Without `env`, the
// process's environment.
Result<MigrationSpec> ParseSpec(const std::string& yaml_text, const std::string& origin);
Result<MigrationSpec> ParseSpec(const std::string& yaml_text, const std::string& origin, const EnvLookup& env);
Result<MigrationSpec> LoadSpec(const std::string& path);

}  // namespace midflight
