#include "service/service.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <shared_mutex>
#include <sstream>

#include "base/clock.h"
#include "base/log.h"
#include "base/parse.h"
#include "base/uri.h"
#include "control/operations.h"
#include "control/runner.h"
#include "engines/engine.h"
#include "control/phase.h"
#include "control/runtime.h"
#include "control/state_store.h"
#include "control/verify_job.h"
#include "pipeline/conflicts.h"
#include "proxy/traffic_switch.h"
#include "service/notify.h"
#include "service/process_metrics.h"
#include "service/report.h"
#include "service/prometheus.h"

namespace midflight {

extern const char* const kDashboardHtml;
extern const std::size_t kDashboardHtml_size;

using json = nlohmann::json;

namespace {

constexpr size_t kHistorySamples = 3600;  // one per second: the last hour

http::Response JsonError(int status, const std::string& message) {
  return http::Json(status, json{{"error", message}}.dump());
}
http::Response JsonOk(int status, const json& body) { return http::Json(status, body.dump()); }

// One read of a migration's stored state for an answer or a sample: every
// key-value metric and the tables, instead of a query per field.
struct View {
  std::map<std::string, std::string> kv;
  std::vector<TableRow> tables;
  Phase phase = Phase::kCreated;
  int64_t rows_copied = 0, estimated_rows = 0;
  ReplicationStatus repl;  // live from the runtime's board while it publishes, else the store's copy
  std::string conflicts;   // JSON (pipeline/conflicts.h): live while running, else the store's copy

  std::string Str(const char* key) const {
    auto it = kv.find(key);
    return it == kv.end() ? std::string() : it->second;
  }
  int64_t Int(const char* key) const { return std::atoll(Str(key).c_str()); }
  double Real(const char* key) const { return std::atof(Str(key).c_str()); }
};

// `runtime` (optional): the hosted migration's, whose live values win over
// the store's copy while its runner publishes them.
View Read(StateStore& store, const MigrationRuntime* runtime = nullptr, bool running = false) {
  View v;
  v.kv = store.GetAll();
  v.tables = store.Tables();
  v.phase = ParsePhase(v.Str("phase")).value_or(Phase::kCreated);
  v.repl = ReplicationStatus::FromStore([&v](const char* k) { return v.Str(k); });
  v.conflicts = v.Str("conflicts");
  if (runtime && running) {
    if (auto live = runtime->status.Latest(NowUnixMicros() - 3'000'000)) v.repl = *live;
    v.conflicts = runtime->conflicts.ToJson();
  }
  for (const auto& t : v.tables) {
    v.rows_copied += t.rows_copied;
    v.estimated_rows += t.est_rows;
  }
  return v;
}

std::vector<std::string> SplitList(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);)
    if (!part.empty()) out.push_back(part);
  return out;
}

std::string AllowedList(Phase to) { return WhereAllowed(to); }

}  // namespace

struct HistorySample {
  double t = 0;
  int64_t rows_copied = 0;
  double rows_per_s = 0, changes_per_s = 0;
  int64_t lag_bytes = 0;
  double lag_seconds = 0;
};

// One hosted migration. Its runner thread runs the engine; everything else
// outlives the runner.
class HostedMigration {
 public:
  MigrationSpec spec;
  const EngineKind* engine = nullptr;  // from the spec's URIs
  std::unique_ptr<StateStore> store;
  int lock_fd = -1;
  std::unique_ptr<MigrationRuntime> runtime;
  std::unique_ptr<proxy::TrafficSwitch> proxy;
  std::unique_ptr<Notifier> notifier;

  std::mutex op_mu;  // pause, resume, abort, delete: one at a time

  ~HostedMigration() {
    StopRunner();
    if (proxy) proxy->Stop();
    if (notifier) notifier->Stop(std::chrono::milliseconds(2000));
    if (lock_fd >= 0) ::close(lock_fd);
  }

  void StartRunner() {
    std::lock_guard lock(run_mu_);
    if (running_) return;
    if (runner_.joinable()) runner_.join();
    stop_ = false;
    stopping_ = StopSource();  // a fresh signal per run: a stopped one stays stopped
    running_ = true;
    runner_ = std::thread([this, stopping = stopping_] {
      ScopedLogContext log_context(spec.name);
      RunContext ctx{spec, *store, *runtime, stop_, stopping, proxy.get(),
                     [this](TrafficHandler h) {
                       std::unique_lock l(ops_mu_);
                       ops_ = std::move(h);
                     }};
      Status st = RunMigration(*engine, ctx);
      if (!st.ok()) {
        st = Status(st.code(), store->Scrub(st.message()));
        LOG_ERROR("migration {}: {}", spec.name, st.message());
      }
      {
        std::lock_guard l(status_mu_);
        outcome_ = st;
      }
      running_ = false;
    });
  }

  void StopRunner() {
    std::lock_guard lock(run_mu_);
    stop_ = true;
    stopping_.Stop();
    if (runner_.joinable()) runner_.join();
    running_ = false;
  }

  bool running() const { return running_; }
  Status outcome() {
    std::lock_guard l(status_mu_);
    return outcome_;
  }

  // The traffic operations of the running engine (PgCutover::Handle), or a 409.
  Result<TrafficResult> CallOperation(const TrafficRequest& r) {
    std::shared_lock l(ops_mu_);
    if (!ops_) {
      Phase p = store->phase();
      return OperatorError(fmt::format("migration {} is {}{}; {} needs the migration running and replicating",
                                       spec.name, PhaseName(p),
                                       p == Phase::kPaused || p == Phase::kFailed ? " (resume it first)" : "",
                                       TrafficOpName(r.op)));
    }
    return ops_(r);
  }

  void AddSample(HistorySample s) {
    std::lock_guard l(hist_mu_);
    history_.push_back(s);
    while (history_.size() > kHistorySamples) history_.pop_front();
  }
  std::vector<HistorySample> History() {
    std::lock_guard l(hist_mu_);
    return {history_.begin(), history_.end()};
  }
  double LatestRowsPerS() {
    std::lock_guard l(hist_mu_);
    return history_.empty() ? 0 : history_.back().rows_per_s;
  }

  void Notify(const std::string& event, const std::string& text, json fields = json::object()) {
    if (!notifier) return;
    Notification n;
    n.event = event;
    n.migration = spec.name;
    n.phase = PhaseName(store->phase());
    n.text = text;
    n.fields = std::move(fields);
    notifier->Notify(n);
  }

  // Sampler-thread state.
  int64_t last_rows = -1;
  double last_t = 0;
  double lag_over_since = 0;
  bool lag_alerted = false;
  bool throttle_seen = false;
  double throttle_notified_at = 0;
  bool throttle_event_seen = false;
  double throttle_event_at = 0;

 private:
  std::mutex run_mu_;
  std::thread runner_;
  // A run stops when both are set (StopRunner): the flag for the code that
  // polls it, the signal for the waits that wake at once.
  std::atomic<bool> stop_{false}, running_{false};
  StopSource stopping_;  // replaced under run_mu_ before each run
  std::mutex status_mu_;
  Status outcome_;  // GUARDED_BY(status_mu_)
  std::shared_mutex ops_mu_;
  TrafficHandler ops_;  // GUARDED_BY(ops_mu_)
  std::mutex hist_mu_;
  std::deque<HistorySample> history_;  // GUARDED_BY(hist_mu_)
};

namespace {

// What a status answer knows besides the state store: a hosted migration's
// live parts, or nothing (`status SPEC` read from the store alone).
struct Live {
  bool running = false;
  std::optional<double> rows_per_s;             // the sampler's; else the tables' own rates
  const MigrationRuntime* runtime = nullptr;    // throttle board and knobs; else none and the stored knobs
  const proxy::TrafficSwitch* proxy = nullptr;  // where writes and reads go now; else from the phase
  std::vector<HistorySample> history;
};

// The migration as the API shows it. Secrets: URIs only in redacted form.
json SummaryJson(const MigrationSpec& spec, const View& v, const Live& live) {
  json j;
  j["name"] = spec.name;
  auto engine = EngineFor(spec);
  j["engine"] = engine.ok() ? std::string((*engine)->name()) : v.Str("engine");
  j["phase"] = PhaseName(v.phase);
  const bool held = v.phase == Phase::kPaused || v.phase == Phase::kFailed;
  j["resume_phase"] = held ? v.Str("resume_phase") : "";
  j["running"] = live.running;
  j["error"] = v.phase == Phase::kFailed ? v.Str("error") : "";
  j["source"] = RedactUri(spec.source);
  j["target"] = RedactUri(spec.target);
  j["rows_copied"] = v.rows_copied;
  j["estimated_rows"] = v.estimated_rows;
  double table_rates = 0;
  for (const auto& t : v.tables) table_rates += t.rows_per_s;
  j["rows_per_s"] = live.rows_per_s.value_or(table_rates);
  j["lag_bytes"] = v.repl.lag_bytes;
  j["lag_seconds"] = v.repl.lag_seconds;
  j["throttled"] = live.runtime && live.runtime->throttle.active();
  j["conflicts"] = json::parse(ConflictSummaryJson(v.conflicts))["total"];
  return j;
}

json DetailJson(const MigrationSpec& spec, StateStore& s, const Live& live) {
  const View v = Read(s, live.runtime, live.running);
  json j = SummaryJson(spec, v, live);
  j["tables"] = json::array();
  for (const auto& t : v.tables)
    j["tables"].push_back({{"name", t.name},
                           {"state", t.state},
                           {"rows_copied", t.rows_copied},
                           {"estimated_rows", t.est_rows},
                           {"bytes_copied", t.bytes_copied},
                           {"chunks_done", t.chunks_done},
                           {"chunks_total", t.chunks_total},
                           {"rows_per_s", t.rows_per_s}});
  j["replication"] = {{"changes_applied", v.repl.changes_applied},
                      {"changes_per_s", v.repl.changes_per_s},
                      {"apply_retries", v.repl.apply_retries},
                      {"source_position", v.repl.source_position},
                      {"applied_position", v.repl.applied_position},
                      {"restart_position", v.Str("restart_pos").empty() && v.repl.restart_position == 0
                                               ? std::string()
                                               : std::to_string(v.repl.restart_position)}};
  // Per partition: its queue and lag; through Kafka also the producer's side,
  // and with apply workers its holder and the consumer's side (control/status.h).
  if (!v.repl.partitions_json.empty()) {
    json parts = json::parse(v.repl.partitions_json, nullptr, /*allow_exceptions=*/false);
    if (parts.is_array()) j["replication"]["partitions"] = std::move(parts);
  }
  j["reverse"] = {{"lag_bytes", v.repl.reverse_lag_bytes},
                  {"lag_seconds", v.repl.reverse_lag_seconds},
                  {"changes_applied", v.repl.reverse_changes_applied},
                  {"old_side_writes", v.repl.old_side_writes},
                  {"applied_position", v.repl.reverse_applied_position}};
  Phase p = v.phase;
  if (p == Phase::kPaused || p == Phase::kFailed) p = ParsePhase(v.Str("resume_phase")).value_or(Phase::kCreated);
  int64_t stored_percent = 0;
  if (!ParseI64(v.Str("read_percent"), &stored_percent)) stored_percent = 0;  // absent or malformed
  j["proxy"] = {{"read_write", v.Str("proxy_rw")},
                {"read_only", v.Str("proxy_ro")},
                {"writes_to", live.proxy ? proxy::SideName(live.proxy->write_side())
                                         : (p == Phase::kWritesSwitched || p == Phase::kCompleted ? "target" : "source")},
                {"read_percent", live.proxy ? live.proxy->read_percent() : stored_percent},
                {"clients", v.repl.proxy_clients}};
  if (live.proxy) {
    proxy::ProxyStats ps = live.proxy->stats();
    j["proxy"]["clients"] = ps.clients_rw + ps.clients_ro;
  }
  j["verify"] = {{"state", v.Str("verify_state")},
                 {"clean", v.Str("verify_clean") == "true"},
                 {"summary", v.Str("verify_summary")}};
  // The background verification (control/verify_job.h) and the last reports.
  j["verify_job"] = json::parse(VerifyJob::ShowJson(s));
  j["untracked_tables"] = json::array();
  for (const auto& t : SplitList(v.Str("untracked_tables"), ',')) j["untracked_tables"].push_back(t);
  j["write_pauses_ms"] = json::array();
  for (const auto& w : SplitList(v.Str("write_pauses_ms"), ',')) j["write_pauses_ms"].push_back(std::atof(w.c_str()));
  // Throttling only a running process knows.
  j["throttle"] = json::parse(live.runtime ? live.runtime->throttle.ToJson() : ThrottleBoard().ToJson());
  // Apply conflicts (pipeline/conflicts.h), live or as the runner last saved them.
  j["conflicts"] = json::parse(ConflictSummaryJson(v.conflicts));
  if (live.runtime) {
    j["knobs"] = json::parse(live.runtime->knobs.ToJson());
  } else {
    Knobs knobs(spec);
    (void)knobs.LoadOverrides(v.Str("knobs"));  // as a hosted run does: a bad stored value leaves the spec's
    j["knobs"] = json::parse(knobs.ToJson());
  }
  j["events"] = json::array();
  for (const auto& e : s.Events(50))
    j["events"].push_back({{"time", e.time}, {"phase", e.phase}, {"actor", e.actor}, {"message", e.message}});
  j["history"] = json::array();
  for (const auto& h : live.history)
    j["history"].push_back({{"t", h.t},
                            {"rows_copied", h.rows_copied},
                            {"rows_per_s", h.rows_per_s},
                            {"changes_per_s", h.changes_per_s},
                            {"lag_bytes", h.lag_bytes},
                            {"lag_seconds", h.lag_seconds}});
  return j;
}

Live LiveOf(HostedMigration& m, bool with_history) {
  Live l;
  l.running = m.running();
  l.rows_per_s = m.LatestRowsPerS();
  l.runtime = m.runtime.get();
  l.proxy = m.proxy.get();
  if (with_history) l.history = m.History();
  return l;
}

json Summary(HostedMigration& m, const View& v) { return SummaryJson(m.spec, v, LiveOf(m, false)); }

json Detail(HostedMigration& m) { return DetailJson(m.spec, *m.store, LiveOf(m, true)); }

// The actor the audit trail names: "api@PEER", or "NAME (api@PEER)" with X-Midflight-Actor.
std::string ActorOf(const http::Request& r) {
  std::string who;
  if (auto h = r.Header("x-midflight-actor")) {
    for (char c : *h)
      if (c >= 0x20 && c < 0x7f && who.size() < 64) who += c;
  }
  std::string api = "api@" + r.peer;
  return who.empty() ? api : fmt::format("{} ({})", who, api);
}

// The reason given with an operation: ?reason=… or {"reason": "…"}.
std::string ReasonOf(const http::Request& r) {
  std::string reason = r.QueryParam("reason");
  if (reason.empty() && !r.body.empty()) {
    auto j = json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("reason") && j["reason"].is_string()) reason = j["reason"].get<std::string>();
  }
  return reason;
}

bool TokenMatches(const std::string& want, const std::string& got) {
  return want.size() == got.size() && CRYPTO_memcmp(want.data(), got.data(), want.size()) == 0;
}

Status WriteSecretFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return OperatorError(fmt::format("cannot write {}", path));
  ::fchmod(fd, 0600);
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  return ok ? Status::Ok() : OperatorError(fmt::format("cannot write {}", path));
}

}  // namespace

Result<std::string> LoadOrCreateToken(const std::string& token_file, const std::string& state_dir) {
  auto read = [](const std::string& path) -> Result<std::string> {
    std::ifstream in(path);
    if (!in) return OperatorError(fmt::format("cannot read the API token file {}", path));
    std::string t;
    std::getline(in, t);
    while (!t.empty() && (t.back() == '\r' || t.back() == ' ')) t.pop_back();
    if (t.size() < 16) return OperatorError(fmt::format("API token in {} is shorter than 16 characters", path));
    return t;
  };
  if (!token_file.empty()) return read(token_file);
  if (const char* env = std::getenv("MIDFLIGHT_API_TOKEN"); env && *env) {
    if (std::strlen(env) < 16) return OperatorError("MIDFLIGHT_API_TOKEN is shorter than 16 characters");
    return std::string(env);
  }
  std::string path = state_dir + "/api_token";
  if (std::filesystem::exists(path)) return read(path);
  unsigned char raw[24];
  if (RAND_bytes(raw, sizeof raw) != 1) return Internal("cannot make a random API token");
  std::string token;
  for (unsigned char c : raw) token += fmt::format("{:02x}", c);
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  RETURN_IF_ERROR(WriteSecretFile(path, token + "\n"));
  return token;
}

Service::Service(ServiceOptions options) : options_(std::move(options)) {}

Service::~Service() { Stop(); }

Result<std::unique_ptr<Service>> Service::Start(ServiceOptions options) {
  std::unique_ptr<Service> svc(new Service(std::move(options)));
  Service* self = svc.get();
  if (!svc->options_.single) {
    std::error_code ec;
    std::filesystem::create_directories(svc->options_.state_dir, ec);
    if (ec) return OperatorError(fmt::format("cannot create state directory {}: {}", svc->options_.state_dir, ec.message()));
    if (::chmod(svc->options_.state_dir.c_str(), 0700) != 0)
      return OperatorError(fmt::format("cannot make state directory {} private (chmod 0700)", svc->options_.state_dir));
    // Resume every migration found in the state directory.
    std::vector<std::filesystem::path> dirs;
    for (const auto& e : std::filesystem::directory_iterator(svc->options_.state_dir, ec))
      if (e.is_directory() && std::filesystem::exists(e.path() / "spec.yaml")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) {
      std::ifstream in(d / "spec.yaml");
      std::stringstream text;
      text << in.rdbuf();
      auto spec = ParseSpec(text.str(), (d / "spec.yaml").string());
      if (!spec.ok()) {
        LOG_ERROR("not resuming {}: {}", d.string(), spec.status().message());
        continue;
      }
      spec->state_dir = d.string();
      auto hosted = svc->Host(*spec, /*start=*/true);
      if (!hosted.ok())
        LOG_ERROR("not resuming migration {}: {}", spec->name,
                  ScrubSecrets(hosted.status().message(), {spec->source, spec->target, spec->source_replica}));
    }
  }
  // `run` listens once its migration is hosted (its state directory locked):
  // a second `run` of the same spec is refused by the lock, not the socket.
  if (!svc->options_.single) RETURN_IF_ERROR(svc->Listen());
  svc->sampler_ = std::thread([self] {
    while (!self->stopping_) {
      self->Sample();
      self->sampled_at_us_ = NowUnixMicros();
      for (int i = 0; i < 10 && !self->stopping_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  return svc;
}

std::string Service::address() const { return server_ ? server_->address() : ""; }

void Service::Stop() {
  if (stopping_.exchange(true)) return;
  if (sampler_.joinable()) sampler_.join();
  if (server_) server_->Stop();
  std::map<std::string, std::shared_ptr<HostedMigration>> all;
  {
    std::lock_guard lock(mu_);
    all.swap(migrations_);
  }
  for (auto& [name, m] : all) m->StopRunner();
  all.clear();  // proxies, notifiers (drained), locks
}

Result<std::shared_ptr<HostedMigration>> Service::Host(MigrationSpec spec, bool start) {
  auto m = std::make_shared<HostedMigration>();
  ASSIGN_OR_RETURN(m->engine, EngineFor(spec));
  ASSIGN_OR_RETURN(m->store, StateStore::Open(spec.state_dir, /*create=*/true));
  m->store->SetSecrets({spec.source, spec.target, spec.source_replica});
  ASSIGN_OR_RETURN(m->lock_fd, LockStateDir(spec.state_dir));
  m->runtime = std::make_unique<MigrationRuntime>(spec);
  if (Status st = m->runtime->knobs.LoadOverrides(m->store->Get("knobs").value_or("")); !st.ok())
    LOG_WARN("migration {}: stored knobs ignored: {}", spec.name, st.message());
  std::string webhook = spec.notify.webhook.empty() ? options_.webhook : spec.notify.webhook;
  if (!webhook.empty()) {
    NotifierOptions no;
    no.ca_file = spec.notify.ca_file;
    ASSIGN_OR_RETURN(m->notifier, Notifier::Create(webhook, no));
  }
  m->spec = std::move(spec);
  HostedMigration* raw = m.get();
  m->store->OnTransition([raw](Phase from, Phase to, const std::string& reason) {
    std::string text = fmt::format("{} → {}: {}", PhaseName(from), PhaseName(to), reason);
    raw->Notify(to == Phase::kFailed ? "failed" : "phase_change", text,
                json{{"from", PhaseName(from)}, {"to", PhaseName(to)}, {"reason", reason},
                     {"actor", ActorScope::Current()}});
  });
  if (m->spec.has_proxy) {
    ASSIGN_OR_RETURN(m->proxy, m->engine->StartTrafficSwitch(m->spec, *m->store));
  }
  RETURN_IF_ERROR(m->store->PutMany({{"name", m->spec.name}, {"engine", std::string(m->engine->name())},
                                     {"source", RedactUri(m->spec.source)}, {"target", RedactUri(m->spec.target)}}));
  {
    std::lock_guard lock(mu_);
    if (migrations_.count(m->spec.name))
      return OperatorError(fmt::format("a migration named {} already exists", m->spec.name));
    migrations_[m->spec.name] = m;
  }
  Phase p = m->store->phase();
  bool held = p == Phase::kAborted || (!options_.single && (p == Phase::kPaused || p == Phase::kFailed));
  if (start && !held) m->StartRunner();
  else if (held) LOG_INFO("migration {} is {}: not started", m->spec.name, PhaseName(p));
  return m;
}

Status Service::Listen() {
  Service* self = this;
  http::ServerOptions http_options;
  http_options.tls_cert_file = options_.tls_cert;
  http_options.tls_key_file = options_.tls_key;
  ASSIGN_OR_RETURN(server_, http::Server::Listen(options_.listen, [self](const http::Request& r) { return self->Handle(r); },
                                                 http_options));
  return Status::Ok();
}

Status Service::Adopt(const MigrationSpec& spec) {
  ASSIGN_OR_RETURN(auto m, Host(spec, /*start=*/false));
  if (Status st = Listen(); !st.ok()) {
    std::lock_guard lock(mu_);
    migrations_.clear();
    return st;
  }
  if (m->store->phase() == Phase::kAborted)
    return OperatorError(fmt::format("migration {} was aborted; start a new one (another name or state_dir)", spec.name));
  m->StartRunner();
  return Status::Ok();
}

Status Service::WaitSingle(const std::atomic<bool>& stop) {
  std::shared_ptr<HostedMigration> m;
  {
    std::lock_guard lock(mu_);
    if (migrations_.empty()) return Internal("no migration hosted");
    m = migrations_.begin()->second;
  }
  while (!stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (m->running()) continue;
    Phase p = m->store->phase();
    if (p == Phase::kPaused) continue;  // resumable through the API
    if (p == Phase::kAborted) return Status::Ok();
    Status st = m->outcome();
    if (!st.ok()) return st;
    if (p != Phase::kPaused) return Status::Ok();
  }
  return Status::Ok();
}

std::shared_ptr<HostedMigration> Service::Find(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = migrations_.find(name);
  return it == migrations_.end() ? nullptr : it->second;
}

http::Response Service::Handle(const http::Request& r) {
  const bool reads = r.method == "GET" || r.method == "HEAD";
  if (r.path == "/" || r.path == "/dashboard") {
    if (!reads) return JsonError(405, "the dashboard is read with GET");
    http::Response resp;
    resp.content_type = "text/html; charset=utf-8";
    resp.body.assign(kDashboardHtml, kDashboardHtml_size);
    resp.headers.push_back({"Cache-Control", "no-store"});
    return resp;
  }
  if (r.path == "/metrics") return Metrics();
  if (r.path == "/healthz") return http::Text(200, "ok\n");
  if (r.path == "/readyz") return Ready();
  if (r.path.rfind("/api/", 0) != 0) return JsonError(404, fmt::format("no such path: {}", r.path));
  if (!reads) {
    auto auth = r.Header("authorization").value_or("");
    if (auth.rfind("Bearer ", 0) != 0)
      return JsonError(401, "this call changes something: send the API token as `Authorization: Bearer TOKEN`");
    if (!TokenMatches(options_.token, auth.substr(7))) return JsonError(401, "the API token is wrong");
  }
  ActorScope actor(ActorOf(r));
  std::vector<std::string> parts = SplitList(r.path.substr(5), '/');
  if (parts.empty() || parts[0] != "migrations") return JsonError(404, fmt::format("no such path: {}", r.path));
  if (parts.size() == 1) {
    if (r.method == "GET") return List();
    if (r.method == "POST") {
      if (options_.single) return JsonError(409, "`midflight run` hosts one migration; use `midflight serve` to create more");
      return Create(r);
    }
    return JsonError(405, "use GET to list migrations, POST to create one");
  }
  std::string name = http::UrlDecode(parts[1]);
  auto m = Find(name);
  if (!m) return JsonError(404, fmt::format("no migration named {}", name));
  if (parts.size() == 2) {
    if (r.method == "GET") return JsonOk(200, Detail(*m));
    if (r.method == "DELETE") return Operate(m, "delete", r);
    return JsonError(405, "use GET to read a migration, DELETE to forget a completed or aborted one");
  }
  if (parts.size() != 3) return JsonError(404, fmt::format("no such path: {}", r.path));
  return Operate(m, parts[2], r);
}

http::Response Service::List() {
  std::vector<std::shared_ptr<HostedMigration>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [n, m] : migrations_) all.push_back(m);
  }
  json out = json::array();
  for (auto& m : all) out.push_back(Summary(*m, Read(*m->store, m->runtime.get(), m->running())));
  return JsonOk(200, json{{"migrations", out}});
}

http::Response Service::Create(const http::Request& r) {
  std::string text = r.body;
  std::string ctype = r.Header("content-type").value_or("");
  if (ctype.rfind("application/json", 0) == 0 || (!text.empty() && text[0] == '{')) {
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return JsonError(400, "body: not valid JSON; send {\"spec\": \"YAML text\"} or the YAML itself");
    if (!j.is_object() || !j.contains("spec") || !j["spec"].is_string())
      return JsonError(400, "body: expected {\"spec\": \"YAML text\"}: field spec is missing or not a string");
    text = j["spec"].get<std::string>();
  }
  if (text.empty()) return JsonError(400, "body: empty; send the migration spec (YAML)");
  auto spec = ParseSpec(text, "spec");
  if (!spec.ok()) return JsonError(400, spec.status().message());
  if (Find(spec->name)) return JsonError(409, fmt::format("a migration named {} already exists", spec->name));
  const std::string dir = options_.state_dir + "/" + spec->name;
  const bool existed = std::filesystem::exists(dir);
  if (existed && std::filesystem::exists(dir + "/state.db"))
    return JsonError(409, fmt::format("state directory {} already holds a migration named {} (deleted earlier?); "
                                      "choose another name",
                                      dir, spec->name));
  spec->state_dir = dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return JsonError(500, fmt::format("cannot create {}: {}", dir, ec.message()));
  if (Status st = WriteSecretFile(dir + "/spec.yaml", text); !st.ok()) return JsonError(500, st.message());
  auto hosted = Host(*spec, /*start=*/true);
  if (!hosted.ok()) {
    if (!existed) std::filesystem::remove_all(dir, ec);
    return JsonError(hosted.status().code() == StatusCode::kInvalidArgument ? 400 : 409,
                     ScrubSecrets(hosted.status().message(), {spec->source, spec->target, spec->source_replica}));
  }
  (void)(*hosted)->store->AddEvent(fmt::format("created from a spec ({} engine)", (*hosted)->engine->name()));
  LOG_INFO("migration {} created by {}: {} -> {}", spec->name, ActorScope::Current(), RedactUri(spec->source),
           RedactUri(spec->target));
  return JsonOk(201, Summary(**hosted, Read(*(*hosted)->store)));
}

http::Response Service::Operate(const std::shared_ptr<HostedMigration>& m, const std::string& op,
                                const http::Request& r) {
  const std::string& name = m->spec.name;
  const std::string reason = ReasonOf(r);
  auto with_reason = [&](const std::string& what) { return reason.empty() ? what : what + ": " + reason; };
  if (op == "events") {
    if (r.method != "GET") return JsonError(405, "events are read with GET");
    int limit = std::clamp(std::atoi(r.QueryParam("limit").c_str()), 0, 10000);
    json ev = json::array();
    for (const auto& e : m->store->Events(limit ? limit : 200))
      ev.push_back({{"time", e.time}, {"phase", e.phase}, {"actor", e.actor}, {"message", e.message}});
    return JsonOk(200, json{{"events", ev}});
  }
  if (op == "knobs") {
    auto answer = [&] {
      json help = json::object();
      for (const auto& d : KnobDefs())
        help[d.name] = fmt::format("{} ({} to {})", d.help, d.min, d.max);
      return json{{"knobs", json::parse(m->runtime->knobs.ToJson())}, {"help", help}};
    };
    if (r.method == "GET") return JsonOk(200, answer());
    if (r.method != "POST" && r.method != "PUT") return JsonError(405, "knobs are read with GET and set with POST");
    auto j = json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.empty())
      return JsonError(400, "body: expected a JSON object of knobs, e.g. {\"parallelism\": 4}");
    // Validate every knob on a scratch copy first: all or nothing.
    Knobs scratch(m->spec);
    std::vector<std::pair<std::string, double>> values;
    for (const auto& [k, v] : j.items()) {
      Status st = v.is_number()   ? scratch.Set(k, v.get<double>())
                  : v.is_string() ? scratch.SetText(k, v.get<std::string>())
                                  : (scratch.Value(k) ? InvalidArgument(fmt::format("knob {}: expected a number", k))
                                                      : scratch.Set(k, 0));
      if (!st.ok()) return JsonError(400, st.message());
      values.push_back({k, *scratch.Value(k)});
    }
    std::string changes;
    for (const auto& [k, v] : values) {
      (void)m->runtime->knobs.Set(k, v);
      changes += fmt::format("{}{}={}", changes.empty() ? "" : ", ", k, v);
    }
    if (Status st = m->store->Put("knobs", m->runtime->knobs.OverridesJson()); !st.ok())
      return JsonError(500, st.message());
    (void)m->store->AddEvent(with_reason("knobs set: " + changes));
    LOG_INFO("migration {}: knobs set by {}: {}", name, ActorScope::Current(), changes);
    return JsonOk(200, answer());
  }
  if (op == "report") {
    if (r.method != "GET") return JsonError(405, "the report is read with GET");
    http::Response resp;
    resp.content_type = "text/html; charset=utf-8";
    resp.body = BuildReport(m->spec, *m->store, std::string(m->engine->name()));
    resp.headers.push_back({"Content-Disposition", fmt::format("inline; filename=\"midflight-{}.html\"", name)});
    return resp;
  }
  if (op == "verify-job") {
    if (r.method != "GET") return JsonError(405, "the verification job is read with GET (verify-start, verify-stop: POST)");
    return JsonOk(200, json::parse(VerifyJob::ShowJson(*m->store)));
  }
  if (r.method != "POST" && !(op == "delete" && r.method == "DELETE"))
    return JsonError(405, fmt::format("{} is a POST", op));

  if (op == "pause") {
    std::lock_guard lock(m->op_mu);
    Phase p = m->store->phase();
    if (!TransitionAllowed(p, Phase::kPaused))
      return JsonError(409, fmt::format("pause is allowed in phases {}; migration {} is in phase {}{}",
                                        AllowedList(Phase::kPaused), name, PhaseName(p),
                                        p == Phase::kReadsSwitched ? " (switch reads back first: the target would "
                                                                     "serve stale reads while paused)"
                                                                   : ""));
    m->StopRunner();  // at a checkpoint: a chunk or batch in flight is finished or rolled back
    if (Status st = m->store->SetPhase(Phase::kPaused, with_reason("paused by the operator")); !st.ok())
      return JsonError(409, st.message());
    LOG_INFO("migration {} paused by {} in {}", name, ActorScope::Current(), PhaseName(p));
    return JsonOk(200, json{{"phase", "paused"},
                            {"message", fmt::format("migration {} paused in {}; `resume` continues from the "
                                                    "checkpoint{}",
                                                    name, PhaseName(p), m->proxy ? " (the proxy keeps serving)" : "")}});
  }
  if (op == "resume") {
    std::lock_guard lock(m->op_mu);
    Phase p = m->store->phase();
    if (p != Phase::kPaused && p != Phase::kFailed)
      return JsonError(409, fmt::format("resume is allowed in phases paused, failed; migration {} is in phase {}", name,
                                        PhaseName(p)));
    if (m->running()) return JsonError(409, fmt::format("migration {} is still stopping; try again", name));
    m->StopRunner();  // joins a runner that ended by failing
    auto resume = ParsePhase(m->store->Get("resume_phase").value_or("")).value_or(Phase::kCreated);
    if (Status st = m->store->SetPhase(resume, with_reason(fmt::format("resumed by the operator (was {})", PhaseName(p))));
        !st.ok())
      return JsonError(409, st.message());
    (void)m->store->Put("error", "");
    m->StartRunner();
    return JsonOk(200, json{{"phase", PhaseName(resume)},
                            {"message", fmt::format("migration {} resumed in {}", name, PhaseName(resume))}});
  }
  if (op == "abort") {
    std::lock_guard lock(m->op_mu);
    Phase p = m->store->phase();
    std::optional<Phase> resume;
    if (auto rp = m->store->Get("resume_phase")) resume = ParsePhase(*rp);
    if (!TransitionAllowed(p, Phase::kAborted, resume))
      return JsonError(409, fmt::format("abort is allowed in phases {} (before writes move to the target); migration "
                                        "{} is in phase {}{}",
                                        AllowedList(Phase::kAborted), name, PhaseName(p),
                                        p == Phase::kWritesSwitched ? "; roll back first" : ""));
    m->StopRunner();
    auto cleaned = m->engine->CleanUpAbort(m->spec);
    const std::string cleanup = cleaned.ok() ? *cleaned : cleaned.status().message();
    if (m->proxy) {
      m->proxy->SetReadPercent(0);
      m->proxy->SetWriteSide(proxy::Side::kSource);
    }
    if (Status st = m->store->SetPhase(Phase::kAborted, with_reason("aborted by the operator") + "; " + cleanup);
        !st.ok())
      return JsonError(409, st.message());
    return JsonOk(200, json{{"phase", "aborted"},
                            {"message", fmt::format("migration {} aborted: {}; the rows copied stay on the target{}",
                                                    name, cleanup,
                                                    m->proxy ? "; the proxy keeps routing to the source" : "")}});
  }
  if (op == "delete") {
    std::lock_guard lock(m->op_mu);
    Phase p = m->store->phase();
    if (p != Phase::kCompleted && p != Phase::kAborted)
      return JsonError(409, fmt::format("delete is allowed in phases completed, aborted; migration {} is in phase {}",
                                        name, PhaseName(p)));
    {
      std::lock_guard l(mu_);
      migrations_.erase(name);
    }
    std::error_code ec;
    std::filesystem::rename(m->spec.state_dir + "/spec.yaml", m->spec.state_dir + "/spec.yaml.deleted", ec);
    (void)m->store->AddEvent(with_reason("deleted from the service"));
    return JsonOk(200, json{{"message", fmt::format("migration {} deleted; its state stays in {}", name,
                                                    m->spec.state_dir)}});
  }
  std::optional<TrafficOp> traffic = ParseTrafficOp(op);
  if (!traffic) return JsonError(404, fmt::format("unknown operation {}", op));
  // Verification needs no traffic plane: engines across (mysql -> postgres) verify too.
  const bool verify_op =
      *traffic == TrafficOp::kVerify || *traffic == TrafficOp::kVerifyStart || *traffic == TrafficOp::kVerifyStop;
  if (!m->engine->has_traffic_plane() && !verify_op)
    return JsonError(409, fmt::format("{} is not available for {} migrations yet (no reverse replication that way); "
                                      "{} is one",
                                      op, m->engine->name(), name));
  TrafficRequest req;
  req.op = *traffic;
  req.dry_run = r.QueryParam("dry_run") == "1" || r.QueryParam("dry_run") == "true";
  // The phase rule answers first, running or not (a dry run lists it with its other checks).
  if (Status st = CheckTrafficPhase(*traffic, m->store->phase(), name); !st.ok() && !req.dry_run)
    return JsonError(409, st.message());
  req.force = r.QueryParam("force") == "1" || r.QueryParam("force") == "true";
  req.external = r.QueryParam("external") == "1" || r.QueryParam("external") == "true";
  req.repair = r.QueryParam("repair") == "1" || r.QueryParam("repair") == "true";
  if (std::string p = r.QueryParam("percent"); !p.empty()) {
    int64_t v = 0;
    if (!ParseI64(p, &v)) return JsonError(400, fmt::format("percent '{}' is not a number", p));
    if (v < 0 || v > 100) return JsonError(400, fmt::format("percent {} is not between 0 and 100", v));
    req.percent = static_cast<int>(v);
  }
  if (std::string rate = r.QueryParam("rate"); !rate.empty()) {
    // A negative rate (the CLI's default, -1) means the verify_rows_per_s knob.
    if (!ParseI64(rate, &req.rate))
      return JsonError(400, fmt::format("rate '{}' is not a number of rows per second", rate));
    if (req.rate < 0) req.rate = -1;
  }
  Result<TrafficResult> out = m->CallOperation(req);
  if (!out.ok()) {
    const StatusCode c = out.status().code();
    json body{{"error", out.status().message()}};
    if (req.op == TrafficOp::kVerify) body["clean"] = false;  // every verify answer says whether it was clean
    return JsonOk(c == StatusCode::kInvalidArgument ? 400 : c == StatusCode::kOperator ? 409 : 500, body);
  }
  if (req.dry_run) {
    // 200 when the operation would pass its checks now, 409 when one fails;
    // the checklist is the answer either way.
    json checks = json::array();
    for (const auto& c : out->checks)
      checks.push_back({{"check", c.name}, {"ok", c.ok}, {"forced", c.forced}, {"detail", c.detail}});
    return JsonOk(out->clean ? 200 : 409,
                  json{{out->clean ? "message" : "error", out->message}, {"ok", out->clean}, {"checks", checks}});
  }
  // A verification that found differences answers 422 with the list as "error"
  // (as every non-2xx answer carries its text).
  json body{{out->clean ? "message" : "error", out->message}};
  if (req.op == TrafficOp::kVerify) body["clean"] = out->clean;
  // 422: the verification ran and found differences (the CLI exits 1).
  return JsonOk(out->clean ? 200 : 422, body);
}

void Service::Sample() {
  std::vector<std::shared_ptr<HostedMigration>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [n, m] : migrations_) all.push_back(m);
  }
  const double now = static_cast<double>(NowUnixMicros()) / 1e6;
  for (auto& mp : all) {
    HostedMigration& m = *mp;
    StateStore& s = *m.store;
    const View v = Read(s, m.runtime.get(), m.running());
    HistorySample h;
    h.t = now;
    h.rows_copied = v.rows_copied;
    if (m.last_rows >= 0 && now > m.last_t) h.rows_per_s = std::max(0.0, (h.rows_copied - m.last_rows) / (now - m.last_t));
    m.last_rows = h.rows_copied;
    m.last_t = now;
    h.changes_per_s = v.repl.changes_per_s;
    h.lag_bytes = static_cast<int64_t>(v.repl.lag_bytes);
    h.lag_seconds = v.repl.lag_seconds;
    const Phase p = v.phase;
    bool replicating = p >= Phase::kReplicating && p <= Phase::kWritesSwitched && m.running();
    if (!replicating) {
      h.changes_per_s = 0;
      if (p != Phase::kCopying) h.lag_bytes = 0, h.lag_seconds = 0;
    }
    m.AddSample(h);
    // The bounded series the report draws (service/report.h).
    (void)AppendSeriesPoint(s, SeriesPoint{now, h.rows_copied, h.lag_seconds, h.lag_bytes, h.changes_per_s});

    // Lag over the threshold for longer than the set time: one alert, then one all-clear.
    const Knobs& k = m.runtime->knobs;
    if (replicating && h.lag_seconds > k.Get(Knob::kLagAlertSeconds)) {
      if (m.lag_over_since == 0) m.lag_over_since = now;
      if (!m.lag_alerted && now - m.lag_over_since >= k.Get(Knob::kLagAlertAfterSeconds)) {
        m.lag_alerted = true;
        m.Notify("lag_alert",
                 fmt::format("lag {:.1f} s has been over {:g} s for {:.0f} s", h.lag_seconds,
                             k.Get(Knob::kLagAlertSeconds), now - m.lag_over_since),
                 json{{"lag_seconds", h.lag_seconds}, {"lag_bytes", h.lag_bytes}});
      }
    } else {
      if (m.lag_alerted)
        m.Notify("lag_recovered", fmt::format("lag back to {:.1f} s", h.lag_seconds), json{{"lag_seconds", h.lag_seconds}});
      m.lag_over_since = 0;
      m.lag_alerted = false;
    }
    // Write pauses: each one is reported, also when it happened just before a
    // crash (the count reported is persisted; a crash between the post and
    // the count can report one twice, never lose one).
    if (m.notifier) {
      auto pauses = SplitList(v.Str("write_pauses_ms"), ',');
      size_t notified = static_cast<size_t>(v.Int("write_pauses_notified"));
      for (size_t i = notified; i < pauses.size(); ++i)
        m.Notify("write_pause", fmt::format("writes moved ({}) with a write pause of {} ms", PhaseName(p), pauses[i]),
                 json{{"write_pause_ms", std::atof(pauses[i].c_str())}});
      if (notified != pauses.size()) (void)s.Put("write_pauses_notified", std::to_string(pauses.size()));
    }
    // Throttling starts or clears (at most one message per 30 s): in the
    // audit trail (the report's throttle episodes) and to the webhook.
    bool throttled = m.runtime->throttle.active();
    if (throttled != m.throttle_event_seen && now - m.throttle_event_at >= 30) {
      json board = json::parse(m.runtime->throttle.ToJson());
      std::string where;
      for (const auto& a : board.value("active", json::array()))
        where += fmt::format("{}{} ({})", where.empty() ? "" : "; ", a.value("where", ""), a.value("kind", ""));
      (void)s.AddEvent(throttled ? "throttled: " + (where.empty() ? std::string("the target shows distress") : where)
                                 : std::string("throttling cleared"));
      m.throttle_event_at = now;
      m.throttle_event_seen = throttled;
    }
    if (throttled != m.throttle_seen && now - m.throttle_notified_at >= 30) {
      m.Notify(throttled ? "throttled" : "throttle_cleared",
               throttled ? "the target shows distress; partitions are backing off (see throttle)"
                         : "throttling cleared; full speed again",
               json{{"throttle", json::parse(m.runtime->throttle.ToJson())}});
      m.throttle_notified_at = now;
      m.throttle_seen = throttled;
    }
  }
}

http::Response Service::Metrics() {
  std::vector<std::shared_ptr<HostedMigration>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [n, m] : migrations_) all.push_back(m);
  }
  PromWriter w;
  std::map<Phase, int> by_phase;
  for (auto& m : all) ++by_phase[m->store->phase()];
  WriteServiceMetrics(w, options_.version, options_.commit, by_phase, ReadProcessStats());
  for (auto& mp : all) {
    HostedMigration& m = *mp;
    StateStore& s = *m.store;
    const PromLabels l = {{"migration", m.spec.name}};
    auto with = [&](const char* k, const std::string& v) {
      PromLabels x = l;
      x.push_back({k, v});
      return x;
    };
    const View v = Read(s, m.runtime.get(), m.running());
    const Phase p = v.phase;
    w.Family("midflight_phase", "gauge", "1 for the phase the migration is in.");
    w.Sample("midflight_phase", with("phase", PhaseName(p)), 1);
    w.Family("midflight_running", "gauge", "1 while the migration's engine runs.");
    w.Sample("midflight_running", l, m.running() ? 1 : 0);
    w.Family("midflight_rows_copied_total", "counter", "Rows copied by the snapshot copy.");
    w.Sample("midflight_rows_copied_total", l, static_cast<double>(v.rows_copied));
    w.Family("midflight_rows_estimated", "gauge", "Rows the source tables hold, estimated at preflight.");
    w.Sample("midflight_rows_estimated", l, static_cast<double>(v.estimated_rows));
    w.Family("midflight_copy_rows_per_second", "gauge", "Copy throughput over the last second.");
    w.Sample("midflight_copy_rows_per_second", l, m.LatestRowsPerS());
    w.Family("midflight_changes_applied_total", "counter", "Changes applied, by direction.");
    w.Sample("midflight_changes_applied_total", with("direction", "forward"),
             static_cast<double>(v.repl.changes_applied));
    w.Sample("midflight_changes_applied_total", with("direction", "reverse"),
             static_cast<double>(v.repl.reverse_changes_applied));
    w.Family("midflight_old_side_writes_total", "counter",
             "Changes that arrived on the side the applications no longer write to (not midflight's own) since the "
             "first write switch.");
    w.Sample("midflight_old_side_writes_total", l, static_cast<double>(v.repl.old_side_writes));
    w.Family("midflight_lag_bytes", "gauge", "Bytes of change stream not applied yet, by direction.");
    w.Sample("midflight_lag_bytes", with("direction", "forward"), static_cast<double>(v.repl.lag_bytes));
    w.Sample("midflight_lag_bytes", with("direction", "reverse"), static_cast<double>(v.repl.reverse_lag_bytes));
    w.Family("midflight_lag_seconds", "gauge", "Age of the oldest transaction not applied yet, by direction.");
    w.Sample("midflight_lag_seconds", with("direction", "forward"), v.repl.lag_seconds);
    w.Sample("midflight_lag_seconds", with("direction", "reverse"), v.repl.reverse_lag_seconds);
    if (!v.repl.partitions_json.empty()) {
      json parts = json::parse(v.repl.partitions_json, nullptr, /*allow_exceptions=*/false);
      auto partition = [&](const json& p) { return with("partition", std::to_string(p.value("partition", 0))); };
      if (parts.is_array()) {
        w.Family("midflight_partition_queued_changes", "gauge",
                 "Changes routed to the partition and not applied yet, by partition.");
        for (const auto& p : parts)
          w.Sample("midflight_partition_queued_changes", partition(p), p.value("queued_changes", 0.0));
        w.Family("midflight_partition_lag_seconds", "gauge",
                 "Age of the partition's oldest source transaction not applied yet (0: none), by partition.");
        for (const auto& p : parts) w.Sample("midflight_partition_lag_seconds", partition(p), p.value("lag_seconds", 0.0));
      }
      // Through Kafka: the producer's side; with apply workers the consumer's too.
      const bool kafka = parts.is_array() && !parts.empty() && parts[0].contains("producer_lag_messages");
      const bool workers = kafka && parts[0].contains("consumer_lag_messages");
      if (kafka) {
        w.Family("midflight_kafka_producer_lag_messages", "gauge",
                 "Change-topic messages handed to Kafka and not acknowledged yet, by partition.");
        for (const auto& p : parts)
          w.Sample("midflight_kafka_producer_lag_messages", partition(p),
                   p.value("producer_lag_messages", 0.0));
        w.Family("midflight_kafka_producer_lag_seconds", "gauge",
                 "Age of the oldest change-topic message not acknowledged by Kafka, by partition.");
        for (const auto& p : parts)
          w.Sample("midflight_kafka_producer_lag_seconds", partition(p),
                   p.value("producer_lag_seconds", 0.0));
      }
      if (workers) {
        w.Family("midflight_kafka_consumer_lag_messages", "gauge",
                 "Change-topic messages acknowledged and not applied by the apply workers yet, by partition.");
        for (const auto& p : parts)
          w.Sample("midflight_kafka_consumer_lag_messages", partition(p),
                   p.value("consumer_lag_messages", 0.0));
        w.Family("midflight_kafka_consumer_lag_seconds", "gauge",
                 "Age of the oldest source transaction of the partition not applied yet.");
        for (const auto& p : parts)
          w.Sample("midflight_kafka_consumer_lag_seconds", partition(p),
                   p.value("consumer_lag_seconds", 0.0));
        w.Family("midflight_kafka_partition_holder", "gauge",
                 "1 for the apply worker that last took or applied the partition.");
        for (const auto& p : parts) {
          if (p.value("worker", std::string()).empty()) continue;
          PromLabels x = partition(p);
          x.push_back({"worker", p.value("worker", std::string())});
          w.Sample("midflight_kafka_partition_holder", x, 1);
        }
      }
    }
    auto lat = m.runtime->throttle.latency();
    w.Family("midflight_apply_batch_seconds", "histogram", "Time of one apply transaction on the receiving server.");
    for (size_t i = 0; i < ThrottleBoard::kLatencyBuckets.size(); ++i)
      w.Sample("midflight_apply_batch_seconds_bucket", with("le", fmt::format("{}", ThrottleBoard::kLatencyBuckets[i])),
               static_cast<double>(lat.buckets[i]));
    w.Sample("midflight_apply_batch_seconds_bucket", with("le", "+Inf"), static_cast<double>(lat.buckets.back()));
    w.Sample("midflight_apply_batch_seconds_sum", l, lat.sum);
    w.Sample("midflight_apply_batch_seconds_count", l, static_cast<double>(lat.count));
    w.Family("midflight_errors_total", "counter", "Errors the appliers and copiers retried, by kind.");
    for (size_t i = 0; i < static_cast<size_t>(Distress::kCount); ++i)
      w.Sample("midflight_errors_total", with("kind", DistressName(static_cast<Distress>(i))),
               static_cast<double>(m.runtime->throttle.errors(static_cast<Distress>(i))));
    w.Family("midflight_apply_conflicts_total", "counter",
             "Apply conflicts (insert of a row the target had, update or delete of one it had not), by table and kind.");
    {
      json c = json::parse(ConflictSummaryJson(v.conflicts));
      for (const char* kind : {"insert_existing", "update_missing", "delete_missing"}) {
        auto kl = with("kind", kind);
        kl.push_back({"table", ""});
        if (c["tables"].empty()) w.Sample("midflight_apply_conflicts_total", with("kind", kind), 0);
        for (const auto& [table, e] : c["tables"].items()) {
          kl.back().second = table;
          w.Sample("midflight_apply_conflicts_total", kl, static_cast<double>(e.value(kind, uint64_t{0})));
        }
      }
    }
    w.Family("midflight_throttled", "gauge", "1 while a partition or copy worker backs off.");
    w.Sample("midflight_throttled", l, m.runtime->throttle.active() ? 1 : 0);
    auto pauses = SplitList(v.Str("write_pauses_ms"), ',');
    w.Family("midflight_write_switches_total", "counter", "Write switches and rollbacks done.");
    w.Sample("midflight_write_switches_total", l, static_cast<double>(pauses.size()));
    w.Family("midflight_write_pause_seconds", "gauge", "The last write switch's pause.");
    w.Sample("midflight_write_pause_seconds", l, pauses.empty() ? 0 : std::atof(pauses.back().c_str()) / 1000);
    w.Family("midflight_verify_clean", "gauge", "1 when the last live verification found no difference.");
    w.Sample("midflight_verify_clean", l, v.Str("verify_clean") == "true" ? 1 : 0);
    {
      json job = json::parse(v.Str("verify_job").empty() ? "{}" : v.Str("verify_job"), nullptr, false);
      if (!job.is_object()) job = json::object();
      w.Family("midflight_verify_job_running", "gauge", "1 while a background verification job runs.");
      w.Sample("midflight_verify_job_running", l, job.value("state", "") == "running" ? 1 : 0);
      w.Family("midflight_verify_job_rows_checked", "gauge", "Rows the current or last verification job checked.");
      w.Sample("midflight_verify_job_rows_checked", l, job.value("rows_checked", 0.0));
      w.Family("midflight_verify_job_rows_estimated", "gauge", "Rows a verification job's pass covers, estimated.");
      w.Sample("midflight_verify_job_rows_estimated", l, job.value("rows_estimate", 0.0));
      w.Family("midflight_verify_job_tables_done", "gauge", "Tables the verification job finished.");
      w.Sample("midflight_verify_job_tables_done", l, job.value("tables_done", 0.0));
      w.Family("midflight_verify_job_rows_per_second", "gauge", "The verification job's rate since it (re)started.");
      w.Sample("midflight_verify_job_rows_per_second", l, job.value("rows_per_s", 0.0));
      w.Family("midflight_verify_job_differences", "gauge", "Differences the verification job found so far.");
      w.Sample("midflight_verify_job_differences", l, job.value("differences", 0.0));
      w.Family("midflight_verify_continuous_passes", "gauge",
               "Passes the continuous verification finished (spec verify.continuous; 0 when off).");
      w.Sample("midflight_verify_continuous_passes", l, job.value("passes", 0.0));
      if (const double at = std::atof(v.Str("verify_at").c_str()); at > 0) {
        w.Family("midflight_verify_age_seconds", "gauge", "Time since the last verification finished (of any kind).");
        w.Sample("midflight_verify_age_seconds", l, std::max(0.0, (NowUnixMicros() - at) / 1e6));
      }
      if (job.contains("eta_seconds") && job["eta_seconds"].is_number()) {
        w.Family("midflight_verify_job_eta_seconds", "gauge", "Time the verification job still needs at its rate.");
        w.Sample("midflight_verify_job_eta_seconds", l, job["eta_seconds"].get<double>());
      }
    }
    if (m.proxy) {
      proxy::ProxyStats ps = m.proxy->stats();
      w.Family("midflight_proxy_clients", "gauge", "Client sessions connected to the proxy, by endpoint.");
      w.Sample("midflight_proxy_clients", with("endpoint", "read_write"), static_cast<double>(ps.clients_rw));
      w.Sample("midflight_proxy_clients", with("endpoint", "read_only"), static_cast<double>(ps.clients_ro));
      w.Family("midflight_proxy_connections_total", "counter", "Client connections accepted by the proxy.");
      w.Sample("midflight_proxy_connections_total", l, static_cast<double>(ps.connections));
      w.Family("midflight_proxy_transactions_total", "counter", "Transactions through the proxy, by route.");
      w.Sample("midflight_proxy_transactions_total", with("route", "source"), static_cast<double>(ps.transactions[0]));
      w.Sample("midflight_proxy_transactions_total", with("route", "target"), static_cast<double>(ps.transactions[1]));
      w.Family("midflight_proxy_server_connections_total", "counter", "Server connections the proxy opened, by route.");
      w.Sample("midflight_proxy_server_connections_total", with("route", "source"),
               static_cast<double>(ps.server_connects[0]));
      w.Sample("midflight_proxy_server_connections_total", with("route", "target"),
               static_cast<double>(ps.server_connects[1]));
      w.Family("midflight_proxy_errors_total", "counter", "Proxy client errors, by kind.");
      w.Sample("midflight_proxy_errors_total", with("kind", "auth"), static_cast<double>(ps.auth_failures));
      w.Sample("midflight_proxy_errors_total", with("kind", "protocol"), static_cast<double>(ps.protocol_errors));
    }
    if (m.notifier) {
      auto ns = m.notifier->stats();
      w.Family("midflight_notifications_total", "counter", "Webhook notifications, by outcome.");
      w.Sample("midflight_notifications_total", with("outcome", "sent"), static_cast<double>(ns.sent));
      w.Sample("midflight_notifications_total", with("outcome", "failed"), static_cast<double>(ns.failed));
      w.Sample("midflight_notifications_total", with("outcome", "dropped"), static_cast<double>(ns.dropped));
    }
  }
  http::Response resp = http::Text(200, w.Take());
  resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
  return resp;
}

http::Response Service::Ready() {
  std::vector<std::shared_ptr<HostedMigration>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [n, m] : migrations_) all.push_back(m);
  }
  // Paused, aborted and deleted migrations run nothing on purpose; every
  // other one needs its runner (a completed one keeps serving its proxy).
  std::vector<std::string> down;
  for (auto& m : all) {
    const Phase p = m->store->phase();
    if (p == Phase::kPaused || p == Phase::kAborted || m->running()) continue;
    std::string why = p == Phase::kFailed ? m->store->Get("error").value_or("") : m->outcome().message();
    down.push_back(fmt::format("migration {} ({}) is not running{}{}", m->spec.name, PhaseName(p),
                               why.empty() ? "" : ": ", why));
  }
  if (stopping_) down.insert(down.begin(), "the service is stopping");
  if (down.empty()) return http::Text(200, fmt::format("ready: {} migration(s)\n", all.size()));
  std::string text = "not ready\n";
  for (const auto& d : down) text += d + "\n";
  return http::Text(503, text);
}

Status Service::Healthy(std::chrono::milliseconds max_age) const {
  if (stopping_) return Cancelled("the service is stopping");
  const int64_t at = sampled_at_us_;
  if (at == 0) return Status::Ok();  // the first round is under way
  const int64_t age_ms = (NowUnixMicros() - at) / 1000;
  if (age_ms > max_age.count())
    return Internal(fmt::format("the sampler loop has not finished a round for {} s (stuck on a state store or a lock?)",
                                age_ms / 1000));
  return Status::Ok();
}

std::string Service::StatusLine() {
  std::string text = Ready().body;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (text.starts_with("not ready\n")) text.replace(9, 1, ": ");
  for (size_t at; (at = text.find('\n')) != std::string::npos;) text.replace(at, 1, "; ");
  return text;
}

std::string StoredStatusJson(const MigrationSpec& spec, StateStore& store, bool running) {
  Live live;
  live.running = running;
  return DetailJson(spec, store, live).dump();
}

}  // namespace midflight
