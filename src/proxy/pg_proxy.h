// midflight's PostgreSQL proxy: where the applications connect during a
// migration. Two endpoints speak the PostgreSQL v3 wire protocol: read-write
// and read-only. Each routes to the source or the target; the cutover moves
// the routes (cutover.h), and sessions follow at their next transaction
// boundary, carrying their session state.
//
// A client session, one thread each:
//
//   startup ─► (TLS) ─► authenticate the client (SCRAM-SHA-256 or MD5, against
//   the proxy's users) ─► connect to the side the endpoint routes to ─► relay
//
//   relay: idle ──client message──► [gate: wait while writes are paused]
//               [route: move to the endpoint's side if it changed: open or
//                reuse that side's connection, replay SET parameters and
//                prepared statements] ─► busy
//          busy ──ReadyForQuery 'I', nothing else outstanding──► idle
//
// "Busy" spans a whole transaction: from the first message after an idle
// ReadyForQuery to the next idle ReadyForQuery with no Sync or Query still
// unanswered, so a pause (PauseWrites) never cuts a transaction or a pipeline.
// Cancel requests are mapped to the session's current server connection.
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

namespace midflight::proxy {

enum class Side { kSource = 0, kTarget = 1 };
const char* SideName(Side side);

struct ServerAddress {
  std::string host;
  int port = 5432;
  std::string database;
  // The migration's own credentials on this server (from the spec's URI): a
  // client logging in as this user reaches the server with this password.
  std::string user, password;
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
  int max_clients = 2000;
};

struct ProxyStats {
  int64_t clients_rw = 0, clients_ro = 0;  // connected now
  int64_t connections = 0;                 // accepted since start
  int64_t auth_failures = 0, protocol_errors = 0;
  int64_t transactions[2] = {0, 0};        // started, by side
  int64_t server_connects[2] = {0, 0};     // server connections opened, by side
  int64_t session_moves = 0;               // sessions moved to the other side at a boundary
};

class PgProxy {
 public:
  static Result<std::unique_ptr<PgProxy>> Start(ProxyConfig config);
  ~PgProxy();
  // Closes the listeners and every session. Idempotent.
  void Stop();

  std::string rw_address() const;
  std::string ro_address() const;

  Side write_side() const;
  void SetWriteSide(Side side);
  // Share of new read-only transactions sent to the target, 0..100.
  int read_percent() const;
  void SetReadPercent(int percent);

  // Pauses the read-write endpoint: new transactions wait at their start (no
  // client is refused). Returns Ok once no read-write session is inside a
  // transaction; after `drain_timeout` returns an error describing the
  // sessions still busy, and stays paused (the caller resumes).
  Status PauseWrites(std::chrono::milliseconds drain_timeout);
  void ResumeWrites();
  ProxyStats stats() const;

  struct Impl;  // internal (sessions hold it)

 private:
  PgProxy() = default;
  std::shared_ptr<Impl> impl_;
};

}  // namespace midflight::proxy
