#include "service/report.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <nlohmann/json.hpp>

namespace midflight {
namespace {

ReportInput Sample() {
  ReportInput in;
  in.name = "shop";
  in.engine = "postgres";
  in.source = "postgres://app:***@a/shop";
  in.target = "postgres://app:***@b/shop";
  in.phase = "writes_switched";
  in.generated_at = ParseEventTime("2026-12-06T10:10:00Z");
  in.events = {
      {"2026-12-06T10:00:00Z", "copying", "midflight", "copy started"},
      {"2026-12-06T10:02:00Z", "replicating", "midflight", "replicating"},
      {"2026-12-06T10:05:00Z", "reads_switched", "cli:ann", "switch reads: 100% of new read-only transactions go to "
                                                           "the target: <canary> ok"},
      {"2026-12-06T10:06:00Z", "reads_switched", "midflight", "throttled: apply partition 1 (lock_timeout)"},
      {"2026-12-06T10:06:40Z", "reads_switched", "midflight", "throttling cleared"},
      {"2026-12-06T10:08:00Z", "writes_switched", "cli:ann",
       "writes switched to the target at 0/9D5BBE8: write pause 17 ms (drain 2 ms, catch-up 11 ms, sequences 3 ms)"},
  };
  nlohmann::json pts = nlohmann::json::array();
  for (int i = 0; i < 10; ++i)
    pts.push_back({in.generated_at - 600 + i * 60, i * 1000, 0.5 * i, 100 * i, 10.0 * i});
  in.kv["series"] = nlohmann::json{{"interval", 60}, {"points", pts}}.dump();
  in.kv["verify_reports"] =
      R"([{"at": 1796551200, "kind": "job", "actor": "cli:ann", "rows": 5000, "clean": true, "differences": 0, "repaired": 0, "seconds": 3.5}])";
  return in;
}

TEST(Report, DrawsEverySectionFromTheStoreAlone) {
  std::string html = ReportHtml(Sample());
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_NE(html.find(R"(id="timeline" class="chart" data-spans="4")"), std::string::npos);
  EXPECT_NE(html.find(R"(id="chart-lag" class="chart" data-points="10")"), std::string::npos);
  EXPECT_NE(html.find(R"(id="chart-copy" class="chart" data-points="9")"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"n\">17 ms</td><td class=\"n\">2</td><td class=\"n\">11</td><td class=\"n\">3</td>"),
            std::string::npos)
      << html;
  EXPECT_NE(html.find("Throttle episodes <span class=\"muted\">(1)</span>"), std::string::npos);
  EXPECT_NE(html.find("Operator actions <span class=\"muted\">(2)</span>"), std::string::npos);
  // Text from the audit trail is escaped, never markup.
  EXPECT_NE(html.find("&lt;canary&gt; ok"), std::string::npos);
  EXPECT_EQ(html.find("<canary>"), std::string::npos);
}

TEST(Report, SeriesStaysBoundedAndThinsAsItFills) {
  char tmpl[] = "/tmp/midflight-report-test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  auto store = StateStore::Open(tmpl, /*create=*/true);
  ASSERT_TRUE(store.ok()) << store.status().message();
  double t = 1'800'000'000;
  EXPECT_TRUE(AppendSeriesPoint(**store, {t, 1, 0, 0, 0}));
  EXPECT_FALSE(AppendSeriesPoint(**store, {t + 1, 2, 0, 0, 0}));  // within the interval
  for (size_t i = 1; i <= kSeriesMaxPoints; ++i) t += kSeriesFirstInterval, AppendSeriesPoint(**store, {t, 0, 0, 0, 0});
  auto s = nlohmann::json::parse(*(*store)->Get("series"));
  EXPECT_LE(s["points"].size(), kSeriesMaxPoints);
  EXPECT_GE(s["points"].size(), kSeriesMaxPoints / 2);
  EXPECT_DOUBLE_EQ(s["interval"].get<double>(), kSeriesFirstInterval * 2);
  EXPECT_DOUBLE_EQ(s["points"][0][0].get<double>(), 1'800'000'000);  // the start is kept
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace midflight
