// What /metrics says about the process itself and the service as a whole, so
// that a scrape is never empty (issue 16): the build, the process's resources
// (from /proc/self, as Prometheus's own client libraries name them) and the
// number of hosted migrations in each phase, every phase listed, zeros too.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "control/phase.h"
#include "service/prometheus.h"

namespace midflight {

struct ProcessStats {
  double cpu_seconds = 0;         // user + system
  int64_t resident_bytes = 0;
  int64_t virtual_bytes = 0;
  int64_t threads = 0;
  int64_t open_fds = 0;
  int64_t max_fds = 0;            // the soft limit
  double start_time_seconds = 0;  // Unix time
};

// Parses the text of /proc/<pid>/stat. `ticks_per_s`: sysconf(_SC_CLK_TCK);
// `page_bytes`: sysconf(_SC_PAGESIZE); `boot_time_s`: /proc/stat's btime.
// nullopt when the text is not a stat line (the command name, in
// parentheses, may itself hold spaces and parentheses: fields are counted
// from the last ')').
std::optional<ProcessStats> ParseProcStat(std::string_view stat, int64_t ticks_per_s, int64_t page_bytes,
                                          int64_t boot_time_s);

// This process, from /proc/self (stat, fd/, limits via getrlimit). Fields it
// cannot read stay 0.
ProcessStats ReadProcessStats();

// midflight_build_info{version,commit} 1, the process_* families, and
// midflight_migrations{phase} for every phase (0 where none is).
void WriteServiceMetrics(PromWriter& w, std::string_view version, std::string_view commit,
                         const std::map<Phase, int>& migrations_by_phase, const ProcessStats& process);

}  // namespace midflight
