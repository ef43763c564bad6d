// midflight's MySQL/MariaDB proxy: the MySQL protocol module on the proxy
// core (proxy/core/proxy_core.h). Applications connect to its read-write and
// read-only endpoints as they would to the database; each client session is
// served on one event loop:
//
//   client: handshake v10 (the proxy's own scramble) ─► [SSLRequest ─► TLS]
//           ─► HandshakeResponse41 ─► [AuthSwitch to mysql_native_password]
//           ─► verified against the proxy's users ─► OK ─► commands
//
//   server link (one per side, opened at the session's first command, all
//   non-blocking): connect ─► server handshake ─► login with the spec URI's
//   credentials ─► setup (session tracking on; read-only endpoint: SET SESSION
//   TRANSACTION READ ONLY) ─► sync (schema, SET variables, prepared
//   statements re-prepared) ─► ready
//
//   command: [gate at a transaction start] ─► route (write side / read
//   percentage) ─► move to the other side's link if it changed and the
//   session is not pinned ─► forward (statement ids mapped) ─► response
//   relayed (session tracking recorded; stripped for clients that did not
//   ask for it) ─► boundary (idle, status known, not in a transaction, no
//   cursor open) ends the transaction for the gate
//
// What a session carries to another server: current schema, every system
// variable its SETs changed (session_track_system_variables='*': character
// sets, time zone, sql_mode, autocommit...), prepared statements (re-prepared;
// the client's ids stay, parameter types resent). What pins it to its
// server: temporary tables, GET_LOCK named locks, LOCK TABLES, user variables.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "proxy/traffic_switch.h"

namespace midflight::proxy {

namespace core {
class ProxyCore;
}

struct MySqlServer {
  std::string host = "127.0.0.1";
  int port = 3306;
  std::string user, password;  // the migration's own credentials on this server
};

struct MySqlProxyUser {
  std::string name, password;
};

struct MySqlProxyConfig {
  std::string migration;
  std::string listen_rw;  // "host:port"
  std::string listen_ro;  // "host:port" or empty
  std::vector<MySqlProxyUser> users;
  std::string tls_cert, tls_key;  // PEM files: TLS offered to clients when both are set
  MySqlServer servers[2];         // indexed by Side
  int max_clients = 2000;
  int max_unauthenticated = 200;
  std::chrono::milliseconds auth_timeout{10000};
  int loops = 0;  // event loop threads (0: one per core, 2..8)
};

class MySqlProxy final : public TrafficSwitch {
 public:
  static Result<std::unique_ptr<MySqlProxy>> Start(MySqlProxyConfig config);
  ~MySqlProxy() override;
  void Stop() override;

  std::string rw_address() const override;
  std::string ro_address() const override;
  Side write_side() const override;
  void SetWriteSide(Side side) override;
  int read_percent() const override;
  void SetReadPercent(int percent) override;
  Status PauseWrites(std::chrono::milliseconds drain_timeout) override;
  void ResumeWrites() override;
  ProxyStats stats() const override;
  std::vector<std::string> PinnedSessions(Side side) const override;

  struct Module;  // internal

 private:
  MySqlProxy() = default;
  std::unique_ptr<Module> module_;
  std::unique_ptr<core::ProxyCore> core_;
};

}  // namespace midflight::proxy
