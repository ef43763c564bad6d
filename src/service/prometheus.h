// The Prometheus text exposition format, version 0.0.4: a builder that the
// /metrics handler fills and then takes the text from.
//
//   PromWriter w;
//   w.Family("midflight_rows_copied_total", "counter", "Rows copied by the snapshot.");
//   w.Sample("midflight_rows_copied_total", {{"migration", "orders"}}, 1200000);
//   std::string text = w.Take();
//
// Output: one "# HELP" and "# TYPE" pair per family, then its samples. A
// family's samples always come out together, in the order given, even when
// Family() is called again for a family seen before; families come out in
// the order first seen. Not thread-safe: one writer per request.
//
// Names never make the writer fail, because they may come from an operator
// (a migration name used in a metric name): a metric name is made to match
// [a-zA-Z_:][a-zA-Z0-9_:]* and a label name [a-zA-Z_][a-zA-Z0-9_]* by turning
// every other character into '_' (and prefixing '_' to a leading digit or to
// an empty name). Label values and HELP text are escaped.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace midflight {

using PromLabels = std::vector<std::pair<std::string, std::string>>;

class PromWriter {
 public:
  // Starts (or returns to) the family `name`. `type` is "counter", "gauge",
  // "histogram", "summary" or "untyped" (anything else is written as
  // "untyped"). HELP and TYPE of a family seen before are not repeated; the
  // first ones stay.
  void Family(std::string_view name, std::string_view type, std::string_view help);

  // One sample of the current family. `name` is usually the family's; a
  // histogram's may add _bucket, _sum or _count. Before any Family() call,
  // the sample starts an untyped family without HELP or TYPE lines.
  void Sample(std::string_view name, const PromLabels& labels, double value);
  void Sample(std::string_view name, double value) { Sample(name, {}, value); }

  // The text so far; the writer is empty again.
  std::string Take();

 private:
  struct Group {
    std::string name;
    std::string text;
  };
  std::vector<Group> groups_;
  size_t current_ = 0;  // index in groups_; == size() when none
};

// The pieces, exposed for tests and other writers.
std::string PromMetricName(std::string_view name);
std::string PromLabelName(std::string_view name);
// NaN, +Inf, -Inf; integral values below 9.2e18 in magnitude without exponent
// or fraction ("12345678901"); others in the shortest form that reads back
// the same ("0.25", "1e+300").
std::string PromValue(double value);
std::string PromEscapeLabelValue(std::string_view value);  // \\, \", \n
std::string PromEscapeHelp(std::string_view help);         // \\, \n

}  // namespace midflight
