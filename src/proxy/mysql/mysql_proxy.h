// midflight's MySQL/MariaDB proxy: the MySQL protocol module on the proxy
// core (proxy/core/proxy_core.h). Applications connect to its read-write and
// read-only endpoints as they would to the database; each client session is
// served on one event loop:
//
//   client: handshake v10 (the proxy's own scramble) ─► [SSLRequest ─► TLS]
//           ─► HandshakeResponse41 ─► [AuthSwitch to the configured plugin]
//           ─► verified against the proxy's users ─► OK ─► commands
//     mysql_native_password: the scramble checked against SHA1(SHA1(pw)).
//     caching_sha2_password: the fast path (0x03, OK) when the scramble
//       matches; otherwise full authentication (0x04), as MySQL 8 does: the
//       clear password over TLS, or without TLS the proxy's RSA public key
//       (0x02 asks for it) and the password encrypted with it.
//     client_ed25519: a 32-byte nonce, the signature checked with the
//       public key derived from the password (wire: Ed25519Verify).
//   COM_CHANGE_USER runs the same exchange (the handshake's scramble, or a
//   switch); on success the server sessions are closed (the next command logs
//   in afresh with the spec's credentials) and carried state and pins are
//   forgotten; on failure the client gets ERR 1045 and the connection closes.
//
//   server link (one per side, opened at the session's first command, all
//   non-blocking): connect ─► server handshake ─► [SSLRequest ─► TLS, per
//   ssl_mode] ─► login with the spec URI's credentials (caching_sha2's full
//   authentication only over TLS) ─► setup (session tracking on; read-only endpoint: SET SESSION
//   TRANSACTION READ ONLY) ─► sync (schema, SET variables, prepared
//   statements re-prepared) ─► ready
//
//   command: [gate at a transaction start; an idle session's prepare,
//   statement reset, ping, schema change or session-variable SELECT / SET
//   passes a closed gate to its current server, or to a first server session
//   opened on the write side of the moment] ─► route (write side / read
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
// CONNECTION_ID(): a client sees the proxy's session id (the handshake's
// connection id, which KILL through the proxy takes). `SELECT
// CONNECTION_ID()` alone (optionally with an alias) is answered by the proxy
// with that id; inside other statements, and in SHOW PROCESSLIST, the
// server's own id shows.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "proxy/traffic_switch.h"

namespace midflight::proxy {

namespace core {
class ProxyCore;
}

// TLS from the proxy to a server, named as MySQL's clients name it
// (--ssl-mode; `ssl-mode=` and `ssl-ca=` in a mysql:// URI).
enum class MySqlSslMode {
  kDisabled,        // plain TCP (the default, as for midflight's other MySQL connections)
  kPreferred,       // TLS when the server offers it, no certificate check
  kRequired,        // TLS or no connection, no certificate check
  kVerifyCa,        // TLS, the server's certificate signed by ssl_ca
  kVerifyIdentity,  // and issued for the host the proxy connects to
};
// "disabled", "preferred", "required", "verify-ca", "verify-identity" (any
// case, '_' for '-'); an InvalidArgument naming the accepted values otherwise.
Result<MySqlSslMode> ParseMySqlSslMode(std::string_view text);

struct MySqlServer {
  std::string host = "127.0.0.1";
  int port = 3306;
  std::string user, password;  // the migration's own credentials on this server
  MySqlSslMode ssl_mode = MySqlSslMode::kDisabled;
  std::string ssl_ca;  // PEM file of the CAs; required by verify-ca and verify-identity
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
  // The authentication plugin clients must use: mysql_native_password,
  // caching_sha2_password or client_ed25519; empty: the one the source
  // server's handshake announces (mysql_native_password when it is another).
  std::string client_auth;
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
