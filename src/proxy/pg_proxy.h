// midflight's PostgreSQL proxy: where the applications connect during a
// migration. Two endpoints speak the PostgreSQL v3 wire protocol: read-write
// and read-only. Each routes to the source or the target; the cutover moves
// the routes (cutover.h), and sessions follow at their next transaction
// boundary, carrying their session state.
//
// The PostgreSQL protocol module on the proxy core (proxy/core/proxy_core.h):
// a small fixed pool of event loops serves every session, never a thread per
// client; each session lives on one loop, all of its I/O non-blocking with
// bounded buffers (core/connection.h), so a session costs memory, not a thread.
//
//   client: startup ─► (SSLRequest ─► TLS) ─► authenticate (SCRAM-SHA-256[-PLUS]
//           or MD5, against the proxy's users) ─► first server link ready ─►
//           greeting (the server's ParameterStatus, BackendKeyData) ─► relay
//   server link: connect ─► (SSLRequest ─► TLS as the URI's sslmode says) ─►
//           login (pgwire::BackendLogin) ─► ready
//
// Until it has authenticated, a connection counts against max_unauthenticated
// (not max_clients) and must finish within auth_timeout. While relaying, a
// message over 1 MiB is passed on in the chunks it arrives in
// (PlanLargeMessage in pg_statement.h), so a session's memory is bounded.
//
//   relay: idle ──client message──► [gate: wait while writes are paused]
//               [route: move to the endpoint's side if it changed: open or
//                reuse that side's link, replay SET parameters and prepared
//                statements, carry the old server's own state] ─► busy
//          busy ──ReadyForQuery 'I', nothing else outstanding──► idle
//
// "Busy" spans a whole transaction: from the first message after an idle
// ReadyForQuery to the next idle ReadyForQuery with no Sync or Query still
// unanswered, so a pause (PauseWrites) never cuts a transaction or a pipeline.
// Cancel requests are mapped to the session's current server connection; the
// key the client holds is the real pid of its first server connection.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "proxy/traffic_switch.h"
#include "proxy/wire/pg/backend.h"

namespace midflight::proxy {

namespace core {
class ProxyCore;
}

struct ServerAddress {
  std::string host;
  int port = 5432;
  std::string database;
  // The migration's own credentials on this server (from the spec's URI): a
  // client logging in as this user reaches the server with this password.
  std::string user, password;
  // TLS to this server: the URI's sslmode, sslrootcert, sslcert and sslkey.
  pgwire::BackendTls tls;
};

struct ProxyUser {
  std::string name, password;  // plaintext: the proxy must log in to the servers as the user
};

struct ProxyConfig {
  std::string migration;     // for messages
  std::string listen_rw;     // "host:port"
  std::string listen_ro;     // "host:port", or empty for none
  std::vector<ProxyUser> users;
  std::string auth = "scram-sha-256";  // or "md5"
  std::string tls_cert, tls_key;       // PEM files: TLS offered to clients when both are set
  ServerAddress servers[2];            // indexed by Side
  int max_clients = 2000;              // authenticated sessions; one more gets "too many clients"
  // Connections still in startup or authentication, counted apart from
  // max_clients so that sockets that never log in cannot lock real clients
  // out. When all are taken, a new connection evicts the oldest one if it has
  // waited at least kEvictUnauthenticatedAfter, and is refused otherwise.
  int max_unauthenticated = 200;
  // Startup, TLS handshake and authentication must all finish within this
  // (a client trickling bytes is cut at the deadline too).
  std::chrono::milliseconds auth_timeout{10000};
  int loops = 0;  // event loop threads (0: one per core, 2..8)
};

// The PostgreSQL proxy; TrafficSwitch (traffic_switch.h) says what each method does.
class PgProxy final : public TrafficSwitch {
 public:
  static Result<std::unique_ptr<PgProxy>> Start(ProxyConfig config);
  ~PgProxy() override;
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

  struct Impl;  // internal: the protocol module (sessions hold it)

 private:
  PgProxy() = default;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<core::ProxyCore> core_;
};

}  // namespace midflight::proxy
