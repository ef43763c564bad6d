// The webhook notifier: posts one Slack-compatible JSON message per event
// (phase changes, failures, lag alerts, write pauses, throttling) to one
// http:// or https:// URL, through libcurl.
//
//   Notify() ──> FormatNotification ──> bounded queue ──> one sender thread:
//                 (stamped with the time)  (full: drop     libcurl: proxy from the environment
//                                           the oldest)      → connect → TLS (https) → POST
//                                                           2xx: sent; 5xx, 429, 408, lost
//                                                           connection, timeout: back off,
//                                                           retry; other answers (3xx: no
//                                                           redirects followed): failed
//
// The environment's proxy settings apply, as for curl(1): `http_proxy` for
// http:// URLs, `HTTPS_PROXY` / `https_proxy` (CONNECT) for https://,
// `NO_PROXY` / `no_proxy` for exceptions. https is verified against the
// system's CA store (/etc/ssl/certs) unless `ca_file` is given.
//
// Deliveries are in order: an event is delivered or given up before the next
// one is tried. The webhook URL is a secret (Slack's carry a token): logs,
// errors and stats name only scheme://host:port, never the path, and never a
// proxy's password.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/status.h"

namespace midflight {

struct Notification {
  std::string event;      // "phase_change", "failed", "lag_alert", "lag_recovered", "write_pause", "throttled", ...
  std::string migration;  // "orders"; may be empty for process-wide events
  std::string phase;      // the migration's phase when the event happened
  std::string text;       // one human line; line breaks become spaces
  nlohmann::json fields = nlohmann::json::object();  // extra members of the JSON body; must be an object
};

struct NotifierOptions {
  std::string ca_file;                              // https: PEM bundle to trust instead of the system store
  size_t queue_capacity = 1000;                     // events waiting; when full the oldest is dropped
  int max_attempts = 5;                             // per event, the first included
  std::chrono::milliseconds attempt_timeout{5000};  // proxy + connect + TLS + request + answer
  std::chrono::milliseconds first_backoff{500};     // before the 2nd attempt, doubled after each retry
  std::chrono::milliseconds max_backoff{8000};
  std::chrono::milliseconds drain{2000};  // what the destructor gives Stop()
};

struct NotifierStats {
  uint64_t sent = 0;       // events the receiver answered with 2xx
  uint64_t failed = 0;     // events given up: attempts exhausted, a 4xx, an untrusted certificate, or Stop()
  uint64_t dropped = 0;    // events never tried: the queue was full, or Notify()/Stop() after Stop() began
  uint64_t retries = 0;    // attempts after an event's first
  std::string last_error;  // the last failed attempt's error, "" when none; never holds the URL's path
};

// Thread-safe: Notify(), Stop() and stats() may be called from any thread.
class Notifier {
 public:
  // `url` is http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH (HOST a
  // name, an IPv4 address or [IPv6]). A bad URL → kInvalidArgument starting
  // "notify.webhook: "; an unreadable ca_file → kInvalidArgument starting
  // "notify.ca_file: ". Starts the sender thread.
  static Result<std::unique_ptr<Notifier>> Create(const std::string& url, NotifierOptions options = {});

  virtual ~Notifier() = default;  // Stop(options.drain)

  // Never blocks on the network: formats the body now (the event's time is
  // this call's) and queues it. After Stop() has begun the event is dropped.
  virtual void Notify(const Notification& notification) = 0;

  // Delivers what is queued for at most `drain` (retries and backoff
  // included), then aborts the attempt in flight, drops the rest (counted in
  // `dropped`) and joins the sender thread. Idempotent.
  virtual void Stop(std::chrono::milliseconds drain) = 0;

  virtual NotifierStats stats() const = 0;
};

// ---- Pure parts, for tests and for other senders. ----

struct WebhookUrl {
  bool tls = false;
  std::string host;    // without brackets
  int port = 0;        // 80 / 443 when the URL has none
  std::string target;  // "/services/T000/B000/XXXX?x=1": the secret part; never log it

  std::string Origin() const;      // "https://hooks.slack.com:443", "http://[::1]:8080": safe to log
  std::string HostHeader() const;  // "hooks.slack.com", "127.0.0.1:8080"
};

// Errors are kInvalidArgument starting "notify.webhook: " and never quote
// the path. A fragment ("#...") is dropped; user:password@ is refused.
Result<WebhookUrl> ParseWebhookUrl(std::string_view url);

// The JSON body for `n` at `unix_micros`:
//   {"text":"[midflight] migration orders: TEXT","event":"...","migration":"...",
//    "phase":"...","time":"2026-11-21T10:00:00Z", ...fields}
// Fields named like the fixed members are left out; invalid UTF-8 becomes U+FFFD.
std::string FormatNotification(const Notification& n, int64_t unix_micros);

}  // namespace midflight
