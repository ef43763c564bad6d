#include "proxy/pg_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "base/log.h"
#include "base/thread_annotations.h"
#include "proxy/core/proxy_core.h"
#include "proxy/pg_session_state.h"
#include "proxy/pg_statement.h"
#include "proxy/wire/pg/backend.h"
#include "proxy/wire/pg/pg_wire.h"
#include "proxy/wire/pg/scram.h"

namespace midflight::proxy {

const char* SideName(Side side) { return side == Side::kSource ? "source" : "target"; }

namespace {

using Clock = std::chrono::steady_clock;
namespace wire = midflight::pgwire;

// A connection that has waited this long without authenticating may be
// evicted to make room for a new one when max_unauthenticated are taken.
constexpr auto kEvictUnauthenticatedAfter = std::chrono::seconds(1);

// SO_RCVTIMEO and SO_SNDTIMEO on a client socket: bounds each blocking read
// and write (a TLS handshake or record the client trickles in) during
// authentication; 0 takes the bound off.
void SetSocketTimeouts(int fd, std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  if (ms.count() > 0 && tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// What the read-only endpoint sends the server in place of a statement that
// would let its session write (ReadWriteAttempt): the server raises the
// proxy's refusal, so an open transaction fails and a pipeline is skipped up to
// its Sync exactly as if the statement itself had failed, and the client's
// messages and the server's answers stay in step. `what` is one of
// ReadWriteAttempt's constants (no quote in any).
std::string ReadOnlyRefusalSql(std::string_view what) {
  return fmt::format(R"(DO $midflight$BEGIN RAISE EXCEPTION USING ERRCODE = '25006', )"
                     R"(MESSAGE = 'midflight proxy: the read-only endpoint takes no writes ({} refused)', )"
                     R"(HINT = 'Send writes to the proxy''s read-write endpoint.'; END$midflight$)",
                     what);
}

// On the read-only endpoint: the Query or Parse message to send instead of
// `type`/`body` when its SQL would let the session write; nullopt when the
// message may go as it is. A replaced Parse keeps its statement name and
// declares as many parameters as the original used (as text), so the
// client's Bind still fits and the error is the refusal.
std::optional<std::string> ReadOnlyReplacement(char type, std::string_view body) {
  if (type == 'Q') {
    std::string_view sql = body.substr(0, body.find('\0'));
    if (!MayAskForWrites(sql)) return std::nullopt;
    std::string_view what = ReadWriteAttempt(sql);
    if (what.empty()) return std::nullopt;
    return wire::Query(ReadOnlyRefusalSql(what));
  }
  if (type == 'P') {
    if (!MayAskForWrites(body)) return std::nullopt;
    auto parse = wire::ParseParse(body);
    if (!parse.ok()) return std::nullopt;  // the server refuses it
    std::string_view what = ReadWriteAttempt(parse->query);
    if (what.empty()) return std::nullopt;
    constexpr uint32_t kTextOid = 25;
    std::vector<uint32_t> types = parse->param_types;
    types.resize(std::max<size_t>(types.size(), static_cast<size_t>(HighestParameter(parse->query))), kTextOid);
    for (uint32_t& t : types)
      if (t == 0) t = kTextOid;  // a DO block cannot infer a type
    return wire::Parse(parse->statement, ReadOnlyRefusalSql(what), types);
  }
  return std::nullopt;
}

// The message sent in place of a Query or Parse refused by PlanLargeMessage:
// a Parse keeps its statement name (its Bind then fails too, up to the Sync).
// `message` and `detail` hold no quote.
std::string LimitRefusal(char type, std::string_view buffered, std::string_view message, std::string_view detail) {
  const std::string sql = fmt::format(
      R"(DO $midflight$BEGIN RAISE EXCEPTION USING ERRCODE = '54000', MESSAGE = 'midflight proxy: {}', )"
      R"(DETAIL = '{}', )"
      R"(HINT = 'Send large values as parameters (Bind) or with COPY, which the proxy streams.'; END$midflight$)",
      message, detail);
  if (type == 'Q') return wire::Query(sql);
  std::string_view body = buffered.substr(5);
  const size_t nul = body.find('\0');
  return wire::Parse(std::string(nul == std::string_view::npos ? std::string_view() : body.substr(0, nul)), sql, {});
}

std::string LargeMessageRefusal(char type, size_t total, std::string_view buffered) {
  return LimitRefusal(type, buffered,
                      fmt::format("a {} message of {} bytes is above the {} MiB the proxy holds whole",
                                  type == 'Q' ? "Query" : "Parse", total, kMaxHeldMessage >> 20),
                      "The read-only endpoint checks whole statements; named prepared statements and statements "
                      "changing session state are kept to be replayed when the session moves.");
}

// The session state kept for replay (SETs, PREPAREs, named Parse messages)
// is capped in total too: a client cannot pile up small statements either.
constexpr size_t kMaxSessionState = size_t{64} << 20;

// How many bytes a whole Query or Parse adds to the session state kept for
// replay: a SET or PREPARE statement, a named Parse message; 0 for others.
size_t AddedSessionState(char type, std::string_view body, size_t total) {
  std::string name;
  if (type == 'Q') {
    std::string_view sql = body.substr(0, body.find('\0'));
    if (!MayChangeState(sql)) return 0;
    const StateEffect e = Classify(sql, &name);
    return e == StateEffect::kSet || e == StateEffect::kPrepare ? sql.size() : 0;
  }
  if (type != 'P') return 0;
  auto parse = wire::ParseParse(body);
  if (!parse.ok()) return 0;
  if (!parse->statement.empty()) return total;
  return MayChangeState(parse->query) && Classify(parse->query, &name) == StateEffect::kSet ? parse->query.size() : 0;
}

std::string PeerName(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return fmt::format("{}:{}", buf, ntohs(in->sin_port));
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
  return fmt::format("[{}]:{}", buf, ntohs(in6->sin6_port));
}

// The client's side of a session: a socket, optionally wrapped in TLS.
class ClientIo {
 public:
  explicit ClientIo(int fd) : fd_(fd) {}
  ~ClientIo() {
    if (ssl_) SSL_free(ssl_);
    close(fd_);
  }
  int fd() const { return fd_; }
  bool pending() const { return ssl_ && SSL_pending(ssl_) > 0; }
  // With TLS: the tls-server-end-point channel binding data of the
  // certificate presented to this client (scram.h); "" without TLS or when it
  // cannot be computed (then SCRAM-SHA-256-PLUS is not offered).
  std::string TlsServerEndPoint() const {
    if (!ssl_) return "";
    X509* cert = SSL_get_certificate(ssl_);  // owned by the SSL object
    if (cert == nullptr) return "";
    unsigned char* der = nullptr;
    const int len = i2d_X509(cert, &der);
    if (len <= 0) return "";
    auto hash = wire::TlsServerEndPoint(std::string_view(reinterpret_cast<const char*>(der), static_cast<size_t>(len)));
    OPENSSL_free(der);
    return hash.ok() ? *hash : "";
  }
  Status StartTls(SSL_CTX* ctx) {
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_);
    if (SSL_accept(ssl_) != 1) {
      char err[256];
      ERR_error_string_n(ERR_get_error(), err, sizeof err);
      return OperatorError(fmt::format("TLS handshake failed: {}", err));
    }
    return Status::Ok();
  }
  // >0 bytes, 0 at EOF, <0 on error.
  ssize_t Read(char* buf, size_t n) {
    if (ssl_) {
      int r = SSL_read(ssl_, buf, static_cast<int>(n));
      return r > 0 ? r : (SSL_get_error(ssl_, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
    }
    while (true) {
      ssize_t r = recv(fd_, buf, n, 0);
      if (r < 0 && errno == EINTR) continue;
      return r;
    }
  }
  Status Write(std::string_view data) {
    if (data.empty()) return Status::Ok();
    if (ssl_) {
      while (!data.empty()) {
        int w = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
        if (w <= 0) return RetryCall("client connection lost");
        data.remove_prefix(static_cast<size_t>(w));
      }
      return Status::Ok();
    }
    return wire::WriteAll(fd_, data);
  }

 private:
  int fd_;
  SSL* ssl_ = nullptr;
};

}  // namespace

// ---------------------------------------------------------------------------

struct Session;

// Constant once Start returns: config, ssl_ctx, listen_fd, address,
// acceptors (joined by Stop only), wake_fd. Self-synchronised: the atomics.
// Guarded: the write gate by gate_mu, the session map by sessions_mu.
struct PgProxy::Impl : std::enable_shared_from_this<PgProxy::Impl> {
  ProxyConfig config;
  SSL_CTX* ssl_ctx = nullptr;
  int listen_fd[2] = {-1, -1};  // rw, ro
  std::string address[2];
  std::vector<std::thread> acceptors;
  std::atomic<bool> stopping{false};
  // An eventfd that Stop makes readable (and nothing reads): every acceptor's
  // and session's poll has it, so they wake at once instead of polling
  // `stopping` on a timeout.
  int wake_fd = -1;

  std::atomic<int> write_side{0};
  std::atomic<int> read_percent{0};

  // Write gate.
  Mutex gate_mu;
  CondVar gate_cv;
  bool paused GUARDED_BY(gate_mu) = false;
  int busy_rw GUARDED_BY(gate_mu) = 0;

  // Connections not authenticated yet, by arrival order (the first is the
  // oldest): their start and socket, so that one can be evicted (shutdown)
  // for a newcomer. An entry is erased before its socket is closed, so the
  // fd here is always open.
  struct Unauthenticated {
    Clock::time_point since;
    int fd;
  };
  Mutex unauth_mu;
  std::map<uint64_t, Unauthenticated> unauthenticated GUARDED_BY(unauth_mu);
  uint64_t next_unauth_id GUARDED_BY(unauth_mu) = 1;
  Clock::time_point last_unauth_warning GUARDED_BY(unauth_mu);
  void LeaveUnauthenticated(uint64_t id) {
    MutexLock lock(&unauth_mu);
    unauthenticated.erase(id);
  }
  // Admits a new connection to the unauthenticated set (evicting the oldest
  // if it has waited long enough); 0 when it is refused.
  uint64_t AdmitUnauthenticated(int fd);

  // Sessions (for cancel requests, drain and pin reports, and Stop).
  Mutex sessions_mu;
  CondVar sessions_cv;
  std::set<Session*> sessions GUARDED_BY(sessions_mu);

  // Stats.
  std::atomic<int64_t> clients[2] = {0, 0};
  std::atomic<int64_t> connections{0}, auth_failures{0}, protocol_errors{0}, moves{0};
  std::atomic<int64_t> transactions[2] = {0, 0}, server_connects[2] = {0, 0};
  std::atomic<int64_t> pinned{0};  // sessions whose SessionPins say pinned

  ~Impl() {
    if (ssl_ctx) SSL_CTX_free(ssl_ctx);
    if (wake_fd >= 0) close(wake_fd);
  }
  void Accept(int which);
  void Serve(int fd, bool readonly, uint64_t unauth_id);
  void Cancel(int32_t pid, int32_t secret);
};

// One client connection and its server connections.
struct Session {
  PgProxy::Impl* proxy;
  bool readonly;
  std::unique_ptr<ClientIo> client;
  std::string peer;
  std::string user, password, database;
  std::vector<std::pair<std::string, std::string>> startup_params;  // passed to every server connection
  // The cancel key handed to the client: the pid of the session's first
  // server connection (what pg_backend_pid() said then, and the pid in its
  // own notifications) and a secret of the proxy's. Set by Greet under the
  // proxy's sessions_mu, read by Cancel under it.
  int32_t key_pid = 0, key_secret = 0;

  struct ServerConn {
    wire::Backend b;
    wire::FrameReader reader;
    size_t stream_left = 0;      // bytes of a long server message still to relay as they come
    uint64_t state_version = 0;  // session state this connection has
    bool open() const { return b.fd >= 0; }
  };
  // Written only by the session's own thread, under conn_mu; read by that
  // thread without it and by Cancel (another thread) under it. GUARDED_BY
  // cannot say "writes need the lock, the owner's reads do not", so these
  // carry no annotation.
  ServerConn servers[2];
  Side current = Side::kSource;
  Mutex conn_mu;

  // Transaction tracking.
  std::atomic<bool> busy{false};  // read by PauseWrites' report
  int awaiting_rfq = 0;  // Query/Sync/FunctionCall sent, ReadyForQuery not yet back
  bool unsynced = false; // extended-protocol messages sent since the last Sync
  bool copy_in = false;  // the server waits for CopyData from the client
  char txn_status = 'I';
  std::atomic<int64_t> busy_since_ns{0};

  // Session state carried to another server.
  std::vector<std::string> sets;                 // SET/RESET statements in order
  std::map<std::string, std::string> sql_prepared;  // PREPARE name -> statement
  std::map<std::string, std::string> parsed;     // named Parse message -> its bytes
  uint64_t state_version = 0;
  std::vector<std::string> pending_sets;         // run, not yet confirmed by ReadyForQuery
  bool error_since_rfq = false;
  // State that pins the session to its server (pg_session_state.h), from
  // the statements it ran; effects wait here for their ReadyForQuery.
  SessionPins pins;
  // One batch per request that gets its own ReadyForQuery (Query, Sync,
  // FunctionCall), answered in order; `open_effects` collects the extended-
  // protocol messages before their Sync.
  std::deque<std::vector<SessionEffect>> effect_batches;
  std::vector<SessionEffect> open_effects;
  bool error_since_last_rfq = false;  // an ErrorResponse since the last ReadyForQuery
  // pins.Reason(), for PinnedSessions (another thread): written under conn_mu.
  std::string pin_reason;
  // The server sent a FATAL ErrorResponse: it closes the connection next, and
  // that error (already relayed) is the client's last word.
  bool server_fatal = false;
  // The read-only endpoint's server reported default_transaction_read_only
  // off (by a way ReadWriteAttempt cannot see, e.g. a setting name computed at
  // run time): the session is closed.
  bool read_write_reported = false;

  ~Session() {
    for (auto& s : servers)
      if (s.open()) {
        (void)wire::BackendWrite(s.b, wire::Terminate());
        wire::CloseBackend(s.b);
      }
  }

  Status Fail(const std::string& sqlstate, const std::string& message) {
    (void)client->Write(wire::ErrorResponse("FATAL", sqlstate, message));
    return OperatorError(message);
  }
  Status ReadUntil(wire::FrameReader& reader, Clock::time_point deadline, const char* what,
                   const std::function<Result<bool>()>& take);
  Result<std::string> ReadStartupPacket(wire::FrameReader& reader, Clock::time_point deadline);
  Result<wire::Message> ReadClientMessage(wire::FrameReader& reader, Clock::time_point deadline);
  Status Startup();
  Status Greet();
  Status Authenticate(wire::FrameReader& reader, Clock::time_point deadline);
  Status OpenServer(Side side);
  Status SyncState(Side side);
  Status BeginTransaction();
  void EndTransaction();
  void Track(char type, std::string_view body, std::string_view bytes);
  void OnServerMessage(char type, std::string_view body);
  size_t SessionStateBytes() const {
    size_t n = 0;
    for (const auto& sql : sets) n += sql.size();
    for (const auto& sql : pending_sets) n += sql.size();
    for (const auto& [name, sql] : sql_prepared) n += sql.size();
    for (const auto& [name, bytes] : parsed) n += bytes.size();
    return n;
  }
  Status Relay();
  void CancelServerQuery();
  // The current server closed the connection (or a write to it failed).
  Status ServerGone(const char* what) {
    if (server_fatal) return RetryCall(fmt::format("the {} server ended the session with a FATAL error", SideName(current)));
    return Fail("08006", fmt::format(fmt::runtime(what), SideName(current)));
  }
  void UpdatePins();
};

// --- startup and authentication ---------------------------------------------

// Reads from the client into `reader` until `take()` returns true (it took a
// whole packet or message), or the deadline passes (`what` names the stage in
// the messages).
Status Session::ReadUntil(wire::FrameReader& reader, Clock::time_point deadline, const char* what,
                          const std::function<Result<bool>()>& take) {
  char buf[8192];
  while (true) {
    ASSIGN_OR_RETURN(bool done, take());
    if (done) return Status::Ok();
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) return OperatorError(fmt::format("client did not finish {} in time", what));
    if (!client->pending()) {
      pollfd pfd[2] = {{client->fd(), POLLIN, 0}, {proxy->wake_fd, POLLIN, 0}};
      if (poll(pfd, 2, left) <= 0) continue;
      if (pfd[1].revents) return RetryCall("the proxy is stopping");
    }
    // A TLS record may be trickled in: the read must not outlive the deadline.
    SetSocketTimeouts(client->fd(), std::chrono::milliseconds(left));
    ssize_t n = client->Read(buf, sizeof buf);
    if (n <= 0) return RetryCall(fmt::format("client closed the connection during {}", what));
    reader.Append(buf, static_cast<size_t>(n));
  }
}

Result<std::string> Session::ReadStartupPacket(wire::FrameReader& reader, Clock::time_point deadline) {
  std::string packet;
  RETURN_IF_ERROR(ReadUntil(reader, deadline, "the startup", [&]() -> Result<bool> {
    ASSIGN_OR_RETURN(auto p, reader.NextStartup());
    if (p) packet = std::move(*p);
    return p.has_value();
  }));
  return packet;
}

Result<wire::Message> Session::ReadClientMessage(wire::FrameReader& reader, Clock::time_point deadline) {
  wire::Message msg{};
  RETURN_IF_ERROR(ReadUntil(reader, deadline, "authentication", [&]() -> Result<bool> {
    ASSIGN_OR_RETURN(auto m, reader.Next());
    if (m) msg = std::move(*m);
    return m.has_value();
  }));
  return msg;
}

Status Session::Startup() {
  const auto deadline = Clock::now() + proxy->config.auth_timeout;
  SetSocketTimeouts(client->fd(), proxy->config.auth_timeout);
  wire::FrameReader reader;
  wire::StartupPacket startup;
  while (true) {
    auto packet = ReadStartupPacket(reader, deadline);
    if (!packet.ok()) {
      if (packet.status().code() == StatusCode::kRetryCall) return packet.status();  // client gone
      // An impossible length (a Terminate, garbage, another protocol): the
      // bytes are not a PostgreSQL client's, so like PostgreSQL (a COMMERROR:
      // logged, not sent) close without a reply.
      ++proxy->protocol_errors;
      return OperatorError("invalid startup packet: " + packet.status().message());
    }
    auto parsed = wire::ParseStartup(*packet);
    if (!parsed.ok()) {
      ++proxy->protocol_errors;
      return Fail("08P01", "invalid startup packet: " + parsed.status().message());
    }
    startup = std::move(*parsed);
    if (startup.kind == wire::StartupPacket::Kind::kCancel) {
      proxy->Cancel(startup.cancel_pid, startup.cancel_secret);
      return RetryCall("cancel request handled");
    }
    if (startup.kind == wire::StartupPacket::Kind::kSslRequest) {
      if (proxy->ssl_ctx && !reader.size()) {
        RETURN_IF_ERROR(client->Write("S"));
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return OperatorError("client did not finish the startup in time");
        SetSocketTimeouts(client->fd(), left);
        if (Status tls = client->StartTls(proxy->ssl_ctx); !tls.ok())
          return Clock::now() >= deadline ? OperatorError("client did not finish the TLS handshake in time") : tls;
      } else {
        RETURN_IF_ERROR(client->Write("N"));
      }
      continue;
    }
    if (startup.kind == wire::StartupPacket::Kind::kGssEncRequest) {
      RETURN_IF_ERROR(client->Write("N"));
      continue;
    }
    break;
  }
  for (auto& [k, v] : startup.params) {
    if (k == "user") {
      user = v;
    } else if (k == "database") {
      database = v;
    } else if (k != "replication") {
      startup_params.emplace_back(k, v);
    } else {
      return Fail("08P01", "the midflight proxy does not relay replication connections");
    }
  }
  if (user.empty()) return Fail("28000", "no PostgreSQL user name specified in startup packet");
  if (database.empty()) database = user;
  const auto& cfg = proxy->config;
  if (database != cfg.servers[0].database && database != cfg.servers[1].database)
    return Fail("3D000", fmt::format("database \"{}\" is not served by this midflight proxy (migration {} serves \"{}\")",
                                     database, cfg.migration, cfg.servers[0].database));
  RETURN_IF_ERROR(Authenticate(reader, deadline));
  SetSocketTimeouts(client->fd(), std::chrono::milliseconds(0));
  return Status::Ok();
}

// After authentication: the first server connection and the greeting.
Status Session::Greet() {
  if (readonly) {
    // The server session's default, set at its start (so RESET, RESET ALL and
    // DISCARD ALL come back to it); it comes after the client's own startup
    // parameters and "options", so it wins over them.
    std::erase_if(startup_params, [](const auto& p) {
      std::string k = p.first;
      std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return static_cast<char>(tolower(c)); });
      return k == "default_transaction_read_only";
    });
    startup_params.emplace_back("default_transaction_read_only", "on");
  }

  // The first server connection: the endpoint's current side.
  Side side = readonly ? (proxy->read_percent.load() >= 100 ? Side::kTarget : Side::kSource)
                       : static_cast<Side>(proxy->write_side.load());
  if (Status st = OpenServer(side); !st.ok())
    return Fail("08006", fmt::format("midflight proxy cannot reach the {} server: {}", SideName(side), st.message()));
  current = side;
  {
    // The real pid, so that pg_backend_pid() and the pid of the session's own
    // notifications match what the driver was told; with a secret of the
    // proxy's, unique among the sessions with the same pid (the two servers'
    // pids may coincide).
    MutexLock lock(&proxy->sessions_mu);
    const int32_t pid = servers[static_cast<int>(side)].b.pid;
    int32_t secret = 0;
    auto taken = [&]() REQUIRES(proxy->sessions_mu) {
      for (Session* s : proxy->sessions)
        if (s != this && s->key_pid == pid && s->key_secret == secret) return true;
      return false;
    };
    do {
      RAND_bytes(reinterpret_cast<uint8_t*>(&secret), sizeof secret);
    } while (secret == 0 || taken());
    key_pid = pid;
    key_secret = secret;
  }
  std::string out = wire::AuthOk();
  for (auto& [k, v] : servers[static_cast<int>(side)].b.parameters) out += wire::ParameterStatus(k, v);
  out += wire::BackendKeyData(key_pid, key_secret);
  out += wire::ReadyForQuery('I');
  return client->Write(out);
}

Status Session::Authenticate(wire::FrameReader& reader, Clock::time_point deadline) {
  const auto& cfg = proxy->config;
  const ProxyUser* found = nullptr;
  for (const auto& u : cfg.users)
    if (u.name == user) found = &u;
  auto refuse = [&] {
    ++proxy->auth_failures;
    return Fail("28P01", fmt::format("password authentication failed for user \"{}\"", user));
  };
  if (cfg.auth == "md5") {
    uint8_t salt[4];
    RAND_bytes(salt, sizeof salt);
    RETURN_IF_ERROR(client->Write(wire::AuthMd5(salt)));
    ASSIGN_OR_RETURN(wire::Message m, ReadClientMessage(reader, deadline));
    if (m.type != 'p') return Fail("08P01", fmt::format("expected a password message, got message type '{}'", m.type));
    std::string response = m.body.substr(0, m.body.find('\0'));
    if (!found || !wire::Md5Verify(user, found->password, salt, response)) return refuse();
  } else {
    // SCRAM-SHA-256. An unknown user still goes through the exchange (with a
    // random password), so the reply does not tell which users exist.
    std::string secret = found ? found->password : "";
    if (!found) {
      uint8_t r[16];
      RAND_bytes(r, sizeof r);
      secret.assign(reinterpret_cast<char*>(r), sizeof r);
    }
    wire::ScramServerOptions options;
    options.tls_server_end_point = client->TlsServerEndPoint();  // SCRAM-SHA-256-PLUS over TLS
    wire::ScramServer scram(secret, options);
    RETURN_IF_ERROR(client->Write(wire::AuthSasl(scram.Mechanisms())));
    ASSIGN_OR_RETURN(wire::Message first, ReadClientMessage(reader, deadline));
    if (first.type != 'p') return Fail("08P01", fmt::format("expected SASLInitialResponse, got message type '{}'", first.type));
    // mechanism\0 int32 length, data
    auto nul = first.body.find('\0');
    if (nul == std::string::npos || first.body.size() < nul + 5) return Fail("08P01", "malformed SASLInitialResponse");
    std::string mech = first.body.substr(0, nul);
    if (Status st = scram.ChooseMechanism(mech); !st.ok()) return Fail("28000", st.message());
    std::string data = first.body.substr(nul + 5);
    auto server_first = scram.ClientFirst(data);
    if (!server_first.ok()) return Fail("08P01", server_first.status().message());
    RETURN_IF_ERROR(client->Write(wire::AuthSaslContinue(*server_first)));
    ASSIGN_OR_RETURN(wire::Message final_msg, ReadClientMessage(reader, deadline));
    if (final_msg.type != 'p') return Fail("08P01", fmt::format("expected SASLResponse, got message type '{}'", final_msg.type));
    auto server_final = scram.ClientFinal(final_msg.body);
    if (!server_final.ok() || !found) return refuse();
    RETURN_IF_ERROR(client->Write(wire::AuthSaslFinal(*server_final)));
  }
  password = found->password;
  return Status::Ok();
}

Status Session::OpenServer(Side side) {
  const ServerAddress& s = proxy->config.servers[static_cast<int>(side)];
  wire::BackendParams p;
  p.host = s.host;
  p.port = s.port;
  p.database = s.database;
  p.user = user;
  p.password = user == s.user ? s.password : password;
  p.startup_params = startup_params;
  p.tls = s.tls;
  ASSIGN_OR_RETURN(wire::Backend b, wire::ConnectBackend(p));
  ++proxy->server_connects[static_cast<int>(side)];
  ServerConn& c = servers[static_cast<int>(side)];
  {
    MutexLock lock(&conn_mu);
    c.b = std::move(b);
  }
  c.reader = wire::FrameReader();
  if (!c.b.leftover.empty()) c.reader.Append(c.b.leftover.data(), c.b.leftover.size());
  c.state_version = 0;
  return Status::Ok();
}

// Brings server connection `side` up to the session's state: SET parameters,
// SQL PREPAREd and protocol-level named statements, replayed in one round trip
// with their answers swallowed.
Status Session::SyncState(Side side) {
  ServerConn& c = servers[static_cast<int>(side)];
  if (c.state_version == state_version) return Status::Ok();
  std::string out;
  int expect = 0;
  if (c.state_version != 0) {
    out += wire::Query("DISCARD ALL");
    ++expect;
  }
  for (const auto& s : sets) {
    // Never recorded (Relay replaces such statements), and never replayed.
    if (readonly && !ReadWriteAttempt(s).empty()) continue;
    out += wire::Query(s);
    ++expect;
  }
  for (const auto& [name, sql] : sql_prepared) {
    out += wire::Query(sql);
    ++expect;
  }
  if (!parsed.empty()) {
    for (const auto& [name, bytes] : parsed) out += bytes;
    out += wire::Sync();
    ++expect;
  }
  if (expect > 0) {
    RETURN_IF_ERROR(wire::BackendWrite(c.b, out));
    while (expect > 0) {
      ASSIGN_OR_RETURN(wire::Message m, wire::ReadBackendMessage(c.b, c.reader));
      if (m.type == 'Z') --expect;
      if (m.type == 'E') {
        auto fields = wire::ParseErrorFields(m.body);
        LOG_WARN("proxy: replaying session state of {} on the {}: {}", peer, SideName(side),
                 fields.ok() ? (*fields)['M'] : std::string("error"));
      }
    }
  }
  c.state_version = state_version;
  return Status::Ok();
}

// --- transactions ------------------------------------------------------------

Status Session::BeginTransaction() {
  Side want;
  if (readonly) {
    int pct = proxy->read_percent.load();
    thread_local std::mt19937 rng{std::random_device{}()};
    want = (pct >= 100 || (pct > 0 && static_cast<int>(rng() % 100) < pct)) ? Side::kTarget : Side::kSource;
  } else {
    MutexLock lock(&proxy->gate_mu);
    proxy->gate_cv.Wait(&proxy->gate_mu, [&]() REQUIRES(proxy->gate_mu) { return !proxy->paused || proxy->stopping; });
    ++proxy->busy_rw;
    want = static_cast<Side>(proxy->write_side.load());
  }
  busy = true;
  busy_since_ns = Clock::now().time_since_epoch().count();
  // A read-only session with state only its server has stays there (it does
  // not follow the canary); LISTEN too, as it is not carried between the two
  // connections a read-only session keeps.
  if (readonly && (pins.pinned() || pins.listening())) want = current;
  if (want != current && !readonly && pins.pinned())
    // The cutover refuses a write switch while PinnedSessions lists this
    // session; should writes have moved anyway, the session ends with the
    // reason rather than lose its state silently.
    return Fail("57P01", fmt::format("midflight proxy: writes moved to the {} but this session holds state only the {} "
                                     "has ({}); reconnect",
                                     SideName(want), SideName(current), pins.Reason()));
  if (want != current) {
    ServerConn& next = servers[static_cast<int>(want)];
    if (!next.open()) {
      if (Status st = OpenServer(want); !st.ok())
        return Fail("08006", fmt::format("midflight proxy cannot reach the {} server: {}", SideName(want), st.message()));
    }
    if (Status st = SyncState(want); !st.ok())
      return Fail("08006", fmt::format("midflight proxy lost the {} server: {}", SideName(want), st.message()));
    Side old = current;
    if (!readonly) {
      // What the SQL replay cannot know: the old server's own session
      // settings and LISTEN channels (pg_session_state.h).
      ServerConn& prev = servers[static_cast<int>(old)];
      std::string notifications;
      if (Status st = CarryServerState(prev.b, prev.reader, next.b, next.reader, pins.custom_settings(), peer,
                                        &notifications); !st.ok())
        return Fail("08006", fmt::format("midflight proxy could not carry the session state from the {} to the {}: {}",
                                         SideName(old), SideName(want), st.message()));
      RETURN_IF_ERROR(client->Write(notifications));
    }
    {
      MutexLock lock(&conn_mu);
      current = want;
    }
    ++proxy->moves;
    if (!readonly) {
      // A read-write session leaves the old side for good (until the next switch).
      ServerConn& prev = servers[static_cast<int>(old)];
      (void)wire::BackendWrite(prev.b, wire::Terminate());
      MutexLock lock(&conn_mu);
      wire::CloseBackend(prev.b);
    }
  } else if (Status st = SyncState(want); !st.ok()) {
    return Fail("08006", fmt::format("midflight proxy lost the {} server: {}", SideName(want), st.message()));
  }
  ++proxy->transactions[static_cast<int>(want)];
  return Status::Ok();
}

void Session::EndTransaction() {
  busy = false;
  if (!readonly) {
    MutexLock lock(&proxy->gate_mu);
    --proxy->busy_rw;
    proxy->gate_cv.NotifyAll();
  }
}

void Session::Track(char type, std::string_view body, std::string_view bytes) {
  switch (type) {
    case 'Q': {
      ++awaiting_rfq;
      std::string_view sql = body.substr(0, body.find('\0'));
      std::string name;
      if (MayChangeState(sql) && Classify(sql, &name) != StateEffect::kNone) pending_sets.emplace_back(sql);
      if (MayHoldSessionState(sql))
        for (SessionEffect& e : SessionEffects(sql)) open_effects.push_back(std::move(e));
      effect_batches.push_back(std::exchange(open_effects, {}));
      break;
    }
    case 'S':
      ++awaiting_rfq;
      unsynced = false;
      effect_batches.push_back(std::exchange(open_effects, {}));
      break;
    case 'F':
      ++awaiting_rfq;
      effect_batches.push_back(std::exchange(open_effects, {}));
      break;
    case 'P': {
      unsynced = true;
      auto parse = wire::ParseParse(body);
      if (!parse.ok()) break;
      // Counted when parsed (a named statement may run later, more than once).
      if (MayHoldSessionState(parse->query))
        for (SessionEffect& e : SessionEffects(parse->query)) open_effects.push_back(std::move(e));
      if (!parse->statement.empty()) {
        // The server this goes to gets it now; others get it replayed.
        bool current_had_all = servers[static_cast<int>(current)].state_version == state_version;
        parsed[parse->statement] = std::string(bytes);
        ++state_version;
        if (current_had_all) servers[static_cast<int>(current)].state_version = state_version;
      } else {
        std::string name;
        if (MayChangeState(parse->query) && Classify(parse->query, &name) == StateEffect::kSet)
          pending_sets.push_back(parse->query);
      }
      break;
    }
    case 'C': {
      unsynced = true;
      auto cl = wire::ParseClose(body);
      if (cl.ok() && cl->kind == 'S' && parsed.erase(cl->name)) {
        bool current_had_all = servers[static_cast<int>(current)].state_version == state_version;
        ++state_version;
        if (current_had_all) servers[static_cast<int>(current)].state_version = state_version;
      }
      break;
    }
    case 'B': case 'E': case 'D': case 'H': unsynced = true; break;
    case 'c': case 'f': copy_in = false; break;
    default: break;
  }
}

void Session::OnServerMessage(char type, std::string_view body) {
  if (type == 'E') {
    error_since_rfq = true;
    error_since_last_rfq = true;
    if (wire::IsFatalError(body)) server_fatal = true;
  }
  if (type == 'C' && body.starts_with("ROLLBACK")) pins.RolledBack();
  if (type == 'S' && readonly) {
    auto ps = wire::ParseParameterStatus(body);
    if (ps.ok() && ps->first == "default_transaction_read_only" && ps->second != "on") read_write_reported = true;
  }
  if (type == 'G') copy_in = true;
  if (type != 'Z') return;
  if (awaiting_rfq > 0) --awaiting_rfq;
  copy_in = false;
  txn_status = body.empty() ? 'I' : body[0];
  {
    std::vector<SessionEffect> batch;
    if (!effect_batches.empty()) {
      batch = std::move(effect_batches.front());
      effect_batches.pop_front();
    }
    if (!batch.empty() || txn_status == 'I') {
      pins.Answered(batch, error_since_last_rfq, txn_status);
      UpdatePins();
    }
    error_since_last_rfq = false;
  }
  if (!pending_sets.empty() && awaiting_rfq == 0) {
    if (!error_since_rfq) {
      for (auto& sql : pending_sets) {
        std::string name;
        switch (Classify(sql, &name)) {
          case StateEffect::kSet: {
            // A later SET or RESET of a setting overrides the earlier ones: only
            // the last is kept, so a session that SETs per transaction keeps
            // one statement per setting, not one per transaction.
            const std::string key = SettingKey(sql);
            if (!key.empty()) std::erase_if(sets, [&](const std::string& old) { return SettingKey(old) == key; });
            sets.push_back(sql);
            break;
          }
          case StateEffect::kResetAll: sets.clear(); break;
          case StateEffect::kDiscardAll:
            sets.clear();
            sql_prepared.clear();
            parsed.clear();
            break;
          case StateEffect::kPrepare: sql_prepared[name] = sql; break;
          case StateEffect::kDeallocate:
            if (name == "ALL") sql_prepared.clear();
            else sql_prepared.erase(name);
            break;
          case StateEffect::kNone: break;
        }
      }
      ++state_version;
      // The server this ran on has it already.
      servers[static_cast<int>(current)].state_version = state_version;
    }
    pending_sets.clear();
  }
  if (awaiting_rfq == 0) error_since_rfq = false;
}

void Session::UpdatePins() {
  std::string reason = pins.Reason();
  if (reason == pin_reason) return;
  if (pin_reason.empty()) ++proxy->pinned;
  else if (reason.empty()) --proxy->pinned;
  MutexLock lock(&conn_mu);
  pin_reason = std::move(reason);
}

// The client is gone while the server still works on its request: ask the
// server to cancel it, so the server session is free at once instead of when
// a long query ends.
void Session::CancelServerQuery() {
  ServerConn& server = servers[static_cast<int>(current)];
  const ServerAddress& a = proxy->config.servers[static_cast<int>(current)];
  if (Status st = wire::SendCancel(a.host, a.port, server.b.pid, server.b.secret, 2000); !st.ok())
    LOG_WARN("proxy: session {} closed mid-query; cancelling its query: {}", peer, st.message());
}

Status Session::Relay() {
  constexpr size_t kReadSize = 64 * 1024;
  wire::FrameReader from_client;
  std::string out;
  // A long client message being relayed (or, when refused, dropped) as it comes.
  size_t stream_left = 0;
  bool stream_discard = false;
  // The state the first server connection holds is the (empty) session state.
  servers[static_cast<int>(current)].state_version = state_version;
  // After a request went out, the server answers without needing anything
  // more from the client (except during COPY FROM STDIN): read its answer
  // straight away instead of polling both sides first (one system call less
  // per round trip).
  bool expect_server = false;
  while (!proxy->stopping) {
    ServerConn& server = servers[static_cast<int>(current)];
    pollfd fds[3] = {{client->fd(), POLLIN, 0}, {server.b.fd, POLLIN, 0}, {proxy->wake_fd, POLLIN, 0}};
    // An answer already there is read without polling first; one not there
    // yet is waited for on both sides, so a client that goes away while its
    // query runs is noticed at once (and the query cancelled).
    const bool try_server_first = expect_server;
    if (expect_server || wire::BackendPending(server.b)) {  // decrypted bytes: poll cannot see them
      fds[1].revents = POLLIN;
    } else if (!client->pending()) {
      int rc = poll(fds, 3, -1);
      if (rc < 0 && errno != EINTR) return Internal("poll failed");
      if (rc <= 0 || fds[2].revents) continue;  // Stop wakes the loop to see `stopping`
    } else {
      fds[0].revents = POLLIN;
    }
    expect_server = false;
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char* into = from_client.PrepareWrite(kReadSize);
      ssize_t n = client->Read(into, kReadSize);
      if (n <= 0) {  // client went away
        if (awaiting_rfq > 0) CancelServerQuery();
        return Status::Ok();
      }
      from_client.CommitWrite(static_cast<size_t>(n));
      out.clear();
      while (true) {
        if (stream_left > 0) {  // the rest of a long message, as it comes
          const size_t k = std::min(stream_left, from_client.size());
          if (k == 0) break;
          if (!stream_discard) out.append(from_client.data(), k);
          from_client.Consume(k);
          stream_left -= k;
          continue;
        }
        auto header = from_client.PeekHeader();
        if (!header.ok()) {
          ++proxy->protocol_errors;
          return Fail("08P01", "invalid message from the client: " + header.status().message());
        }
        if (!*header) break;
        const size_t total = size_t{(*header)->length} + 1;
        if (total > kStreamAbove && from_client.size() < total) {
          const char type = (*header)->type;
          const std::string_view buffered(from_client.data(), from_client.size());
          const LargeMessage plan = PlanLargeMessage(readonly, type, total, buffered);
          if (plan == LargeMessage::kWaitForPrefix || plan == LargeMessage::kHoldWhole) break;
          if (!busy) {
            if (!out.empty()) {
              RETURN_IF_ERROR(wire::BackendWrite(servers[static_cast<int>(current)].b, out));
              out.clear();
            }
            RETURN_IF_ERROR(BeginTransaction());
          }
          if (plan == LargeMessage::kRefuse) {
            const std::string refusal = LargeMessageRefusal(type, total, buffered);
            LOG_INFO("proxy: session {} (user {}) sent a {} message of {} bytes; refused (above {} MiB held whole)",
                     peer, user, wire::DescribeType(type), total, kMaxHeldMessage >> 20);
            Track(type, std::string_view(refusal).substr(5), refusal);
            out.append(refusal);
          } else {
            Track(type, {}, {});  // the type is all Track needs of a streamed message
          }
          stream_left = total;
          stream_discard = plan == LargeMessage::kRefuse;
          continue;
        }
        auto raw = from_client.NextRaw();
        if (!raw.ok()) {
          ++proxy->protocol_errors;
          return Fail("08P01", "invalid message from the client: " + raw.status().message());
        }
        if (!*raw) break;
        const wire::RawMessage& m = **raw;
        if (m.type == 'X') {
          if (!out.empty()) (void)wire::BackendWrite(servers[static_cast<int>(current)].b, out);
          return Status::Ok();
        }
        if (!busy) {
          if (!out.empty()) {
            // Messages of the previous transaction are already out; should not happen.
            RETURN_IF_ERROR(wire::BackendWrite(servers[static_cast<int>(current)].b, out));
            out.clear();
          }
          RETURN_IF_ERROR(BeginTransaction());
        }
        std::optional<std::string> replaced;
        if (readonly && (m.type == 'Q' || m.type == 'P')) replaced = ReadOnlyReplacement(m.type, m.body);
        if (!replaced && (m.type == 'Q' || m.type == 'P')) {
          const size_t added = AddedSessionState(m.type, m.body, m.bytes.size());
          if (added > 0 && SessionStateBytes() + added > kMaxSessionState) {
            LOG_INFO("proxy: session {} (user {}) would keep more than {} MiB of session state; statement refused",
                     peer, user, kMaxSessionState >> 20);
            replaced = LimitRefusal(
                m.type, m.bytes,
                fmt::format("this statement would take the session state the proxy keeps above {} MiB",
                            kMaxSessionState >> 20),
                "SET and PREPARE statements and named prepared statements are kept to be replayed when the "
                "session moves; DEALLOCATE, RESET or DISCARD ALL free them.");
          }
        }
        if (replaced) {
          std::string_view bytes = *replaced;
          Track(m.type, bytes.substr(5), bytes);
          out.append(bytes);
        } else {
          Track(m.type, m.body, m.bytes);
          out.append(m.bytes);
        }
      }
      if (!out.empty()) {
        if (Status st = wire::BackendWrite(servers[static_cast<int>(current)].b, out); !st.ok())
          return ServerGone("midflight proxy lost the {} server");
      }
      expect_server = awaiting_rfq > 0 && !copy_in && !client->pending();
      continue;  // the server may have changed
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      char* into = server.reader.PrepareWrite(kReadSize);
      ssize_t n = wire::BackendRead(server.b, into, kReadSize, try_server_first);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) {
          expect_server = true;
          continue;
        }
        if (n < 0 && try_server_first && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;  // poll both sides
        return ServerGone("the {} server closed the connection");
      }
      server.reader.CommitWrite(static_cast<size_t>(n));
      out.clear();
      while (true) {
        if (server.stream_left > 0) {  // a long DataRow or CopyData, as it comes
          const size_t k = std::min(server.stream_left, server.reader.size());
          if (k == 0) break;
          out.append(server.reader.data(), k);
          server.reader.Consume(k);
          server.stream_left -= k;
          continue;
        }
        auto header = server.reader.PeekHeader();
        if (!header.ok()) return Fail("08P01", "invalid message from the server: " + header.status().message());
        if (!*header) break;
        const size_t total = size_t{(*header)->length} + 1;
        if (total > kStreamAbove && server.reader.size() < total) {
          OnServerMessage((*header)->type, {});  // the type is all it needs of a long message
          server.stream_left = total;
          continue;
        }
        auto raw = server.reader.NextRaw();
        if (!raw.ok()) return Fail("08P01", "invalid message from the server: " + raw.status().message());
        if (!*raw) break;
        OnServerMessage((*raw)->type, (*raw)->body);
        if ((*raw)->type == 'A' && server.b.pid != key_pid) {
          // The session's own notification from a later server connection:
          // the pid the client knows, so it recognises it as its own.
          auto pid = wire::ParseNotificationPid((*raw)->body);
          if (pid.ok() && *pid == server.b.pid) {
            out.append(wire::WithNotificationPid((*raw)->bytes, key_pid));
            continue;
          }
        }
        out.append((*raw)->bytes);
      }
      RETURN_IF_ERROR(client->Write(out));
      if (read_write_reported)
        return Fail("25006",
                    "midflight proxy: the session on the read-only endpoint turned default_transaction_read_only "
                    "off; closing it (send writes to the read-write endpoint)");
      if (busy && awaiting_rfq == 0 && !unsynced && txn_status == 'I') EndTransaction();
    }
  }
  return Status::Ok();
}

// --- the proxy ---------------------------------------------------------------

void PgProxy::Impl::Accept(int which) {
  while (!stopping) {
    pollfd fds[2] = {{listen_fd[which], POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) <= 0 || fds[1].revents) continue;  // Stop wakes the loop to see `stopping`
    int fd = accept4(listen_fd[which], nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++connections;
    const uint64_t unauth_id = AdmitUnauthenticated(fd);
    if (unauth_id == 0) {
      // Refused without a thread: a short error the kernel's buffer takes, then close.
      const std::string refusal = wire::ErrorResponse(
          "FATAL", "53300",
          fmt::format("sorry, too many connections waiting to authenticate (midflight proxy, "
                      "proxy.max_unauthenticated = {})",
                      config.max_unauthenticated));
      (void)send(fd, refusal.data(), refusal.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      close(fd);
      continue;
    }
    auto self = shared_from_this();
    std::thread([self, fd, which, unauth_id] {
      ScopedLogContext log_context(self->config.migration);
      self->Serve(fd, which == 1, unauth_id);
    }).detach();
  }
}

uint64_t PgProxy::Impl::AdmitUnauthenticated(int fd) {
  MutexLock lock(&unauth_mu);
  const auto now = Clock::now();
  if (static_cast<int>(unauthenticated.size()) >= config.max_unauthenticated) {
    auto oldest = unauthenticated.begin();
    const bool evict = now - oldest->second.since >= kEvictUnauthenticatedAfter;
    if (now - last_unauth_warning >= std::chrono::seconds(10)) {
      last_unauth_warning = now;
      LOG_WARN("proxy: {} connections are waiting to authenticate (proxy.max_unauthenticated); {}",
               unauthenticated.size(),
               evict ? "evicting the oldest for each new one" : "refusing new ones until some finish");
    }
    if (!evict) return 0;
    // Its thread sees the connection closed and ends; its entry is gone already.
    shutdown(oldest->second.fd, SHUT_RDWR);
    unauthenticated.erase(oldest);
  }
  const uint64_t id = next_unauth_id++;
  unauthenticated[id] = {now, fd};
  return id;
}

void PgProxy::Impl::Serve(int fd, bool readonly, uint64_t unauth_id) {
  auto session = std::make_unique<Session>();
  session->proxy = this;
  session->readonly = readonly;
  session->client = std::make_unique<ClientIo>(fd);
  session->peer = PeerName(fd);
  // Declared after `session`, so the entry goes before the socket is closed.
  struct UnauthenticatedSlot {
    Impl* impl;
    uint64_t id;
    ~UnauthenticatedSlot() { Release(); }
    void Release() {
      if (id) impl->LeaveUnauthenticated(std::exchange(id, 0));
    }
  } unauth_slot{this, unauth_id};
  Status st = session->Startup();
  unauth_slot.Release();
  if (!st.ok()) {
    // Debug only: sockets that never log in must not flood the log either.
    if (st.code() != StatusCode::kRetryCall)
      LOG_DEBUG("proxy: connection from {} (user {}) closed before it logged in: {}", session->peer,
               session->user.empty() ? "?" : session->user, st.message());
    return;
  }
  {
    MutexLock lock(&sessions_mu);
    if (static_cast<int>(sessions.size()) >= config.max_clients) {
      (void)session->client->Write(wire::ErrorResponse(
          "FATAL", "53300",
          fmt::format("sorry, too many clients already (midflight proxy, proxy.max_clients = {})", config.max_clients)));
      return;
    }
    sessions.insert(session.get());
  }
  st = session->Greet();
  if (st.ok()) {
    ++clients[readonly ? 1 : 0];
    st = session->Relay();
    --clients[readonly ? 1 : 0];
  }
  if (!st.ok() && st.code() != StatusCode::kRetryCall)
    LOG_INFO("proxy: session {} (user {}) closed: {}", session->peer, session->user, st.message());
  if (session->busy) session->EndTransaction();
  if (!session->pin_reason.empty()) --pinned;
  {
    MutexLock lock(&sessions_mu);
    sessions.erase(session.get());
  }
  session.reset();
  sessions_cv.NotifyAll();
}

void PgProxy::Impl::Cancel(int32_t pid, int32_t secret) {
  std::string host;
  int port = 0;
  int32_t server_pid = 0, server_secret = 0;
  {
    MutexLock lock(&sessions_mu);
    auto it = std::find_if(sessions.begin(), sessions.end(), [&](Session* s) {
      return s->key_pid == pid && s->key_secret == secret && pid != 0;
    });
    if (it == sessions.end()) return;
    Session* s = *it;
    MutexLock conn_lock(&s->conn_mu);
    const ServerAddress& a = config.servers[static_cast<int>(s->current)];
    host = a.host;
    port = a.port;
    server_pid = s->servers[static_cast<int>(s->current)].b.pid;
    server_secret = s->servers[static_cast<int>(s->current)].b.secret;
  }
  if (Status st = wire::SendCancel(host, port, server_pid, server_secret); !st.ok())
    LOG_WARN("proxy: forwarding a cancel request: {}", st.message());
}

Result<std::unique_ptr<PgProxy>> PgProxy::Start(ProxyConfig config) {
  std::unique_ptr<PgProxy> proxy(new PgProxy());
  auto impl = std::make_shared<Impl>();
  impl->config = std::move(config);
  if (!impl->config.tls_cert.empty() || !impl->config.tls_key.empty()) {
    impl->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_chain_file(impl->ssl_ctx, impl->config.tls_cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(impl->ssl_ctx, impl->config.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
      return OperatorError(fmt::format("proxy.tls_cert / proxy.tls_key: cannot load {} / {}", impl->config.tls_cert,
                                       impl->config.tls_key));
  }
  impl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->wake_fd < 0) return Internal(fmt::format("proxy: eventfd: {}", std::strerror(errno)));
  ASSIGN_OR_RETURN(impl->listen_fd[0], core::ListenOn(impl->config.listen_rw, &impl->address[0]));
  if (!impl->config.listen_ro.empty()) {
    auto ro = core::ListenOn(impl->config.listen_ro, &impl->address[1]);
    if (!ro.ok()) {
      close(impl->listen_fd[0]);
      return ro.status();
    }
    impl->listen_fd[1] = *ro;
  }
  for (int which = 0; which < 2; ++which)
    if (impl->listen_fd[which] >= 0) impl->acceptors.emplace_back([p = impl.get(), which] {
      ScopedLogContext log_context(p->config.migration);
      p->Accept(which);
    });
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  const rlim_t need = 2 * static_cast<rlim_t>(impl->config.max_clients + impl->config.max_unauthenticated) + 64;
  if (files.rlim_cur < need)
    LOG_WARN("proxy: the open-file limit is {}; proxy.max_clients = {} and proxy.max_unauthenticated = {} need about {}",
             files.rlim_cur, impl->config.max_clients, impl->config.max_unauthenticated, need);
  else
    LOG_INFO("proxy: listening on {}{}{} (open-file limit {})", impl->address[0],
             impl->address[1].empty() ? "" : " and read-only on ", impl->address[1], files.rlim_cur);
  proxy->impl_ = impl;
  return proxy;
}

PgProxy::~PgProxy() { Stop(); }

void PgProxy::Stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  const uint64_t one = 1;
  if (write(impl_->wake_fd, &one, sizeof one) != sizeof one)
    LOG_WARN("proxy: waking its threads to stop: {}", std::strerror(errno));
  for (auto& t : impl_->acceptors) t.join();
  for (int fd : impl_->listen_fd)
    if (fd >= 0) close(fd);
  {
    MutexLock lock(&impl_->gate_mu);
    impl_->gate_cv.NotifyAll();
  }
  Impl& impl = *impl_;
  MutexLock lock(&impl.sessions_mu);
  for (Session* s : impl.sessions) shutdown(s->client->fd(), SHUT_RDWR);
  impl.sessions_cv.WaitFor(&impl.sessions_mu, std::chrono::seconds(5),
                           [&]() REQUIRES(impl.sessions_mu) { return impl.sessions.empty(); });
}

std::string PgProxy::rw_address() const { return impl_->address[0]; }
std::string PgProxy::ro_address() const { return impl_->address[1]; }
Side PgProxy::write_side() const { return static_cast<Side>(impl_->write_side.load()); }
void PgProxy::SetWriteSide(Side side) { impl_->write_side = static_cast<int>(side); }
int PgProxy::read_percent() const { return impl_->read_percent.load(); }
void PgProxy::SetReadPercent(int percent) { impl_->read_percent = std::clamp(percent, 0, 100); }

Status PgProxy::PauseWrites(std::chrono::milliseconds drain_timeout) {
  Impl& impl = *impl_;
  int busy = 0;
  {
    MutexLock lock(&impl.gate_mu);
    impl.paused = true;
    if (impl.gate_cv.WaitFor(&impl.gate_mu, drain_timeout, [&]() REQUIRES(impl.gate_mu) { return impl.busy_rw == 0; }))
      return Status::Ok();
    busy = impl.busy_rw;
  }
  std::string who;
  MutexLock slock(&impl.sessions_mu);
  auto now = Clock::now();
  int listed = 0;
  for (Session* s : impl.sessions) {
    if (s->readonly || !s->busy) continue;  // racy read of a flag, for the message only
    if (listed++ < 5)
      who += fmt::format("{}{} (user {}, in a transaction for {:.1f} s)", who.empty() ? "" : ", ", s->peer, s->user,
                         (now.time_since_epoch().count() - s->busy_since_ns.load()) / 1e9);
  }
  return OperatorError(fmt::format("{} client session(s) still inside a transaction after the drain timeout of {:.1f} s: {}",
                                 busy, drain_timeout.count() / 1000.0, who.empty() ? "?" : who));
}

void PgProxy::ResumeWrites() {
  MutexLock lock(&impl_->gate_mu);
  impl_->paused = false;
  impl_->gate_cv.NotifyAll();
}

ProxyStats PgProxy::stats() const {
  ProxyStats s;
  s.clients_rw = impl_->clients[0];
  s.clients_ro = impl_->clients[1];
  s.connections = impl_->connections;
  s.auth_failures = impl_->auth_failures;
  s.protocol_errors = impl_->protocol_errors;
  for (int i = 0; i < 2; ++i) {
    s.transactions[i] = impl_->transactions[i];
    s.server_connects[i] = impl_->server_connects[i];
  }
  s.session_moves = impl_->moves;
  s.pinned_sessions = impl_->pinned;
  return s;
}

std::vector<std::string> PgProxy::PinnedSessions(Side side) const {
  std::vector<std::string> out;
  MutexLock lock(&impl_->sessions_mu);
  for (Session* s : impl_->sessions) {
    if (s->readonly) continue;
    MutexLock conn_lock(&s->conn_mu);
    if (s->current != side || s->pin_reason.empty()) continue;
    out.push_back(fmt::format("{} on the {}: {}", s->peer, SideName(side), s->pin_reason));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace midflight::proxy
