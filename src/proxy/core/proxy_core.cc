#include "proxy/core/proxy_core.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "base/log.h"

namespace midflight::proxy::core {

Result<int> ListenOn(const std::string& address, std::string* actual) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return OperatorError(fmt::format("proxy listen address '{}': expected HOST:PORT", address));
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.empty() || host == "*") host = "0.0.0.0";
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
    return OperatorError(fmt::format("proxy listen address '{}': {}", address, gai_strerror(rc)));
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
    int err = errno;
    freeaddrinfo(res);
    close(fd);
    return OperatorError(fmt::format("proxy cannot listen on {}: {}", address, strerror(err)));
  }
  freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  char buf[INET6_ADDRSTRLEN] = {};
  int p = 0;
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    p = ntohs(in->sin_port);
    *actual = fmt::format("{}:{}", buf, p);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    p = ntohs(in6->sin6_port);
    *actual = fmt::format("[{}]:{}", buf, p);
  }
  return fd;
}

namespace {

}  // namespace

struct ProxyCore::Listener final : EventLoop::Handler {
  ProxyCore* core;
  int fd;
  Endpoint endpoint;
  void OnEvents(uint32_t) override { core->Accept(fd, endpoint); }
  ~Listener() override { close(fd); }
};

Result<std::unique_ptr<ProxyCore>> ProxyCore::Start(CoreConfig config, ProtocolModule* module) {
  std::unique_ptr<ProxyCore> core(new ProxyCore());
  core->config_ = std::move(config);
  core->module_ = module;
  int n = core->config_.loops;
  // One loop per two cores: a loop thread that serves more sessions sleeps
  // and wakes less often per transaction (on 2 cores, one loop instead of
  // two: 0.6 instead of 1.1 epoll_wait sleeps and about 30 % less CPU per
  // transaction, bench/README.md), and a loop passes tens of thousands of
  // transactions per second, more than a core shared with its database gives.
  if (n <= 0) n = std::clamp(static_cast<int>(std::thread::hardware_concurrency()) / 2, 1, 8);
  for (int i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(auto loop, EventLoop::Create());
    core->loops_.push_back(std::move(loop));
  }
  for (int e = 0; e < 2; ++e) {
    if (core->config_.listen[e].empty()) continue;
    ASSIGN_OR_RETURN(int fd, ListenOn(core->config_.listen[e], &core->address_[e]));
    auto l = std::make_unique<Listener>();
    l->core = core.get();
    l->fd = fd;
    l->endpoint = static_cast<Endpoint>(e);
    RETURN_IF_ERROR(core->loops_[0]->Add(fd, EPOLLIN, l.get()));
    core->listeners_.push_back(std::move(l));
  }
  for (auto& loop : core->loops_) core->threads_.emplace_back([l = loop.get()] { l->Run(); });
  return core;
}

ProxyCore::~ProxyCore() { Stop(); }

void ProxyCore::Stop() {
  if (stopped_.exchange(true)) return;
  // Listeners first (on loop 0), then every session closes on its loop.
  loops_[0]->Post([this] {
    for (auto& l : listeners_) loops_[0]->Remove(l->fd);
  });
  {
    MutexLock lock(&registry_mu_);
    for (auto& [id, e] : registry_) {
      std::weak_ptr<Session> w = e.session;
      e.loop->Post([w] {
        if (auto s = w.lock()) s->Shutdown();
      });
    }
  }
  {
    MutexLock lock(&gate_mu_);
    paused_ = false;
    waiting_.clear();
  }
  gate_cv_.NotifyAll();
  for (auto& loop : loops_) loop->Stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  std::map<uint64_t, Entry> gone;
  {
    MutexLock lock(&registry_mu_);
    gone.swap(registry_);
  }
  gone.clear();
  listeners_.clear();
}

void ProxyCore::Accept(int listen_fd, Endpoint endpoint) {
  for (int i = 0; i < 64; ++i) {
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        LOG_WARN("proxy {}: accept: {}", config_.migration, strerror(errno));
      return;
    }
    ++connections;
    EventLoop* loop = loops_[next_loop_++ % loops_.size()].get();
    uint64_t id = next_id_++;
    loop->Post([this, loop, fd, endpoint, id] {
      if (stopped_) {
        close(fd);
        return;
      }
      std::shared_ptr<Session> s = module_->NewSession(*this, loop, fd, endpoint, id);
      if (s) s->Start();
    });
  }
}

bool ProxyCore::BeginAuth() {
  if (unauthenticated_.fetch_add(1) >= config_.max_unauthenticated) {
    --unauthenticated_;
    return false;
  }
  return true;
}

bool ProxyCore::FinishAuth(Endpoint endpoint) {
  --unauthenticated_;
  int total = clients_[0].load() + clients_[1].load();
  if (total >= config_.max_clients) return false;
  ++clients_[static_cast<int>(endpoint)];
  return true;
}

void ProxyCore::AbandonAuth() { --unauthenticated_; }
void ProxyCore::EndClient(Endpoint endpoint) { --clients_[static_cast<int>(endpoint)]; }

bool ProxyCore::paused() const { return paused_.load(); }

bool ProxyCore::EnterTransaction(const std::shared_ptr<Session>& session, EventLoop* loop, Endpoint endpoint) {
  if (endpoint != Endpoint::kReadWrite) return true;
  ++busy_rw_;
  if (!paused_.load()) return true;
  // A pause is on (or starting): not busy after all; decide under the lock.
  LeaveTransaction(endpoint);
  MutexLock lock(&gate_mu_);
  if (paused_.load()) {
    waiting_.emplace_back(loop, session);
    return false;
  }
  ++busy_rw_;  // resumed meanwhile (a pause starting now waits for this one under the lock)
  return true;
}

void ProxyCore::LeaveTransaction(Endpoint endpoint) {
  if (endpoint != Endpoint::kReadWrite) return;
  if (--busy_rw_ == 0 && paused_.load()) {
    // A pause waits for this (the lock orders the notify after its wait began).
    MutexLock lock(&gate_mu_);
    gate_cv_.NotifyAll();
  }
}

Side ProxyCore::Route(Endpoint endpoint) {
  if (endpoint == Endpoint::kReadWrite) return write_side();
  int p = read_percent();
  if (p <= 0) return Side::kSource;
  if (p >= 100) return Side::kTarget;
  static thread_local std::minstd_rand rng(std::random_device{}());
  return static_cast<int>(rng() % 100) < p ? Side::kTarget : Side::kSource;
}

Status ProxyCore::PauseWrites(std::chrono::milliseconds drain_timeout) {
  {
    MutexLock lock(&gate_mu_);
    paused_ = true;
    if (gate_cv_.WaitFor(&gate_mu_, drain_timeout, [&]() REQUIRES(gate_mu_) { return busy_rw_.load() == 0; }))
      return Status::Ok();
  }
  std::vector<std::string> busy;
  {
    MutexLock lock(&registry_mu_);
    for (const auto& [id, e] : registry_)
      if (e.record.endpoint == Endpoint::kReadWrite && e.session && e.session->in_transaction())
        busy.push_back(fmt::format("{} (session {})", e.record.peer, id));
  }
  if (busy.size() > 10) {
    size_t more = busy.size() - 10;
    busy.resize(10);
    busy.push_back(fmt::format("and {} more", more));
  }
  return RetryCall(fmt::format("proxy {}: {} read-write session(s) still in a transaction after the drain timeout of {} ms: {}",
                               config_.migration, busy.size(), drain_timeout.count(), fmt::join(busy, ", ")));
}

void ProxyCore::ResumeWrites() {
  std::vector<std::pair<EventLoop*, std::weak_ptr<Session>>> waiting;
  {
    MutexLock lock(&gate_mu_);
    paused_ = false;
    waiting.swap(waiting_);
  }
  for (auto& [loop, w] : waiting)
    loop->Post([w = w] {
      if (auto s = w.lock()) s->OnGateOpen();
    });
}

ProxyStats ProxyCore::stats() const {
  ProxyStats s;
  s.clients_rw = clients_[0];
  s.clients_ro = clients_[1];
  s.connections = connections;
  s.auth_failures = auth_failures;
  s.protocol_errors = protocol_errors;
  for (int i = 0; i < 2; ++i) {
    s.transactions[i] = transactions[i];
    s.server_connects[i] = server_connects[i];
  }
  s.session_moves = session_moves;
  MutexLock lock(&registry_mu_);
  for (const auto& [id, e] : registry_)
    if (!e.record.pinned.empty()) ++s.pinned_sessions;
  return s;
}

std::vector<std::string> ProxyCore::PinnedSessions(Side side) const {
  std::vector<std::string> out;
  MutexLock lock(&registry_mu_);
  for (const auto& [id, e] : registry_)
    if (!e.record.pinned.empty() && e.record.side == side && e.record.endpoint == Endpoint::kReadWrite)
      out.push_back(fmt::format("{} on the {}: {}", e.record.peer, side == Side::kSource ? "source" : "target", e.record.pinned));
  return out;
}

void ProxyCore::Register(uint64_t id, std::shared_ptr<Session> session, EventLoop* loop, SessionRecord record) {
  MutexLock lock(&registry_mu_);
  registry_[id] = Entry{std::move(session), loop, std::move(record)};
}

void ProxyCore::Update(uint64_t id, const std::function<void(SessionRecord&)>& change) {
  MutexLock lock(&registry_mu_);
  if (auto it = registry_.find(id); it != registry_.end()) change(it->second.record);
}

void ProxyCore::Unregister(uint64_t id) {
  std::shared_ptr<Session> s;
  EventLoop* loop = nullptr;
  {
    MutexLock lock(&registry_mu_);
    auto it = registry_.find(id);
    if (it == registry_.end()) return;
    s = std::move(it->second.session);
    loop = it->second.loop;
    registry_.erase(it);
  }
  // The caller is usually the session itself, inside one of its callbacks.
  loop->Defer([s = std::move(s)]() mutable { s.reset(); });
}

bool ProxyCore::KillSession(uint64_t id, bool connection) {
  MutexLock lock(&registry_mu_);
  auto it = registry_.find(id);
  if (it == registry_.end()) return false;
  std::weak_ptr<Session> w = it->second.session;
  it->second.loop->Post([w, connection] {
    if (auto s = w.lock()) s->Kill(connection);
  });
  return true;
}

}  // namespace midflight::proxy::core
