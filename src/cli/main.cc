// midflight: the command line. Thin: parses arguments, loads the spec, calls
// the control plane, prints, and maps the outcome to an exit code
// (0 ok, 1 failure with a one-line reason on stderr, 2 usage).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "base/clock.h"
#include "base/log.h"
#include "base/uri.h"
#include "control/compare.h"
#include "control/http.h"
#include "control/my_migration.h"
#include "control/pg_migration.h"
#include "control/spec.h"
#include "control/state_store.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

bool IsMySql(const midflight::MigrationSpec& spec) {
  const std::string scheme = midflight::UriScheme(spec.source);
  return scheme == "mysql" || scheme == "mariadb";
}

int Fail(const midflight::Status& st) {
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

std::vector<std::string> Split(const std::string& s, char sep);

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
    nlohmann::json j;
    j["name"] = spec.name;
    j["phase"] = phase;
    j["running"] = running;
    j["lag_bytes"] = std::atoll(get("lag_bytes", "0").c_str());
    j["lag_seconds"] = std::atof(get("lag_seconds", "0").c_str());
    j["source_lsn"] = get("source_lsn");
    j["applied_lsn"] = get("applied_lsn");
    j["confirmed_lsn"] = get("confirmed_lsn");
    j["received_lsn"] = get("received_lsn");
    j["restart_pos"] = get("restart_pos");  // MySQL: binlog position (file number << 32 | offset) to resume from
    j["changes_applied"] = std::atoll(get("changes_applied", "0").c_str());
    j["changes_per_s"] = std::atof(get("changes_per_s", "0").c_str());
    j["apply_retries"] = std::atoll(get("apply_retries", "0").c_str());
    j["error"] = get("error");
    j["proxy"] = {{"read_write", get("proxy_rw")}, {"read_only", get("proxy_ro")},
                  {"read_percent_to_target", std::atoi(get("read_percent", "0").c_str())},
                  {"clients", std::atoll(get("proxy_clients", "0").c_str())}};
    j["reverse_lag_bytes"] = std::atoll(get("reverse_lag_bytes", "0").c_str());
    j["reverse_applied_lsn"] = get("reverse_applied_lsn");
    j["verify"] = {{"state", get("verify_state")}, {"clean", get("verify_clean") == "true"},
                   {"summary", get("verify_summary")}};
    j["write_pauses_ms"] = nlohmann::json::array();
    for (const auto& p : Split(get("write_pauses_ms"), ',')) j["write_pauses_ms"].push_back(std::atof(p.c_str()));
    j["tables"] = nlohmann::json::array();
    for (const auto& t : tables)
      j["tables"].push_back({{"name", t.name},
                             {"state", t.state},
                             {"rows_copied", t.rows_copied},
                             {"bytes_copied", t.bytes_copied},
                             {"estimated_rows", t.est_rows},
                             {"chunks_done", t.chunks_done},
                             {"chunks_total", t.chunks_total}});
    j["events"] = nlohmann::json::array();
    for (const auto& e : s.Events(20)) j["events"].push_back({{"time", e.time}, {"phase", e.phase}, {"message", e.message}});
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::cout << fmt::format("migration {}   phase: {}   ({})\n", spec.name, phase,
                           running ? "running, pid " + get("pid") : "not running");
  std::cout << fmt::format("  source {}\n", get("source"));
  if (!get("source_replica").empty()) std::cout << fmt::format("  read from replica {}\n", get("source_replica"));
  std::cout << fmt::format("  target {}\n", get("target"));
  if (!get("error").empty()) std::cout << "  error: " << get("error") << "\n";
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
  if (!get("reverse_lag_bytes").empty())
    std::cout << fmt::format("  reverse (target -> source): lag {} bytes, {} s, {} changes applied\n",
                             get("reverse_lag_bytes"), get("reverse_lag_seconds", "0"),
                             get("reverse_changes_applied", "0"));
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

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"midflight: move a live PostgreSQL database to another server while its applications keep working"};
  app.require_subcommand(1);
  std::string spec_path;
  bool json = false, verbose = false;
  int workers = 0, partitions = 0;
  app.add_flag("-v,--verbose", verbose, "debug logging");

  auto* run = app.add_subcommand("run", "run (or resume) the migration described by SPEC.yaml until stopped");
  run->add_option("spec", spec_path, "migration spec (YAML)")->required();
  run->add_option("--copy-workers", workers, "override copy_workers");
  run->add_option("--partitions", partitions, "override partitions (first run only)");

  auto* status = app.add_subcommand("status", "print the migration's phase, copy progress and lag");
  status->add_option("spec", spec_path, "migration spec (YAML)")->required();
  status->add_flag("--json", json, "one JSON object");

  // Operations on a running migration, sent to its control endpoint.
  bool force = false, repair = false, back = false;
  int percent = 100;
  int64_t rate = -1;
  auto* sw = app.add_subcommand("switch", "move the applications' traffic: `switch reads` or `switch writes`");
  sw->require_subcommand(1);
  auto* sw_reads = sw->add_subcommand("reads", "send read-only transactions to the target (--percent for a canary)");
  sw_reads->add_option("spec", spec_path, "migration spec (YAML)")->required();
  sw_reads->add_option("--percent", percent, "share of new read-only transactions sent to the target (0-100)");
  sw_reads->add_flag("--back", back, "send reads back to the source (same as --percent 0)");
  sw_reads->add_flag("--force", force, "switch even when the target lags");
  auto* sw_writes = sw->add_subcommand("writes", "move writes to the target (pause, drain, catch up, release)");
  sw_writes->add_option("spec", spec_path, "migration spec (YAML)")->required();
  sw_writes->add_flag("--force", force, "skip the lag, verification, window and approval checks");
  auto* rollback = app.add_subcommand("rollback", "move writes back to the source (after switch writes)");
  rollback->add_option("spec", spec_path, "migration spec (YAML)")->required();
  rollback->add_flag("--force", force, "roll back even when the source lags behind the target");
  auto* complete = app.add_subcommand("complete", "finish: stop replication, drop what midflight created");
  complete->add_option("spec", spec_path, "migration spec (YAML)")->required();
  auto* approve = app.add_subcommand("approve", "approve the write switch (cutover.require_approval)");
  approve->add_option("spec", spec_path, "migration spec (YAML)")->required();
  auto* verify = app.add_subcommand("verify", "compare source and target live, while writes continue");
  verify->add_option("spec", spec_path, "migration spec (YAML)")->required();
  verify->add_flag("--repair", repair, "re-copy the rows found different through the apply path");
  verify->add_option("--rate", rate, "source rows read per second (0 = unlimited; default verify.rows_per_s)");

  auto* compare = app.add_subcommand("compare", "compare every table of source and target row for row (ordered hash)");
  compare->add_option("spec", spec_path, "migration spec (YAML)")->required();
  compare->add_flag("--json", json, "one JSON object");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (verbose) midflight::SetLogLevel(midflight::LogLevel::kDebug);
  auto spec = midflight::LoadSpec(spec_path);
  if (!spec.ok()) return Fail(spec.status());
  if (workers > 0) spec->copy_workers = workers;
  if (partitions > 0) spec->partitions = partitions;

  if (*run) {
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    midflight::Status st = IsMySql(*spec) ? midflight::RunMyMigration(*spec, g_stop)
                                          : midflight::RunPgMigration(*spec, g_stop);
    if (!st.ok()) return Fail(st);
    return 0;
  }
  if (*status) return Status(*spec, json);
  std::string op;
  if (sw_reads->parsed()) op = fmt::format("/api/switch-reads?percent={}", back ? 0 : percent);
  if (sw_writes->parsed()) op = "/api/switch-writes";
  if (*rollback) op = "/api/rollback";
  if (*complete) op = "/api/complete";
  if (*approve) op = "/api/approve";
  if (*verify) op = fmt::format("/api/verify?repair={}&rate={}", repair ? 1 : 0, rate);
  if (!op.empty()) {
    if (force) op += op.find('?') == std::string::npos ? "?force=1" : "&force=1";
    if (IsMySql(*spec)) return Fail(midflight::OperatorError("switch, rollback, complete and verify are for PostgreSQL migrations (for now)"));
    auto r = midflight::http::Call(spec->control, "POST", op);
    if (!r.ok()) {
      if (r.status().code() == midflight::StatusCode::kRetryCall)
        return Fail(midflight::OperatorError(fmt::format(
            "migration {} is not running (nothing answers at {}); start it with `midflight run {}`", spec->name,
            spec->control, spec_path)));
      return Fail(r.status());
    }
    std::fputs(r->body.c_str(), r->status == 200 || r->status == 422 ? stdout : stderr);
    return r->status == 200 ? 0 : 1;
  }
  if (*compare) {
    auto result = IsMySql(*spec) ? midflight::CompareMyTables(*spec) : midflight::CompareTables(*spec);
    if (!result.ok()) return Fail(result.status());
    bool all_equal = true;
    nlohmann::json j = nlohmann::json::array();
    for (const auto& c : *result) {
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
  return 2;
}
