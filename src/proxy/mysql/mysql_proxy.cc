#include "proxy/mysql/mysql_proxy.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "base/log.h"
#include "base/thread_annotations.h"
#include "proxy/core/connection.h"
#include "proxy/core/proxy_core.h"
#include "proxy/wire/mysql/mysql_wire.h"

namespace midflight::proxy {

using core::Conn;
using core::ConnOwner;
using core::Endpoint;
using core::EventLoop;
using core::ProxyCore;
namespace mw = mywire;

namespace {

constexpr size_t kHeader = 4;
constexpr uint32_t kMaxPayload = 0xffffff;

// Capabilities the proxy offers clients (ANDed with the source server's):
// compression, the MySQL 8 extras and MariaDB's bulk / COM_MULTI / metadata
// cache / progress extensions are not relayed.
constexpr uint64_t kOffered =
    mw::cap::kLongPassword | mw::cap::kFoundRows | mw::cap::kLongFlag | mw::cap::kConnectWithDb | mw::cap::kNoSchema |
    mw::cap::kOdbc | mw::cap::kLocalFiles | mw::cap::kIgnoreSpace | mw::cap::kProtocol41 | mw::cap::kInteractive |
    mw::cap::kIgnoreSigpipe | mw::cap::kTransactions | mw::cap::kReserved | mw::cap::kSecureConnection |
    mw::cap::kMultiStatements | mw::cap::kMultiResults | mw::cap::kPsMultiResults | mw::cap::kPluginAuth |
    mw::cap::kConnectAttrs | mw::cap::kPluginAuthLenencData | mw::cap::kSessionTrack | mw::cap::kDeprecateEof |
    mw::cap::kMariaDbExtendedTypeInfo;
// Bits that only shape the handshake, which the proxy sets for its own logins.
constexpr uint64_t kLoginOnly = mw::cap::kConnectWithDb | mw::cap::kPluginAuth | mw::cap::kConnectAttrs |
                                mw::cap::kPluginAuthLenencData | mw::cap::kSecureConnection | mw::cap::kSsl;

const char* SideStr(Side side) { return side == Side::kSource ? "source" : "target"; }

size_t PayloadLen(std::string_view in) {
  return static_cast<uint8_t>(in[0]) | (static_cast<uint8_t>(in[1]) << 8) | (static_cast<size_t>(static_cast<uint8_t>(in[2])) << 16);
}

std::string Packet(uint8_t seq, std::string_view payload) { return mw::EncodePacket(seq, payload); }

std::string ErrPayload(uint16_t code, std::string_view state, std::string msg) {
  mw::ErrPacket e;
  e.code = code;
  e.sql_state = std::string(state);
  e.message = std::move(msg);
  return mw::EncodeErr(e);
}

std::string RandomScramble() {
  std::string s(20, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), 20);
  // Printable, no NUL (clients treat the scramble as a C string).
  for (auto& c : s) c = static_cast<char>(33 + (static_cast<uint8_t>(c) % 94));
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s.substr(0, 1 << 16));
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' || c == '.' || c == '`'; }

std::string StripQuotes(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '`'), s.end());
  return s;
}

// What a statement does to the state that pins a session to its server.
struct PinEffects {
  std::vector<std::string> temp_created, dropped, sql_prepared, sql_deallocated;
  int locks_taken = 0, locks_released = 0;
  bool release_all_locks = false, lock_tables = false, unlock_tables = false, user_variables = false;
  bool any() const {
    return !temp_created.empty() || !dropped.empty() || !sql_prepared.empty() || !sql_deallocated.empty() || locks_taken || locks_released || release_all_locks ||
           lock_tables || unlock_tables || user_variables;
  }
};

// Names after `pos` in `s`: "a, b.c" up to a non-name character.
std::vector<std::string> NamesAt(const std::string& s, size_t pos, bool list) {
  std::vector<std::string> out;
  while (pos < s.size()) {
    while (pos < s.size() && s[pos] == ' ') ++pos;
    size_t start = pos;
    while (pos < s.size() && IsIdentChar(s[pos])) ++pos;
    if (pos == start) break;
    std::string name = StripQuotes(s.substr(start, pos - start));
    if (auto dot = name.rfind('.'); dot != std::string::npos) name = name.substr(dot + 1);
    out.push_back(name);
    while (pos < s.size() && s[pos] == ' ') ++pos;
    if (!list || pos >= s.size() || s[pos] != ',') break;
    ++pos;
  }
  return out;
}

// A light scan of SQL text (lower-cased, whitespace collapsed; string
// literals are not told apart, which errs towards pinning).
PinEffects ScanPins(std::string_view sql) {
  PinEffects e;
  std::string s;
  s.reserve(std::min<size_t>(sql.size(), 1 << 16));
  for (char c : Lower(sql)) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!s.empty() && s.back() != ' ') s.push_back(' ');
    } else {
      s.push_back(c);
    }
  }
  auto each = [&](std::string_view needle, auto fn) {
    for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) fn(p + needle.size());
  };
  auto skip = [&](size_t p, std::string_view word) {
    if (s.compare(p, word.size(), word) == 0) return p + word.size();
    return p;
  };
  each("create temporary table ", [&](size_t p) {
    for (auto& n : NamesAt(s, skip(p, "if not exists "), false)) e.temp_created.push_back(n);
  });
  each("drop temporary table ", [&](size_t p) {
    for (auto& n : NamesAt(s, skip(p, "if exists "), true)) e.dropped.push_back(n);
  });
  each("drop table ", [&](size_t p) {
    for (auto& n : NamesAt(s, skip(p, "if exists "), true)) e.dropped.push_back(n);
  });
  each("get_lock(", [&](size_t) { ++e.locks_taken; });
  each("get_lock (", [&](size_t) { ++e.locks_taken; });
  each("release_lock(", [&](size_t) { ++e.locks_released; });
  each("release_all_locks(", [&](size_t) { e.release_all_locks = true; });
  each("lock table", [&](size_t p) {
    if (p >= 12 && s.compare(p - 12, 2, "un") == 0) return;
    e.lock_tables = true;
  });
  each("unlock table", [&](size_t) { e.unlock_tables = true; });
  // SQL-level PREPARE: a named statement only this server has.
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(';', start);
    if (end == std::string::npos) end = s.size();
    std::string stmt = s.substr(start, end - start);
    while (!stmt.empty() && stmt.front() == ' ') stmt.erase(0, 1);
    if (stmt.rfind("prepare ", 0) == 0) {
      for (auto& n : NamesAt(stmt, 8, false)) e.sql_prepared.push_back(n);
    } else if (stmt.rfind("deallocate prepare ", 0) == 0 || stmt.rfind("drop prepare ", 0) == 0) {
      for (auto& n : NamesAt(stmt, stmt[0] == 'd' && stmt[1] == 'e' ? 19 : 13, false)) e.sql_deallocated.push_back(n);
    }
    start = end + 1;
  }
  each("@", [&](size_t p) {
    // An assignment to a user variable: SET @x, @x :=, INTO @x.
    if (p < s.size() && s[p] == '@') return;
    if (p >= 2 && s[p - 2] == '@') return;
    size_t q = p;
    while (q < s.size() && IsIdentChar(s[q])) ++q;
    while (q < s.size() && s[q] == ' ') ++q;
    bool assign = s.compare(q, 2, ":=") == 0;
    size_t b = p - 1;
    while (b > 0 && s[b - 1] == ' ') --b;
    auto before = [&](std::string_view w) { return b >= w.size() && s.compare(b - w.size(), w.size(), w) == 0; };
    if (assign || before("set") || before("into") || (before(",") && s.find("set ") != std::string::npos && q < s.size() && s[q] == '='))
      e.user_variables = true;
  });
  return e;
}

// "KILL [QUERY|CONNECTION] n" -> (n, connection?)
std::optional<std::pair<uint64_t, bool>> ParseKill(std::string_view sql) {
  static const std::regex re(R"(^\s*kill\s+(query\s+|connection\s+)?(\d+)\s*;?\s*$)", std::regex::icase);
  std::string s(sql.substr(0, 200));
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  bool query = m[1].matched && std::tolower(static_cast<unsigned char>(m[1].str()[0])) == 'q';
  return std::make_pair(std::stoull(m[2].str()), !query);
}

// "SELECT CONNECTION_ID() [[AS] alias] [;]" -> the column's name.
std::optional<std::string> ParseSelectConnectionId(std::string_view sql) {
  if (sql.size() > 200) return std::nullopt;
  static const std::regex re(R"(^\s*select\s+(connection_id\s*\(\s*\))(\s+(as\s+)?(`([^`]+)`|[A-Za-z_][A-Za-z0-9_$]*))?\s*;?\s*$)",
                             std::regex::icase);
  std::string s(sql);
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  if (m[5].matched) return m[5].str();
  if (m[4].matched) return m[4].str();
  return m[1].str();
}

std::string QuoteValue(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

bool IsNumber(const std::string& v) {
  if (v.empty()) return false;
  size_t i = (v[0] == '-') ? 1 : 0;
  if (i == v.size()) return false;
  bool dot = false;
  for (; i < v.size(); ++i) {
    if (v[i] == '.' && !dot) dot = true;
    else if (!std::isdigit(static_cast<unsigned char>(v[i]))) return false;
  }
  return true;
}

// Variables the proxy sets itself, or that never move with a session.
// (session_track_system_variables='*' also reports read-only ones such as
// last_gtid after every commit.)
bool NotCarried(const std::string& name) {
  static const std::set<std::string> kNever = {
      "tx_read_only", "transaction_read_only", "pseudo_thread_id", "last_insert_id", "insert_id", "timestamp",
      "rand_seed1", "rand_seed2", "gtid_seq_no", "server_id", "last_gtid", "warning_count", "error_count",
      "identity", "in_transaction", "external_user", "proxy_user", "gtid_binlog_pos", "gtid_current_pos",
      "gtid_slave_pos", "gtid_binlog_state", "rowcount", "tx_isolation_level", "warnings"};
  return name.rfind("session_track_", 0) == 0 || kNever.count(name) > 0;
}

// The SET that gives a server session the value tracked for `name`.
std::string SetClause(const std::string& name, const std::string& value) {
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return "";
  if (value.empty() && name == "character_set_results") return fmt::format("`{}`=NULL", name);
  return fmt::format("`{}`={}", name, IsNumber(value) ? value : QuoteValue(value));
}

// Reads the first packet a server sends (its handshake), with a deadline.
std::optional<mw::Handshake> ProbeServer(const MySqlServer& s) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(s.host.c_str(), std::to_string(s.port).c_str(), &hints, &res) != 0) return std::nullopt;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  bool ok = connect(fd, res->ai_addr, res->ai_addrlen) == 0;
  freeaddrinfo(res);
  std::string buf;
  char tmp[4096];
  while (ok) {
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
    if (buf.size() >= 4 && buf.size() >= 4 + PayloadLen(buf)) break;
  }
  close(fd);
  if (buf.size() < 4 || buf.size() < 4 + PayloadLen(buf)) return std::nullopt;
  auto h = mw::ParseHandshake(std::string_view(buf).substr(4, PayloadLen(buf)));
  if (!h.ok()) return std::nullopt;
  return *h;
}

}  // namespace

// ---------------------------------------------------------------------------

// Constant after Start, apart from the RSA key (made once, under rsa_mu).
struct MySqlProxy::Module final : core::ProtocolModule {
  MySqlProxyConfig config;
  std::string server_version = "5.5.5-10.11.0-MariaDB-midflight";
  uint64_t caps = kOffered;
  uint8_t collation = 45;  // utf8mb4_general_ci
  mw::AuthPlugin client_auth = mw::AuthPlugin::kNativePassword;
  std::map<std::string, std::string> stage2;     // user -> SHA1(SHA1(password))
  std::map<std::string, std::string> passwords;  // user -> password (caching_sha2, ed25519)
  SSL_CTX* tls = nullptr;                        // towards clients
  SSL_CTX* server_tls[2] = {nullptr, nullptr};   // towards each server (ssl_mode not disabled)

  Mutex rsa_mu;
  EVP_PKEY* rsa GUARDED_BY(rsa_mu) = nullptr;  // caching_sha2's key for full authentication without TLS
  std::string rsa_pem GUARDED_BY(rsa_mu);      // its public half, as sent to clients

  ~Module() override {
    if (tls != nullptr) SSL_CTX_free(tls);
    for (SSL_CTX* c : server_tls)
      if (c != nullptr) SSL_CTX_free(c);
    MutexLock lock(&rsa_mu);
    if (rsa != nullptr) EVP_PKEY_free(rsa);
  }
  // The RSA key pair (2048 bits, made once: at Start when caching_sha2 is the
  // client plugin, so that no event loop waits for it; never otherwise).
  EVP_PKEY* RsaKey(std::string* pem) {
    MutexLock lock(&rsa_mu);
    if (rsa == nullptr) {
      rsa = EVP_RSA_gen(2048);
      if (rsa == nullptr) return nullptr;
      BIO* bio = BIO_new(BIO_s_mem());
      if (bio == nullptr || PEM_write_bio_PUBKEY(bio, rsa) != 1) {
        BIO_free(bio);
        EVP_PKEY_free(rsa);
        rsa = nullptr;
        return nullptr;
      }
      char* data = nullptr;
      long n = BIO_get_mem_data(bio, &data);
      rsa_pem.assign(data, static_cast<size_t>(n));
      BIO_free(bio);
    }
    *pem = rsa_pem;
    return rsa;
  }
  std::shared_ptr<core::Session> NewSession(ProxyCore& core, EventLoop* loop, int fd, Endpoint endpoint,
                                            uint64_t id) override;
};

namespace {

// Logs in to a server and sends one KILL QUERY: how a session whose client
// went away stops the statement its server is still running. Owns itself.
// Speaks TLS to the server when the session's links do (`tls` not null).
class Killer final : public ConnOwner {
 public:
  static void Start(EventLoop* loop, const MySqlServer& server, SSL_CTX* tls, uint32_t thread_id, bool connection) {
    auto* k = new Killer(loop, server, tls, thread_id, connection);
    auto c = Conn::Connect(loop, server.host, server.port, k);
    if (!c.ok()) {
      delete k;
      return;
    }
    k->conn_ = std::move(*c);
  }
  void OnConnTlsDone(Conn& c) override {
    c.Write(login_);
    step_ = 1;
  }
  void OnConnRead(Conn& c) override {
    auto in = c.input();
    if (in.size() < 4 || in.size() < 4 + PayloadLen(in)) return;
    std::string_view p = in.substr(4, PayloadLen(in));
    uint8_t seq = static_cast<uint8_t>(in[3]);
    if (step_ == 0) {
      auto h = mw::ParseHandshake(p);
      if (!h.ok()) return Done();
      mw::HandshakeResponse r;
      r.capabilities = mw::cap::kProtocol41 | mw::cap::kSecureConnection | mw::cap::kPluginAuth;
      r.max_packet = 1 << 24;
      r.collation = 33;
      r.user = server_.user;
      r.auth_response = mw::NativePasswordResponse(server_.password, h->scramble);
      r.auth_plugin = "mysql_native_password";
      c.Consume(4 + p.size());
      const bool tls = tls_ != nullptr && (h->capabilities & mw::cap::kSsl) != 0;
      if (tls) {
        r.capabilities |= mw::cap::kSsl;
        c.Write(Packet(seq + 1, mw::EncodeSslRequest(r)));
        login_ = Packet(seq + 2, mw::EncodeHandshakeResponse(r));
        step_ = 3;
        if (!c.StartClientTls(tls_, server_.host, server_.ssl_mode == MySqlSslMode::kVerifyIdentity).ok()) return Done();
        return;
      }
      if (server_.ssl_mode != MySqlSslMode::kDisabled && server_.ssl_mode != MySqlSslMode::kPreferred) return Done();
      c.Write(Packet(seq + 1, mw::EncodeHandshakeResponse(r)));
      step_ = 1;
    } else if (step_ == 1) {
      if (!p.empty() && static_cast<uint8_t>(p[0]) == 0xfe) {
        auto sw = mw::ParseAuthSwitchRequest(p);
        c.Consume(4 + p.size());
        if (!sw.ok() || mw::ClassifyAuthPlugin(sw->plugin) != mw::AuthPlugin::kNativePassword) return Done();
        c.Write(Packet(seq + 1, mw::NativePasswordResponse(server_.password, sw->data)));
        return;
      }
      const bool ok = !p.empty() && p[0] == 0;  // (p is gone once consumed)
      c.Consume(4 + p.size());
      if (!ok) return Done();
      c.Write(Packet(0, mw::ComQuery(fmt::format("KILL {} {}", connection_ ? "CONNECTION" : "QUERY", thread_id_))));
      step_ = 2;
    } else {
      c.Consume(4 + p.size());
      Done();
    }
  }
  void OnConnDrained(Conn&) override {}
  void OnConnClosed(Conn&, const std::string&) override { Done(); }

 private:
  Killer(EventLoop* loop, MySqlServer server, SSL_CTX* tls, uint32_t id, bool connection)
      : loop_(loop), server_(std::move(server)), tls_(tls), thread_id_(id), connection_(connection) {}
  void Done() {
    if (done_) return;
    done_ = true;
    if (conn_) conn_->Close();
    loop_->Defer([this] { delete this; });
  }
  EventLoop* loop_;
  MySqlServer server_;
  SSL_CTX* tls_;
  uint32_t thread_id_;
  bool connection_;
  int step_ = 0;  // 0 handshake, 3 TLS, 1 login answer, 2 KILL answer
  std::string login_;
  bool done_ = false;
  std::unique_ptr<Conn> conn_;
};

struct PreparedStmt {
  std::string sql;
  uint16_t params = 0, columns = 0;
  std::string types;  // 2 * params bytes, the last bound types
};

// An internal command: its answer is the proxy's, never the client's.
struct Internal {
  enum class Kind { kSetup, kSet, kInitDb, kPrepare, kPing, kClose };
  Internal(Kind k, std::string p) : kind(k), payload(std::move(p)) {}
  Kind kind;
  std::string payload;
  uint32_t client_stmt = 0;
  std::map<std::string, std::string> vars;  // kSet: what it sets
  std::string schema;                        // kInitDb
};

// One server session of a client session.
struct Link {
  enum class State { kConnecting, kHandshake, kTls, kAuth, kReady };
  Side side;
  State state = State::kConnecting;
  std::string login;  // kTls: the HandshakeResponse to send once TLS is up
  std::unique_ptr<Conn> conn;
  uint64_t caps = 0;
  uint32_t thread_id = 0;
  std::unique_ptr<mw::ResponseTracker> tracker;
  std::deque<Internal> internal;
  bool internal_sent = false;
  bool cont = false;  // the next server packet continues a split message
  // The session state this server session has.
  std::string schema;
  std::map<std::string, std::string> vars;
  std::map<uint32_t, uint32_t> stmts;  // client statement id -> this server's
  std::set<uint32_t> typed;            // statements whose parameter types this server has
};

// What the proxy expects an answer for, in order, on the session's current link.
struct Awaiting {
  uint8_t command = 0;
  std::string sql;  // COM_STMT_PREPARE
  PinEffects pins;
  bool reset = false;  // COM_RESET_CONNECTION
};

class MySession final : public core::Session, public ConnOwner, public std::enable_shared_from_this<MySession> {
 public:
  MySession(MySqlProxy::Module& m, ProxyCore& core, EventLoop* loop, int fd, Endpoint ep, uint64_t id)
      : m_(m), core_(core), loop_(loop), ep_(ep), id_(id) {
    client_ = std::make_unique<Conn>(loop, fd, this, false, kClientTag);
  }
  ~MySession() override = default;

  void Start() override {
    core::SessionRecord rec;
    rec.peer = client_->peer();
    rec.endpoint = ep_;
    peer_ = rec.peer;
    core_.Register(id_, shared_from_this(), loop_, rec);
    // Login packets are read header first, never past their end: a client
    // may send its TLS ClientHello right behind the SSLRequest.
    client_->SetReadLimit(kHeader);
    if (!client_->Register().ok()) return Close("cannot register the client socket");
    if (!core_.BeginAuth()) {
      client_->Write(Packet(0, ErrPayload(1040, "08004", "Too many connections (proxy: max_unauthenticated)")));
      return Close("too many unauthenticated connections");
    }
    in_auth_ = true;
    scramble_ = RandomScramble();
    mw::Handshake h;
    h.server_version = m_.server_version;
    h.connection_id = static_cast<uint32_t>(id_);
    h.scramble = scramble_;
    h.capabilities = m_.caps | (m_.tls != nullptr ? mw::cap::kSsl : 0);
    h.collation = m_.collation;
    h.status = mw::status::kAutocommit;
    h.auth_data_len = 21;
    // ed25519 needs its own 32-byte nonce: announced as native, then switched.
    h.auth_plugin = m_.client_auth == mw::AuthPlugin::kCachingSha2Password ? "caching_sha2_password" : "mysql_native_password";
    client_->Write(Packet(0, mw::EncodeHandshake(h)));
    std::weak_ptr<MySession> w = shared_from_this();
    auth_timer_ = loop_->AddTimer(core::LoopClock::now() + core_.config().auth_timeout, [w] {
      if (auto s = w.lock()) {
        s->auth_timer_.reset();
        if (s->cstate_ != CState::kReady) {
          ++s->core_.protocol_errors;
          s->Close("authentication timed out");
        }
      }
    });
  }

  void OnGateOpen() override {
    waiting_gate_ = false;
    ProcessClient();
  }

  void Kill(bool connection) override {
    for (auto& l : links_)
      if (l && l->state == Link::State::kReady && !l->tracker->Idle())
        Killer::Start(loop_, m_.config.servers[static_cast<int>(l->side)], m_.server_tls[static_cast<int>(l->side)], l->thread_id, false);
    if (connection) Close("killed (KILL CONNECTION through the proxy)");
  }

  void Shutdown() override { Close("proxy stopping", Closer::kShutdown); }

  // ---- ConnOwner
  void OnConnConnected(Conn& c) override {
    Link* l = LinkOf(c);
    if (l != nullptr) l->state = Link::State::kHandshake;
  }
  void OnConnTlsDone(Conn& c) override {
    if (closed_) return;
    if (c.tag() == kClientTag) return ProcessClient();
    if (Link* l = LinkOf(c); l != nullptr && l->state == Link::State::kTls) {
      l->conn->Write(l->login);
      l->login.clear();
      l->state = Link::State::kAuth;
      ProcessServer(*l);
    }
  }
  void OnConnRead(Conn& c) override {
    if (closed_) return;
    if (c.tag() == kClientTag) ProcessClient();
    else if (Link* l = LinkOf(c)) ProcessServer(*l);
  }
  void OnConnDrained(Conn& c) override {
    if (closed_) return;
    if (c.tag() == kClientTag) {
      // Room again towards the client: relay what the servers sent, then look
      // at a command held because that output was full (OnCommand).
      for (auto& l : links_)
        if (l) ProcessServer(*l);
      ProcessClient();
    } else {
      ProcessClient();
    }
  }
  void OnConnClosed(Conn& c, const std::string& why) override {
    if (closed_) return;
    if (c.tag() == kClientTag) return Close(fmt::format("client: {} (without COM_QUIT)", why), Closer::kClientGone);
    if (Link* l = LinkOf(c)) FailLink(*l, fmt::format("{} server: {}", SideStr(l->side), why));
  }

 private:
  static constexpr int kClientTag = 100;
  // kAuthSwitch: the client owes the answer to an AuthSwitchRequest;
  // kSha2Full: caching_sha2's full authentication was asked for (0x04): the
  // clear password over TLS, or 0x02 for the RSA key; kSha2Rsa: the key was
  // sent, the encrypted password is due.
  enum class CState { kHandshake, kAuthSwitch, kSha2Full, kSha2Rsa, kReady };

  Link* LinkOf(Conn& c) {
    for (auto& l : links_)
      if (l && l->conn.get() == &c) return l.get();
    return nullptr;
  }
  Link* Current() { return cur_ >= 0 ? links_[cur_].get() : nullptr; }

  // Who ends a session: the proxy (an error, a server gone, a timeout, KILL
  // through the proxy), the client (COM_QUIT; or its socket closed without
  // it), or the proxy's own stop.
  enum class Closer { kProxy, kClientQuit, kClientGone, kShutdown };

  // The session's one way out. A close the client did not ask for (a failed
  // login included), a logged-in client that goes without COM_QUIT (as
  // MariaDB's "Aborted connection"), and any close while the client is owed
  // an answer (it sees "Lost connection") are logged at INFO with the
  // session, its endpoint, its server side and the reason; `answered`: an
  // ERR for the outstanding command went first.
  void Close(const std::string& why, Closer by = Closer::kProxy, bool answered = false) {
    if (closed_) return;
    const std::string owed = Outstanding();
    closed_ = true;
    if (!owed.empty() || by == Closer::kProxy || (by == Closer::kClientGone && counted_)) {
      LOG_INFO("proxy {}: session {} ({}) closed{}: {}", m_.config.migration, Describe(), peer_,
               owed.empty() ? "" : fmt::format(" with {} outstanding{}", owed,
                                               answered ? " (answered with an error first)" : ", no error sent"),
               why);
    } else {
      LOG_DEBUG("proxy {}: session {} ({}) closed: {}", m_.config.migration, Describe(), peer_, why);
    }
    if (auth_timer_) loop_->CancelTimer(*auth_timer_);
    if (in_txn_) core_.LeaveTransaction(ep_);
    in_txn_ = false;
    if (in_auth_) core_.AbandonAuth();
    if (counted_) core_.EndClient(ep_);
    for (auto& l : links_) {
      if (!l) continue;
      // A statement still running is stopped now, not when it ends.
      if (l->state == Link::State::kReady && (!l->tracker->Idle() || l->internal_sent))
        Killer::Start(loop_, m_.config.servers[static_cast<int>(l->side)], m_.server_tls[static_cast<int>(l->side)], l->thread_id, false);
      else if (l->state == Link::State::kReady)
        l->conn->Write(Packet(0, mw::ComSimple(mw::Command::kQuit)));
      l->conn->Close();
    }
    client_->Close();
    core_.Unregister(id_);
  }

  void ProtocolError(const std::string& why) {
    ++core_.protocol_errors;
    Close(fmt::format("protocol error: {}", why));
  }

  // "17 (read-write endpoint, source server session)": for log lines.
  std::string Describe() const {
    std::string side = cur_ >= 0 ? fmt::format("{} server session", SideStr(static_cast<Side>(cur_))) : "no server session";
    if (in_txn_ && want_ != cur_) side += fmt::format(", moving to the {}", SideStr(static_cast<Side>(want_)));
    return fmt::format("{} ({} endpoint, {})", id_, ep_ == Endpoint::kReadWrite ? "read-write" : "read-only", side);
  }

  // What the client waits for an answer to, "" when nothing.
  std::string Outstanding() const {
    if (cstate_ != CState::kReady) return "";
    if (!awaiting_.empty()) {
      std::string what = fmt::format("{} awaiting its answer", mw::Classify(awaiting_.front().command).name);
      if (awaiting_.size() > 1) what += fmt::format(" ({} commands in all)", awaiting_.size());
      return what;
    }
    if (client_data_ || client_cont_) return "a command whose data is being relayed";
    const auto in = client_->input();  // (empty once the client's socket closed)
    if (in.size() > kHeader) {
      const char* name = mw::Classify(static_cast<uint8_t>(in[kHeader])).name;
      if (waiting_gate_) return fmt::format("{} held at the write gate", name);
      if (in_txn_ || first_side_ >= 0) return fmt::format("{} held for a server session", name);
      return fmt::format("{} not yet read", name);
    }
    if (!in.empty()) return "a command partly received";
    return "";
  }

  // ---- Client side.

  void ProcessClient() {
    while (!closed_ && !waiting_gate_) {
      auto in = client_->input();
      if (in.size() < kHeader) {
        if (cstate_ != CState::kReady) client_->SetReadLimit(kHeader);
        return;
      }
      size_t len = PayloadLen(in);
      if (in.size() < kHeader + len && cstate_ == CState::kReady) {
        client_->NeedInput(kHeader + len);
        return;
      }
      uint8_t seq = static_cast<uint8_t>(in[3]);
      std::string_view payload = in.substr(kHeader, std::min(len, in.size() - kHeader));
      std::string_view raw = in.substr(0, std::min(kHeader + len, in.size()));
      if (cstate_ != CState::kReady) {
        if (len > 64 * 1024) return ProtocolError(fmt::format("a login packet of {} bytes", len));
        // Never read past the login packet: a TLS ClientHello follows an
        // SSLRequest without waiting, and must be left to OpenSSL.
        client_->SetReadLimit(in.size() < kHeader ? kHeader : kHeader + len);
        if (in.size() < kHeader + len) return;
        bool ok = cstate_ == CState::kHandshake ? OnHandshakeResponse(seq, payload) : OnAuthAnswer(seq, payload);
        if (closed_) return;
        if (!ok) return;
        continue;
      }
      if (client_data_ || client_cont_) {
        Link* l = Current();
        if (l == nullptr || l->conn->out_full()) return;
        bool was_cont = client_cont_;
        client_cont_ = len == kMaxPayload;
        if (client_data_ && !was_cont) {
          if (Status st = l->tracker->OnClientMessage(payload); !st.ok()) return ProtocolError(st.message());
          if (len == 0) client_data_ = false;
        }
        l->conn->Write(raw);
        client_->Consume(raw.size());
        continue;
      }
      if (len == 0) return ProtocolError("an empty command packet");
      if (!OnCommand(seq, payload, raw)) return;
    }
  }

  bool OnHandshakeResponse(uint8_t seq, std::string_view payload) {
    if (mw::IsSslRequest(payload)) {
      if (m_.tls == nullptr || client_->tls()) {
        ProtocolError("TLS requested but not offered");
        return false;
      }
      client_caps_ = mw::ParseSslRequest(payload).ok() ? mw::ParseSslRequest(payload)->capabilities : 0;
      client_->Consume(kHeader + payload.size());
      if (!client_->input().empty()) {
        ProtocolError("bytes after the SSLRequest");
        return false;
      }
      tls_pending_ = true;
      if (Status st = client_->StartServerTls(m_.tls); !st.ok()) {
        ProtocolError(st.message());
        return false;
      }
      return false;  // OnConnTlsDone continues
    }
    tls_pending_ = false;
    auto r = mw::ParseHandshakeResponse(payload);
    if (!r.ok()) {
      ProtocolError(r.status().message());
      return false;
    }
    client_->Consume(kHeader + payload.size());
    if (!(r->capabilities & mw::cap::kProtocol41)) {
      ProtocolError("a pre-4.1 client");
      return false;
    }
    caps_ = r->capabilities & (m_.caps | mw::cap::kSsl);
    if (r->capabilities & mw::cap::kMysql) caps_ &= 0xffffffffULL;  // a MySQL client: no MariaDB extensions
    user_ = r->user;
    collation_ = r->collation;
    if (r->database) schema_ = *r->database;
    auth_seq_ = seq;
    return BeginAuth(seq, r->auth_plugin, r->auth_response);
  }

  // The client's first answer (in its HandshakeResponse or COM_CHANGE_USER),
  // computed for the handshake's scramble with `plugin`: checked at once when
  // it is the configured plugin's, else the client is switched to that one.
  bool BeginAuth(uint8_t seq, const std::optional<std::string>& plugin, const std::string& response) {
    const mw::AuthPlugin used =
        !plugin || plugin->empty() ? mw::AuthPlugin::kNativePassword : mw::ClassifyAuthPlugin(*plugin);
    if (used == m_.client_auth && used != mw::AuthPlugin::kClientEd25519) return Verify(seq, response);
    mw::AuthSwitchRequest sw;
    if (m_.client_auth == mw::AuthPlugin::kClientEd25519) {
      sw.plugin = "client_ed25519";
      scramble_.assign(32, '\0');
      RAND_bytes(reinterpret_cast<unsigned char*>(scramble_.data()), 32);
      sw.data = scramble_;
    } else {
      sw.plugin = m_.client_auth == mw::AuthPlugin::kCachingSha2Password ? "caching_sha2_password" : "mysql_native_password";
      scramble_ = RandomScramble();
      sw.data = scramble_ + std::string(1, '\0');
    }
    client_->Write(Packet(seq + 1, mw::EncodeAuthSwitchRequest(sw)));
    cstate_ = CState::kAuthSwitch;
    return true;
  }

  bool OnAuthAnswer(uint8_t seq, std::string_view payload) {
    std::string answer(payload);
    client_->Consume(kHeader + payload.size());
    if (cstate_ == CState::kAuthSwitch) return Verify(seq, answer);
    auto it = m_.passwords.find(user_);
    if (it == m_.passwords.end()) return Deny(seq, true);
    if (cstate_ == CState::kSha2Full && !client_->tls() && answer == std::string(1, '\x02')) {
      // Full authentication without TLS: the client asks for the public key.
      std::string pem;
      if (m_.RsaKey(&pem) == nullptr) {
        ReplyErr(seq, 1045, "28000", "proxy: cannot make an RSA key for caching_sha2_password; connect with TLS");
        Close("no RSA key");
        return false;
      }
      client_->Write(Packet(seq + 1, mw::EncodeAuthMoreData(pem)));
      cstate_ = CState::kSha2Rsa;
      return true;
    }
    std::optional<std::string> password;
    if (cstate_ == CState::kSha2Full && client_->tls()) {
      // The clear password, NUL-terminated, inside TLS.
      if (!answer.empty() && answer.back() == '\0') password = answer.substr(0, answer.size() - 1);
    } else if (cstate_ == CState::kSha2Rsa || (cstate_ == CState::kSha2Full && answer.size() >= 128)) {
      // Encrypted with the proxy's public key (fetched now or known to the client).
      std::string pem;
      EVP_PKEY* key = m_.RsaKey(&pem);
      EVP_PKEY_CTX* ctx = key != nullptr ? EVP_PKEY_CTX_new(key, nullptr) : nullptr;
      size_t n = 0;
      std::string plain;
      if (ctx != nullptr && EVP_PKEY_decrypt_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
          EVP_PKEY_decrypt(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(answer.data()), answer.size()) == 1) {
        plain.resize(n);
        if (EVP_PKEY_decrypt(ctx, reinterpret_cast<unsigned char*>(plain.data()), &n,
                             reinterpret_cast<const unsigned char*>(answer.data()), answer.size()) == 1) {
          plain.resize(n);
          password = mw::CachingSha2UnxorPassword(plain, scramble_);
        }
      }
      EVP_PKEY_CTX_free(ctx);
    } else if (cstate_ == CState::kSha2Full) {
      // A clear password without TLS: refused, as MySQL does, whatever it is.
      ReplyErr(seq, 1045, "28000",
               fmt::format("Access denied for user '{}': caching_sha2_password's full authentication needs TLS or the "
                           "server's RSA public key (connect with TLS, or let the client fetch the key: "
                           "--get-server-public-key / allowPublicKeyRetrieval)",
                           user_));
      ++core_.auth_failures;
      Close("clear password without TLS");
      return false;
    }
    const bool ok = password && password->size() == it->second.size() &&
                    CRYPTO_memcmp(password->data(), it->second.data(), it->second.size()) == 0;
    if (!ok) return Deny(seq, true);
    return Authenticated(seq);
  }

  // The client's answer for the configured plugin and the current scramble.
  bool Verify(uint8_t seq, const std::string& response) {
    auto pw = m_.passwords.find(user_);
    if (pw == m_.passwords.end()) return Deny(seq, !response.empty());
    switch (m_.client_auth) {
      case mw::AuthPlugin::kCachingSha2Password:
        if (pw->second.empty() != response.empty()) return Deny(seq, !response.empty());
        if (mw::CachingSha2Verify(response, scramble_, pw->second)) {
          if (!pw->second.empty()) client_->Write(Packet(++seq, mw::EncodeAuthMoreData(std::string(1, '\x03'))));
          return Authenticated(seq);
        }
        // As MySQL 8 does when its cache cannot confirm the scramble: full authentication.
        client_->Write(Packet(seq + 1, mw::EncodeAuthMoreData(std::string(1, '\x04'))));
        cstate_ = CState::kSha2Full;
        return true;
      case mw::AuthPlugin::kClientEd25519:
        if (!mw::Ed25519Verify(response, scramble_, pw->second)) return Deny(seq, !response.empty());
        return Authenticated(seq);
      default: {
        const std::string& stage2 = m_.stage2.at(user_);
        const bool ok = stage2.empty() ? response.empty() : mw::NativePasswordVerify(response, scramble_, stage2);
        if (!ok) return Deny(seq, !response.empty());
        return Authenticated(seq);
      }
    }
  }

  bool Deny(uint8_t seq, bool with_password) {
    ++core_.auth_failures;
    client_->Write(Packet(seq + 1, ErrPayload(1045, "28000",
                                              fmt::format("Access denied for user '{}'@'{}' (using password: {})", user_,
                                                          peer_.substr(0, peer_.rfind(':')), with_password ? "YES" : "NO"))));
    Close("wrong user or password");
    return false;
  }

  bool Authenticated(uint8_t seq) {
    if (changing_user_) return ChangedUser(seq);
    in_auth_ = false;
    if (!core_.FinishAuth(ep_)) {
      client_->Write(Packet(seq + 1, ErrPayload(1040, "08004", "Too many connections (proxy: max_clients)")));
      Close("too many clients");
      return false;
    }
    counted_ = true;
    if (auth_timer_) {
      loop_->CancelTimer(*auth_timer_);
      auth_timer_.reset();
    }
    cstate_ = CState::kReady;
    client_->SetReadLimit(Conn::kDefaultReadLimit);
    mw::OkPacket ok_packet;
    ok_packet.status = mw::status::kAutocommit;
    client_->Write(Packet(seq + 1, mw::EncodeOk(ok_packet, caps_)));
    return true;
  }

  // COM_CHANGE_USER: the new user authenticates like a login (a failure
  // closes the connection); then the session starts over: its server
  // sessions are closed (the next command logs in afresh, into the new
  // schema), its carried state and pins are gone, and an open transaction
  // ends (rolled back by the server as the session closes).
  bool ChangeUser(uint8_t seq, std::string_view payload) {
    auto cu = mw::ParseChangeUser(payload, caps_);
    if (!cu.ok()) {
      ProtocolError(cu.status().message());
      return false;
    }
    client_->Consume(kHeader + payload.size());
    user_ = cu->user;
    schema_ = cu->database;
    if (cu->collation) collation_ = static_cast<uint8_t>(*cu->collation);
    changing_user_ = true;
    cstate_ = CState::kHandshake;
    return BeginAuth(seq, cu->auth_plugin, cu->auth_response);
  }

  bool ChangedUser(uint8_t seq) {
    changing_user_ = false;
    if (in_txn_) {
      in_txn_ = false;
      core_.LeaveTransaction(ep_);
      set_in_transaction(false);
    }
    for (int i = 0; i < 2; ++i) DropLink(i, true);
    awaiting_.clear();
    ungated_ = false;
    first_side_ = -1;
    vars_.clear();
    stmts_.clear();
    temp_tables_.clear();
    sql_prepared_.clear();
    named_locks_ = 0;
    lock_tables_ = user_variables_ = long_data_ = false;
    PublishPins();
    core_.Update(id_, [](core::SessionRecord& r) { r.has_server = false; });
    cstate_ = CState::kReady;
    client_->SetReadLimit(Conn::kDefaultReadLimit);
    mw::OkPacket ok;
    ok.status = mw::status::kAutocommit;
    client_->Write(Packet(seq + 1, mw::EncodeOk(ok, caps_)));
    return true;
  }

  uint16_t KnownStatus() {
    Link* l = Current();
    return l != nullptr && l->tracker->StatusKnown() ? l->tracker->status() : mw::status::kAutocommit;
  }

  void ReplyOk(uint8_t seq) {
    mw::OkPacket ok;
    ok.status = KnownStatus() & ~mw::status::kSessionStateChanged;
    client_->Write(Packet(seq + 1, mw::EncodeOk(ok, caps_)));
  }

  // One command from the client. False: it stays buffered until something
  // changes (the gate opens, a server link is ready, output drains).
  bool OnCommand(uint8_t seq, std::string_view payload, std::string_view raw) {
    const auto cmd = static_cast<mw::Command>(payload[0]);
    if (seq != 0) {
      ProtocolError(fmt::format("a command with sequence id {}", seq));
      return false;
    }
    if (cmd == mw::Command::kQuit) {
      client_->Consume(raw.size());  // (answered by the close)
      Close("COM_QUIT", Closer::kClientQuit);
      return false;
    }
    if (mw::Classify(payload[0]).response == mw::ResponseKind::kUnsupported) {
      client_->Write(Packet(1, ErrPayload(1047, "08S01", fmt::format("{} is not supported by the proxy", mw::Classify(payload[0]).name))));
      client_->Consume(raw.size());
      return true;
    }
    if (client_->out_full()) return false;
    if (cmd == mw::Command::kChangeUser) {
      // Answered by the proxy once every earlier command has its answer.
      change_user_waiting_ = !awaiting_.empty() || client_data_ || client_cont_;
      if (change_user_waiting_) return false;
      return ChangeUser(seq, payload);
    }
    if (cmd == mw::Command::kStmtBulkExecute) {
      // Not offered (MariaDB's bulk execute capability is not relayed).
      ReplyErr(seq, 1047, "08S01", "COM_STMT_BULK_EXECUTE is not supported by the proxy");
      client_->Consume(raw.size());
      return true;
    }
    if (cmd == mw::Command::kQuery && awaiting_.empty()) {
      if (auto alias = ParseSelectConnectionId(payload.substr(1))) {
        // The proxy's id, which the handshake reported and KILL takes.
        ReplyConnectionId(*alias);
        client_->Consume(raw.size());
        return true;
      }
    }
    if (cmd == mw::Command::kStmtClose) {
      // No answer; closed on every server that has it, with its id there.
      CloseStatement(payload);
      client_->Consume(raw.size());
      return true;
    }
    if (!in_txn_) {
      // A command let past the gate still has its answer due: nothing else
      // is answered, enters the gate or moves before it (CheckBoundary
      // resumes).
      if (ungated_) return false;
      // Things the proxy answers itself, outside any transaction.
      if (cmd == mw::Command::kPing && Current() == nullptr) {
        ReplyOk(seq);
        client_->Consume(raw.size());
        return true;
      }
      if (cmd == mw::Command::kQuery) {
        if (auto k = ParseKill(payload.substr(1))) {
          if (core_.KillSession(k->first, k->second)) ReplyOk(seq);
          else ReplyErr(seq, 1094, "HY000", fmt::format("Unknown thread id: {}", k->first));
          client_->Consume(raw.size());
          return true;
        }
      }
      // A prepare (or ping, reset, schema change, session variable read or
      // SET) of an idle session passes a closed gate: held there, it could
      // stall a client thread that prepares synchronously on this connection
      // while another of its connections holds the transaction the pause's
      // drain waits for; and a pool's new connection would wait for the
      // whole pause before its connect-time queries.
      // (Asked only while the gate is closed: out of a pause a query's text
      // is not scanned for it.)
      if (core_.paused()) {
        if (PassesGate(cmd, payload)) return ForwardUngated(payload, raw);
        if (cur_ < 0 && GateFreeCommand(cmd, payload)) return OpenFirstServer();
      }
      // A transaction starts here: the gate, then the route.
      if (!core_.EnterTransaction(shared_from_this(), loop_, ep_)) {
        // (The pause began since paused() was read: the core will wake this
        // session once at ResumeWrites, which finds nothing held.)
        if (PassesGate(cmd, payload)) return ForwardUngated(payload, raw);
        waiting_gate_ = true;
        return false;
      }
      in_txn_ = true;
      first_side_ = -1;  // the command now waits for want_'s link (a first link still logging in is dropped at the move)
      // A pinned session (or one between SEND_LONG_DATA and its execute) stays where it is.
      want_ = cur_ >= 0 && (Pinned() || long_data_) ? cur_ : static_cast<int>(core_.Route(ep_));
      ++core_.transactions[want_];
      set_in_transaction(true);
    }
    Link* l = links_[want_].get();
    if (l == nullptr) {
      OpenLink(static_cast<Side>(want_));
      return false;
    }
    if (l->state != Link::State::kReady || !l->internal.empty()) return false;
    if (cur_ != want_ || !Synced(*l)) {
      if (!Synced(*l)) {
        QueueSync(*l);
        SendInternal(*l);
        return false;
      }
      if (cur_ >= 0 && cur_ != want_) ++core_.session_moves;
      // (A first server session opened by OpenFirstServer on the side
      // writes went to before the switch is closed here as well.)
      if (ep_ == Endpoint::kReadWrite && links_[1 - want_]) DropLink(1 - want_, true);
      first_side_ = -1;
      cur_ = want_;
      const Side side = l->side;
      core_.Update(id_, [side](core::SessionRecord& r) {
        r.side = side;
        r.has_server = true;
      });
    }
    if (l->conn->out_full()) return false;
    Forward(*l, payload, raw);
    return true;
  }

  // True: `payload` may pass a closed write gate. The command runs no
  // statement and opens no transaction (mywire::PassesWriteGate), a prepare's
  // text has nothing that would pin the session (the proxy pins at prepare
  // time), and the session is idle on a server that has all its state: the
  // command goes there, and the next transaction carries what it left (a
  // statement, the schema) to wherever the route then says, as any move does.
  // A COM_QUERY passes only when it reads or sets session variables
  // (mywire::SessionOnlyStatement) with autocommit on, so that it cannot
  // leave a transaction open that the drain would not know of.
  bool PassesGate(mw::Command cmd, std::string_view payload) {
    if (!GateFreeCommand(cmd, payload)) return false;
    Link* l = Current();
    return l != nullptr && l->state == Link::State::kReady && l->internal.empty() && !l->internal_sent &&
           l->tracker->AtTransactionBoundary() && awaiting_.empty() && Synced(*l) &&
           (cmd != mw::Command::kQuery || l->tracker->Autocommit());
  }

  // What PassesGate asks of the command itself, whatever server the session has.
  bool GateFreeCommand(mw::Command cmd, std::string_view payload) const {
    if (ep_ != Endpoint::kReadWrite || long_data_) return false;
    if (cmd == mw::Command::kQuery) return mw::SessionOnlyStatement(payload.substr(1));
    if (!mw::PassesWriteGate(static_cast<uint8_t>(cmd))) return false;
    return cmd != mw::Command::kStmtPrepare || !ScanPins(payload.substr(1)).any();
  }

  // A session without a server session (new, or after COM_CHANGE_USER) whose
  // command would pass the closed gate: its first server session is opened
  // on the side writes go to now (the one an idle session that was already
  // there would be on: the old server while the pause lasts, where the
  // command runs no statement), and the command is relayed there once it is
  // ready; the next transaction moves the session as any other. False while
  // the link logs in (SendInternal resumes); true when the command may be
  // looked at again.
  bool OpenFirstServer() {
    const int side = static_cast<int>(core_.Route(ep_));
    first_side_ = side;
    if (!links_[side]) OpenLink(static_cast<Side>(side));
    Link* l = links_[side].get();
    if (l == nullptr || l->state != Link::State::kReady || !l->internal.empty() || l->internal_sent) return false;
    first_side_ = -1;
    // (A link opened here before SetWriteSide changed the route is not kept.)
    if (links_[1 - side]) DropLink(1 - side, true);
    cur_ = side;
    core_.Update(id_, [side](core::SessionRecord& r) {
      r.side = static_cast<Side>(side);
      r.has_server = true;
    });
    return true;
  }

  // Relays a command that passed the gate to the session's current server;
  // the session is not counted in a transaction, so a drain does not wait
  // for it.
  bool ForwardUngated(std::string_view payload, std::string_view raw) {
    Link& l = *Current();
    if (l.conn->out_full()) return false;  // OnConnDrained tries again
    ungated_ = true;
    Forward(l, payload, raw);
    return true;
  }

  // A one-row result set: the column CONNECTION_ID() (or its alias) as
  // MariaDB describes it (BIGINT, 10 wide, not null, binary), the session's id.
  void ReplyConnectionId(const std::string& name) {
    mw::ColumnDefinition c;
    c.name = name;
    c.charset = 63;
    c.length = 10;
    c.type = mw::type::kLongLong;
    c.flags = 1 | 128;  // NOT_NULL | BINARY
    mw::ResultSetHeader h;
    h.columns = 1;
    const uint16_t status = KnownStatus() & ~mw::status::kSessionStateChanged;
    uint8_t seq = 1;
    std::string out = Packet(seq++, mw::EncodeResultSetHeader(h, caps_));
    out += Packet(seq++, mw::EncodeColumnDefinition(c, caps_));
    if (!(caps_ & mw::cap::kDeprecateEof)) out += Packet(seq++, mw::EncodeEof({0, status}));
    out += Packet(seq++, mw::EncodeTextRow(mw::Row{std::to_string(id_)}));
    if (caps_ & mw::cap::kDeprecateEof) {
      mw::OkPacket ok;
      ok.header = 0xfe;
      ok.status = status;
      out += Packet(seq++, mw::EncodeOk(ok, caps_));
    } else {
      out += Packet(seq++, mw::EncodeEof({0, status}));
    }
    client_->Write(out);
  }

  void ReplyErr(uint8_t seq, uint16_t code, std::string_view state, std::string msg) {
    client_->Write(Packet(seq + 1, ErrPayload(code, state, std::move(msg))));
  }

  void Forward(Link& l, std::string_view payload, std::string_view raw) {
    const auto cmd = static_cast<mw::Command>(payload[0]);
    std::string rewritten;
    Awaiting a;
    a.command = static_cast<uint8_t>(cmd);
    switch (cmd) {
      case mw::Command::kQuery: a.pins = ScanPins(payload.substr(1)); break;
      case mw::Command::kStmtPrepare:
        a.sql = std::string(payload.substr(1));
        a.pins = ScanPins(a.sql);
        break;
      case mw::Command::kResetConnection: a.reset = true; break;
      case mw::Command::kStmtExecute:
      case mw::Command::kStmtFetch:
      case mw::Command::kStmtReset:
      case mw::Command::kStmtSendLongData: {
        if (payload.size() < 5) return ProtocolError("a statement command without its id");
        rewritten = RewriteStmt(l, payload);
        if (cmd == mw::Command::kStmtSendLongData) long_data_ = true;
        else long_data_ = false;
        break;
      }
      default: break;
    }
    if (Status st = l.tracker->OnCommand(rewritten.empty() ? payload : std::string_view(rewritten)); !st.ok())
      return ProtocolError(st.message());
    const bool answered = mw::Classify(payload[0]).response != mw::ResponseKind::kNone;
    if (answered) awaiting_.push_back(std::move(a));
    client_cont_ = payload.size() == kMaxPayload;
    if (rewritten.empty()) l.conn->Write(raw);
    else l.conn->Write(Packet(0, rewritten));
    client_->Consume(raw.size());  // payload and raw end here
    if (!answered) CheckBoundary(l);
  }

  // The command with the client's statement id replaced by the server's; an
  // execute gets the parameter types again when this server has not seen them.
  std::string RewriteStmt(Link& l, std::string_view payload) {
    std::string p(payload);
    uint32_t client_id = static_cast<uint8_t>(p[1]) | (static_cast<uint8_t>(p[2]) << 8) |
                         (static_cast<uint8_t>(p[3]) << 16) | (static_cast<uint32_t>(static_cast<uint8_t>(p[4])) << 24);
    if (client_id == 0xffffffff) return p;  // MariaDB: the statement just prepared
    auto sit = l.stmts.find(client_id);
    uint32_t server_id = sit == l.stmts.end() ? 0xfffffffe : sit->second;
    for (int i = 0; i < 4; ++i) p[1 + i] = static_cast<char>((server_id >> (8 * i)) & 0xff);
    if (static_cast<mw::Command>(p[0]) != mw::Command::kStmtExecute) return p;
    auto st = stmts_.find(client_id);
    if (st == stmts_.end() || st->second.params == 0) return p;
    const size_t bitmap = (st->second.params + 7) / 8;
    const size_t flag_at = 10 + bitmap;
    if (p.size() <= flag_at) return p;
    const size_t types_len = 2 * size_t{st->second.params};
    if (p[flag_at] == 1) {
      if (p.size() >= flag_at + 1 + types_len) {
        st->second.types = p.substr(flag_at + 1, types_len);
        l.typed.insert(client_id);
      }
    } else if (!l.typed.count(client_id) && st->second.types.size() == types_len) {
      p[flag_at] = 1;
      p.insert(flag_at + 1, st->second.types);
      l.typed.insert(client_id);
    }
    return p;
  }

  void CloseStatement(std::string_view payload) {
    if (payload.size() < 5) return;
    uint32_t id = static_cast<uint8_t>(payload[1]) | (static_cast<uint8_t>(payload[2]) << 8) |
                  (static_cast<uint8_t>(payload[3]) << 16) | (static_cast<uint32_t>(static_cast<uint8_t>(payload[4])) << 24);
    stmts_.erase(id);
    for (auto& l : links_) {
      if (!l) continue;
      auto it = l->stmts.find(id);
      if (it == l->stmts.end()) continue;
      Internal in{Internal::Kind::kClose, mw::ComStmtClose(it->second)};
      l->stmts.erase(it);
      l->typed.erase(id);
      l->internal.push_back(std::move(in));
      if (l->state == Link::State::kReady && l->tracker->Idle() && !l->internal_sent) SendInternal(*l);
    }
  }

  bool Pinned() const { return !PinReason().empty(); }
  std::string PinReason() const {
    std::vector<std::string> r;
    for (const auto& t : temp_tables_) r.push_back(fmt::format("temporary table {}", t));
    for (const auto& t : sql_prepared_) r.push_back(fmt::format("SQL prepared statement {}", t));
    if (named_locks_ > 0) r.push_back("named lock (GET_LOCK)");
    if (lock_tables_) r.push_back("LOCK TABLES");
    if (user_variables_) r.push_back("user variables");
    return fmt::format("{}", fmt::join(r, ", "));
  }
  void ApplyPins(const PinEffects& e) {
    if (!e.any()) return;
    for (const auto& t : e.temp_created) temp_tables_.insert(t);
    for (const auto& t : e.dropped) temp_tables_.erase(t);
    for (const auto& t : e.sql_prepared) sql_prepared_.insert(t);
    for (const auto& t : e.sql_deallocated) sql_prepared_.erase(t);
    named_locks_ += e.locks_taken;
    named_locks_ = std::max(0, named_locks_ - e.locks_released);
    if (e.release_all_locks) named_locks_ = 0;
    if (e.lock_tables) lock_tables_ = true;
    if (e.unlock_tables) lock_tables_ = false;
    if (e.user_variables) user_variables_ = true;
    PublishPins();
  }
  void PublishPins() {
    std::string reason = PinReason();
    core_.Update(id_, [&](core::SessionRecord& r) { r.pinned = reason; });
  }

  // ---- Server links.

  void OpenLink(Side side) {
    const MySqlServer& s = m_.config.servers[static_cast<int>(side)];
    auto c = Conn::Connect(loop_, s.host, s.port, this, static_cast<int>(side));
    if (!c.ok()) return FailPending(c.status().message());
    auto l = std::make_unique<Link>();
    l->side = side;
    l->conn = std::move(*c);
    ++core_.server_connects[static_cast<int>(side)];
    links_[static_cast<int>(side)] = std::move(l);
  }

  // The held command cannot reach its server: it gets the error, the session stays.
  void FailPending(const std::string& why) {
    if (closed_ || !(in_txn_ || first_side_ >= 0)) return;
    first_side_ = -1;
    auto in = client_->input();
    if (in.size() >= kHeader && in.size() >= kHeader + PayloadLen(in)) {
      uint8_t seq = static_cast<uint8_t>(in[3]);
      LOG_INFO("proxy {}: session {} ({}): {} answered with an error: {}", m_.config.migration, Describe(), peer_,
               in.size() > kHeader ? mw::Classify(static_cast<uint8_t>(in[kHeader])).name : "the held command", why);
      client_->Consume(kHeader + PayloadLen(in));
      ReplyErr(seq, 1105, "HY000", fmt::format("proxy: {}", why));
    }
    if (in_txn_) {
      in_txn_ = false;
      core_.LeaveTransaction(ep_);
      set_in_transaction(false);
    }
    loop_->Post([w = weak_from_this()] {
      if (auto s = w.lock()) s->ProcessClient();
    });
  }

  void DropLink(int side, bool quit) {
    auto& l = links_[side];
    if (!l) return;
    if (cur_ == side && !awaiting_.empty())
      LOG_INFO("proxy {}: session {} ({}): its {} server session dropped with {} outstanding", m_.config.migration,
               Describe(), peer_, SideStr(l->side), Outstanding());
    if (quit && l->state == Link::State::kReady) l->conn->Write(Packet(0, mw::ComSimple(mw::Command::kQuit)));
    l->conn->Close();
    std::shared_ptr<Link> gone(std::move(l));
    loop_->Defer([gone] {});
    if (cur_ == side) cur_ = -1;
  }

  void FailLink(Link& l, const std::string& why) {
    const int side = static_cast<int>(l.side);
    if (cur_ == side) {
      // The session's own server went away mid-session: like the server, close.
      const bool answer = !client_->out_full() && !awaiting_.empty();
      if (answer) client_->Write(Packet(1, ErrPayload(1105, "HY000", fmt::format("proxy: {}", why))));
      return Close(why, Closer::kProxy, answer);
    }
    LOG_INFO("proxy {}: session {} ({}): {}", m_.config.migration, Describe(), peer_, why);
    DropLink(side, false);
    if ((in_txn_ && want_ == side) || first_side_ == side) FailPending(why);
  }

  void ProcessServer(Link& l) {
    while (!closed_ && !l.conn->closed()) {
      auto in = l.conn->input();
      if (in.size() < kHeader) return;
      size_t len = PayloadLen(in);
      if (in.size() < kHeader + len) {
        l.conn->NeedInput(kHeader + len);
        return;
      }
      uint8_t seq = static_cast<uint8_t>(in[3]);
      std::string_view payload = in.substr(kHeader, len);
      std::string_view raw = in.substr(0, kHeader + len);
      if (l.state != Link::State::kReady) {
        std::string p(payload);
        l.conn->Consume(raw.size());
        if (!Login(l, seq, p)) return;
        continue;
      }
      if (l.internal_sent) {
        std::string p(payload);
        l.conn->Consume(raw.size());
        if (!OnInternalAnswer(l, p)) return;
        continue;
      }
      if (cur_ != static_cast<int>(l.side) || (awaiting_.empty() && l.tracker->Idle())) {
        // Nothing asked: a server that closes an idle session says so first.
        std::string what = "an unexpected packet";
        if (!payload.empty() && static_cast<uint8_t>(payload[0]) == 0xff)
          if (auto err = mw::ParseErr(payload); err.ok()) what = err->message;
        FailLink(l, fmt::format("{} server: {}", SideStr(l.side), what));
        return;
      }
      if (client_->out_full()) return;
      if (l.cont) {
        l.cont = len == kMaxPayload;
        client_->Write(raw);
        l.conn->Consume(raw.size());
        continue;
      }
      l.cont = len == kMaxPayload;
      auto t = l.tracker->OnServerMessage(payload);
      if (!t.ok()) return ProtocolError(fmt::format("{} server: {}", SideStr(l.side), t.status().message()));
      RelayServerPacket(l, seq, payload, raw, *t);
      l.conn->Consume(raw.size());
      if (t->response_complete) OnResponseComplete(l);
    }
  }

  void RelayServerPacket(Link& l, uint8_t seq, std::string_view payload, std::string_view raw, const mw::TrackedPacket& t) {
    const bool ok_format = t.kind == mw::PacketKind::kOk ||
                           (t.kind == mw::PacketKind::kEof && (l.caps & mw::cap::kDeprecateEof) && !payload.empty());
    if (ok_format) {
      auto ok = mw::ParseOk(payload, l.caps);
      if (ok.ok()) {
        RecordTracking(l, ok->session_state);
        if (closed_) return;
        if (!(caps_ & mw::cap::kSessionTrack)) {
          ok->session_state.clear();
          ok->status &= ~mw::status::kSessionStateChanged;
          client_->Write(Packet(seq, mw::EncodeOk(*ok, caps_)));
          return;
        }
      }
    } else if (t.kind == mw::PacketKind::kPrepareOk && l.tracker->last_prepare()) {
      const auto& p = *l.tracker->last_prepare();
      uint32_t client_id = next_stmt_++;
      PreparedStmt st;
      st.sql = awaiting_.empty() ? "" : awaiting_.front().sql;
      st.params = p.params;
      st.columns = p.columns;
      stmts_[client_id] = st;
      l.stmts[client_id] = p.stmt_id;
      // The server's packet as sent, with the client's id in place of the server's.
      (void)seq;
      std::string out(raw);
      for (int i = 0; i < 4; ++i) out[kHeader + 1 + i] = static_cast<char>((client_id >> (8 * i)) & 0xff);
      client_->Write(out);
      return;
    } else if (t.kind == mw::PacketKind::kLocalInfile) {
      client_data_ = true;
    }
    client_->Write(raw);
  }

  void RecordTracking(Link& l, const std::vector<mw::SessionStateChange>& changes) {
    for (const auto& c : changes) {
      if (c.type == mw::kTrackSchema) {
        schema_ = c.name;
        l.schema = c.name;
      } else if (c.type == mw::kTrackSystemVariables) {
        if (ep_ == Endpoint::kReadOnly && (c.name == "tx_read_only" || c.name == "transaction_read_only") &&
            (c.value == "OFF" || c.value == "0")) {
          return Close(fmt::format("it turned read-only transactions off ({}={}) on the read-only endpoint", c.name, c.value));
        }
        if (NotCarried(c.name)) continue;
        vars_[c.name] = c.value;
        l.vars[c.name] = c.value;
      }
    }
  }

  void OnResponseComplete(Link& l) {
    if (!l.internal.empty() && !l.internal_sent && l.tracker->Idle()) SendInternal(l);
    if (!awaiting_.empty()) {
      Awaiting a = std::move(awaiting_.front());
      awaiting_.pop_front();
      const bool failed = l.tracker->last_err().has_value();
      if (!failed) ApplyPins(a.pins);
      if (a.reset && !failed) ResetSessionState(l);
    }
    if (change_user_waiting_ && awaiting_.empty())
      loop_->Post([w = weak_from_this()] {
        if (auto s = w.lock()) s->ProcessClient();
      });
    if (!l.tracker->StatusKnown() && l.tracker->Idle()) {
      // After an ERR the transaction state is unknown: ask.
      l.internal.push_back({Internal::Kind::kPing, mw::ComSimple(mw::Command::kPing)});
      SendInternal(l);
      return;
    }
    CheckBoundary(l);
  }

  void ResetSessionState(Link& l) {
    vars_.clear();
    l.vars.clear();
    stmts_.clear();
    l.stmts.clear();
    l.typed.clear();
    temp_tables_.clear();
    sql_prepared_.clear();
    named_locks_ = 0;
    lock_tables_ = user_variables_ = false;
    PublishPins();
    for (int i = 0; i < 2; ++i)
      if (links_[i] && links_[i].get() != &l) DropLink(i, true);
    // The server forgot its setup too.
    QueueSetup(l);
    SendInternal(l);
  }

  void CheckBoundary(Link& l) {
    if (ungated_ && &l == Current() && awaiting_.empty() && l.internal.empty() && !l.internal_sent &&
        l.tracker->Idle() && l.tracker->StatusKnown()) {
      // The commands that passed the gate are answered (an ERR's status
      // learnt by the ping): the next command may enter the gate or move.
      ungated_ = false;
      loop_->Post([w = weak_from_this()] {
        if (auto s = w.lock()) s->ProcessClient();
      });
    }
    if (!in_txn_ || !l.internal.empty() || long_data_) return;
    if (!l.tracker->AtTransactionBoundary()) return;
    in_txn_ = false;
    core_.LeaveTransaction(ep_);
    set_in_transaction(false);
    loop_->Post([w = weak_from_this()] {
      if (auto s = w.lock()) s->ProcessClient();
    });
  }

  // ---- Login and internal commands.

  bool Login(Link& l, uint8_t seq, const std::string& p) {
    const MySqlServer& s = m_.config.servers[static_cast<int>(l.side)];
    if (l.state == Link::State::kHandshake || l.state == Link::State::kConnecting) {
      if (!p.empty() && static_cast<uint8_t>(p[0]) == 0xff) {
        auto e = mw::ParseErr(p);
        FailLink(l, fmt::format("{} server refused the connection: {}", SideStr(l.side), e.ok() ? e->message : "?"));
        return false;
      }
      auto h = mw::ParseHandshake(p);
      if (!h.ok()) {
        FailLink(l, fmt::format("{} server: {}", SideStr(l.side), h.status().message()));
        return false;
      }
      l.thread_id = h->connection_id;
      l.caps = ((caps_ & ~kLoginOnly) | mw::cap::kSessionTrack | mw::cap::kProtocol41) & h->capabilities;
      l.tracker = std::make_unique<mw::ResponseTracker>(l.caps);
      mw::HandshakeResponse r;
      r.capabilities = l.caps | ((mw::cap::kPluginAuth | mw::cap::kSecureConnection | mw::cap::kPluginAuthLenencData) & h->capabilities);
      if (!schema_.empty()) {
        r.capabilities |= mw::cap::kConnectWithDb;
        r.database = schema_;
      }
      r.max_packet = 1 << 30;
      r.collation = collation_;
      r.user = s.user;
      const auto plugin = mw::ClassifyAuthPlugin(h->auth_plugin);
      r.auth_response = plugin == mw::AuthPlugin::kCachingSha2Password ? mw::CachingSha2Response(s.password, h->scramble)
                                                                        : mw::NativePasswordResponse(s.password, h->scramble);
      r.auth_plugin = plugin == mw::AuthPlugin::kCachingSha2Password ? "caching_sha2_password" : "mysql_native_password";
      l.schema = schema_;
      const bool offered = (h->capabilities & mw::cap::kSsl) != 0;
      if (s.ssl_mode != MySqlSslMode::kDisabled && (offered || s.ssl_mode != MySqlSslMode::kPreferred)) {
        if (!offered) {
          FailLink(l, fmt::format("{} server {}:{} does not offer TLS, which its ssl-mode asks for (turn TLS on in the "
                                  "server: ssl_cert/ssl_key, or lower ssl-mode)",
                                  SideStr(l.side), s.host, s.port));
          return false;
        }
        r.capabilities |= mw::cap::kSsl;
        l.conn->Write(Packet(seq + 1, mw::EncodeSslRequest(r)));
        l.login = Packet(seq + 2, mw::EncodeHandshakeResponse(r));
        l.state = Link::State::kTls;
        if (Status st = l.conn->StartClientTls(m_.server_tls[static_cast<int>(l.side)], s.host,
                                               s.ssl_mode == MySqlSslMode::kVerifyIdentity);
            !st.ok()) {
          FailLink(l, fmt::format("{} server: {}", SideStr(l.side), st.message()));
          return false;
        }
        return !closed_;
      }
      l.conn->Write(Packet(seq + 1, mw::EncodeHandshakeResponse(r)));
      l.state = Link::State::kAuth;
      return true;
    }
    // kAuth
    const uint8_t first = p.empty() ? 0xff : static_cast<uint8_t>(p[0]);
    if (first == 0x00) {
      l.state = Link::State::kReady;
      QueueSetup(l);
      SendInternal(l);
      return true;
    }
    if (first == 0xfe) {
      auto sw = mw::ParseAuthSwitchRequest(p);
      if (!sw.ok()) {
        FailLink(l, fmt::format("{} server: {}", SideStr(l.side), sw.status().message()));
        return false;
      }
      const auto plugin = mw::ClassifyAuthPlugin(sw->plugin);
      if (plugin == mw::AuthPlugin::kNativePassword) {
        l.conn->Write(Packet(seq + 1, mw::NativePasswordResponse(s.password, sw->data)));
      } else if (plugin == mw::AuthPlugin::kCachingSha2Password) {
        l.conn->Write(Packet(seq + 1, mw::CachingSha2Response(s.password, sw->data)));
      } else {
        FailLink(l, fmt::format("{} server asks for authentication plugin {}, which the proxy cannot use for user {}",
                                SideStr(l.side), sw->plugin, s.user));
        return false;
      }
      return true;
    }
    if (first == 0x01 && p.size() >= 2 && static_cast<uint8_t>(p[1]) == 0x03) return true;  // caching_sha2 fast auth OK follows
    if (first == 0x01 && p.size() >= 2 && static_cast<uint8_t>(p[1]) == 0x04 && l.conn->tls()) {
      // caching_sha2 full authentication: the password itself, inside TLS.
      l.conn->Write(Packet(seq + 1, s.password + std::string(1, '\0')));
      return true;
    }
    if (first == 0xff) {
      auto e = mw::ParseErr(p);
      FailLink(l, fmt::format("{} server refused the login of {}: {}", SideStr(l.side), s.user, e.ok() ? e->message : "?"));
      return false;
    }
    FailLink(l, fmt::format("{} server asks for caching_sha2_password's full authentication of user {}, which the proxy "
                            "does only over TLS: set ssl-mode=required (or verify-ca) in its URI",
                            SideStr(l.side), s.user));
    return false;
  }

  void QueueSetup(Link& l) {
    std::string set = "SET SESSION session_track_schema=ON, session_track_state_change=ON, session_track_system_variables='*'";
    l.internal.push_back({Internal::Kind::kSetup, mw::ComQuery(set)});
    if (ep_ == Endpoint::kReadOnly)
      l.internal.push_back({Internal::Kind::kSetup, mw::ComQuery("SET SESSION TRANSACTION READ ONLY")});
  }

  bool Synced(const Link& l) const {
    if (!schema_.empty() && l.schema != schema_) return false;
    for (const auto& [k, v] : vars_) {
      auto it = l.vars.find(k);
      if (it == l.vars.end() || it->second != v) return false;
    }
    for (const auto& [id, st] : stmts_)
      if (!l.stmts.count(id)) return false;
    return true;
  }

  void QueueSync(Link& l) {
    if (!schema_.empty() && l.schema != schema_) {
      Internal in{Internal::Kind::kInitDb, mw::ComInitDb(schema_)};
      in.schema = schema_;
      l.internal.push_back(std::move(in));
    }
    std::vector<std::string> clauses;
    std::map<std::string, std::string> set;
    for (const auto& [k, v] : vars_) {
      auto it = l.vars.find(k);
      if (it != l.vars.end() && it->second == v) continue;
      std::string c = SetClause(k, v);
      if (c.empty()) continue;
      clauses.push_back(c);
      set[k] = v;
    }
    if (!clauses.empty()) {
      Internal in{Internal::Kind::kSet, mw::ComQuery(fmt::format("SET SESSION {}", fmt::join(clauses, ", ")))};
      in.vars = std::move(set);
      l.internal.push_back(std::move(in));
    }
    for (const auto& [id, st] : stmts_) {
      if (l.stmts.count(id)) continue;
      Internal in{Internal::Kind::kPrepare, mw::ComStmtPrepare(st.sql)};
      in.client_stmt = id;
      l.internal.push_back(std::move(in));
    }
  }

  void SendInternal(Link& l) {
    while (!l.internal_sent && !l.internal.empty() && l.state == Link::State::kReady) {
      Internal& in = l.internal.front();
      if (Status st = l.tracker->OnCommand(in.payload); !st.ok()) return ProtocolError(st.message());
      l.conn->Write(Packet(0, in.payload));
      if (in.kind == Internal::Kind::kClose) {
        l.internal.pop_front();
        continue;
      }
      l.internal_sent = true;
    }
    if (l.internal.empty() && !l.internal_sent) {
      CheckBoundary(l);
      loop_->Post([w = weak_from_this()] {
        if (auto s = w.lock()) s->ProcessClient();
      });
    }
  }

  bool OnInternalAnswer(Link& l, const std::string& p) {
    auto t = l.tracker->OnServerMessage(p);
    if (!t.ok()) {
      ProtocolError(fmt::format("{} server: {}", SideStr(l.side), t.status().message()));
      return false;
    }
    Internal& in = l.internal.front();
    if (t->kind == mw::PacketKind::kPrepareOk && l.tracker->last_prepare()) {
      l.stmts[in.client_stmt] = l.tracker->last_prepare()->stmt_id;
      l.typed.erase(in.client_stmt);
    }
    if (!t->response_complete) return true;
    if (t->kind == mw::PacketKind::kErr) {
      const auto& e = l.tracker->last_err();
      std::string what = in.kind == Internal::Kind::kPrepare ? fmt::format("re-preparing statement {}", in.client_stmt)
                         : in.kind == Internal::Kind::kInitDb ? fmt::format("selecting schema {}", in.schema)
                         : in.kind == Internal::Kind::kSet    ? "restoring session variables"
                                                               : "setting up the session";
      std::string why = fmt::format("{} server: {}: {}", SideStr(l.side), what, e ? e->message : "error");
      l.internal.clear();
      l.internal_sent = false;
      if (cur_ == static_cast<int>(l.side)) {
        Close(why);
      } else {
        DropLink(static_cast<int>(l.side), true);
        FailPending(why);
      }
      return false;
    }
    if (in.kind == Internal::Kind::kSet)
      for (auto& [k, v] : in.vars) l.vars[k] = v;
    if (in.kind == Internal::Kind::kInitDb) l.schema = in.schema;
    l.internal.pop_front();
    l.internal_sent = false;
    SendInternal(l);
    return !closed_;
  }

  MySqlProxy::Module& m_;
  ProxyCore& core_;
  EventLoop* loop_;
  const Endpoint ep_;
  const uint64_t id_;
  std::string peer_;
  std::unique_ptr<Conn> client_;
  CState cstate_ = CState::kHandshake;
  bool closed_ = false, in_auth_ = false, counted_ = false, tls_pending_ = false;
  bool changing_user_ = false, change_user_waiting_ = false;
  std::optional<EventLoop::TimerId> auth_timer_;
  std::string scramble_, user_;
  uint64_t client_caps_ = 0, caps_ = 0;
  uint8_t collation_ = 33;
  uint8_t auth_seq_ = 0;
  // Session state, carried to another server.
  std::string schema_;
  std::map<std::string, std::string> vars_;
  std::map<uint32_t, PreparedStmt> stmts_;
  uint32_t next_stmt_ = 1;
  // What pins the session.
  std::set<std::string> temp_tables_, sql_prepared_;
  int named_locks_ = 0;
  bool lock_tables_ = false, user_variables_ = false;
  // Routing.
  std::unique_ptr<Link> links_[2];
  int cur_ = -1, want_ = 0;
  int first_side_ = -1;  // OpenFirstServer's link, logging in for a held command that passes the gate
  bool in_txn_ = false, waiting_gate_ = false;
  bool ungated_ = false;  // relaying commands that passed the closed gate (PassesGate), answers due
  bool client_data_ = false, client_cont_ = false, long_data_ = false;
  std::deque<Awaiting> awaiting_;
};

}  // namespace

std::shared_ptr<core::Session> MySqlProxy::Module::NewSession(ProxyCore& core, EventLoop* loop, int fd, Endpoint endpoint,
                                                             uint64_t id) {
  return std::make_shared<MySession>(*this, core, loop, fd, endpoint, id);
}

Result<std::unique_ptr<MySqlProxy>> MySqlProxy::Start(MySqlProxyConfig config) {
  std::unique_ptr<MySqlProxy> p(new MySqlProxy());
  p->module_ = std::make_unique<Module>();
  Module& m = *p->module_;
  m.config = std::move(config);
  if (m.config.users.empty()) return OperatorError(fmt::format("proxy {}: no users to log in as", m.config.migration));
  for (const auto& u : m.config.users) {
    m.stage2[u.name] = u.password.empty() ? "" : mw::NativePasswordStage2(u.password);
    m.passwords[u.name] = u.password;
  }
  for (int i = 0; i < 2; ++i) {
    const MySqlServer& s = m.config.servers[i];
    if (s.ssl_mode == MySqlSslMode::kDisabled) continue;
    const char* side = i == 0 ? "source" : "target";
    const bool verify = s.ssl_mode == MySqlSslMode::kVerifyCa || s.ssl_mode == MySqlSslMode::kVerifyIdentity;
    if (verify && s.ssl_ca.empty())
      return OperatorError(fmt::format("proxy {}: {}: ssl-mode={} needs ssl-ca (the CA file that signed the server's "
                                       "certificate)",
                                       m.config.migration, side,
                                       s.ssl_mode == MySqlSslMode::kVerifyCa ? "verify-ca" : "verify-identity"));
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    m.server_tls[i] = ctx;
    if (ctx == nullptr) return midflight::Internal("proxy: SSL_CTX_new failed");
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (!s.ssl_ca.empty() && SSL_CTX_load_verify_locations(ctx, s.ssl_ca.c_str(), nullptr) != 1)
      return OperatorError(fmt::format("proxy {}: {}: cannot load ssl-ca {}", m.config.migration, side, s.ssl_ca));
  }
  if (!m.config.tls_cert.empty() || !m.config.tls_key.empty()) {
    m.tls = SSL_CTX_new(TLS_server_method());
    if (m.tls == nullptr || SSL_CTX_use_certificate_chain_file(m.tls, m.config.tls_cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(m.tls, m.config.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
      return OperatorError(fmt::format("proxy {}: cannot load tls_cert {} / tls_key {}", m.config.migration,
                                       m.config.tls_cert, m.config.tls_key));
    // Conn::Write hands OpenSSL the front of a buffer that may grow or move between retries.
    SSL_CTX_set_mode(m.tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  // Clients see the source's version and capabilities (less what the proxy does not relay).
  std::string announced;
  if (auto h = ProbeServer(m.config.servers[0])) {
    m.server_version = h->server_version;
    m.caps = kOffered & h->capabilities;
    m.collation = h->collation;
    announced = h->auth_plugin;
  }
  if (!m.config.client_auth.empty()) {
    m.client_auth = mw::ClassifyAuthPlugin(m.config.client_auth);
    if (m.client_auth != mw::AuthPlugin::kNativePassword && m.client_auth != mw::AuthPlugin::kCachingSha2Password &&
        m.client_auth != mw::AuthPlugin::kClientEd25519)
      return OperatorError(fmt::format("proxy {}: client authentication '{}' is not mysql_native_password, "
                                       "caching_sha2_password or client_ed25519",
                                       m.config.migration, m.config.client_auth));
  } else if (mw::ClassifyAuthPlugin(announced) == mw::AuthPlugin::kCachingSha2Password) {
    m.client_auth = mw::AuthPlugin::kCachingSha2Password;  // a MySQL 8 source: its clients expect it
  }
  if (m.client_auth == mw::AuthPlugin::kCachingSha2Password) {
    std::string pem;
    if (m.RsaKey(&pem) == nullptr)
      return midflight::Internal(fmt::format("proxy {}: cannot make the RSA key caching_sha2_password needs", m.config.migration));
  }
  core::CoreConfig cc;
  cc.migration = m.config.migration;
  cc.listen[0] = m.config.listen_rw;
  cc.listen[1] = m.config.listen_ro;
  cc.max_clients = m.config.max_clients;
  cc.max_unauthenticated = m.config.max_unauthenticated;
  cc.auth_timeout = m.config.auth_timeout;
  cc.loops = m.config.loops;
  ASSIGN_OR_RETURN(p->core_, core::ProxyCore::Start(std::move(cc), &m));
  return p;
}

Result<MySqlSslMode> ParseMySqlSslMode(std::string_view text) {
  std::string t = Lower(text);
  std::replace(t.begin(), t.end(), '_', '-');
  if (t == "disabled") return MySqlSslMode::kDisabled;
  if (t == "preferred") return MySqlSslMode::kPreferred;
  if (t == "required") return MySqlSslMode::kRequired;
  if (t == "verify-ca") return MySqlSslMode::kVerifyCa;
  if (t == "verify-identity") return MySqlSslMode::kVerifyIdentity;
  return InvalidArgument(fmt::format("ssl-mode '{}' is not disabled, preferred, required, verify-ca or verify-identity",
                                     std::string(text.substr(0, 40))));
}

MySqlProxy::~MySqlProxy() { Stop(); }
void MySqlProxy::Stop() {
  if (core_) core_->Stop();
}
std::string MySqlProxy::rw_address() const { return core_->address(Endpoint::kReadWrite); }
std::string MySqlProxy::ro_address() const { return core_->address(Endpoint::kReadOnly); }
Side MySqlProxy::write_side() const { return core_->write_side(); }
void MySqlProxy::SetWriteSide(Side side) { core_->SetWriteSide(side); }
int MySqlProxy::read_percent() const { return core_->read_percent(); }
void MySqlProxy::SetReadPercent(int percent) { core_->SetReadPercent(percent); }
Status MySqlProxy::PauseWrites(std::chrono::milliseconds drain_timeout) { return core_->PauseWrites(drain_timeout); }
void MySqlProxy::ResumeWrites() { core_->ResumeWrites(); }
ProxyStats MySqlProxy::stats() const { return core_->stats(); }
std::vector<std::string> MySqlProxy::PinnedSessions(Side side) const { return core_->PinnedSessions(side); }

}  // namespace midflight::proxy
