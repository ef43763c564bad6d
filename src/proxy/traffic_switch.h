// The traffic plane's engine-neutral control face: what the cutover moves.
// A proxy (PostgreSQL's today, proxy/pg_proxy.h) has a read-write endpoint
// whose writes go to one side, and a read-only endpoint that sends a share of
// read transactions to the target. Sessions follow a change at their next
// transaction boundary.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace midflight::proxy {

enum class Side { kSource = 0, kTarget = 1 };
const char* SideName(Side side);

struct ProxyStats {
  int64_t clients_rw = 0, clients_ro = 0;  // connected now
  int64_t connections = 0;                 // accepted since start
  int64_t auth_failures = 0, protocol_errors = 0;
  int64_t transactions[2] = {0, 0};        // started, by side
  int64_t server_connects[2] = {0, 0};     // server connections opened, by side
  int64_t session_moves = 0;               // sessions moved to the other side at a boundary
  int64_t pinned_sessions = 0;             // sessions that hold state only their server has (see PinnedSessions)
};

class TrafficSwitch {
 public:
  virtual ~TrafficSwitch() = default;
  // Closes the listeners and every session. Idempotent.
  virtual void Stop() = 0;

  virtual std::string rw_address() const = 0;
  virtual std::string ro_address() const = 0;  // "" when there is no read-only endpoint

  virtual Side write_side() const = 0;
  virtual void SetWriteSide(Side side) = 0;
  // Share of new read-only transactions sent to the target, 0..100.
  virtual int read_percent() const = 0;
  virtual void SetReadPercent(int percent) = 0;

  // Pauses the read-write endpoint: new transactions wait at their start (no
  // client is refused). Returns Ok once no read-write session is inside a
  // transaction; after `drain_timeout` returns an error describing the
  // sessions still busy, and stays paused (the caller resumes).
  virtual Status PauseWrites(std::chrono::milliseconds drain_timeout) = 0;
  virtual void ResumeWrites() = 0;
  virtual ProxyStats stats() const = 0;

  // Read-write sessions that hold state only their current server has
  // (temporary tables, locks, cursors kept across transactions...), so they
  // cannot follow a write switch without losing it: one line each, naming
  // the client, the side its server is on and why ("10.0.0.7:51234 on the
  // source: temporary table t1"). A write switch away from that side is
  // refused while any is listed; nothing is ever lost silently.
  virtual std::vector<std::string> PinnedSessions(Side side) const {
    (void)side;
    return {};
  }
};

}  // namespace midflight::proxy
