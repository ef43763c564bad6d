// The webhook notifier; see notify.h.
//
// One delivery attempt (Attempt) is one libcurl transfer, driven through a
// curl multi handle so that its waits also watch the wake pipe:
//
//   curl: proxy from the environment (http_proxy, HTTPS_PROXY, NO_PROXY)
//         → resolve → connect → TLS ≥ 1.2 (https: the system CA store or
//         ca_file, chain and host name verified) → POST, Connection: close
//         → status line and headers (1xx skipped)
//   body: the first kMaxErrorBody bytes kept for a non-2xx's error text;
//         beyond kMaxBody the transfer is cut (the status is already known)
//
// Redirects are not followed (a webhook URL must not bounce elsewhere): a 3xx
// is a failed delivery. The outcome is a Status whose code says what the
// sender does next: kOk delivered; kRetryCall (lost connection, timeout, 5xx,
// 429, 408) back off and try again; kCancelled (Stop() ran out of drain
// time) and anything else (4xx, 3xx, untrusted certificate, not HTTP) give up
// on the event.
#include "service/notify.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "base/uri.h"
#include "control/http.h"

namespace midflight {
namespace {

constexpr size_t kMaxErrorBody = 200;
constexpr size_t kMaxBody = 64 * 1024;

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

// Control characters become spaces; at most `max` bytes.
std::string OneLine(std::string_view s, size_t max = std::string::npos) {
  std::string out(s.substr(0, std::min(max, s.size())));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return out;
}

// curl_global_init is not thread-safe before curl 7.84's opt-in; once per process.
Status InitCurlOnce() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK) return Internal(fmt::format("curl_global_init: {}", curl_easy_strerror(rc)));
  return Status::Ok();
}

// A ca_file that cannot be read, or holds no PEM certificate, is refused at
// Create() rather than at the first event.
Status CheckCaFile(const std::string& ca_file) {
  std::ifstream in(ca_file);
  if (!in) {
    return InvalidArgument(fmt::format("notify.ca_file: cannot load \"{}\": {}", ca_file, std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return InvalidArgument(fmt::format("notify.ca_file: cannot load \"{}\": no PEM certificate in it", ca_file));
  }
  return Status::Ok();
}

// The proxies libcurl may take from the environment: their passwords are
// scrubbed from every error text.
std::vector<std::string> ProxyUrlsFromEnv() {
  std::vector<std::string> out;
  for (const char* name : {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') out.emplace_back(v);
  }
  return out;
}

using EasyPtr = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;
using MultiPtr = std::unique_ptr<CURLM, decltype(&curl_multi_cleanup)>;
using SlistPtr = std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)>;

// What the write callback keeps of the answer's body.
struct BodySink {
  std::string kept;  // the first kMaxErrorBody bytes
  size_t total = 0;
  bool cut = false;  // more than kMaxBody arrived: the transfer was stopped

  static size_t Write(char* data, size_t size, size_t count, void* user) {
    auto* sink = static_cast<BodySink*>(user);
    size_t n = size * count;
    if (sink->kept.size() < kMaxErrorBody) sink->kept.append(data, std::min(n, kMaxErrorBody - sink->kept.size()));
    sink->total += n;
    if (sink->total > kMaxBody) {
      sink->cut = true;
      return 0;  // CURLE_WRITE_ERROR: stop reading
    }
    return n;
  }
};

class NotifierImpl final : public Notifier {
 public:
  NotifierImpl(WebhookUrl url, NotifierOptions options, int wake_read, int wake_write)
      : url_(std::move(url)),
        origin_(url_.Origin()),
        full_url_(fmt::format("{}://{}{}", url_.tls ? "https" : "http", url_.HostHeader(), url_.target)),
        options_(std::move(options)),
        wake_read_(wake_read),
        wake_write_(wake_write),
        thread_([this] { Run(); }) {}

  ~NotifierImpl() override {
    Stop(options_.drain);
    close(wake_read_);
    close(wake_write_);
  }

  void Notify(const Notification& n) override {
    std::string body = FormatNotification(n, NowUnixMicros());
    uint64_t dropped = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        ++dropped_;
        return;
      }
      if (queue_.size() >= std::max<size_t>(options_.queue_capacity, 1)) {
        queue_.pop_front();
        dropped = ++dropped_;
      }
      queue_.push_back({n.event, std::move(body)});
    }
    cv_.notify_all();
    if (dropped == 1 || (dropped != 0 && dropped % 1000 == 0)) {
      LOG_WARN("notify: queue for {} is full, dropped the oldest event ({} dropped so far)", url_.Origin(), dropped);
    }
  }

  void Stop(std::chrono::milliseconds drain) override {
    std::lock_guard stop_lock(stop_mu_);
    if (!thread_.joinable()) return;
    {
      std::unique_lock lock(mu_);
      stopping_ = true;
      cv_.notify_all();
      if (!cv_.wait_for(lock, drain, [&] { return done_; })) {
        abort_ = true;
        cv_.notify_all();
        char byte = 1;
        if (write(wake_write_, &byte, 1) < 0) LOG_WARN("notify: cannot wake the sender: {}", std::strerror(errno));
      }
    }
    thread_.join();
  }

  NotifierStats stats() const override {
    NotifierStats s;
    s.sent = sent_;
    s.failed = failed_;
    s.dropped = dropped_;
    s.retries = retries_;
    std::lock_guard lock(mu_);
    s.last_error = last_error_;
    return s;
  }

 private:
  struct Item {
    std::string event;
    std::string body;
  };

  void Run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (abort_ || queue_.empty()) break;
      Item item = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      Deliver(item);
      lock.lock();
    }
    dropped_ += queue_.size();
    queue_.clear();
    done_ = true;
    cv_.notify_all();
  }

  void Deliver(const Item& item) {
    std::chrono::milliseconds backoff = options_.first_backoff;
    for (int attempt = 1;; ++attempt) {
      Status status = Attempt(item.body);
      if (status.ok()) {
        ++sent_;
        return;
      }
      {
        std::unique_lock lock(mu_);
        last_error_ = status.message();
        bool retry = status.code() == StatusCode::kRetryCall && attempt < options_.max_attempts;
        if (retry && !cv_.wait_for(lock, backoff, [&] { return abort_; })) {
          ++retries_;
          LOG_DEBUG("notify: {} event, attempt {} failed, retrying: {}", item.event, attempt, status.message());
          backoff = std::min(backoff * 2, options_.max_backoff);
          continue;
        }
      }
      ++failed_;
      LOG_WARN("notify: {} event not delivered after {} attempt(s): {}", item.event, attempt, status.message());
      return;
    }
  }

  Status Attempt(const std::string& body) {
    Status status = Transfer(body);
    if (status.ok()) return status;
    // libcurl's texts name hosts, not paths, and may quote a proxy URL from
    // the environment: keep the webhook's path and any password out.
    std::string message = ScrubSecrets(status.message(), ProxyUrlsFromEnv());
    if (url_.target.size() > 1) {
      for (size_t at; (at = message.find(url_.target)) != std::string::npos;) {
        message.replace(at, url_.target.size(), "/***");
      }
    }
    return Status(status.code(), message);
  }

  Status Transfer(const std::string& body) {
    EasyPtr easy(curl_easy_init(), curl_easy_cleanup);
    MultiPtr multi(curl_multi_init(), curl_multi_cleanup);
    if (easy == nullptr || multi == nullptr) return Internal("notify: cannot create a curl handle");
    curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json");
    if (list != nullptr) list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
    if (list != nullptr) list = curl_slist_append(list, "Connection: close");
    SlistPtr headers(list, curl_slist_free_all);
    if (headers == nullptr) return Internal("notify: cannot build the request headers");

    char error[CURL_ERROR_SIZE] = "";
    BodySink sink;
    CURL* e = easy.get();
    curl_easy_setopt(e, CURLOPT_URL, full_url_.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(e, CURLOPT_USERAGENT, "midflight");
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.attempt_timeout.count()));
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &BodySink::Write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (curl_multi_add_handle(multi.get(), e) != CURLM_OK) return Internal("notify: curl_multi_add_handle failed");

    CURLcode result = CURLE_OK;
    while (true) {
      int running = 0;
      CURLMcode mc = curl_multi_perform(multi.get(), &running);
      if (mc != CURLM_OK) return Internal(fmt::format("notify: curl_multi_perform: {}", curl_multi_strerror(mc)));
      if (running == 0) {
        int left = 0;
        CURLMsg* msg = curl_multi_info_read(multi.get(), &left);
        if (msg != nullptr && msg->msg == CURLMSG_DONE) result = msg->data.result;
        break;
      }
      curl_waitfd wake{wake_read_, CURL_WAIT_POLLIN, 0};
      // curl bounds the wait by its own timers (connect, the attempt's timeout).
      mc = curl_multi_poll(multi.get(), &wake, 1, 1000, nullptr);
      if (mc != CURLM_OK) return Internal(fmt::format("notify: curl_multi_poll: {}", curl_multi_strerror(mc)));
      if (wake.revents != 0) return Cancelled(fmt::format("{}: stopped {}", origin_, Stage(e)));
    }
    curl_multi_remove_handle(multi.get(), e);

    if (result != CURLE_OK && !(result == CURLE_WRITE_ERROR && sink.cut)) return TransferError(e, result, error);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) return Status::Ok();
    std::string message =
        fmt::format("{}: answered {} {}", origin_, status, http::ReasonPhrase(static_cast<int>(status)));
    if (!sink.kept.empty()) message += ": " + OneLine(sink.kept, kMaxErrorBody);
    if (status >= 500 || status == 429 || status == 408) return RetryCall(message);
    return OperatorError(message);
  }

  // Where a transfer stood when it was stopped.
  std::string Stage(CURL* e) const {
    curl_off_t connected = 0, tls_done = 0;
    curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &connected);
    curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &tls_done);
    if (connected == 0) return "connecting";
    if (url_.tls && tls_done == 0) return "in the TLS handshake";
    return "waiting for the answer";
  }

  // A failed transfer as a Status: kRetryCall for what may pass (resolution,
  // connection, timeout, a lost connection), kOperator for what will not
  // (an untrusted certificate, an answer that is not HTTP).
  Status TransferError(CURL* e, CURLcode result, const char* error) const {
    std::string detail = *error != '\0' ? OneLine(error) : curl_easy_strerror(result);
    long os_errno = 0;
    curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);
    switch (result) {
      case CURLE_COULDNT_RESOLVE_HOST:
        return RetryCall(fmt::format("{}: cannot resolve the host: {}", origin_, detail));
      case CURLE_COULDNT_RESOLVE_PROXY:
        return RetryCall(fmt::format("{}: cannot resolve the proxy: {}", origin_, detail));
      case CURLE_COULDNT_CONNECT:
        return RetryCall(fmt::format("{}: cannot connect: {}", origin_,
                                     os_errno != 0 ? std::strerror(static_cast<int>(os_errno)) : detail));
      case CURLE_OPERATION_TIMEDOUT: return RetryCall(fmt::format("{}: timed out: {}", origin_, detail));
      case CURLE_PEER_FAILED_VERIFICATION: {
        constexpr std::string_view kPrefix = "SSL certificate problem: ";
        if (detail.starts_with(kPrefix)) detail.erase(0, kPrefix.size());
        return OperatorError(fmt::format("{}: certificate not trusted: {}", origin_, detail));
      }
      case CURLE_SSL_CACERT_BADFILE:
        return OperatorError(fmt::format("{}: cannot load the CA certificates: {}", origin_, detail));
      case CURLE_WEIRD_SERVER_REPLY:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return OperatorError(fmt::format("{}: answered something that is not HTTP/1.1: {}", origin_, detail));
      case CURLE_GOT_NOTHING: return RetryCall(fmt::format("{}: connection closed before the answer", origin_));
      case CURLE_SSL_CONNECT_ERROR:
        return RetryCall(fmt::format("{}: TLS error in the handshake: {}", origin_, detail));
      default: return RetryCall(fmt::format("{}: {}", origin_, detail));
    }
  }

  const WebhookUrl url_;
  const std::string origin_;    // scheme://host:port, safe to log
  const std::string full_url_;  // holds the secret path: never log it
  const NotifierOptions options_;
  const int wake_read_;  // becomes readable when Stop() runs out of drain time
  const int wake_write_;
  std::mutex stop_mu_;     // one Stop() at a time
  mutable std::mutex mu_;  // guards what follows, up to the atomics
  std::condition_variable cv_;
  std::deque<Item> queue_;  // GUARDED_BY(mu_)
  bool stopping_ = false;   // GUARDED_BY(mu_)
  bool abort_ = false;      // GUARDED_BY(mu_)
  bool done_ = false;       // GUARDED_BY(mu_): the sender has left Run()
  std::string last_error_;  // GUARDED_BY(mu_)
  std::atomic<uint64_t> sent_{0}, failed_{0}, dropped_{0}, retries_{0};
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace

std::string WebhookUrl::Origin() const {
  bool v6 = host.find(':') != std::string::npos;
  return fmt::format("{}://{}{}{}:{}", tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

std::string WebhookUrl::HostHeader() const {
  bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  if (port != (tls ? 443 : 80)) h += ":" + std::to_string(port);
  return h;
}

Result<WebhookUrl> ParseWebhookUrl(std::string_view url) {
  auto bad = [](std::string_view why) {
    return InvalidArgument(fmt::format("notify.webhook: {} (expected http[s]://HOST[:PORT]/PATH)", why));
  };
  WebhookUrl u;
  size_t sep = url.find("://");
  if (sep == std::string_view::npos) return bad("not a URL");
  std::string scheme = OneLine(url.substr(0, sep), 16);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](char c) { return std::tolower(c); });
  if (scheme != "http" && scheme != "https") return bad(fmt::format("scheme \"{}\" is not http or https", scheme));
  u.tls = scheme == "https";

  std::string_view rest = url.substr(sep + 3);
  size_t path_at = std::min(rest.find_first_of("/?#"), rest.size());
  std::string_view authority = rest.substr(0, path_at);
  std::string_view target = rest.substr(path_at);
  target = target.substr(0, target.find('#'));
  if (authority.find('@') != std::string_view::npos) return bad("user:password@ is not supported");

  std::string_view port;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unbalanced brackets around the host");
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return bad("unexpected text after the host");
    if (!after.empty()) port = after.substr(1);
    unsigned char ip[16];
    if (inet_pton(AF_INET6, u.host.c_str(), ip) != 1) return bad("invalid IPv6 address");
  } else {
    size_t colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    if (!std::all_of(u.host.begin(), u.host.end(), IsHostChar)) return bad("invalid character in the host");
  }
  if (u.host.empty()) return bad("no host");
  u.port = u.tls ? 443 : 80;
  if (port.data() != nullptr) {
    bool digits = !port.empty() && port.size() <= 5 &&
                  std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    u.port = digits ? std::stoi(std::string(port)) : 0;
    if (u.port < 1 || u.port > 65535) return bad("the port must be a number from 1 to 65535");
  }
  if (!std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return bad("the path holds spaces, control or non-ASCII characters");
  }
  u.target = target.empty() ? "/" : target.starts_with('?') ? "/" + std::string(target) : std::string(target);
  return u;
}

std::string FormatNotification(const Notification& n, int64_t unix_micros) {
  std::string text = "[midflight] ";
  if (!n.migration.empty()) text += "migration " + n.migration + ": ";
  text += n.text;
  nlohmann::ordered_json body = {
      {"text", OneLine(text)},           {"event", n.event}, {"migration", n.migration}, {"phase", n.phase},
      {"time", IsoUtc(unix_micros)},
  };
  if (n.fields.is_object()) {
    for (const auto& [key, value] : n.fields.items()) {
      if (!body.contains(key)) body[key] = value;
    }
  }
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<std::unique_ptr<Notifier>> Notifier::Create(const std::string& url, NotifierOptions options) {
  ASSIGN_OR_RETURN(WebhookUrl parsed, ParseWebhookUrl(url));
  if (parsed.tls && !options.ca_file.empty()) RETURN_IF_ERROR(CheckCaFile(options.ca_file));
  RETURN_IF_ERROR(InitCurlOnce());
  int wake[2];
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) return Internal(fmt::format("pipe2(): {}", std::strerror(errno)));
  LOG_INFO("notify: events go to {}", parsed.Origin());
  return std::unique_ptr<Notifier>(
      std::make_unique<NotifierImpl>(std::move(parsed), std::move(options), wake[0], wake[1]));
}

}  // namespace midflight
