// The migration service: one process hosting any number of migrations
// (`midflight serve --listen HOST:PORT --state-dir DIR`), or exactly one
// (`midflight run SPEC.yaml`, the same machinery).
//
//   HTTP listener ─► Service::Handle ─┬─ /api/migrations…   JSON API (README.md)
//                                     ├─ /metrics           Prometheus text
//                                     ├─ /healthz, /readyz  alive; every migration's runner up
//                                     └─ /                  dashboard page
//   per migration: HostedMigration = spec + state store + runtime knobs and
//   throttle board + proxy (outlives pauses) + runner thread (the engine,
//   stopped by pause/abort/shutdown) + history ring + notifier.
//   one sampler thread: history (1 s), lag alerts, write-pause and throttle
//   notifications, heartbeat.
//
// State on disk: DIR/<name>/spec.yaml (mode 0600: it holds the passwords)
// and DIR/<name>/state.db. A restarted service resumes every migration as
// it stood: running ones run again from their checkpoints; paused, failed,
// aborted and completed ones stay so (a completed one keeps its proxy).
//
// Every transition goes through StateStore::SetPhase (the state machine's
// one door), with the request's actor in the audit trail.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/status.h"
#include "control/http.h"
#include "control/spec.h"

namespace midflight {

class HostedMigration;

struct ServiceOptions {
  std::string listen;     // "HOST:PORT" or "unix:PATH"
  std::string state_dir;  // serve: the root holding one directory per migration
  std::string token;      // required on every call that changes something
  std::string webhook;    // default webhook for migrations whose spec has none
  std::string tls_cert, tls_key;  // PEM files: serve the API over TLS (TCP listen only)
  // `midflight run`: one migration, kept in its spec's state_dir; the
  // process ends when its runner ends (failure or abort).
  bool single = false;
  std::string version, commit;  // for midflight_build_info (base/version.h; the binary's, not a library's)
};

class Service {
 public:
  // Listens and, for serve, resumes every migration found under state_dir.
  static Result<std::unique_ptr<Service>> Start(ServiceOptions options);
  ~Service();

  // `run`: hosts the spec's migration (created or resumed) and starts it.
  Status Adopt(const MigrationSpec& spec);
  // `run`: waits until the single migration's runner ends or `stop` is set;
  // returns the runner's outcome.
  Status WaitSingle(const std::atomic<bool>& stop);
  // Stops every runner (at a checkpoint), the proxies, the listener.
  void Stop();

  http::Response Handle(const http::Request& request);
  std::string address() const;

  // For the systemd watchdog (service/sd_notify.h): Ok while the service is
  // not stopping and its sampler loop (history, alerts, heartbeats) has
  // finished a round in the last `max_age`; else the reason. Any thread.
  Status Healthy(std::chrono::milliseconds max_age = std::chrono::seconds(10)) const;
  // One line for systemd's STATUS=: /readyz's answer ("ready: 2
  // migration(s)", or "not ready: migration x (failed) is not running: ...").
  std::string StatusLine();

 private:
  explicit Service(ServiceOptions options);
  Status Listen();
  Result<std::shared_ptr<HostedMigration>> Host(MigrationSpec spec, bool start);
  std::shared_ptr<HostedMigration> Find(const std::string& name);
  http::Response Create(const http::Request& request);
  http::Response List();
  http::Response Metrics();
  // /readyz: 200 when every hosted migration that should run does (paused
  // and aborted ones need not), else 503 naming each one that does not.
  http::Response Ready();
  http::Response Operate(const std::shared_ptr<HostedMigration>& m, const std::string& op, const http::Request& r);
  void Sample();

  ServiceOptions options_;
  std::unique_ptr<http::Server> server_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<HostedMigration>> migrations_;  // GUARDED_BY(mu_)
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> sampled_at_us_{0};  // NowUnixMicros() at the end of the sampler's last round
  std::thread sampler_;
};

// The API token for serve: --token-file, else $MIDFLIGHT_API_TOKEN, else
// DIR/api_token (created with a random token, mode 0600).
Result<std::string> LoadOrCreateToken(const std::string& token_file, const std::string& state_dir);

// The migration's status JSON (the shape of GET /api/migrations/NAME) read
// from its state store alone, for `status SPEC` when no process answers:
// nothing live (no throttle board, no history; the stored knobs and rates).
class StateStore;
std::string StoredStatusJson(const MigrationSpec& spec, StateStore& store, bool running);

}  // namespace midflight
