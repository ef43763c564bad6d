#include "service/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>
#include <vector>

namespace midflight {

std::optional<ProcessStats> ParseProcStat(std::string_view stat, int64_t ticks_per_s, int64_t page_bytes,
                                          int64_t boot_time_s) {
  const size_t close = stat.rfind(')');
  if (close == std::string_view::npos || ticks_per_s <= 0) return std::nullopt;
  // Fields after the command: 3 state, 4 ppid, ... 14 utime, 15 stime, 20
  // num_threads, 22 starttime, 23 vsize, 24 rss (proc(5)).
  std::vector<std::string_view> f;
  std::string_view rest = stat.substr(close + 1);
  while (!rest.empty()) {
    size_t b = rest.find_first_not_of(" \n");
    if (b == std::string_view::npos) break;
    rest = rest.substr(b);
    size_t e = rest.find_first_of(" \n");
    f.push_back(rest.substr(0, e));
    rest = e == std::string_view::npos ? std::string_view() : rest.substr(e);
  }
  if (f.size() < 22) return std::nullopt;  // f[0] is field 3
  auto num = [&](int field, int64_t* out) {
    std::string_view s = f[field - 3];
    return std::from_chars(s.data(), s.data() + s.size(), *out).ec == std::errc();
  };
  int64_t utime, stime, threads, start, vsize, rss;
  if (!num(14, &utime) || !num(15, &stime) || !num(20, &threads) || !num(22, &start) || !num(23, &vsize) ||
      !num(24, &rss))
    return std::nullopt;
  ProcessStats p;
  p.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks_per_s);
  p.threads = threads;
  p.virtual_bytes = vsize;
  p.resident_bytes = rss * page_bytes;
  p.start_time_seconds = static_cast<double>(boot_time_s) + static_cast<double>(start) / static_cast<double>(ticks_per_s);
  return p;
}

ProcessStats ReadProcessStats() {
  ProcessStats p;
  int64_t boot = 0;
  {
    std::ifstream in("/proc/stat");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("btime ", 0) == 0) boot = std::atoll(line.c_str() + 6);
  }
  std::ifstream in("/proc/self/stat");
  std::stringstream text;
  text << in.rdbuf();
  if (auto parsed = ParseProcStat(text.str(), sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), boot)) p = *parsed;
  if (DIR* d = opendir("/proc/self/fd")) {
    int64_t n = 0;
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
    p.open_fds = n - 1;  // not the descriptor opendir itself holds
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) p.max_fds = static_cast<int64_t>(rl.rlim_cur);
  return p;
}

void WriteServiceMetrics(PromWriter& w, std::string_view version, std::string_view commit,
                         const std::map<Phase, int>& by_phase, const ProcessStats& p) {
  w.Family("midflight_build_info", "gauge", "Always 1; the labels say which midflight answers.");
  w.Sample("midflight_build_info", {{"version", std::string(version)}, {"commit", std::string(commit)}}, 1);
  w.Family("midflight_migrations", "gauge", "Migrations this process hosts, by phase.");
  for (int i = 0; i <= static_cast<int>(Phase::kAborted); ++i) {
    const Phase ph = static_cast<Phase>(i);
    auto it = by_phase.find(ph);
    w.Sample("midflight_migrations", {{"phase", PhaseName(ph)}}, it == by_phase.end() ? 0 : it->second);
  }
  w.Family("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
  w.Sample("process_cpu_seconds_total", p.cpu_seconds);
  w.Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  w.Sample("process_resident_memory_bytes", static_cast<double>(p.resident_bytes));
  w.Family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  w.Sample("process_virtual_memory_bytes", static_cast<double>(p.virtual_bytes));
  w.Family("process_open_fds", "gauge", "Open file descriptors.");
  w.Sample("process_open_fds", static_cast<double>(p.open_fds));
  w.Family("process_max_fds", "gauge", "The open file descriptor limit (soft).");
  w.Sample("process_max_fds", static_cast<double>(p.max_fds));
  w.Family("process_threads", "gauge", "Threads of the process.");
  w.Sample("process_threads", static_cast<double>(p.threads));
  w.Family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.");
  w.Sample("process_start_time_seconds", p.start_time_seconds);
}

}  // namespace midflight
