#include "loopback.h"
#include "test_certs.h"
#include "control/http.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace midflight::http {
namespace {

// Echoes what it was asked: "METHOD PATH ?QUERY q=<QueryParam q> body=BODY".
Response Echo(const Request& r) {
  if (r.path == "/throw") throw std::runtime_error("secret detail");
  if (r.path == "/json") return Json(201, R"({"ok":true})");
  return Text(200, r.method + " " + r.path + " ?" + r.query + " q=" + r.QueryParam("q") + " body=" + r.body);
}

std::string UniqueSocketPath() {
  static std::atomic<int> counter{0};
  return "/tmp/mf-http-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".sock";
}

// A raw client connection, for what Call() never sends.
class RawConn {
 public:
  explicit RawConn(const std::string& address) {
    if (address.starts_with("unix:")) {
      fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, address.c_str() + 5, sizeof addr.sun_path - 1);
      ok_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    } else {
      fd_ = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))));
      inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
      ok_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    }
    timeval tv{2, 0};  // a hung server fails the test instead of hanging it
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawConn() { close(fd_); }

  bool ok() const { return ok_; }
  void Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  // One response: the head and a Content-Length body.
  std::string ReadResponse() {
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return std::exchange(buf_, "");
    }
    size_t length = 0;
    size_t cl = buf_.find("Content-Length: ");
    if (cl != std::string::npos && cl < head_end) length = std::stoul(buf_.substr(cl + 16));
    while (buf_.size() < head_end + 4 + length) {
      if (!Fill()) break;
    }
    std::string response = buf_.substr(0, head_end + 4 + length);
    buf_.erase(0, response.size());
    return response;
  }
  // Everything until the server closes.
  std::string ReadAll() {
    while (Fill()) {
    }
    return std::exchange(buf_, "");
  }
  // True when the server closes the connection (EOF or reset) with nothing more to say.
  bool ClosedByServer() { return buf_.empty() && !Fill(); }

 private:
  bool Fill() {
    char tmp[4096];
    ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool ok_ = false;
  std::string buf_;
};

std::string Body(const std::string& response) {
  return response.substr(response.find("\r\n\r\n") + 4);
}

class HttpServerTest : public ::testing::Test {
 protected:
  void Start(const std::string& address = "127.0.0.1:0", ServerOptions options = {}) {
    auto server = Server::Listen(address, Echo, options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  std::string addr() const { return server_->address(); }

  std::unique_ptr<Server> server_;
};

TEST_F(HttpServerTest, GetAndPostOverTcp) {
  Start();
  EXPECT_TRUE(addr().starts_with("127.0.0.1:")) << addr();
  EXPECT_NE(addr(), "127.0.0.1:0");

  auto get = Call(addr(), "GET", "/v1/echo?q=a%20b+c&x=1");
  ASSERT_TRUE(get.ok()) << get.status().ToString();
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(get->body, "GET /v1/echo ?q=a%20b+c&x=1 q=a b c body=");

  auto post = Call(addr(), "POST", "/v1/echo", R"({"k":1})");
  ASSERT_TRUE(post.ok()) << post.status().ToString();
  EXPECT_EQ(post->body, R"(POST /v1/echo ? q= body={"k":1})");

  auto json = Call(addr(), "GET", "/json");
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  EXPECT_EQ(json->status, 201);
  EXPECT_EQ(json->content_type, "application/json");
  EXPECT_EQ(json->body, R"({"ok":true})");
}

TEST_F(HttpServerTest, GetAndPostOverUnixSocket) {
  std::string path = UniqueSocketPath();
  Start("unix:" + path);
  EXPECT_EQ(addr(), "unix:" + path);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto post = Call(addr(), "POST", "/p?q=%2Fx", "hello");
  ASSERT_TRUE(post.ok()) << post.status().ToString();
  EXPECT_EQ(post->body, "POST /p ?q=%2Fx q=/x body=hello");

  RawConn raw(addr());
  ASSERT_TRUE(raw.ok());
  raw.Send("GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(Body(raw.ReadResponse()), "GET /raw ? q= body=");

  server_->Stop();
  EXPECT_NE(stat(path.c_str(), &st), 0) << "Stop() leaves the socket file behind";
}

TEST_F(HttpServerTest, StaleUnixSocketIsReplacedLiveOneAndFilesAreNot) {
  std::string path = UniqueSocketPath();
  {  // A socket file whose server died.
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    close(fd);
  }
  Start("unix:" + path);

  auto second = Server::Listen("unix:" + path, Echo);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kOperator);
  EXPECT_EQ(second.status().message(), "cannot listen on unix:" + path + ": a server is already listening there");
  EXPECT_TRUE(Call(addr(), "GET", "/").ok()) << "the live server was disturbed";
  server_->Stop();

  std::ofstream(path) << "not a socket";
  auto on_file = Server::Listen("unix:" + path, Echo);
  ASSERT_FALSE(on_file.ok());
  EXPECT_EQ(on_file.status().message(), "cannot listen on unix:" + path + ": the path exists and is not a socket");
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << "a regular file was removed";
  unlink(path.c_str());
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  Start();
  RawConn raw(addr());
  ASSERT_TRUE(raw.ok());
  raw.Send("GET /one?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string first = raw.ReadResponse();
  EXPECT_TRUE(first.starts_with("HTTP/1.1 200 OK\r\n")) << first;
  EXPECT_NE(first.find("Connection: keep-alive\r\n"), std::string::npos) << first;
  EXPECT_EQ(Body(first), "GET /one ?q=1 q=1 body=");

  raw.Send("POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
  std::string second = raw.ReadResponse();
  EXPECT_NE(second.find("Connection: close\r\n"), std::string::npos) << second;
  EXPECT_EQ(Body(second), "POST /two ? q= body=abc");
  EXPECT_TRUE(raw.ClosedByServer());
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Start();
  RawConn raw(addr());
  raw.Send(
      "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"
      "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(Body(raw.ReadResponse()), "POST /a ? q= body=1");
  EXPECT_EQ(Body(raw.ReadResponse()), "GET /b ? q= body=");
}

TEST_F(HttpServerTest, MalformedRequestIs400AndCloses) {
  Start();
  for (std::string bad :
       {"GARBAGE\r\n\r\n", "GET /x HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", "GET /x HTTP/1.1\r\n\r\n"}) {
    RawConn raw(addr());
    raw.Send(bad);
    std::string response = raw.ReadResponse();
    EXPECT_TRUE(response.starts_with("HTTP/1.1 400 Bad Request\r\n")) << bad << " -> " << response;
    EXPECT_NE(response.find("Connection: close\r\n"), std::string::npos);
    EXPECT_TRUE(raw.ClosedByServer()) << bad;
  }
}

TEST_F(HttpServerTest, OversizeBodyIs413) {
  Start();
  RawConn raw(addr());
  raw.Send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 16777217\r\n\r\n");
  std::string response = raw.ReadResponse();
  EXPECT_TRUE(response.starts_with("HTTP/1.1 413 Content Too Large\r\n")) << response;
  EXPECT_EQ(Body(response), R"({"error":"request body of 16777217 bytes is larger than the limit of 16777216 bytes"})");
  EXPECT_TRUE(raw.ClosedByServer());
}

TEST_F(HttpServerTest, OversizeBodyFromTheClientGets413) {
  ServerOptions options;
  options.max_body_bytes = 1024;
  Start("127.0.0.1:0", options);
  auto r = Call(addr(), "POST", "/x", std::string(4096, 'b'));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 413);
}

TEST_F(HttpServerTest, OversizeHeadIs431) {
  Start();
  RawConn raw(addr());
  raw.Send("GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(70 * 1024, 'h') + "\r\n\r\n");
  EXPECT_TRUE(raw.ReadResponse().starts_with("HTTP/1.1 431 ")) << "no 431";
}

TEST_F(HttpServerTest, ChunkedRequestBodyIs411) {
  Start();
  RawConn raw(addr());
  raw.Send("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  EXPECT_TRUE(raw.ReadResponse().starts_with("HTTP/1.1 411 Length Required\r\n"));
}

TEST_F(HttpServerTest, HandlerExceptionIs500AndTheServerCarriesOn) {
  Start();
  auto r = Call(addr(), "GET", "/throw");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body, R"({"error":"internal server error"})");
  EXPECT_TRUE(Call(addr(), "GET", "/after").ok());
}

TEST_F(HttpServerTest, HeadAnswersWithoutBody) {
  Start();
  RawConn raw(addr());
  raw.Send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string all = raw.ReadAll();
  // The HEAD answer announces the length of "HEAD /h ? q= body=" and is
  // followed directly by the GET's answer.
  std::string head_answer = all.substr(0, all.find("\r\n\r\n") + 4);
  EXPECT_NE(head_answer.find("Content-Length: 18\r\n"), std::string::npos) << all;
  EXPECT_TRUE(all.substr(head_answer.size()).starts_with("HTTP/1.1 200 OK\r\n")) << all;
  EXPECT_TRUE(all.ends_with("GET /g ? q= body=")) << all;
}

TEST_F(HttpServerTest, ExpectContinueGets100BeforeTheBody) {
  Start();
  RawConn raw(addr());
  raw.Send("POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(raw.ReadResponse(), "HTTP/1.1 100 Continue\r\n\r\n");
  raw.Send("hi");
  EXPECT_EQ(Body(raw.ReadResponse()), "POST /c ? q= body=hi");
}

TEST_F(HttpServerTest, StopWithAnIdleConnectionReturnsPromptly) {
  Start();
  RawConn idle(addr());
  idle.Send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(idle.ReadResponse().starts_with("HTTP/1.1 200"));
  RawConn silent(addr());  // never sends a byte
  auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  EXPECT_TRUE(idle.ClosedByServer());
  EXPECT_TRUE(silent.ClosedByServer());
  server_->Stop();  // idempotent
}

TEST_F(HttpServerTest, IdleConnectionIsClosed) {
  ServerOptions options;
  options.idle_timeout_ms = 50;
  Start("127.0.0.1:0", options);
  RawConn raw(addr());
  raw.Send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(raw.ReadResponse().starts_with("HTTP/1.1 200"));
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(raw.ClosedByServer());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1000));
}

TEST(HttpClientTest, ClosedPortIsRetryCall) {
  int port = loopback::ClosedLoopbackPort();  // bound, never listened: nothing accepts on this port
  ASSERT_GT(port, 0);
  std::string address = "127.0.0.1:" + std::to_string(port);

  auto r = Call(address, "GET", "/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kRetryCall);
  EXPECT_EQ(r.status().message(), "cannot connect to " + address + ": connection refused");
}

TEST(HttpClientTest, MissingUnixSocketIsRetryCall) {
  std::string address = "unix:" + UniqueSocketPath();
  auto r = Call(address, "GET", "/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kRetryCall);
  EXPECT_EQ(r.status().message(), "cannot connect to " + address + ": no such socket");
}

TEST(HttpClientTest, SilentServerTimesOut) {
  std::string path = UniqueSocketPath();
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);  // listens, never accepts
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 4), 0);

  auto r = Call("unix:" + path, "GET", "/", "", {}, 50);
  close(fd);
  unlink(path.c_str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kRetryCall);
  EXPECT_EQ(r.status().message(), "timed out after 50 ms waiting for an answer from unix:" + path);
}

TEST(HttpClientTest, BadAddressesAreInvalidArgument) {
  for (std::string bad : {"localhost", "::1:80", "127.0.0.1:0", "127.0.0.1:99999", "unix:", ":80"}) {
    auto r = Call(bad, "GET", "/");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad << ": " << r.status().ToString();
  }
  auto r = Call("127.0.0.1:1", "GET", "no-slash");
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

HeadParse Parse(std::string_view head) {
  return ParseRequestHead(head, ServerOptions{});
}

TEST(HttpCodecTest, RequestHead) {
  HeadParse p = Parse("PUT /a/b?x=1&y HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a:  2 \r\nContent-Length: 5\r\n\r\n");
  ASSERT_EQ(p.error_status, 0) << p.error;
  EXPECT_EQ(p.head.method, "PUT");
  EXPECT_EQ(p.head.path, "/a/b");
  EXPECT_EQ(p.head.query, "x=1&y");
  EXPECT_EQ(p.head.headers.at("x-a"), "1, 2");
  EXPECT_EQ(p.head.content_length, 5u);
  EXPECT_TRUE(p.head.keep_alive);

  EXPECT_FALSE(Parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n").head.keep_alive);
  EXPECT_FALSE(Parse("GET / HTTP/1.0\r\n\r\n").head.keep_alive);
  EXPECT_TRUE(Parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").head.keep_alive);
  EXPECT_EQ(Parse("GET http://h:1/p?q HTTP/1.1\r\nHost: h\r\n\r\n").head.path, "/p");
  EXPECT_EQ(Parse("GET http://h:1 HTTP/1.1\r\nHost: h\r\n\r\n").head.path, "/");
}

TEST(HttpCodecTest, RequestHeadErrors) {
  auto status = [](std::string_view head) {
    HeadParse p = Parse(head);
    return std::to_string(p.error_status) + " " + p.error;
  };
  EXPECT_EQ(status("GET / HTTP/1.1\r\n\r\n"), "400 missing Host header");
  EXPECT_EQ(status("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), "400 malformed request line");
  EXPECT_EQ(status("GET x HTTP/1.1\r\nHost: h\r\n\r\n"), "400 malformed request target");
  EXPECT_EQ(status("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), "505 HTTP version HTTP/2.0 is not supported; use HTTP/1.1");
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
            "400 obsolete header line folding is not supported");
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), "400 invalid header name");
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n"), "400 more than one Host header");
  EXPECT_EQ(status("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n"), "400 bare CR or LF in a header line");
  EXPECT_EQ(status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            "400 conflicting Content-Length headers");
  EXPECT_EQ(status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"), "400 invalid Content-Length");
  EXPECT_EQ(status("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").substr(0, 4), "411 ");
}

TEST(HttpCodecTest, ResponseRoundTrip) {
  Response r = Json(404, R"({"error":"no"})");
  r.headers = {{"X-Id", "7"}, {"Content-Length", "99"}, {"Bad\r\nName", "v"}, {"X-Evil", "a\r\nInjected: 1"}};
  std::string wire = SerializeResponse(r, true, false);
  EXPECT_EQ(wire,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 14\r\n"
            "Connection: keep-alive\r\nX-Id: 7\r\n\r\n{\"error\":\"no\"}");
  auto head = ParseResponseHead(wire.substr(0, wire.find("\r\n\r\n") + 4));
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->status, 404);
  EXPECT_EQ(head->content_length, 14u);
  EXPECT_EQ(SerializeResponse(Json(204, "x"), false, false), "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(ParseResponseHead("SSH-2.0-OpenSSH\r\n\r\n").ok());
}

TEST(HttpHelpersTest, UrlAndJson) {
  EXPECT_EQ(UrlDecode("a%20b+c%2fd%zz%4"), "a b c/d%zz%4");
  EXPECT_EQ(UrlEncode("a b/c~é"), "a%20b%2Fc~%C3%A9");
  EXPECT_EQ(UrlDecode(UrlEncode("x=1&y=2 +")), "x=1&y=2 +");
  EXPECT_EQ(JsonEscape("a\"b\\c\nd\te\x01"), "a\\\"b\\\\c\\nd\\te\\u0001");
  EXPECT_EQ(JsonEscape("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(JsonEscape("bad\xff\xc3"), "bad\\ufffd\\ufffd");
  EXPECT_EQ(JsonEscape("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd");  // a UTF-16 surrogate is not UTF-8

  Request r;
  r.query = "a=1&q=x%20y&q=second&empty&k%20=v";
  EXPECT_EQ(r.QueryParam("q"), "x y");
  EXPECT_EQ(r.QueryParam("empty"), "");
  EXPECT_EQ(r.QueryParam("k "), "v");
  EXPECT_EQ(r.QueryParam("missing"), "");
  r.headers["x-a"] = "1";
  EXPECT_EQ(r.Header("x-a"), "1");
  EXPECT_EQ(r.Header("x-b"), std::nullopt);
}

// ---- TLS: a throwaway self-signed certificate for localhost and 127.0.0.1 ----

class HttpTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestCert cert = MakeSelfSigned("midflight api", "DNS:localhost,IP:127.0.0.1");
    cert_file_ = WriteFile("cert.pem", cert.cert_pem);
    key_file_ = WriteFile("key.pem", cert.key_pem);
  }
  void TearDown() override {
    for (const auto& f : files_) unlink(f.c_str());
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    std::string path = ::testing::TempDir() + "/mf-http-tls-" + std::to_string(getpid()) + "-" + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  ServerOptions TlsOptions() const {
    ServerOptions o;
    o.tls_cert_file = cert_file_;
    o.tls_key_file = key_file_;
    return o;
  }
  std::unique_ptr<Server> StartTls() {
    auto server = Server::Listen("127.0.0.1:0", Echo, TlsOptions());
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    return server.ok() ? std::move(server).value() : nullptr;
  }
  std::string ListenError(const std::string& address, const ServerOptions& options) {
    auto server = Server::Listen(address, Echo, options);
    EXPECT_EQ(server.status().code(), StatusCode::kInvalidArgument) << server.status().ToString();
    return server.status().message();
  }

  std::string cert_file_, key_file_;  // the certificate is its own CA
  std::vector<std::string> files_;
};

TEST_F(HttpTlsTest, HttpsCallsVerifyAgainstTheCaFile) {
  auto server = StartTls();
  ASSERT_NE(server, nullptr);
  std::string port = server->address().substr(server->address().rfind(':') + 1);
  for (std::string host : {"127.0.0.1", "localhost"}) {
    auto r = Call("https://" + host + ":" + port, "POST", "/x?q=1", "hello", {}, 5000, {.ca_file = cert_file_});
    ASSERT_TRUE(r.ok()) << host << ": " << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "POST /x ?q=1 q=1 body=hello");
  }
  std::string big(1 << 20, 'b');
  auto r = Call("https://" + server->address(), "PUT", "/big", big, {}, 5000, {.ca_file = cert_file_});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "PUT /big ? q= body=" + big);
}

TEST_F(HttpTlsTest, UnknownCaIsRefused) {
  auto server = StartTls();
  ASSERT_NE(server, nullptr);
  std::string address = "https://" + server->address();
  auto system_store = Call(address, "GET", "/", "", {}, 5000);
  EXPECT_EQ(system_store.status().code(), StatusCode::kOperator);
  EXPECT_EQ(system_store.status().message(), address + ": certificate not trusted: self-signed certificate");

  std::string other = WriteFile("other.pem", MakeSelfSigned("someone else", "IP:127.0.0.1").cert_pem);
  auto other_ca = Call(address, "GET", "/", "", {}, 5000, {.ca_file = other});
  EXPECT_EQ(other_ca.status().code(), StatusCode::kOperator);
  EXPECT_EQ(other_ca.status().message(), address + ": certificate not trusted: self-signed certificate");

  std::string port = server->address().substr(server->address().rfind(':') + 1);
  TestCert elsewhere = MakeSelfSigned("elsewhere", "DNS:example.invalid");
  ServerOptions options;
  options.tls_cert_file = WriteFile("elsewhere.pem", elsewhere.cert_pem);
  options.tls_key_file = WriteFile("elsewhere.key", elsewhere.key_pem);
  auto wrong_name = Server::Listen("127.0.0.1:0", Echo, options);
  ASSERT_TRUE(wrong_name.ok()) << wrong_name.status().ToString();
  auto mismatch =
      Call("https://" + (*wrong_name)->address(), "GET", "/", "", {}, 5000, {.ca_file = options.tls_cert_file});
  EXPECT_EQ(mismatch.status().code(), StatusCode::kOperator);
  EXPECT_EQ(mismatch.status().message(),
            "https://" + (*wrong_name)->address() + ": certificate not trusted: IP address mismatch");
}

TEST_F(HttpTlsTest, PlainHttpToTheTlsPortGetsAPlain400AndTheServerCarriesOn) {
  auto server = StartTls();
  ASSERT_NE(server, nullptr);
  RawConn conn(server->address());
  ASSERT_TRUE(conn.ok());
  conn.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string response = conn.ReadResponse();
  EXPECT_TRUE(response.starts_with("HTTP/1.1 400 Bad Request\r\n")) << response;
  EXPECT_EQ(Body(response), R"({"error":"this port speaks HTTPS: use https://)" + server->address() + R"(/"})");

  auto plain_client = Call(server->address(), "GET", "/", "", {}, 5000);
  ASSERT_TRUE(plain_client.ok()) << plain_client.status().ToString();
  EXPECT_EQ(plain_client->status, 400);
  auto r = Call("https://" + server->address(), "GET", "/json", "", {}, 5000, {.ca_file = cert_file_});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 201);
}

TEST_F(HttpTlsTest, HttpsCallToAPlainServerFailsInOneLine) {
  auto server = Server::Listen("127.0.0.1:0", Echo);
  ASSERT_TRUE(server.ok());
  std::string address = "https://" + (*server)->address();
  auto r = Call(address, "GET", "/", "", {}, 5000, {.ca_file = cert_file_});
  EXPECT_EQ(r.status().code(), StatusCode::kOperator) << r.status().ToString();
  EXPECT_EQ(r.status().message(), address + " closed the connection in the TLS handshake (does it speak https?)");
}

TEST_F(HttpTlsTest, BadFilesAndUnixSocketsAreRefusedNamingThem) {
  std::string sock = UniqueSocketPath();
  EXPECT_EQ(ListenError("unix:" + sock, TlsOptions()),
            "TLS is for a TCP listener; unix:" + sock + " is a unix socket (its file mode already keeps others out)");
  ServerOptions missing = TlsOptions();
  missing.tls_cert_file = "/nonexistent/cert.pem";
  EXPECT_EQ(ListenError("127.0.0.1:0", missing),
            "cannot read the TLS certificate /nonexistent/cert.pem: No such file or directory");
  ServerOptions wrong_key = TlsOptions();
  wrong_key.tls_key_file = WriteFile("other.key", MakeSelfSigned("other", "IP:127.0.0.1").key_pem);
  EXPECT_EQ(ListenError("127.0.0.1:0", wrong_key),
            "the TLS key " + wrong_key.tls_key_file + " does not match the certificate " + cert_file_);
  ServerOptions not_pem = TlsOptions();
  not_pem.tls_cert_file = WriteFile("garbage.pem", "not a certificate\n");
  EXPECT_TRUE(ListenError("127.0.0.1:0", not_pem)
                  .starts_with("cannot load the TLS certificate " + not_pem.tls_cert_file + ": "));
  ServerOptions half;
  half.tls_cert_file = cert_file_;
  EXPECT_EQ(ListenError("127.0.0.1:0", half), "TLS needs both a certificate and a key file");
}

}  // namespace
}  // namespace midflight::http
