// midflight: the command line. Thin: parses arguments, loads the spec, calls
// the control plane, prints, and maps the outcome to an exit code
// (0 ok, 1 failure with a one-line reason on stderr, 2 usage).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "base/clock.h"
#include "base/log.h"
#include "base/uri.h"
#include "base/version.h"
#include "cli/apply_worker_cmd.h"
#include "control/compare.h"
#include "control/http.h"
#include "control/spec.h"
#include "control/state_store.h"
#include "engines/engine.h"
#include "pipeline/conflicts.h"
#include "service/report.h"
#include "service/sd_notify.h"
#include "service/service.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

int Fail(const midflight::Status& st) {
  // With --log-format json, stderr is JSON lines only: the failure is an error record.
  if (midflight::GetLogFormat() == midflight::LogFormat::kJson)
    midflight::LogLine(midflight::LogLevel::kError, st.message());
  else
    std::fprintf(stderr, "midflight: %s\n", st.message().c_str());
  return 1;
}

std::string Bar(double fraction, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  int full = static_cast<int>(fraction * width + 0.5);
  return "[" + std::string(full, '#') + std::string(width - full, '.') + "]";
}

std::string HumanBytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", b, units[u]);
}

nlohmann::json ConflictsJson(const std::string& saved) {
  return nlohmann::json::parse(midflight::ConflictSummaryJson(saved));
}

void PrintConflicts(const nlohmann::json& c) {
  if (c.value("total", int64_t{0}) == 0) {
    std::cout << "  apply conflicts: none\n";
    return;
  }
  std::cout << fmt::format("  APPLY CONFLICTS: {} (insert_existing {}, update_missing {}, delete_missing {}); keys in the log\n",
                           c.value("total", int64_t{0}), c.value("insert_existing", int64_t{0}),
                           c.value("update_missing", int64_t{0}), c.value("delete_missing", int64_t{0}));
  for (const auto& [t, e] : c["tables"].items())
    std::cout << fmt::format("    {:<34} insert_existing {}  update_missing {}  delete_missing {}\n", t,
                             e.value("insert_existing", int64_t{0}), e.value("update_missing", int64_t{0}),
                             e.value("delete_missing", int64_t{0}));
}

int Status(const midflight::MigrationSpec& spec, bool json) {
  using namespace midflight;
  auto store = StateStore::Open(spec.state_dir, /*create=*/false);
  if (!store.ok()) return Fail(store.status());
  StateStore& s = **store;
  auto get = [&](const char* k, const char* d = "") { return s.Get(k).value_or(d); };
  int64_t heartbeat = std::atoll(get("heartbeat", "0").c_str());
  bool running = heartbeat > 0 && NowUnixMicros() - heartbeat < 5'000'000;
  std::string phase = PhaseName(s.phase());
  auto tables = s.Tables();
  if (json) {
    std::cout << StoredStatusJson(spec, s, running) << "\n";
    return 0;
  }
  std::cout << fmt::format("migration {}   phase: {}   ({})\n", spec.name, phase,
                           running ? "running, pid " + get("pid") : "not running");
  std::cout << fmt::format("  source {}\n", get("source"));
  if (!get("source_replica").empty()) std::cout << fmt::format("  read from replica {}\n", get("source_replica"));
  std::cout << fmt::format("  target {}\n", get("target"));
  if (!get("error").empty()) std::cout << "  error: " << get("error") << "\n";
  if (!get("untracked_tables").empty())
    std::cout << fmt::format("  not migrated (created on the source after the start; switches refused): {}\n",
                             get("untracked_tables"));
  PrintConflicts(ConflictsJson(get("conflicts", "{}")));
  for (const auto& t : tables) {
    double frac = t.chunks_total ? static_cast<double>(t.chunks_done) / t.chunks_total : 0;
    if (t.state == "copying" && t.est_rows > 0) frac = std::min(0.99, static_cast<double>(t.rows_copied) / t.est_rows);
    if (t.state == "copied") frac = 1;
    std::string eta;
    if (t.state == "copying" && t.rows_per_s > 0 && t.est_rows > t.rows_copied)
      eta = fmt::format("  ETA {:.0f}s", (t.est_rows - t.rows_copied) / t.rows_per_s);
    std::cout << fmt::format("  {:<34} {} {:3.0f}%  {:>11} rows  {:>9}  {:>9.0f} rows/s{}\n", t.name, Bar(frac, 20),
                             frac * 100, t.rows_copied, HumanBytes(static_cast<double>(t.bytes_copied)), t.rows_per_s,
                             eta);
  }
  if (phase == "replicating" || s.Get("applied_lsn"))
    std::cout << fmt::format("  lag: {} ({} bytes), {} s   applied up to {}, source at {}   {} changes applied, {}/s\n",
                             HumanBytes(std::atof(get("lag_bytes", "0").c_str())), get("lag_bytes", "0"),
                             get("lag_seconds", "0"), get("applied_lsn", "-"), get("source_lsn", "-"),
                             get("changes_applied", "0"), get("changes_per_s", "0"));
  // Each partition's queue and lag; through Kafka the producer's side, with
  // apply workers the holder and the consumer's side (control/status.h).
  if (auto parts = nlohmann::json::parse(get("partition_status"), nullptr, false); parts.is_array() && !parts.empty()) {
    const bool kafka = parts[0].contains("producer_lag_messages"), workers = parts[0].contains("consumer_lag_messages");
    std::cout << "  partition  queued changes  lag s" << (kafka ? "  producer lag" : "")
              << (workers ? "  worker                    offsets applied/end  consumer lag" : "") << "\n";
    for (const auto& p : parts) {
      std::string line = fmt::format("  {:>9}  {:>14}  {:>5.1f}", p.value("partition", 0), p.value("queued_changes", 0),
                                     p.value("lag_seconds", 0.0));
      if (kafka)
        line += fmt::format("  {:>4} msg {:>5.1f} s", p.value("producer_lag_messages", 0),
                            p.value("producer_lag_seconds", 0.0));
      if (workers)
        line += fmt::format("  {:<24}  {:>9}/{:<9}  {:>5} msg {:>5.1f} s", p.value("worker", std::string("-")),
                            p.value("applied_offset", int64_t{-1}), p.value("end_offset", int64_t{-1}),
                            p.value("consumer_lag_messages", 0), p.value("consumer_lag_seconds", 0.0));
      std::cout << line << "\n";
    }
  }
  if (!get("reverse_lag_bytes").empty())
    std::cout << fmt::format("  reverse (target -> source): lag {} bytes, {} s, {} changes applied\n",
                             get("reverse_lag_bytes"), get("reverse_lag_seconds", "0"),
                             get("reverse_changes_applied", "0"));
  if (get("old_side_writes", "0") != "0")
    std::cout << fmt::format("  WARNING: {} change(s) arrived on the side the applications left (not midflight's "
                             "own): an application instance still writes there\n",
                             get("old_side_writes"));
  if (!get("proxy_rw").empty()) {
    bool writes_on_target = phase == "writes_switched" || phase == "completed";
    std::cout << fmt::format("  proxy: read-write {} -> {}; read-only {} -> {}% target; {} clients\n",
                             get("proxy_rw"), writes_on_target ? "target" : "source",
                             get("proxy_ro").empty() ? "(none)" : get("proxy_ro"), get("read_percent", "0"),
                             get("proxy_clients", "0"));
  }
  if (!get("verify_summary").empty())
    std::cout << fmt::format("  {}\n", get("verify_summary"));
  if (!get("write_pauses_ms").empty())
    std::cout << fmt::format("  write pauses (ms): {}\n", get("write_pauses_ms"));
  return 0;
}

// Where a command goes: a spec file (its own `midflight run`, through the
// control socket in its state directory) or a migration hosted by a
// `midflight serve` (--server / MIDFLIGHT_SERVER).
struct Endpoint {
  std::string address, name, token, actor;
  midflight::http::ClientTls tls;
  std::optional<midflight::MigrationSpec> spec;
  std::string spec_path;
};

// --server / MIDFLIGHT_SERVER as http::Call takes it: HOST:PORT,
// http://HOST:PORT (the same), https://HOST:PORT or unix:PATH; the scheme in
// any case, trailing slashes ignored ("http://db1:7070/").
std::string StripScheme(std::string a) {
  if (size_t sep = a.find("://"); sep != std::string::npos) {
    std::string scheme = a.substr(0, sep);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
    if (scheme == "http") a = a.substr(sep + 3);
    if (scheme == "https") a = "https://" + a.substr(sep + 3);
  }
  while (!a.empty() && a.back() == '/') a.pop_back();
  return a;
}

midflight::Result<midflight::http::Response> Api(const Endpoint& e, const std::string& method, const std::string& path,
                                                 const std::string& body = "", int timeout_ms = 600000) {
  std::vector<std::pair<std::string, std::string>> headers = {{"X-Midflight-Actor", e.actor}};
  if (!e.token.empty()) headers.push_back({"Authorization", "Bearer " + e.token});
  auto r = midflight::http::Call(e.address, method, path, body, headers, timeout_ms, e.tls);
  // Only a connection that could not be made means nothing runs there: an
  // answer that took too long or a connection lost mid-way leaves the
  // operation running (or done) on the other side.
  if (!r.ok() && r.status().code() == midflight::StatusCode::kRetryCall &&
      r.status().message().find("cannot connect to") == std::string::npos &&
      r.status().message().find("connecting to") == std::string::npos)
    return midflight::Status(r.status().code(),
                             fmt::format("{} (the operation may still be running there: `midflight status`, `midflight "
                                         "events` or `midflight verify show` tell)",
                                         r.status().message()));
  if (!r.ok() && r.status().code() == midflight::StatusCode::kRetryCall) {
    if (e.spec)
      return midflight::OperatorError(fmt::format("migration {} is not running (nothing answers at {}); start it with "
                                                  "`midflight run {}`",
                                                  e.name, e.address, e.spec_path));
    return midflight::OperatorError(fmt::format("nothing answers at {}; is `midflight serve` running there? (set "
                                                "--server or MIDFLIGHT_SERVER)",
                                                e.address));
  }
  return r;
}

// Prints an API answer: the message (or the JSON) on stdout for 2xx, the
// error on stderr otherwise. 0 for 2xx, 1 otherwise.
int Answer(const midflight::http::Response& r, bool raw_json = false) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  bool ok = r.status >= 200 && r.status < 300;
  if (raw_json || j.is_discarded()) {
    std::fputs((r.body + (r.body.empty() || r.body.back() != '\n' ? "\n" : "")).c_str(),
               ok || r.status == 422 ? stdout : stderr);
  } else if (!ok) {
    std::string e = j.value("error", r.body);
    // verify's list of differences and a dry run's checklist are the result, not an error: stdout.
    const bool result = r.status == 422 || j.contains("checks");
    std::fprintf(result ? stdout : stderr, "%s%s\n", result ? "" : "midflight: ", e.c_str());
  } else if (j.contains("message")) {
    std::printf("%s\n", j["message"].get<std::string>().c_str());
  } else {
    std::printf("%s\n", j.dump(2).c_str());
  }
  return ok ? 0 : 1;
}

void PrintDetail(const nlohmann::json& j) {
  auto str = [&](const nlohmann::json& o, const char* k) { return o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : std::string(); };
  std::cout << fmt::format("migration {} ({})   phase: {}{}   ({})\n", str(j, "name"), str(j, "engine"), str(j, "phase"),
                           str(j, "resume_phase").empty() ? "" : " (in " + str(j, "resume_phase") + ")",
                           j.value("running", false) ? "running" : "not running");
  std::cout << fmt::format("  source {}\n  target {}\n", str(j, "source"), str(j, "target"));
  if (!str(j, "error").empty()) std::cout << "  error: " << str(j, "error") << "\n";
  for (const auto& t : j["tables"]) {
    int64_t done = t.value("rows_copied", int64_t{0}), est = t.value("estimated_rows", int64_t{0});
    double frac = str(t, "state") == "copied" || str(t, "state") == "replicating" ? 1.0
                  : est > 0 ? std::min(0.99, static_cast<double>(done) / est) : 0;
    std::cout << fmt::format("  {:<34} {} {:3.0f}%  {:>11} rows  {:>9.0f} rows/s\n", str(t, "name"), Bar(frac, 20),
                             frac * 100, done, t.value("rows_per_s", 0.0));
  }
  std::cout << fmt::format("  copy: {} of ~{} rows, {:.0f} rows/s now\n", j.value("rows_copied", int64_t{0}),
                           j.value("estimated_rows", int64_t{0}), j.value("rows_per_s", 0.0));
  const auto& rep = j["replication"];
  std::cout << fmt::format("  lag: {} bytes, {:.2f} s   {} changes applied, {:.0f}/s, {} retries\n",
                           j.value("lag_bytes", int64_t{0}), j.value("lag_seconds", 0.0),
                           rep.value("changes_applied", int64_t{0}), rep.value("changes_per_s", 0.0),
                           rep.value("apply_retries", int64_t{0}));
  const auto& px = j["proxy"];
  if (!str(px, "read_write").empty())
    std::cout << fmt::format("  proxy: read-write {} -> {}; read-only {} -> {}% target; {} clients\n",
                             str(px, "read_write"), str(px, "writes_to"), str(px, "read_only"),
                             px.value("read_percent", 0), px.value("clients", int64_t{0}));
  if (!str(j["verify"], "summary").empty()) std::cout << "  " << str(j["verify"], "summary") << "\n";
  if (!j["write_pauses_ms"].empty()) std::cout << "  write pauses (ms): " << j["write_pauses_ms"].dump() << "\n";
  if (j.contains("conflicts")) PrintConflicts(j["conflicts"]);
  for (const auto& a : j["throttle"]["active"])
    std::cout << fmt::format("  THROTTLED {}: {} ({} retries, backing off {} ms): {}\n", str(a, "where"), str(a, "kind"),
                             a.value("retries", 0), a.value("backoff_ms", 0), str(a, "message"));
  std::cout << "  knobs: ";
  bool first = true;
  for (const auto& [k, v] : j["knobs"].items()) {
    std::cout << (first ? "" : ", ") << k << "=" << v.dump();
    first = false;
  }
  std::cout << "\n";
  const auto& ev = j["events"];
  size_t from = ev.size() > 5 ? ev.size() - 5 : 0;
  for (size_t i = from; i < ev.size(); ++i)
    std::cout << fmt::format("  {} [{}] {}: {}\n", str(ev[i], "time"), str(ev[i], "phase"), str(ev[i], "actor"),
                             str(ev[i], "message"));
}

// `report`: the page to `out` (default midflight-NAME.html; "-": stdout).
int WriteReport(const std::string& html, const std::string& name, std::string out) {
  if (out == "-") {
    std::fwrite(html.data(), 1, html.size(), stdout);
    return 0;
  }
  if (out.empty()) out = "midflight-" + name + ".html";
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f << html;
  f.close();
  if (!f) return Fail(midflight::Internal(fmt::format("cannot write the report to {}", out)));
  std::printf("report written to %s (%zu bytes)\n", out.c_str(), html.size());
  return 0;
}

// `verify show`: the job's state, progress and last reports.
void PrintVerifyJob(const nlohmann::json& j) {
  const std::string state = j.value("state", "none");
  if (state == "none") {
    std::cout << "no verification job has run; `midflight verify start` starts one\n";
  } else {
    const int64_t rows = j.value("rows_checked", int64_t{0}), est = j.value("rows_estimate", int64_t{0});
    std::cout << fmt::format("verification job: {}{}\n", state,
                             j.value("summary", "").empty() ? "" : " (" + j.value("summary", "") + ")");
    std::cout << fmt::format("  tables {} of {}{}   rows {} of ~{} {}\n", j.value("tables_done", 0),
                             j.value("tables_total", 0), j.value("table", "").empty() ? "" : " (at " + j.value("table", "") + ")",
                             rows, est, Bar(est > 0 ? static_cast<double>(rows) / est : 0, 20));
    std::string eta = j.contains("eta_seconds") && j["eta_seconds"].is_number()
                          ? fmt::format("{:.0f} s", j["eta_seconds"].get<double>())
                          : "unknown";
    std::cout << fmt::format("  rate {:.0f} rows/s   ETA {}   differences {}   resumed {} time(s)\n",
                             j.value("rows_per_s", 0.0), state == "running" ? eta : "-", j.value("differences", int64_t{0}),
                             j.value("resumed", 0));
    if (!j.value("error", "").empty()) std::cout << "  error: " << j.value("error", "") << "\n";
    if (j.value("continuous", false)) {
      std::string next = "running now";
      if (state != "running" && j.contains("next_pass_at") && j["next_pass_at"].is_number())
        next = fmt::format("next pass in {:.0f} s",
                           std::max(0.0, j["next_pass_at"].get<double>() - midflight::NowUnixMicros() / 1e6));
      std::cout << fmt::format("  continuous verification: on, {} pass(es) finished, {}\n", j.value("passes", 0), next);
    }
    for (const auto& l : j.value("lines", nlohmann::json::array())) std::cout << "  " << l.get<std::string>() << "\n";
  }
  const auto reports = j.value("reports", nlohmann::json::array());
  if (!reports.empty()) std::cout << "last verifications:\n";
  for (const auto& r : reports) {
    std::cout << fmt::format("  {} {:<10} {} by {}: {} rows, {} differing, {} repaired\n",
                             midflight::IsoUtc(static_cast<int64_t>(r.value("at", 0.0) * 1e6)), r.value("kind", ""),
                             r.value("clean", false) ? "clean" : "NOT CLEAN", r.value("actor", ""), r.value("rows", int64_t{0}),
                             r.value("differences", int64_t{0}), r.value("repaired", int64_t{0}));
    for (const auto& l : r.value("lines", nlohmann::json::array())) std::cout << "      " << l.get<std::string>() << "\n";
  }
}

}  // namespace

// The proxy holds two descriptors per client session (more while a session
// moves): the soft limit (often 1024) goes up to the hard limit at start.
void RaiseFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    const rlim_t before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      LOG_WARN("cannot raise the open-file limit from {} to {}: {}", before, rl.rlim_max, std::strerror(errno));
      return;
    }
  }
  LOG_DEBUG("open-file limit: {}", rl.rlim_cur);
}

int main(int argc, char** argv) {
  // Everything midflight writes (state directories, the SQLite store, the
  // schema dump, TOC lists, the API token) is for its own user only; the
  // state code sets these modes itself as well.
  ::umask(077);
  CLI::App app{"midflight: move a live database to another server while its applications keep working"};
  app.set_version_flag("--version", fmt::format("midflight {} (commit {})", midflight::kVersion, midflight::kGitCommit),
                       "print the version and the git commit it was built from, and exit");
  app.require_subcommand(1);
  std::string spec_path, target, server, token, token_file, listen, state_dir, webhook, reason, actor;
  std::string tls_cert, tls_key, tls_ca;
  bool json = false, verbose = false;
  int workers = 0, partitions = 0;
  app.add_flag("-v,--verbose", verbose, "debug logging");
  app.add_option("--server", server, "address of a `midflight serve` (HOST:PORT, http://HOST:PORT, https://HOST:PORT or unix:PATH; default $MIDFLIGHT_SERVER, else 127.0.0.1:7070)");
  app.add_option("--tls-ca", tls_ca, "PEM file of the CA that signed an https --server's certificate (default: the system's store)");
  app.add_option("--token", token, "API token for calls that change something (default $MIDFLIGHT_API_TOKEN)");
  app.add_option("--as", actor, "who you are, for the audit trail (default $USER)");
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "log lines on stderr: text (default) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));
  // The options above may also come after the subcommand
  // (`midflight status shop --server HOST:PORT`): subcommands made from here
  // on inherit fallthrough and hand what they do not know to the app.
  app.fallthrough();

  auto* serve = app.add_subcommand("serve", "host migrations: HTTP API, dashboard, /metrics; resumes what it hosted");
  listen = "127.0.0.1:7070";
  serve->add_option("--listen", listen, "HOST:PORT or unix:PATH (default 127.0.0.1:7070)");
  serve->add_option("--state-dir", state_dir, "where migrations keep their state (one directory each)")->required();
  serve->add_option("--token-file", token_file, "file holding the API token (default $MIDFLIGHT_API_TOKEN, else STATE_DIR/api_token, made if missing)");
  serve->add_option("--webhook", webhook, "default webhook URL for migrations whose spec has no notify.webhook");
  serve->add_option("--tls-cert", tls_cert, "PEM certificate (chain) file: serve the API over https (TCP --listen only)");
  serve->add_option("--tls-key", tls_key, "PEM private key file for --tls-cert");

  auto* run = app.add_subcommand("run", "run (or resume) the migration described by SPEC.yaml until stopped");
  run->add_option("spec", spec_path, "migration spec (YAML)")->required();
  run->add_option("--copy-workers", workers, "override copy_workers");
  run->add_option("--partitions", partitions, "override partitions (first run only)");
  std::string run_listen;
  run->add_option("--listen", run_listen, "serve the API and dashboard here instead of the spec's control address");

  auto* create = app.add_subcommand("create", "create a migration on a `midflight serve` from SPEC.yaml, and start it");
  create->add_option("spec", spec_path, "migration spec (YAML)")->required();
  auto* list = app.add_subcommand("list", "list the migrations a `midflight serve` hosts");
  list->add_flag("--json", json, "the API's JSON");

  const char* target_help = "SPEC.yaml, or a migration name on the server (optional when it hosts one)";
  auto* status = app.add_subcommand("status", "the migration's phase, copy progress, lag, throttling, knobs");
  status->add_option("target", target, target_help);
  status->add_flag("--json", json, "one JSON object");
  auto* events = app.add_subcommand("events", "the audit trail: every transition and operation, with who and why");
  events->add_option("target", target, target_help);
  events->add_flag("--json", json, "the API's JSON: {\"events\": [...]}");

  auto* pause = app.add_subcommand("pause", "stop copying/applying at a checkpoint (the proxy keeps serving)");
  auto* resume = app.add_subcommand("resume", "continue a paused or failed migration from its checkpoint");
  auto* abort_cmd = app.add_subcommand("abort", "give up before writes move: drops the source slot and publication");
  auto* del = app.add_subcommand("delete", "forget a completed or aborted migration (its state stays on disk)");
  for (auto* c : {pause, resume, abort_cmd, del}) {
    c->add_option("target", target, target_help);
    c->add_option("--reason", reason, "why, for the audit trail");
  }

  // Operations on a running migration.
  bool force = false, repair = false, back = false, external = false, dry_run = false;
  const char* dry_run_help = "print every check the operation makes (ok/FAIL, what to fix) and change nothing; "
                             "exit 1 when one fails";
  int percent = 100;
  int64_t rate = -1;
  auto* sw = app.add_subcommand("switch", "move the applications' traffic: `switch reads` or `switch writes`");
  sw->require_subcommand(1);
  auto* sw_reads = sw->add_subcommand("reads", "send read-only transactions to the target (--percent for a canary)");
  sw_reads->add_option("target", target, target_help);
  sw_reads->add_option("--percent", percent, "share of new read-only transactions sent to the target (0-100)");
  sw_reads->add_flag("--back", back, "send reads back to the source (same as --percent 0)");
  sw_reads->add_flag("--force", force, "switch even when the target lags");
  sw_reads->add_flag("--external", external,
                     "without a proxy: record that the applications' reads now go to the target (moved by other "
                     "means); starts reverse replication");
  sw_reads->add_flag("--dry-run", dry_run, dry_run_help);
  auto* sw_writes = sw->add_subcommand("writes", "move writes to the target (pause, drain, catch up, release)");
  sw_writes->add_option("target", target, target_help);
  sw_writes->add_flag("--force", force, "skip the lag, verification, window and approval checks");
  sw_writes->add_flag("--external", external,
                      "without a proxy: record that the applications now write to the target (moved by other "
                      "means); midflight catches up, carries AUTO_INCREMENT/sequences and reports writes still "
                      "arriving on the source");
  sw_writes->add_flag("--dry-run", dry_run, dry_run_help);
  auto* rollback = app.add_subcommand("rollback", "move writes back to the source (after switch writes)");
  rollback->add_option("target", target, target_help);
  rollback->add_flag("--force", force, "roll back even when the source lags behind the target");
  rollback->add_flag("--external", external,
                     "without a proxy: record that the applications write to the source again (moved by other means)");
  rollback->add_flag("--dry-run", dry_run, dry_run_help);
  auto* complete = app.add_subcommand("complete", "finish: stop replication, drop what midflight created");
  complete->add_option("target", target, target_help);
  complete->add_flag("--dry-run", dry_run, dry_run_help);
  auto* approve = app.add_subcommand("approve", "approve the write switch (cutover.require_approval)");
  approve->add_option("target", target, target_help);
  auto* verify = app.add_subcommand("verify", "compare source and target live, while writes continue");
  verify->add_option("target", target, target_help);
  verify->add_flag("--repair", repair, "re-copy the rows found different through the apply path");
  verify->add_flag("--json", json, "the API's JSON: {\"clean\": BOOL, \"message\" or \"error\": TEXT}");
  verify->add_option("--rate", rate, "source rows read per second (0 = unlimited; default: the verify_rows_per_s knob)");
  std::string report_out;
  auto* report = app.add_subcommand("report", "write the migration's report: one self-contained HTML file (phases, "
                                              "copy, lag, write pauses, verifications, throttling, operator actions)");
  report->add_option("target", target, target_help);
  report->add_option("-o,--output", report_out, "the file to write (default midflight-NAME.html; - for stdout)");
  auto* sequences = app.add_subcommand("sequences", "PostgreSQL sequences: `sequences sync TARGET`");
  sequences->require_subcommand(1);
  auto* seq_sync = sequences->add_subcommand(
      "sync", "carry sequence values now from the side the applications write to (never backwards)");
  seq_sync->add_option("target", target, target_help);
  // The background job (control/verify_job.h): `verify start|show|stop TARGET`.
  auto* v_start = verify->add_subcommand("start", "start a background verification pass inside the running migration");
  v_start->add_option("target", target, target_help);
  v_start->add_option("--rate", rate, "source rows read per second (0 = unlimited; default: the verify_rows_per_s knob)");
  auto* v_show = verify->add_subcommand("show", "the background verification: progress, rate, ETA, last reports");
  v_show->add_option("target", target, target_help);
  v_show->add_flag("--json", json, "the API's JSON (GET .../verify-job)");
  auto* v_stop = verify->add_subcommand("stop", "stop the background verification (its progress stays for show)");
  v_stop->add_option("target", target, target_help);

  auto* knobs = app.add_subcommand("knobs", "show the runtime knobs, or `knobs set [TARGET] name=value ...`");
  std::vector<std::string> knob_args;
  knobs->add_option("args", knob_args, "[set] [TARGET] [name=value ...]");
  knobs->add_flag("--json", json, "the API's JSON: {\"knobs\": {...}, \"help\": {...}}");

  auto* compare = app.add_subcommand("compare", "compare every table of source and target row for row (a hash of every row)");
  compare->add_option("spec", spec_path, "migration spec (YAML)")->required();
  compare->add_flag("--json", json, "one JSON object");
  auto* schema = app.add_subcommand("schema", "across engines: the target DDL the spec's casting table gives, with every "
                                              "lossy or semantic change flagged (--dry-run)");
  schema->add_option("spec", spec_path, "migration spec (YAML)")->required();
  schema->add_flag("--dry-run", dry_run, "print the DDL and change nothing (required: the run's schema phase creates it)");

  // transport kind kafka: the apply side on any machine (kafka/apply_worker.h).
  std::string worker_name, from_time, from_offset;
  auto* apply_worker = app.add_subcommand(
      "apply-worker", "join the migration's Kafka consumer group and apply the partitions it gets to the target "
                      "(transport apply: workers; run as many as you like, on any machine)");
  apply_worker->add_option("spec", spec_path, "migration spec (YAML): the one the run uses")->required();
  apply_worker->add_option("--name", worker_name, "this worker's name in status (default HOST:PID)");
  auto* replay = app.add_subcommand(
      "replay", "re-apply the migration's Kafka change topic from an offset or a time to its end (idempotent: "
                "over a live target it converges to the source)");
  replay->add_option("target", target, "SPEC.yaml, or a migration name with STATE_DIR/NAME/spec.yaml")->required();
  replay->add_option("--from-offset", from_offset, "start at this offset of every partition (N), or at the first one "
                                                   "each partition keeps (earliest)");
  replay->add_option("--from-time", from_time, "start at the first message at or after this time (2026-12-06T13:00:00Z "
                                               "or ms since the epoch)");
  replay->add_option("--state-dir", state_dir, "where to look for NAME/spec.yaml (default ./.midflight)");

  // Every subcommand's --help ends with an example.
  const std::pair<CLI::App*, const char*> examples[] = {
      {serve, "midflight serve --listen 127.0.0.1:7070 --state-dir /var/lib/midflight"},
      {run, "midflight run shop.yaml"},
      {create, "midflight --server 10.0.0.4:7070 create shop.yaml"},
      {list, "midflight --server http://10.0.0.4:7070 list"},
      {status, "midflight status shop.yaml --json"},
      {sw, "midflight switch reads shop.yaml; midflight switch writes shop.yaml --dry-run"},
      {sequences, "midflight sequences sync shop.yaml"},
      {events, "midflight events shop"},
      {pause, "midflight pause shop --reason \"nightly batch\""},
      {resume, "midflight resume shop"},
      {abort_cmd, "midflight abort shop --reason \"wrong target\""},
      {del, "midflight delete shop"},
      {sw_reads, "midflight switch reads shop.yaml --percent 10 --dry-run"},
      {sw_writes, "midflight switch writes shop.yaml --dry-run"},
      {rollback, "midflight rollback shop.yaml --dry-run"},
      {complete, "midflight complete shop.yaml --dry-run"},
      {approve, "midflight --as alice approve shop.yaml"},
      {verify, "midflight verify shop.yaml --rate 50000   (background: midflight verify start shop.yaml)"},
      {v_start, "midflight verify start shop.yaml --rate 20000"},
      {v_show, "midflight verify show shop.yaml"},
      {v_stop, "midflight verify stop shop.yaml"},
      {report, "midflight report shop.yaml -o shop-migration.html"},
      {seq_sync, "midflight sequences sync shop.yaml"},
      {knobs, "midflight knobs set shop.yaml parallelism=8 copy_rows_per_s=50000"},
      {compare, "midflight compare shop.yaml"},
      {schema, "midflight schema shop.yaml --dry-run"},
      {apply_worker, "midflight apply-worker shop.yaml --name worker-a"},
      {replay, "midflight replay shop.yaml --from-time 2026-12-06T13:00:00Z"},
  };
  for (const auto& [cmd, example] : examples) cmd->footer(std::string("\nExample:\n  ") + example);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (verbose) midflight::SetLogLevel(midflight::LogLevel::kDebug);
  if (log_format == "json") midflight::SetLogFormat(midflight::LogFormat::kJson);
  signal(SIGPIPE, SIG_IGN);
  RaiseFileLimit();
  auto on_signals = [] {
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
  };

  if (*serve) {
    on_signals();
    // Under systemd (Type=notify): READY=1, STATUS=, the watchdog (service/sd_notify.h).
    auto systemd = midflight::SystemdNotifier::FromEnvironment();
    if (!systemd.ok()) return Fail(systemd.status());
    auto tok = midflight::LoadOrCreateToken(token_file, state_dir);
    if (!tok.ok()) return Fail(tok.status());
    midflight::ServiceOptions o;
    o.listen = listen;
    o.state_dir = state_dir;
    o.token = *tok;
    o.webhook = webhook;
    o.tls_cert = tls_cert;
    o.tls_key = tls_key;
    o.version = midflight::kVersion;
    o.commit = midflight::kGitCommit;
    auto svc = midflight::Service::Start(o);
    if (!svc.ok()) return Fail(svc.status());
    std::printf("midflight serve: API, dashboard and /metrics on %s://%s/ (state in %s; API token in %s)\n",
                tls_cert.empty() ? "http" : "https", (*svc)->address().c_str(), state_dir.c_str(),
                token_file.empty() ? (std::getenv("MIDFLIGHT_API_TOKEN") ? "$MIDFLIGHT_API_TOKEN" : (state_dir + "/api_token").c_str())
                                   : token_file.c_str());
    std::fflush(stdout);
    midflight::Service& service = **svc;
    if (auto st = (*systemd)->Send("READY=1\nSTATUS=" + service.StatusLine()); !st.ok()) LOG_WARN("{}", st.message());
    (*systemd)->StartWatchdog([&service] { return service.Healthy(); }, [&service] { return service.StatusLine(); });
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    (*systemd)->StopWatchdog();
    if (auto st = (*systemd)->Send("STOPPING=1\nSTATUS=stopping: migrations to their checkpoints"); !st.ok())
      LOG_WARN("{}", st.message());
    (*svc)->Stop();
    return 0;
  }

  // `create` does not load the spec here: the service parses it, resolving
  // its ${VAR}s and password files in its own environment, and names any
  // problem in its answer.
  if (*schema) {
    if (!dry_run) return Fail(midflight::InvalidArgument("schema: only --dry-run is offered (`midflight run` creates the schema)"));
    auto spec = midflight::LoadSpec(spec_path);
    if (!spec.ok()) return Fail(spec.status());
    auto engine = midflight::EngineFor(*spec);
    if (!engine.ok()) return Fail(engine.status());
    auto ddl = (*engine)->SchemaDdl(*spec);
    if (!ddl.ok())
      return Fail(midflight::Status(ddl.status().code(),
                                    midflight::ScrubSecrets(ddl.status().message(),
                                                            {spec->source, spec->target, spec->source_replica})));
    std::cout << *ddl;
    return 0;
  }

  if (*apply_worker || *replay) {
    on_signals();
    midflight::Status st = *apply_worker ? midflight::cli::ApplyWorkerCommand(spec_path, worker_name, g_stop)
                                         : midflight::cli::ReplayCommand(target, state_dir, from_offset, from_time, g_stop);
    return st.ok() ? 0 : Fail(st);
  }

  if (*run || *compare) {
    auto spec = midflight::LoadSpec(spec_path);
    if (!spec.ok()) return Fail(spec.status());
    // Engine and library errors may quote a connection string: never print its password.
    auto fail = [&spec](const midflight::Status& st) {
      return Fail(midflight::Status(
          st.code(), midflight::ScrubSecrets(st.message(), {spec->source, spec->target, spec->source_replica})));
    };
    if (workers > 0) spec->copy_workers = workers;
    if (partitions > 0) spec->partitions = partitions;
    if (*run) {
      on_signals();
      auto tok = midflight::LoadOrCreateToken("", spec->state_dir);
      if (!tok.ok()) return Fail(tok.status());
      midflight::ServiceOptions o;
      o.listen = run_listen.empty() ? spec->control : run_listen;
      o.state_dir = spec->state_dir;
      o.token = *tok;
      o.single = true;
      o.version = midflight::kVersion;
      o.commit = midflight::kGitCommit;
      auto svc = midflight::Service::Start(o);
      if (!svc.ok()) return Fail(svc.status());
      if (midflight::Status st = (*svc)->Adopt(*spec); !st.ok()) return fail(st);
      midflight::Status st = (*svc)->WaitSingle(g_stop);
      (*svc)->Stop();
      if (!st.ok()) return fail(st);
      return 0;
    }
    if (*compare) {
      auto engine = midflight::EngineFor(*spec);
      if (!engine.ok()) return Fail(engine.status());
      auto result = (*engine)->Compare(*spec);
      if (!result.ok()) return fail(result.status());
      bool all_equal = true;
      nlohmann::json j = nlohmann::json::array();
      for (const auto& c : *result) {
        if (!c.skipped.empty()) {  // a transformed table: named, not counted either way
          if (json) j.push_back({{"table", c.table}, {"skipped", c.skipped}});
          else std::cout << fmt::format("  {:<36} {}\n", c.table, c.skipped);
          continue;
        }
        all_equal = all_equal && c.equal();
        if (json) {
          j.push_back({{"table", c.table}, {"equal", c.equal()}, {"source_rows", c.source_rows},
                       {"target_rows", c.target_rows}, {"source_hash", c.source_hash}, {"target_hash", c.target_hash}});
        } else {
          std::cout << fmt::format("  {:<36} {:>11} rows  {}\n", c.table, c.source_rows,
                                   c.equal() ? "equal"
                                             : fmt::format("DIFFERENT: target has {} rows, hash {} vs {}", c.target_rows,
                                                           c.target_hash, c.source_hash));
        }
      }
      if (json) std::cout << nlohmann::json{{"equal", all_equal}, {"tables", j}}.dump() << "\n";
      else std::cout << (all_equal ? "source and target are equal\n" : "source and target DIFFER\n");
      return all_equal ? 0 : 1;
    }
  }

  // Everything else talks to a running service.
  Endpoint ep;
  ep.actor = !actor.empty() ? actor : std::getenv("USER") ? std::string("cli:") + std::getenv("USER") : "cli";
  ep.token = !token.empty() ? token : std::getenv("MIDFLIGHT_API_TOKEN") ? std::getenv("MIDFLIGHT_API_TOKEN") : "";
  ep.tls.ca_file = tls_ca;
  const bool knobs_set = *knobs && !knob_args.empty() && knob_args[0] == "set";
  std::vector<std::string> assignments;
  if (*knobs) {
    size_t i = knobs_set ? 1 : 0;
    if (i < knob_args.size() && knob_args[i].find('=') == std::string::npos) target = knob_args[i++];
    for (; i < knob_args.size(); ++i) {
      if (knob_args[i].find('=') == std::string::npos)
        return Fail(midflight::InvalidArgument(fmt::format("knobs set: '{}' is not name=value", knob_args[i])));
      assignments.push_back(knob_args[i]);
    }
    if (knobs_set && assignments.empty())
      return Fail(midflight::InvalidArgument("knobs set: give at least one name=value, e.g. parallelism=4"));
  }
  std::error_code ec;
  if (!target.empty() && std::filesystem::is_regular_file(target, ec)) {
    auto spec = midflight::LoadSpec(target);
    if (!spec.ok()) return Fail(spec.status());
    if (*status) {
      // While a process runs the migration its API has the live values (the
      // state store's copy is up to a few seconds old); otherwise the store.
      if (json) {
        std::string token;
        std::ifstream in(spec->state_dir + "/api_token");
        std::getline(in, token);
        std::vector<std::pair<std::string, std::string>> headers;
        if (!token.empty()) headers.push_back({"Authorization", "Bearer " + token});
        auto r = midflight::http::Call(spec->control, "GET",
                                       "/api/migrations/" + midflight::http::UrlEncode(spec->name), "", headers, 5000, {});
        if (r.ok() && r->status == 200) {
          std::cout << r->body << (r->body.ends_with("\n") ? "" : "\n");
          return 0;
        }
      }
      return Status(*spec, json);
    }
    if (*report) {
      // From the state store: works whether or not the migration runs.
      auto store = midflight::StateStore::Open(spec->state_dir, /*create=*/false);
      if (!store.ok()) return Fail(store.status());
      return WriteReport(midflight::BuildReport(*spec, **store, (*store)->Get("engine").value_or("")), spec->name,
                         report_out);
    }
    ep.spec = *spec;
    ep.spec_path = target;
    ep.address = spec->control;
    ep.name = spec->name;
    if (ep.token.empty()) {
      std::ifstream in(spec->state_dir + "/api_token");
      std::getline(in, ep.token);
    }
  } else {
    ep.address = StripScheme(!server.empty() ? server
                             : std::getenv("MIDFLIGHT_SERVER") ? std::getenv("MIDFLIGHT_SERVER")
                                                               : "127.0.0.1:7070");
    ep.name = target;
    if (*create) {
      std::ifstream in(spec_path);
      if (!in) return Fail(midflight::InvalidArgument(fmt::format("cannot read spec file {}", spec_path)));
      std::stringstream text;
      text << in.rdbuf();
      auto r = Api(ep, "POST", "/api/migrations", nlohmann::json{{"spec", text.str()}}.dump());
      if (!r.ok()) return Fail(r.status());
      if (r->status == 201) {
        auto j = nlohmann::json::parse(r->body, nullptr, false);
        std::printf("migration %s created (%s), phase %s\n", j.value("name", "").c_str(), j.value("engine", "").c_str(),
                    j.value("phase", "").c_str());
        return 0;
      }
      return Answer(*r);
    }
    if (*list || (ep.name.empty() && *status)) {
      auto r = Api(ep, "GET", "/api/migrations");
      if (!r.ok()) return Fail(r.status());
      if (json || r->status != 200) return Answer(*r, true);
      auto j = nlohmann::json::parse(r->body, nullptr, false);
      std::cout << fmt::format("{:<20} {:<9} {:<16} {:>24} {:>12} {:>9}  {}\n", "NAME", "ENGINE", "PHASE", "ROWS COPIED",
                               "ROWS/S", "LAG S", "");
      for (const auto& m : j["migrations"])
        std::cout << fmt::format("{:<20} {:<9} {:<16} {:>24} {:>12.0f} {:>9.2f}  {}{}\n", m.value("name", ""),
                                 m.value("engine", ""), m.value("phase", ""),
                                 fmt::format("{}/{}", m.value("rows_copied", int64_t{0}), m.value("estimated_rows", int64_t{0})),
                                 m.value("rows_per_s", 0.0), m.value("lag_seconds", 0.0),
                                 m.value("throttled", false) ? "THROTTLED " : "", m.value("error", ""));
      return 0;
    }
    if (ep.name.empty()) {
      auto r = Api(ep, "GET", "/api/migrations");
      if (!r.ok()) return Fail(r.status());
      auto j = nlohmann::json::parse(r->body, nullptr, false);
      if (j.is_discarded() || !j.contains("migrations") || j["migrations"].size() != 1) {
        std::string names;
        if (!j.is_discarded() && j.contains("migrations"))
          for (const auto& m : j["migrations"]) names += (names.empty() ? "" : ", ") + m.value("name", "");
        return Fail(midflight::InvalidArgument(fmt::format("name the migration: {} hosts {}", ep.address,
                                                           names.empty() ? "none" : names)));
      }
      ep.name = j["migrations"][0].value("name", "");
    }
  }
  const std::string base = "/api/migrations/" + midflight::http::UrlEncode(ep.name);
  auto call = [&](const std::string& method, const std::string& path, const std::string& body = "") {
    // A foreground verify takes as long as the tables need: no deadline.
    auto r = Api(ep, method, path, body, path.find("/verify?") != std::string::npos ? 0 : 600000);
    if (!r.ok()) return Fail(r.status());
    return Answer(*r, json);
  };
  if (*status) {
    auto r = Api(ep, "GET", base);
    if (!r.ok()) return Fail(r.status());
    if (json || r->status != 200) return Answer(*r, json);
    PrintDetail(nlohmann::json::parse(r->body));
    return 0;
  }
  if (*events) {
    auto r = Api(ep, "GET", base + "/events?limit=200");
    if (!r.ok()) return Fail(r.status());
    if (r->status != 200 || json) return Answer(*r, json);
    const auto body = nlohmann::json::parse(r->body, nullptr, false);
    if (body.is_discarded() || !body.contains("events")) return Answer(*r, true);
    for (const auto& e : body["events"])
      std::cout << fmt::format("{} [{}] {}: {}\n", e.value("time", ""), e.value("phase", ""), e.value("actor", ""),
                               e.value("message", ""));
    return 0;
  }
  std::string reason_body = reason.empty() ? "" : nlohmann::json{{"reason", reason}}.dump();
  if (*pause) return call("POST", base + "/pause", reason_body);
  if (*resume) return call("POST", base + "/resume", reason_body);
  if (*abort_cmd) return call("POST", base + "/abort", reason_body);
  if (*del) return call("DELETE", base, reason_body);
  if (*knobs) {
    if (!knobs_set) {
      auto r = Api(ep, "GET", base + "/knobs");
      if (!r.ok()) return Fail(r.status());
      if (r->status != 200 || json) return Answer(*r, json);
      auto j = nlohmann::json::parse(r->body);
      for (const auto& [k, v] : j["knobs"].items())
        std::cout << fmt::format("  {:<26} {:>12}   {}\n", k, v.dump(), j["help"].value(k, ""));
      return 0;
    }
    nlohmann::json body = nlohmann::json::object();
    for (const auto& a : assignments) body[a.substr(0, a.find('='))] = a.substr(a.find('=') + 1);
    auto r = Api(ep, "POST", base + "/knobs", body.dump());
    if (!r.ok()) return Fail(r.status());
    if (r->status != 200 || json) return Answer(*r, json);
    std::printf("knobs set on %s: %s\n", ep.name.c_str(), body.dump().c_str());
    return 0;
  }
  std::string op;
  if (sw_reads->parsed()) op = fmt::format("/switch-reads?percent={}", back ? 0 : percent);
  if (sw_writes->parsed()) op = "/switch-writes";
  if (*rollback) op = "/rollback";
  if (*complete) op = "/complete";
  if (*approve) op = "/approve";
  if (*verify) op = fmt::format("/verify?repair={}&rate={}", repair ? 1 : 0, rate);
  if (*v_start) op = fmt::format("/verify-start?rate={}", rate);
  if (*v_stop) op = "/verify-stop";
  if (*seq_sync) op = "/sequences-sync";
  if (*report) {
    auto r = Api(ep, "GET", base + "/report");
    if (!r.ok()) return Fail(r.status());
    if (r->status != 200) return Answer(*r);
    return WriteReport(r->body, ep.name, report_out);
  }
  if (*v_show) {
    auto r = Api(ep, "GET", base + "/verify-job");
    if (!r.ok()) return Fail(r.status());
    if (r->status != 200 || json) return Answer(*r, json);
    PrintVerifyJob(nlohmann::json::parse(r->body));
    return 0;
  }
  if (!op.empty()) {
    if (force) op += op.find('?') == std::string::npos ? "?force=1" : "&force=1";
    if (external) op += op.find('?') == std::string::npos ? "?external=1" : "&external=1";
    if (dry_run) op += op.find('?') == std::string::npos ? "?dry_run=1" : "&dry_run=1";
    return call("POST", base + op);
  }
  return 2;
}
