#include "service/prometheus.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace midflight {
namespace {

TEST(PrometheusTest, FamilyWithLabelledSamples) {
  PromWriter w;
  w.Family("midflight_rows_copied_total", "counter", "Rows copied by the snapshot.");
  w.Sample("midflight_rows_copied_total", {{"migration", "orders"}, {"table", "public.orders"}}, 1200000);
  w.Sample("midflight_rows_copied_total", {{"migration", "users"}, {"table", "public.users"}}, 0);
  w.Family("midflight_lag_seconds", "gauge", "Replication lag.");
  w.Sample("midflight_lag_seconds", 0.25);
  EXPECT_EQ(w.Take(),
            "# HELP midflight_rows_copied_total Rows copied by the snapshot.\n"
            "# TYPE midflight_rows_copied_total counter\n"
            "midflight_rows_copied_total{migration=\"orders\",table=\"public.orders\"} 1200000\n"
            "midflight_rows_copied_total{migration=\"users\",table=\"public.users\"} 0\n"
            "# HELP midflight_lag_seconds Replication lag.\n"
            "# TYPE midflight_lag_seconds gauge\n"
            "midflight_lag_seconds 0.25\n");
  EXPECT_EQ(w.Take(), "");
}

TEST(PrometheusTest, ARevisitedFamilyKeepsItsSamplesTogetherAndItsHelpOnce) {
  PromWriter w;
  w.Family("a", "gauge", "A.");
  w.Sample("a", {{"m", "1"}}, 1);
  w.Family("b", "gauge", "B.");
  w.Sample("b", 2);
  w.Family("a", "counter", "ignored");
  w.Sample("a", {{"m", "2"}}, 3);
  EXPECT_EQ(w.Take(),
            "# HELP a A.\n# TYPE a gauge\na{m=\"1\"} 1\na{m=\"2\"} 3\n"
            "# HELP b B.\n# TYPE b gauge\nb 2\n");
}

TEST(PrometheusTest, LabelValuesAndHelpAreEscaped) {
  PromWriter w;
  w.Family("x", "gauge", "back\\slash \"quoted\"\nsecond line");
  w.Sample("x", {{"table", "a\\b \"c\"\nd"}}, 1);
  EXPECT_EQ(w.Take(),
            "# HELP x back\\\\slash \"quoted\"\\nsecond line\n"
            "# TYPE x gauge\n"
            "x{table=\"a\\\\b \\\"c\\\"\\nd\"} 1\n");
}

TEST(PrometheusTest, ValuesNeverUseAnExponentForIntegers) {
  EXPECT_EQ(PromValue(12345678901), "12345678901");
  EXPECT_EQ(PromValue(-42), "-42");
  EXPECT_EQ(PromValue(-0.0), "0");
  EXPECT_EQ(PromValue(9007199254740993.0), "9007199254740992");  // the double nearest to it
  EXPECT_EQ(PromValue(0.1), "0.1");
  EXPECT_EQ(PromValue(1234567.5), "1234567.5");
  EXPECT_EQ(PromValue(1e300), "1e+300");
  EXPECT_EQ(PromValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(PromValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(PromValue(-std::numeric_limits<double>::infinity()), "-Inf");
}

TEST(PrometheusTest, InvalidNamesBecomeUnderscores) {
  EXPECT_EQ(PromMetricName("midflight:rows_total"), "midflight:rows_total");
  EXPECT_EQ(PromMetricName("rows-copied.total"), "rows_copied_total");
  EXPECT_EQ(PromMetricName("9lives"), "_9lives");
  EXPECT_EQ(PromMetricName(""), "_");
  EXPECT_EQ(PromLabelName("a:b"), "a_b");
  EXPECT_EQ(PromLabelName("täble"), "t__ble");

  PromWriter w;
  w.Family("my-metric", "bogus", "h");
  w.Sample("my-metric", {{"bad label", "v"}}, 1);
  EXPECT_EQ(w.Take(), "# HELP my_metric h\n# TYPE my_metric untyped\nmy_metric{bad_label=\"v\"} 1\n");
}

TEST(PrometheusTest, SampleBeforeAnyFamilyIsUntypedWithoutComments) {
  PromWriter w;
  w.Sample("up", 1);
  EXPECT_EQ(w.Take(), "up 1\n");
}

}  // namespace
}  // namespace midflight
