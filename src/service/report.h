// `midflight report NAME`: the migration's story as one self-contained HTML
// page (no script, no network: inline CSS and SVG), for the change ticket.
// Built from the state store alone, so it works while the migration runs
// and long after: the phase timeline, the copy (throughput over time,
// per-table figures), lag over time, every write pause with its drain /
// catch-up / sequences split, verification runs, throttle episodes, and the
// operator actions with who and why.
//
// The time series (copy rows, lag, apply rate) come from the store's
// "series" key, appended by the service's sampler (AppendSeriesPoint):
// bounded to kSeriesMaxPoints; when full, every other point goes and the
// interval doubles, so a three-week migration keeps its whole shape.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "control/spec.h"
#include "control/state_store.h"

namespace midflight {

struct SeriesPoint {
  double t = 0;  // Unix seconds
  int64_t rows_copied = 0;
  double lag_seconds = 0;
  int64_t lag_bytes = 0;
  double changes_per_s = 0;
};

constexpr size_t kSeriesMaxPoints = 1440;
constexpr double kSeriesFirstInterval = 5;  // seconds

// Appends `p` to the store's series when the series' interval has passed
// since its last point (returns whether it did).
bool AppendSeriesPoint(StateStore& store, const SeriesPoint& p);

// What the page is made of (read from the store by BuildReport; tests fill it).
struct ReportInput {
  std::string name, engine, source, target;  // URIs redacted
  std::string phase;
  double generated_at = 0;  // Unix seconds
  std::vector<EventRow> events;  // oldest first
  std::vector<TableRow> tables;
  std::map<std::string, std::string> kv;  // the store's keys (series, verify_reports, write_pauses_ms, ...)
};

std::string ReportHtml(const ReportInput& in);

// The report of `spec`'s migration from its store.
std::string BuildReport(const MigrationSpec& spec, StateStore& store, const std::string& engine_name);

// "2026-11-21T10:00:00Z" (as the store writes event times) -> Unix seconds; 0 when malformed.
double ParseEventTime(const std::string& iso);

}  // namespace midflight
