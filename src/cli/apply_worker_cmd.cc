#include "cli/apply_worker_cmd.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>

#include "base/log.h"
#include "base/parse.h"
#include "base/stop.h"
#include "base/uri.h"
#include "control/spec.h"
#include "engines/engine.h"
#include "kafka/apply_worker.h"

namespace midflight::cli {
namespace {

// The options every apply-side command shares, from the spec.
Result<kafka::ApplyWorkerOptions> Options(const MigrationSpec& spec, const std::string& worker) {
  if (spec.transport.kind != TransportSpec::Kind::kKafka)
    return InvalidArgument(fmt::format("migration {}: the spec's transport is not kafka: its changes are applied by "
                                       "`midflight run` only",
                                       spec.name));
  ASSIGN_OR_RETURN(const EngineKind* engine, EngineFor(spec));
  ASSIGN_OR_RETURN(EngineKind::ApplyEnds ends, engine->ApplyEndsOf(spec));
  kafka::ApplyWorkerOptions o;
  o.migration = spec.name;
  o.transport = spec.transport;
  o.partitions = static_cast<uint32_t>(spec.partitions);
  o.worker = worker;
  o.apply.batch_size = static_cast<size_t>(std::max(1, spec.batch_size));
  o.apply.stop_on_conflict = spec.on_conflict == "stop";
  o.load_tables = ends.load_tables;
  o.open_sink = ends.open_sink;
  const std::string scheme = UriScheme(spec.source);
  o.positions = scheme == "mysql" || scheme == "mariadb" ? PositionKind::kBinlog : PositionKind::kPgLsn;
  return o;
}

Status Scrub(const Status& st, const MigrationSpec& spec) {
  return Status(st.code(), ScrubSecrets(st.message(), {spec.source, spec.target, spec.source_replica}));
}

// A StopSource that follows the signal flag.
struct SignalStop {
  explicit SignalStop(const std::atomic<bool>& flag)
      : watcher([this, &flag] {
          while (!flag && !done.WaitFor(std::chrono::milliseconds(100))) {
          }
          stop.Stop();
        }) {}
  ~SignalStop() {
    done.Stop();
    watcher.join();
  }
  StopSource stop, done;
  std::thread watcher;
};

Result<int64_t> ParseTime(const std::string& t) {
  uint64_t ms = 0;
  if (ParseU64(t, &ms)) return static_cast<int64_t>(ms);
  std::tm tm{};
  const char* end = strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end || (*end != '\0' && std::string(end) != "Z"))
    return InvalidArgument(fmt::format("--from-time '{}': give 2026-12-06T13:00:00Z (UTC) or milliseconds since the epoch", t));
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

}  // namespace

Status ApplyWorkerCommand(const std::string& spec_path, const std::string& worker_name, const std::atomic<bool>& stop) {
  ASSIGN_OR_RETURN(MigrationSpec spec, LoadSpec(spec_path));
  std::string worker = worker_name;
  if (worker.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    worker = fmt::format("{}:{}", host, getpid());
  }
  auto o = Options(spec, worker);
  if (!o.ok()) return Scrub(o.status(), spec);
  o->on_assignment = [](const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  };
  ScopedLogContext context(spec.name);
  SignalStop signal(stop);
  Status st = kafka::RunApplyWorker(*o, signal.stop);
  return st.ok() ? st : Scrub(st, spec);
}

Status ReplayCommand(const std::string& target, const std::string& state_dir, const std::string& from_offset,
                     const std::string& from_time, const std::atomic<bool>& stop) {
  std::string path = target;
  if (!std::filesystem::is_regular_file(path)) {
    const std::string dir = state_dir.empty() ? ".midflight" : state_dir;
    path = dir + "/" + target + "/spec.yaml";
    if (!std::filesystem::is_regular_file(path))
      return InvalidArgument(fmt::format("replay: '{}' is neither a spec file nor a migration with a spec at {}", target,
                                         path));
  }
  ASSIGN_OR_RETURN(MigrationSpec spec, LoadSpec(path));
  kafka::ReplayFrom from;
  if (from_offset.empty() == from_time.empty())
    return InvalidArgument("replay: give exactly one of --from-offset N|earliest and --from-time T");
  if (from_offset == "earliest") {
    from.offset = kafka::ReplayFrom::kEarliest;
  } else if (!from_offset.empty()) {
    uint64_t n = 0;
    if (!ParseU64(from_offset, &n))
      return InvalidArgument(fmt::format("replay: --from-offset '{}' is not an offset (N or earliest)", from_offset));
    from.offset = static_cast<int64_t>(n);
  }
  if (!from_time.empty()) {
    ASSIGN_OR_RETURN(from.time_ms, ParseTime(from_time));
  }
  auto o = Options(spec, fmt::format("replay:{}", getpid()));
  if (!o.ok()) return Scrub(o.status(), spec);
  ScopedLogContext context(spec.name);
  SignalStop signal(stop);
  const auto began = std::chrono::steady_clock::now();
  auto report = kafka::RunReplay(*o, from, signal.stop);
  if (!report.ok()) return Scrub(report.status(), spec);
  uint64_t total = 0;
  for (size_t p = 0; p < report->parts.size(); ++p) {
    const auto& part = report->parts[p];
    std::printf("  partition %zu: offsets %lld..%lld, %llu changes applied (%llu snapshot rows, %llu chunk resets)\n",
                p, static_cast<long long>(part.from), static_cast<long long>(part.to),
                static_cast<unsigned long long>(part.changes), static_cast<unsigned long long>(part.snapshot_rows),
                static_cast<unsigned long long>(part.resets));
    total += part.changes;
  }
  for (const auto& [table, n] : report->not_replayed)
    std::printf("  table %s has no key: its %llu changes were not replayed (each insert would add the row again)\n",
                table.c_str(), static_cast<unsigned long long>(n));
  std::printf("replay of %s done: %llu changes applied in %.1f s\n", spec.transport.Topic(spec.name).c_str(),
              static_cast<unsigned long long>(total),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
  return Status::Ok();
}

}  // namespace midflight::cli
