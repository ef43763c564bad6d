#include "loopback.h"
#include "test_certs.h"
#include "service/notify.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/http.h"

namespace midflight {
namespace {

using std::chrono::milliseconds;

constexpr char kPath[] = "/services/T0/B0/secret-token";

NotifierOptions FastOptions() {
  NotifierOptions o;
  o.max_attempts = 3;
  o.first_backoff = milliseconds(1);
  o.max_backoff = milliseconds(4);
  o.attempt_timeout = milliseconds(2000);
  return o;
}

Notification Event(std::string event, std::string text = "something happened") {
  return {.event = std::move(event), .migration = "orders", .phase = "copying", .text = std::move(text)};
}

// Polls `done` for up to 5 s.
bool WaitUntil(const std::function<bool()>& done) {
  for (int i = 0; i < 1000 && !done(); ++i) std::this_thread::sleep_for(milliseconds(5));
  return done();
}

int ClosedPort() { return loopback::ClosedLoopbackPort(); }

// Sets (or, with nullptr, unsets) an environment variable for one test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// An http::Server that records what it receives and answers 200: a stand-in
// for a plain-http forward proxy (it does not forward).
class Recorder {
 public:
  Recorder() {
    auto server = http::Server::Listen("127.0.0.1:0", [this](const http::Request& r) {
      std::lock_guard lock(mu_);
      requests_.push_back(r);
      return http::Json(200, R"({"ok":true})");
    });
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  std::string url() const { return "http://" + server_->address(); }
  std::vector<http::Request> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  std::mutex mu_;
  std::vector<http::Request> requests_;
  std::unique_ptr<http::Server> server_;
};

std::string WriteTempFile(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/mf-notify-" + std::to_string(getpid()) + "-" + name;
  std::ofstream(path) << text;
  return path;
}

// ---- Plain http: a receiver that records requests and answers as scripted ----

class NotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = http::Server::Listen("127.0.0.1:0", [this](const http::Request& r) { return Receive(r); });
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  void TearDown() override {
    Hold(false);
    server_->Stop();
  }

  std::unique_ptr<Notifier> Make(NotifierOptions options = FastOptions()) {
    auto notifier = Notifier::Create("http://" + server_->address() + kPath, options);
    EXPECT_TRUE(notifier.ok()) << notifier.status().ToString();
    return std::move(notifier).value();
  }

  // The next answers' statuses; 200 after them.
  void Answer(std::deque<int> statuses) {
    std::lock_guard lock(mu_);
    statuses_ = std::move(statuses);
  }
  // The body of the answers that follow (default: a short JSON).
  void AnswerBody(std::string body) {
    std::lock_guard lock(mu_);
    body_ = std::move(body);
  }
  std::string address() const { return server_->address(); }
  // While held, the receiver keeps requests waiting.
  void Hold(bool hold) {
    std::lock_guard lock(mu_);
    hold_ = hold;
    cv_.notify_all();
  }
  std::vector<http::Request> Requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<std::string> Events() {
    std::vector<std::string> events;
    for (const auto& r : Requests()) events.push_back(nlohmann::json::parse(r.body).value("event", ""));
    return events;
  }

 private:
  http::Response Receive(const http::Request& r) {
    std::unique_lock lock(mu_);
    requests_.push_back(r);
    cv_.wait(lock, [&] { return !hold_; });
    int status = 200;
    if (!statuses_.empty()) {
      status = statuses_.front();
      statuses_.pop_front();
    }
    std::string body = body_ ? *body_ : status == 200 ? R"({"ok":true})" : R"({"error":"no_service"})";
    http::Response response = http::Json(status, std::move(body));
    if (status >= 300 && status < 400) response.headers.push_back({"Location", "http://" + address() + "/elsewhere"});
    return response;
  }

  std::unique_ptr<http::Server> server_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<http::Request> requests_;
  std::deque<int> statuses_;
  std::optional<std::string> body_;
  bool hold_ = false;
};

TEST_F(NotifyTest, DeliversEventsInOrderWithTheirFields) {
  auto notifier = Make();
  Notification first = Event("phase_change", "phase copying -> catching_up");
  first.fields = {{"from", "copying"}, {"to", "catching_up"}};
  notifier->Notify(first);
  notifier->Notify(Event("lag_alert"));
  notifier->Notify(Event("lag_recovered"));
  ASSERT_TRUE(WaitUntil([&] { return notifier->stats().sent == 3; }));

  EXPECT_EQ(Events(), (std::vector<std::string>{"phase_change", "lag_alert", "lag_recovered"}));
  http::Request r = Requests()[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/services/T0/B0/secret-token");
  EXPECT_EQ(r.Header("content-type"), "application/json");
  nlohmann::json body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["text"], "[midflight] migration orders: phase copying -> catching_up");
  EXPECT_EQ(body["migration"], "orders");
  EXPECT_EQ(body["phase"], "copying");
  EXPECT_EQ(body["from"], "copying");
  EXPECT_EQ(body["to"], "catching_up");
  EXPECT_TRUE(testing::internal::RE::FullMatch(body["time"].get<std::string>(),
                                               "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"));
  NotifierStats stats = notifier->stats();
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.retries, 0u);
  EXPECT_EQ(stats.last_error, "");
}

TEST_F(NotifyTest, RetriesOn5xxAnd429ThenDeliversOnce) {
  Answer({500, 429});
  auto notifier = Make();
  notifier->Notify(Event("failed"));
  ASSERT_TRUE(WaitUntil([&] { return notifier->stats().sent == 1; }));
  EXPECT_EQ(Events(), (std::vector<std::string>{"failed", "failed", "failed"}));
  NotifierStats stats = notifier->stats();
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.last_error, fmt::format("http://{}: answered 429 Too Many Requests: {{\"error\":\"no_service\"}}",
                                          Requests()[0].headers.at("host")));
}

TEST_F(NotifyTest, DoesNotRetry4xx) {
  Answer({400});
  auto notifier = Make();
  notifier->Notify(Event("failed"));
  notifier->Notify(Event("write_pause"));
  ASSERT_TRUE(WaitUntil([&] { return notifier->stats().sent == 1; }));
  EXPECT_EQ(Events(), (std::vector<std::string>{"failed", "write_pause"}));
  NotifierStats stats = notifier->stats();
  EXPECT_EQ(stats.failed, 1u);
  EXPECT_EQ(stats.retries, 0u);
  EXPECT_NE(stats.last_error.find("answered 400 Bad Request"), std::string::npos) << stats.last_error;
}

TEST_F(NotifyTest, UnreachablePortFailsAfterRetriesWithoutShowingThePath) {
  int port = ClosedPort();
  auto notifier = Notifier::Create(fmt::format("http://127.0.0.1:{}{}", port, kPath), FastOptions());
  ASSERT_TRUE(notifier.ok());
  (*notifier)->Notify(Event("failed"));
  ASSERT_TRUE(WaitUntil([&] { return (*notifier)->stats().failed == 1; }));
  NotifierStats stats = (*notifier)->stats();
  EXPECT_EQ(stats.sent, 0u);
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(stats.last_error, fmt::format("http://127.0.0.1:{}: cannot connect: Connection refused", port));
}

TEST_F(NotifyTest, FullQueueDropsTheOldest) {
  NotifierOptions options = FastOptions();
  options.queue_capacity = 2;
  auto notifier = Make(options);
  Hold(true);
  notifier->Notify(Event("e1"));
  ASSERT_TRUE(WaitUntil([&] { return Requests().size() == 1; }));  // e1 in flight
  for (const char* e : {"e2", "e3", "e4", "e5"}) notifier->Notify(Event(e));
  EXPECT_EQ(notifier->stats().dropped, 2u);
  Hold(false);
  ASSERT_TRUE(WaitUntil([&] { return notifier->stats().sent == 3; }));
  EXPECT_EQ(Events(), (std::vector<std::string>{"e1", "e4", "e5"}));
}

TEST_F(NotifyTest, StopDeliversWhatIsQueued) {
  auto notifier = Make();
  for (int i = 0; i < 5; ++i) notifier->Notify(Event("e" + std::to_string(i)));
  notifier->Stop(milliseconds(5000));
  EXPECT_EQ(notifier->stats().sent, 5u);
  notifier->Notify(Event("late"));
  EXPECT_EQ(notifier->stats().dropped, 1u);
  EXPECT_EQ(Requests().size(), 5u);
}

TEST_F(NotifyTest, StopGivesUpWhenTheDrainTimeRunsOut) {
  // Accepts connections (in the kernel's backlog) and never answers.
  loopback::BoundSocket bound = loopback::BindLoopback();
  int silent = bound.fd;
  ASSERT_GE(silent, 0);
  ASSERT_EQ(listen(silent, 8), 0);

  NotifierOptions options = FastOptions();
  options.attempt_timeout = milliseconds(10000);
  auto notifier = Notifier::Create(fmt::format("http://127.0.0.1:{}/hook", bound.port), options);
  ASSERT_TRUE(notifier.ok());
  (*notifier)->Notify(Event("e1"));
  (*notifier)->Notify(Event("e2"));
  auto start = std::chrono::steady_clock::now();
  (*notifier)->Stop(milliseconds(100));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
  NotifierStats stats = (*notifier)->stats();
  EXPECT_EQ(stats.sent, 0u);
  EXPECT_EQ(stats.failed, 1u);   // e1, aborted in flight
  EXPECT_EQ(stats.dropped, 1u);  // e2, never tried
  EXPECT_EQ(stats.last_error, fmt::format("http://127.0.0.1:{}: stopped waiting for the answer", bound.port));
  close(silent);
}

TEST_F(NotifyTest, DoesNotFollowRedirects) {
  Answer({302});
  auto notifier = Make();
  notifier->Notify(Event("failed"));
  ASSERT_TRUE(WaitUntil([&] { return notifier->stats().failed == 1; }));
  ASSERT_EQ(Requests().size(), 1u);
  EXPECT_EQ(Requests()[0].path, "/services/T0/B0/secret-token");
  EXPECT_EQ(notifier->stats().retries, 0u);
  EXPECT_TRUE(notifier->stats().last_error.starts_with(fmt::format("http://{}: answered 302 Found", address())))
      << notifier->stats().last_error;
}

TEST_F(NotifyTest, ReadsAtMost64KiBOfTheAnswer) {
  AnswerBody(std::string(8 * 1024 * 1024, 'x'));
  Answer({503});
  auto notifier = Make();
  notifier->Notify(Event("failed"));
  ASSERT_TRUE(WaitUntil([&] { return notifier->stats().sent == 1; }));  // the 200 after the 503, cut short
  EXPECT_EQ(notifier->stats().retries, 1u);
  EXPECT_EQ(notifier->stats().last_error,
            fmt::format("http://{}: answered 503 Service Unavailable: {}", address(), std::string(200, 'x')));
}

TEST_F(NotifyTest, GoesThroughTheProxyNamedByHttpProxy) {
  Recorder proxy;
  ScopedEnv env("http_proxy", proxy.url().c_str());
  ScopedEnv no("no_proxy", nullptr);
  ScopedEnv no_upper("NO_PROXY", nullptr);
  // A host that does not resolve: only the proxy can deliver there.
  auto notifier = Notifier::Create(std::string("http://webhook.invalid:8080") + kPath, FastOptions());
  ASSERT_TRUE(notifier.ok());
  (*notifier)->Notify(Event("phase_change"));
  ASSERT_TRUE(WaitUntil([&] { return (*notifier)->stats().sent == 1; })) << (*notifier)->stats().last_error;
  ASSERT_EQ(proxy.requests().size(), 1u);
  EXPECT_EQ(proxy.requests()[0].path, kPath);  // sent as http://webhook.invalid:8080/services/...
  EXPECT_EQ(proxy.requests()[0].Header("host"), "webhook.invalid:8080");
  EXPECT_EQ(nlohmann::json::parse(proxy.requests()[0].body)["event"], "phase_change");
}

TEST_F(NotifyTest, NoProxyGoesDirect) {
  Recorder proxy;
  ScopedEnv env("http_proxy", proxy.url().c_str());
  ScopedEnv no("no_proxy", "127.0.0.1");
  auto notifier = Make();
  notifier->Notify(Event("phase_change"));
  ASSERT_TRUE(WaitUntil([&] { return notifier->stats().sent == 1; })) << notifier->stats().last_error;
  EXPECT_EQ(Requests().size(), 1u);
  EXPECT_TRUE(proxy.requests().empty());
}

TEST_F(NotifyTest, ErrorsNeverShowTheProxyPasswordNorThePath) {
  int port = ClosedPort();
  std::string proxy = fmt::format("http://user:hunter2@127.0.0.1:{}", port);
  ScopedEnv env("http_proxy", proxy.c_str());
  ScopedEnv no("no_proxy", nullptr);
  ScopedEnv no_upper("NO_PROXY", nullptr);
  auto notifier = Notifier::Create(std::string("http://webhook.invalid:8080") + kPath, FastOptions());
  ASSERT_TRUE(notifier.ok());
  (*notifier)->Notify(Event("failed"));
  ASSERT_TRUE(WaitUntil([&] { return (*notifier)->stats().failed == 1; }));
  std::string error = (*notifier)->stats().last_error;
  EXPECT_TRUE(error.starts_with("http://webhook.invalid:8080: cannot connect: ")) << error;
  EXPECT_EQ(error.find("hunter2"), std::string::npos) << error;
  EXPECT_EQ(error.find("secret-token"), std::string::npos) << error;
}

// ---- URLs and the body: pure functions ----

TEST(NotifyUrlTest, ParsesHttpAndHttpsUrls) {
  auto slack = ParseWebhookUrl("https://hooks.slack.com/services/T0/B0/XXXX");
  ASSERT_TRUE(slack.ok());
  EXPECT_TRUE(slack->tls);
  EXPECT_EQ(slack->host, "hooks.slack.com");
  EXPECT_EQ(slack->port, 443);
  EXPECT_EQ(slack->target, "/services/T0/B0/XXXX");
  EXPECT_EQ(slack->Origin(), "https://hooks.slack.com:443");
  EXPECT_EQ(slack->HostHeader(), "hooks.slack.com");

  auto v6 = ParseWebhookUrl("HTTP://[::1]:8080/hook?key=1#fragment");
  ASSERT_TRUE(v6.ok());
  EXPECT_FALSE(v6->tls);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->target, "/hook?key=1");
  EXPECT_EQ(v6->Origin(), "http://[::1]:8080");
  EXPECT_EQ(v6->HostHeader(), "[::1]:8080");

  auto bare = ParseWebhookUrl("http://example.com");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->target, "/");
  EXPECT_EQ(bare->port, 80);
}

TEST(NotifyUrlTest, BadUrlsAreRejectedNamingTheSetting) {
  const std::string tail = " (expected http[s]://HOST[:PORT]/PATH)";
  auto error = [](std::string_view url) { return ParseWebhookUrl(url).status(); };
  EXPECT_EQ(error("ftp://host/x").message(), "notify.webhook: scheme \"ftp\" is not http or https" + tail);
  EXPECT_EQ(error("hooks.slack.com/x").message(), "notify.webhook: not a URL" + tail);
  EXPECT_EQ(error("http:///x").message(), "notify.webhook: no host" + tail);
  EXPECT_EQ(error("http://h:0/x").message(), "notify.webhook: the port must be a number from 1 to 65535" + tail);
  EXPECT_EQ(error("http://h:99999/x").message(), "notify.webhook: the port must be a number from 1 to 65535" + tail);
  EXPECT_EQ(error("http://h:80x/x").message(), "notify.webhook: the port must be a number from 1 to 65535" + tail);
  EXPECT_EQ(error("http://user:pw@h/x").message(), "notify.webhook: user:password@ is not supported" + tail);
  EXPECT_EQ(error("http://[::1/x").message(), "notify.webhook: unbalanced brackets around the host" + tail);
  EXPECT_EQ(error("http://h\r\nX: y/x").message(), "notify.webhook: invalid character in the host" + tail);
  EXPECT_EQ(error("http://h/secret token").message(),
            "notify.webhook: the path holds spaces, control or non-ASCII characters" + tail);
  EXPECT_EQ(error("").code(), StatusCode::kInvalidArgument);

  auto created = Notifier::Create("https://hooks.slack.com/x y");
  EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(created.status().message().starts_with("notify.webhook: ")) << created.status().message();

  NotifierOptions options;
  options.ca_file = "/nonexistent/ca.pem";
  auto no_ca = Notifier::Create("https://hooks.slack.com/x", options);
  EXPECT_EQ(no_ca.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(no_ca.status().message().starts_with("notify.ca_file: cannot load \"/nonexistent/ca.pem\": "))
      << no_ca.status().message();
}

TEST(NotifyUrlTest, BodyIsOneJsonObjectWithTextFirst) {
  Notification n{.event = "lag_alert", .migration = "orders", .phase = "catching_up", .text = "lag 12.5 s\nover 10 s"};
  n.fields = {{"lag_seconds", 12.5}, {"text", "ignored"}};
  EXPECT_EQ(FormatNotification(n, 1795000000'123456),
            R"({"text":"[midflight] migration orders: lag 12.5 s over 10 s","event":"lag_alert",)"
            R"("migration":"orders","phase":"catching_up","time":"2026-11-18T11:06:40Z","lag_seconds":12.5})");
  n.migration.clear();
  n.fields = nlohmann::json::object();
  n.text = "bad \xff byte";
  EXPECT_EQ(FormatNotification(n, 0),
            R"({"text":"[midflight] bad )"
            "\xef\xbf\xbd"
            R"( byte","event":"lag_alert","migration":"","phase":"catching_up","time":"1970-01-01T00:00:00Z"})");
}

// ---- https: a self-signed certificate and a one-connection-at-a-time TLS receiver ----

class TlsReceiver {
 public:
  explicit TlsReceiver(const TestCert& cert) : ctx_(SSL_CTX_new(TLS_server_method())) {
    // OpenSSL's socket BIO writes with write(2): a client that hangs up
    // early (curl refusing the certificate) must not kill the test with
    // SIGPIPE while SSL_accept sends its session tickets.
    signal(SIGPIPE, SIG_IGN);
    BIO* bio = BIO_new_mem_buf(cert.cert_pem.data(), static_cast<int>(cert.cert_pem.size()));
    X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    bio = BIO_new_mem_buf(cert.key_pem.data(), static_cast<int>(cert.key_pem.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    SSL_CTX_use_certificate(ctx_, x);
    SSL_CTX_use_PrivateKey(ctx_, key);
    X509_free(x);
    EVP_PKEY_free(key);

    loopback::BoundSocket bound = loopback::BindLoopback(SOCK_CLOEXEC);
    listen_fd_ = bound.fd;
    port_ = bound.port;
    listen(listen_fd_, 8);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TlsReceiver() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
    SSL_CTX_free(ctx_);
  }

  int port() const { return port_; }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }
  std::vector<std::string> server_names() {
    std::lock_guard lock(mu_);
    return server_names_;
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      timeval tv{2, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) == 1) Exchange(ssl);
      ERR_clear_error();
      SSL_free(ssl);
      close(fd);
    }
  }

  // Reads one request, records its body, answers 200.
  void Exchange(SSL* ssl) {
    std::string request;
    char buf[4096];
    size_t head_end, length = 0;
    while (true) {
      head_end = request.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        size_t cl = request.find("Content-Length: ");
        if (cl != std::string::npos && cl < head_end) length = std::stoul(request.substr(cl + 16));
        if (request.size() >= head_end + 4 + length) break;
      }
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) return;
      request.append(buf, static_cast<size_t>(n));
    }
    {
      std::lock_guard lock(mu_);
      bodies_.push_back(request.substr(head_end + 4, length));
      const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
      server_names_.push_back(sni != nullptr ? sni : "");
    }
    std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    SSL_write(ssl, response.data(), static_cast<int>(response.size()));
    SSL_shutdown(ssl);
  }

  SSL_CTX* ctx_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> bodies_, server_names_;
  std::thread thread_;
};

// A CONNECT proxy, as HTTPS_PROXY names: one tunnel at a time, every target
// host mapped to 127.0.0.1 (so a host that does not resolve proves the proxy
// carried it); records each CONNECT target.
class ConnectProxy {
 public:
  ConnectProxy() {
    loopback::BoundSocket bound = loopback::BindLoopback(SOCK_CLOEXEC);
    listen_fd_ = bound.fd;
    port_ = bound.port;
    listen(listen_fd_, 8);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ConnectProxy() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  std::vector<std::string> targets() {
    std::lock_guard lock(mu_);
    return targets_;
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int client = accept(listen_fd_, nullptr, nullptr);
      if (client >= 0) Tunnel(client);
      if (client >= 0) close(client);
    }
  }

  void Tunnel(int client) {
    std::string head;
    char buf[16384];
    while (head.find("\r\n\r\n") == std::string::npos) {
      pollfd p{client, POLLIN, 0};
      if (poll(&p, 1, 2000) <= 0) return;
      ssize_t n = recv(client, buf, sizeof buf, 0);
      if (n <= 0) return;
      head.append(buf, static_cast<size_t>(n));
    }
    if (!head.starts_with("CONNECT ")) return;
    std::string target = head.substr(8, head.find(' ', 8) - 8);
    {
      std::lock_guard lock(mu_);
      targets_.push_back(target);
    }
    int port = std::stoi(target.substr(target.rfind(':') + 1));
    int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(upstream);
      return;
    }
    const std::string ok = "HTTP/1.1 200 Connection established\r\n\r\n";
    send(client, ok.data(), ok.size(), MSG_NOSIGNAL);
    pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    while (!stop_ && poll(fds, 2, 2000) > 0) {
      bool closed = false;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].revents == 0) continue;
        ssize_t n = recv(fds[i].fd, buf, sizeof buf, 0);
        if (n <= 0 || send(fds[1 - i].fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) closed = true;
      }
      if (closed) break;
    }
    close(upstream);
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> targets_;
  std::thread thread_;
};

TEST(NotifyHttpsTest, GoesThroughTheTunnelNamedByHttpsProxy) {
  TestCert cert = MakeSelfSigned("webhook", "DNS:webhook.invalid");
  TlsReceiver receiver(cert);
  ConnectProxy proxy;
  ScopedEnv lower("https_proxy", nullptr);
  ScopedEnv upper("HTTPS_PROXY", proxy.url().c_str());
  ScopedEnv no("no_proxy", nullptr);
  ScopedEnv no_upper("NO_PROXY", nullptr);
  NotifierOptions options = FastOptions();
  options.ca_file = WriteTempFile("proxied.pem", cert.cert_pem);
  auto notifier = Notifier::Create(fmt::format("https://webhook.invalid:{}/hook/secret", receiver.port()), options);
  ASSERT_TRUE(notifier.ok());
  (*notifier)->Notify(Event("phase_change"));
  ASSERT_TRUE(WaitUntil([&] { return (*notifier)->stats().sent + (*notifier)->stats().failed == 1; }));
  EXPECT_EQ((*notifier)->stats().sent, 1u) << (*notifier)->stats().last_error;
  EXPECT_EQ(proxy.targets(), (std::vector<std::string>{fmt::format("webhook.invalid:{}", receiver.port())}));
  EXPECT_EQ(receiver.server_names(), (std::vector<std::string>{"webhook.invalid"}));  // TLS end to end, not at the proxy
}

TEST(NotifyHttpsTest, DeliversToATrustedCertificateByIpAndByName) {
  TestCert cert = MakeSelfSigned("midflight test", "DNS:localhost,IP:127.0.0.1");
  TlsReceiver receiver(cert);
  NotifierOptions options = FastOptions();
  options.ca_file = WriteTempFile("trusted.pem", cert.cert_pem);
  for (std::string host : {"127.0.0.1", "localhost"}) {
    auto notifier = Notifier::Create(fmt::format("https://{}:{}/hook", host, receiver.port()), options);
    ASSERT_TRUE(notifier.ok()) << notifier.status().ToString();
    (*notifier)->Notify(Event("phase_change"));
    ASSERT_TRUE(WaitUntil([&] { return (*notifier)->stats().sent + (*notifier)->stats().failed == 1; }));
    EXPECT_EQ((*notifier)->stats().sent, 1u) << (*notifier)->stats().last_error;
  }
  ASSERT_EQ(receiver.bodies().size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(receiver.bodies()[0])["event"], "phase_change");
  EXPECT_EQ(receiver.server_names(), (std::vector<std::string>{"", "localhost"}));  // no SNI for an IP address
}

TEST(NotifyHttpsTest, UntrustedCertificateFailsWithoutRetrying) {
  TlsReceiver receiver(MakeSelfSigned("server", "IP:127.0.0.1"));
  NotifierOptions options = FastOptions();
  options.ca_file = WriteTempFile("other.pem", MakeSelfSigned("someone else", "IP:127.0.0.1").cert_pem);
  auto notifier = Notifier::Create(fmt::format("https://127.0.0.1:{}/hook", receiver.port()), options);
  ASSERT_TRUE(notifier.ok());
  (*notifier)->Notify(Event("failed"));
  ASSERT_TRUE(WaitUntil([&] { return (*notifier)->stats().failed == 1; }));
  NotifierStats stats = (*notifier)->stats();
  EXPECT_EQ(stats.retries, 0u);
  EXPECT_EQ(stats.last_error,
            fmt::format("https://127.0.0.1:{}: certificate not trusted: self-signed certificate", receiver.port()));
  EXPECT_TRUE(receiver.bodies().empty());
}

TEST(NotifyHttpsTest, CertificateForAnotherHostFails) {
  TestCert cert = MakeSelfSigned("midflight test", "DNS:example.invalid");
  TlsReceiver receiver(cert);
  NotifierOptions options = FastOptions();
  options.ca_file = WriteTempFile("elsewhere.pem", cert.cert_pem);
  auto notifier = Notifier::Create(fmt::format("https://127.0.0.1:{}/hook", receiver.port()), options);
  ASSERT_TRUE(notifier.ok());
  (*notifier)->Notify(Event("failed"));
  ASSERT_TRUE(WaitUntil([&] { return (*notifier)->stats().failed == 1; }));
  EXPECT_EQ((*notifier)->stats().last_error,
            fmt::format("https://127.0.0.1:{}: certificate not trusted: SSL: no alternative certificate subject name "
                        "matches target host name '127.0.0.1'",
                        receiver.port()));
  EXPECT_TRUE(receiver.bodies().empty());
}

TEST(NotifyHttpsTest, SystemStoreRefusesAnUnknownCa) {
  TlsReceiver receiver(MakeSelfSigned("throwaway CA", "IP:127.0.0.1"));
  auto notifier = Notifier::Create(fmt::format("https://127.0.0.1:{}/hook", receiver.port()), FastOptions());
  ASSERT_TRUE(notifier.ok());
  (*notifier)->Notify(Event("failed"));
  ASSERT_TRUE(WaitUntil([&] { return (*notifier)->stats().failed == 1; }));
  EXPECT_EQ((*notifier)->stats().retries, 0u);
  EXPECT_EQ((*notifier)->stats().last_error,
            fmt::format("https://127.0.0.1:{}: certificate not trusted: self-signed certificate", receiver.port()));
  EXPECT_TRUE(receiver.bodies().empty());
}

}  // namespace
}  // namespace midflight
