#include "service/process_metrics.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace midflight {
namespace {

// A real /proc/<pid>/stat line, with a command name that holds a space and a ')'.
constexpr const char* kStat =
    "4242 (midflight ) x) S 1 4242 4242 0 -1 4194560 1960 0 0 0 250 150 0 0 20 0 17 0 360000 123456789 2048 "
    "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";

TEST(ProcessMetricsTest, ParsesStatCountingFieldsFromTheLastParenthesis) {
  auto p = ParseProcStat(kStat, 100, 4096, 1796000000);
  ASSERT_TRUE(p.has_value());
  EXPECT_DOUBLE_EQ(p->cpu_seconds, 4.0);  // (250 + 150) ticks / 100
  EXPECT_EQ(p->threads, 17);
  EXPECT_EQ(p->virtual_bytes, 123456789);
  EXPECT_EQ(p->resident_bytes, 2048 * 4096);
  EXPECT_DOUBLE_EQ(p->start_time_seconds, 1796000000 + 3600.0);
}

TEST(ProcessMetricsTest, RefusesWhatIsNotAStatLine) {
  EXPECT_FALSE(ParseProcStat("", 100, 4096, 0).has_value());
  EXPECT_FALSE(ParseProcStat("4242 (x) S 1 2 3", 100, 4096, 0).has_value());
  EXPECT_FALSE(ParseProcStat("4242 no parenthesis at all", 100, 4096, 0).has_value());
}

TEST(ProcessMetricsTest, ReadsThisProcess) {
  ProcessStats p = ReadProcessStats();
  EXPECT_GT(p.resident_bytes, 0);
  EXPECT_GE(p.threads, 1);
  EXPECT_GE(p.open_fds, 3);  // stdin, stdout, stderr at least
  EXPECT_GT(p.max_fds, 0);
  EXPECT_GT(p.start_time_seconds, 1.5e9);
}

TEST(ProcessMetricsTest, NeverEmptyEvenWithoutMigrations) {
  PromWriter w;
  ProcessStats p;
  p.cpu_seconds = 1.5;
  p.resident_bytes = 1000;
  p.threads = 3;
  p.open_fds = 7;
  p.max_fds = 1024;
  WriteServiceMetrics(w, "0.4.0", "abc123", {}, p);
  std::string text = w.Take();
  EXPECT_NE(text.find("# TYPE midflight_build_info gauge\n"
                      "midflight_build_info{version=\"0.4.0\",commit=\"abc123\"} 1\n"),
            std::string::npos)
      << text;
  // Every phase, zeros included, so a dashboard's query has a series at once.
  for (const char* phase : {"created", "copying", "replicating", "writes_switched", "completed", "paused", "failed",
                            "aborted"})
    EXPECT_NE(text.find(fmt::format("midflight_migrations{{phase=\"{}\"}} 0\n", phase)), std::string::npos)
        << phase << "\n"
        << text;
  EXPECT_NE(text.find("process_cpu_seconds_total 1.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("process_resident_memory_bytes 1000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("process_open_fds 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("process_max_fds 1024\n"), std::string::npos) << text;
  EXPECT_NE(text.find("process_threads 3\n"), std::string::npos) << text;
}

TEST(ProcessMetricsTest, CountsMigrationsByPhase) {
  PromWriter w;
  WriteServiceMetrics(w, "v", "c", {{Phase::kReplicating, 2}, {Phase::kPaused, 1}}, ProcessStats{});
  std::string text = w.Take();
  EXPECT_NE(text.find("midflight_migrations{phase=\"replicating\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("midflight_migrations{phase=\"paused\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("midflight_migrations{phase=\"copying\"} 0\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace midflight
