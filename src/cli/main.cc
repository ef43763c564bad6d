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
  return 0;
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
