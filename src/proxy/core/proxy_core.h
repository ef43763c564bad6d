// The engine-neutral proxy core: listeners, a small fixed pool of event loops
// (never a thread per client), the session registry, authentication slots,
// the write gate used by the cutover, read routing by canary percentage, and
// stats. A protocol module (MySQL's today: proxy/mysql/; PostgreSQL's next)
// supplies the sessions: it owns framing, authentication, server login and
// transaction boundaries, all as non-blocking state machines on one loop.
//
//   accept (loop 0) ─► round-robin loop ─► module.NewSession ─► Session::Start
//   session: BeginAuth … FinishAuth ─► EnterTransaction (gate; routing by
//            Route) … LeaveTransaction ─► … ─► Unregister
//
// The write gate: PauseWrites makes EnterTransaction answer false on the
// read-write endpoint (the session holds its command and is told
// OnGateOpen on its own loop by ResumeWrites) and waits until no read-write
// session is between EnterTransaction and LeaveTransaction.
//
// Thread-safety: every public method may be called from any thread.
// Members: config_, module_, loops_ are constant after Start; counters are
// atomics; gate_mu_ and registry_mu_ guard what they are marked with.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/thread_annotations.h"
#include "proxy/core/event_loop.h"
#include "proxy/traffic_switch.h"

namespace midflight::proxy::core {

// "host:port" ("*" or empty host: every address; "[v6]:port") -> a
// non-blocking, close-on-exec listening socket; *actual gets the bound
// address ("127.0.0.1:6432", "[::1]:6432"), with the port the kernel chose
// for port 0. OperatorError naming the address when it cannot listen.
Result<int> ListenOn(const std::string& address, std::string* actual);

enum class Endpoint { kReadWrite = 0, kReadOnly = 1 };

struct CoreConfig {
  std::string migration;   // for messages
  std::string listen[2];   // by Endpoint: "host:port"; an empty read-only one means none
  int max_clients = 2000;  // authenticated sessions
  int max_unauthenticated = 200;
  std::chrono::milliseconds auth_timeout{10000};
  int loops = 0;  // event loop threads; 0 = one per two cores, at least 1, at most 8
};

// What the registry knows of a session (for PinnedSessions, drain reports
// and KILL across sessions).
struct SessionRecord {
  std::string peer;
  Endpoint endpoint = Endpoint::kReadWrite;
  bool has_server = false;
  Side side = Side::kSource;  // of the server connection in use
  std::string pinned;  // why the session cannot move, "" when it can
};

// A client session of a protocol module. Lives on one loop; the core calls
// these on that loop.
class Session {
 public:
  virtual ~Session() = default;
  virtual void Start() = 0;
  // Writes were resumed: a session waiting at the gate tries again.
  virtual void OnGateOpen() = 0;
  // Another session asked (KILL [QUERY] id): cancel the running statement,
  // and with `connection` close the session too.
  virtual void Kill(bool connection) = 0;
  // The proxy stops: close every connection now.
  virtual void Shutdown() = 0;

  // Between EnterTransaction and LeaveTransaction, for the report of a drain
  // that timed out. Set by the session on its loop without a lock (a
  // registry Update per transaction cost two lock round trips); read by the
  // core on any thread.
  void set_in_transaction(bool v) { in_transaction_.store(v, std::memory_order_relaxed); }
  bool in_transaction() const { return in_transaction_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> in_transaction_{false};
};

class ProxyCore;

class ProtocolModule {
 public:
  virtual ~ProtocolModule() = default;
  // A new client connection (non-blocking `fd`) on `endpoint`, to be served
  // by `loop`; `id` is the session's id (the protocol's connection id).
  virtual std::shared_ptr<Session> NewSession(ProxyCore& core, EventLoop* loop, int fd, Endpoint endpoint,
                                              uint64_t id) = 0;
};

class ProxyCore {
 public:
  static Result<std::unique_ptr<ProxyCore>> Start(CoreConfig config, ProtocolModule* module);
  ~ProxyCore();
  void Stop();

  std::string address(Endpoint e) const { return address_[static_cast<int>(e)]; }
  const CoreConfig& config() const { return config_; }

  // The control face (TrafficSwitch's contract).
  Side write_side() const { return static_cast<Side>(write_side_.load()); }
  void SetWriteSide(Side side) { write_side_ = static_cast<int>(side); }
  int read_percent() const { return read_percent_.load(); }
  void SetReadPercent(int percent) { read_percent_ = std::clamp(percent, 0, 100); }
  Status PauseWrites(std::chrono::milliseconds drain_timeout);
  void ResumeWrites();
  ProxyStats stats() const;
  std::vector<std::string> PinnedSessions(Side side) const;
  bool paused() const;

  // ---- For sessions (their loop thread).
  // An authentication slot: false when max_unauthenticated are taken.
  bool BeginAuth();
  // Authenticated: the slot becomes a client of `endpoint`; false (slot
  // released, no client counted) when max_clients are connected.
  bool FinishAuth(Endpoint endpoint);
  void AbandonAuth();
  void EndClient(Endpoint endpoint);

  // A transaction starts. True: go on (the session counts as busy until
  // LeaveTransaction). False: writes are paused; the core calls
  // session->OnGateOpen on `loop` once they resume.
  bool EnterTransaction(const std::shared_ptr<Session>& session, EventLoop* loop, Endpoint endpoint);
  void LeaveTransaction(Endpoint endpoint);
  // The side a new transaction of `endpoint` goes to.
  Side Route(Endpoint endpoint);

  void Register(uint64_t id, std::shared_ptr<Session> session, EventLoop* loop, SessionRecord record);
  void Update(uint64_t id, const std::function<void(SessionRecord&)>& change);
  // Drops the registry's reference (destroyed at the end of the loop's iteration).
  void Unregister(uint64_t id);
  // Kill (see Session::Kill) the session `id`; false if there is none.
  bool KillSession(uint64_t id, bool connection);

  // Counters the sessions bump.
  std::atomic<int64_t> connections{0}, auth_failures{0}, protocol_errors{0}, session_moves{0};
  std::atomic<int64_t> transactions[2] = {0, 0}, server_connects[2] = {0, 0};

 private:
  ProxyCore() = default;
  struct Listener;
  void Accept(int listen_fd, Endpoint endpoint);

  CoreConfig config_;
  ProtocolModule* module_ = nullptr;
  std::string address_[2];
  std::vector<std::unique_ptr<EventLoop>> loops_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<size_t> next_loop_{0};
  std::atomic<int> write_side_{0}, read_percent_{0};
  std::atomic<int> unauthenticated_{0};
  std::atomic<int> clients_[2] = {0, 0};
  std::atomic<bool> stopped_{false};

  // The gate's fast path takes no lock (two atomics per transaction, with
  // sequentially consistent order: a session counts itself busy and then
  // reads paused_; PauseWrites sets paused_ and then reads busy_rw_, so one
  // of them sees the other). paused_ changes only under gate_mu_, and a
  // session that finds it set takes the locked path.
  mutable Mutex gate_mu_;
  CondVar gate_cv_;
  std::atomic<bool> paused_{false};
  std::atomic<int> busy_rw_{0};
  std::vector<std::pair<EventLoop*, std::weak_ptr<Session>>> waiting_ GUARDED_BY(gate_mu_);

  struct Entry {
    std::shared_ptr<Session> session;
    EventLoop* loop;
    SessionRecord record;
  };
  mutable Mutex registry_mu_;
  std::map<uint64_t, Entry> registry_ GUARDED_BY(registry_mu_);
};

}  // namespace midflight::proxy::core
