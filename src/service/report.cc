#include "service/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>
#include <regex>

#include "base/clock.h"
#include "base/uri.h"

namespace midflight {

using json = nlohmann::json;

namespace {

std::string Esc(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string When(double t) { return t > 0 ? IsoUtc(static_cast<int64_t>(t * 1e6)) : "—"; }

std::string Dur(double s) {
  if (s < 0) s = 0;
  if (s < 120) return fmt::format("{:.1f} s", s);
  if (s < 7200) return fmt::format("{:.0f} min {:02.0f} s", std::floor(s / 60), std::fmod(s, 60));
  if (s < 172800) return fmt::format("{:.0f} h {:02.0f} min", std::floor(s / 3600), std::floor(std::fmod(s, 3600) / 60));
  return fmt::format("{:.0f} d {:.0f} h", std::floor(s / 86400), std::floor(std::fmod(s, 86400) / 3600));
}

std::string Num(double v) {
  if (std::fabs(v) >= 1e9) return fmt::format("{:.2f} G", v / 1e9);
  if (std::fabs(v) >= 1e6) return fmt::format("{:.2f} M", v / 1e6);
  if (std::fabs(v) >= 1e4) return fmt::format("{:.1f} k", v / 1e3);
  return fmt::format("{:.4g}", v);
}

// A line chart over time, in plain SVG. data-points says how many points it
// drew (tests count them).
std::string LineChart(const std::string& id, const std::vector<std::pair<double, double>>& pts, const std::string& unit,
                      const char* color) {
  const int W = 860, H = 180, L = 60, B = 22;
  if (pts.size() < 2)
    return fmt::format(R"(<p class="muted" id="{}" data-points="{}">not enough samples yet</p>)", id, pts.size());
  double t0 = pts.front().first, t1 = pts.back().first, vmax = 0;
  for (const auto& [t, v] : pts) vmax = std::max(vmax, v);
  if (t1 <= t0) t1 = t0 + 1;
  if (vmax <= 0) vmax = 1;
  std::string poly;
  for (const auto& [t, v] : pts)
    poly += fmt::format("{:.1f},{:.1f} ", L + (t - t0) / (t1 - t0) * (W - L - 10), 8 + (H - B - 8) * (1 - v / vmax));
  std::string svg = fmt::format(R"(<svg id="{}" class="chart" data-points="{}" width="{}" height="{}" viewBox="0 0 {} {}">)",
                                id, pts.size(), W, H, W, H);
  svg += fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/>)", L, H - B, W - 10, H - B);
  svg += fmt::format(R"(<line x1="{}" y1="8" x2="{}" y2="{}" class="axis"/>)", L, L, H - B);
  svg += fmt::format(R"(<text x="{}" y="14" text-anchor="end">{} {}</text>)", L - 4, Esc(Num(vmax)), Esc(unit));
  svg += fmt::format(R"(<text x="{}" y="{}" text-anchor="end">0</text>)", L - 4, H - B);
  svg += fmt::format(R"(<text x="{}" y="{}">{}</text>)", L, H - 6, When(t0));
  svg += fmt::format(R"(<text x="{}" y="{}" text-anchor="end">{}</text>)", W - 10, H - 6, When(t1));
  svg += fmt::format(R"(<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/></svg>)", color, poly);
  return svg;
}

struct Span {
  std::string phase;
  double from = 0, to = 0;
};

const char* PhaseColor(const std::string& p) {
  if (p == "copying") return "#3b82f6";
  if (p == "replicating") return "#10b981";
  if (p == "reads_switched") return "#f59e0b";
  if (p == "writes_switched") return "#ef4444";
  if (p == "completed") return "#6b7280";
  if (p == "paused") return "#a78bfa";
  if (p == "failed") return "#991b1b";
  return "#94a3b8";
}

std::string Timeline(const std::vector<Span>& spans) {
  if (spans.empty()) return R"(<p class="muted" id="timeline" data-spans="0">no phase recorded</p>)";
  const int W = 860, H = 46;
  const double t0 = spans.front().from, t1 = std::max(spans.back().to, t0 + 1);
  std::string svg = fmt::format(R"(<svg id="timeline" class="chart" data-spans="{}" width="{}" height="{}">)", spans.size(), W, H);
  for (const auto& s : spans) {
    double x = (s.from - t0) / (t1 - t0) * W, w = std::max(1.0, (s.to - s.from) / (t1 - t0) * W);
    svg += fmt::format(R"(<rect x="{:.1f}" y="4" width="{:.1f}" height="22" fill="{}"><title>{}: {} ({})</title></rect>)", x,
                       w, PhaseColor(s.phase), Esc(s.phase), When(s.from), Dur(s.to - s.from));
  }
  svg += fmt::format(R"(<text x="0" y="42">{}</text><text x="{}" y="42" text-anchor="end">{}</text></svg>)", When(t0), W,
                     When(t1));
  std::string legend = "<table><tr><th>phase</th><th>from</th><th>for</th></tr>";
  for (const auto& s : spans)
    legend += fmt::format(R"(<tr><td><span class="sw" style="background:{}"></span>{}</td><td>{}</td><td class="n">{}</td></tr>)",
                          PhaseColor(s.phase), Esc(s.phase), When(s.from), Dur(s.to - s.from));
  return svg + legend + "</table>";
}

}  // namespace

double ParseEventTime(const std::string& iso) {
  tm t{};
  if (iso.size() < 19 || !strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &t)) return 0;
  return static_cast<double>(timegm(&t));
}

bool AppendSeriesPoint(StateStore& store, const SeriesPoint& p) {
  json s = json::parse(store.Get("series").value_or(""), nullptr, false);
  if (!s.is_object() || !s.contains("points") || !s["points"].is_array())
    s = json{{"interval", kSeriesFirstInterval}, {"points", json::array()}};
  json& pts = s["points"];
  const double interval = s.value("interval", kSeriesFirstInterval);
  if (!pts.empty() && p.t - pts.back()[0].get<double>() < interval) return false;
  pts.push_back(json::array({p.t, p.rows_copied, p.lag_seconds, p.lag_bytes, p.changes_per_s}));
  if (pts.size() > kSeriesMaxPoints) {
    json kept = json::array();
    for (size_t i = 0; i < pts.size(); i += 2) kept.push_back(pts[i]);
    pts = std::move(kept);
    s["interval"] = interval * 2;
  }
  (void)store.Put("series", s.dump());
  return true;
}

std::string ReportHtml(const ReportInput& in) {
  auto kv = [&](const char* k) {
    auto it = in.kv.find(k);
    return it == in.kv.end() ? std::string() : it->second;
  };
  // Phase spans from the audit trail (each event carries the phase it was recorded in).
  std::vector<Span> spans;
  for (const auto& e : in.events) {
    double t = ParseEventTime(e.time);
    if (t <= 0 || e.phase.empty()) continue;
    if (spans.empty() || spans.back().phase != e.phase) {
      if (!spans.empty()) spans.back().to = t;
      spans.push_back({e.phase, t, t});
    } else {
      spans.back().to = t;
    }
  }
  if (!spans.empty() && spans.back().phase != "completed" && spans.back().phase != "aborted")
    spans.back().to = std::max(spans.back().to, in.generated_at);

  // Series: copy throughput (rows/s between points), lag, apply rate.
  json series = json::parse(kv("series").empty() ? "{}" : kv("series"), nullptr, false);
  std::vector<std::pair<double, double>> copy_rate, lag, apply;
  if (series.is_object() && series.contains("points") && series["points"].is_array()) {
    const json& pts = series["points"];
    for (size_t i = 0; i < pts.size(); ++i) {
      const double t = pts[i][0].get<double>();
      lag.push_back({t, pts[i][2].get<double>()});
      apply.push_back({t, pts[i][4].get<double>()});
      if (i > 0) {
        const double dt = t - pts[i - 1][0].get<double>();
        const double dr = pts[i][1].get<double>() - pts[i - 1][1].get<double>();
        if (dt > 0) copy_rate.push_back({t, std::max(0.0, dr / dt)});
      }
    }
  }
  // Copy: keep the copy's own stretch of the series (rows still growing).
  while (copy_rate.size() > 2 && copy_rate.back().second == 0) copy_rate.pop_back();

  std::string h;
  h += R"(<!doctype html><html lang="en"><head><meta charset="utf-8"><title>midflight report: )" + Esc(in.name) +
       R"(</title><style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:900px;color:#111}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
table{border-collapse:collapse;width:100%;margin:6px 0}td,th{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}
th{font-weight:600;background:#f7f7f7}.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#666}
.chart text{font-size:11px;fill:#444}.axis{stroke:#bbb}.sw{display:inline-block;width:10px;height:10px;margin-right:6px}
code,.mono{font-family:ui-monospace,monospace;font-size:12px}details{margin:8px 0}
</style></head><body>)";
  h += fmt::format(R"(<h1>Migration {}</h1><p class="muted">{} engine · <code>{}</code> → <code>{}</code><br>phase now: <b id="phase">{}</b> · report generated {}</p>)",
                   Esc(in.name), Esc(in.engine), Esc(in.source), Esc(in.target), Esc(in.phase), When(in.generated_at));

  h += "<h2>Phase timeline</h2>" + Timeline(spans);

  h += "<h2>Copy</h2>";
  h += LineChart("chart-copy", copy_rate, "rows/s", "#3b82f6");
  int64_t total_rows = 0, total_bytes = 0;
  h += R"(<table id="tables"><tr><th>table</th><th>state</th><th class="n">rows</th><th class="n">bytes</th><th class="n">chunks</th><th class="n">rows/s</th><th class="n">time (rows ÷ rate)</th></tr>)";
  for (const auto& t : in.tables) {
    total_rows += t.rows_copied;
    total_bytes += t.bytes_copied;
    h += fmt::format(R"(<tr><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}/{}</td><td class="n">{:.0f}</td><td class="n">{}</td></tr>)",
                     Esc(t.name), Esc(t.state), t.rows_copied, t.bytes_copied, t.chunks_done, t.chunks_total, t.rows_per_s,
                     t.rows_per_s > 0 ? Dur(t.rows_copied / t.rows_per_s) : "—");
  }
  h += fmt::format(R"(<tr><th>{} tables</th><th></th><th class="n">{}</th><th class="n">{}</th><th></th><th></th><th></th></tr></table>)",
                   in.tables.size(), total_rows, total_bytes);

  h += "<h2>Lag over time</h2>" + LineChart("chart-lag", lag, "s", "#ef4444");
  h += "<h2>Changes applied per second</h2>" + LineChart("chart-apply", apply, "changes/s", "#10b981");

  // Write pauses, from the switch's own event ("... write pause 18 ms (drain 1 ms, catch-up 5 ms, sequences 12 ms)").
  static const std::regex pause_re(
      R"(write pause ([0-9.]+) ms \(drain ([0-9.]+) ms, catch-up ([0-9.]+) ms, sequences ([0-9.]+) ms\))");
  std::string rows;
  int pauses = 0;
  for (const auto& e : in.events) {
    std::smatch m;
    if (!std::regex_search(e.message, m, pause_re)) continue;
    ++pauses;
    const double total = std::stod(m[1]), d = std::stod(m[2]), c = std::stod(m[3]), q = std::stod(m[4]);
    const double scale = 300.0 / std::max(1.0, total);
    rows += fmt::format(
        R"(<tr><td>{}</td><td>{}</td><td>{}</td><td class="n">{:.0f} ms</td><td class="n">{:.0f}</td><td class="n">{:.0f}</td><td class="n">{:.0f}</td>)"
        R"(<td><svg width="310" height="12"><rect width="{:.1f}" height="12" fill="#60a5fa"/><rect x="{:.1f}" width="{:.1f}" height="12" fill="#f59e0b"/><rect x="{:.1f}" width="{:.1f}" height="12" fill="#a78bfa"/></svg></td></tr>)",
        Esc(e.time), Esc(e.actor), e.message.find("to the source") != std::string::npos ? "rollback" : "switch writes", total,
        d, c, q, d * scale, d * scale, c * scale, (d + c) * scale, q * scale);
  }
  h += fmt::format(R"(<h2>Write pauses <span class="muted">({})</span></h2>)", pauses);
  h += pauses ? R"(<table id="pauses"><tr><th>when</th><th>by</th><th>what</th><th class="n">pause</th><th class="n">drain ms</th><th class="n">catch-up ms</th><th class="n">sequences ms</th><th>split <span class="sw" style="background:#60a5fa"></span>drain <span class="sw" style="background:#f59e0b"></span>catch-up <span class="sw" style="background:#a78bfa"></span>sequences</th></tr>)" + rows + "</table>"
              : R"(<p class="muted">no write switch</p>)";

  json reports = json::parse(kv("verify_reports").empty() ? "[]" : kv("verify_reports"), nullptr, false);
  h += "<h2>Verification runs</h2>";
  if (!reports.is_array() || reports.empty()) {
    h += R"(<p class="muted">no verification recorded)" +
         (kv("verify_summary").empty() ? std::string() : "; last: " + Esc(kv("verify_summary"))) + "</p>";
  } else {
    h += R"(<table id="verifications"><tr><th>when</th><th>kind</th><th>by</th><th>result</th><th class="n">rows</th><th class="n">differing</th><th class="n">repaired</th><th class="n">took</th></tr>)";
    for (const auto& r : reports)
      h += fmt::format(R"(<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>)",
                       When(r.value("at", 0.0)), Esc(r.value("kind", "")), Esc(r.value("actor", "")),
                       r.value("clean", false) ? "clean" : "<b>NOT CLEAN</b>", r.value("rows", int64_t{0}),
                       r.value("differences", int64_t{0}), r.value("repaired", int64_t{0}), Dur(r.value("seconds", 0.0)));
    h += "</table>";
  }

  std::string throttle, actions, all;
  int episodes = 0, n_actions = 0;
  for (const auto& e : in.events) {
    const std::string line = fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", Esc(e.time), Esc(e.actor),
                                         Esc(e.phase), Esc(e.message));
    all += line;
    if (e.message.starts_with("throttled") || e.message.starts_with("throttling cleared")) {
      throttle += line;
      if (e.message.starts_with("throttled")) ++episodes;
    }
    if (e.actor != "midflight" && !e.actor.empty()) {
      actions += line;
      ++n_actions;
    }
  }
  h += fmt::format(R"(<h2>Throttle episodes <span class="muted">({})</span></h2>)", episodes);
  h += episodes ? R"(<table id="throttle"><tr><th>when</th><th>by</th><th>phase</th><th>what</th></tr>)" + throttle + "</table>"
                : R"(<p class="muted">the target never showed distress</p>)";
  h += fmt::format(R"(<h2>Operator actions <span class="muted">({})</span></h2>)", n_actions);
  h += n_actions ? R"(<table id="actions"><tr><th>when</th><th>who</th><th>phase</th><th>what and why</th></tr>)" + actions + "</table>"
                 : R"(<p class="muted">none</p>)";
  h += fmt::format(R"(<h2>Audit trail</h2><details><summary>all {} events</summary><table><tr><th>when</th><th>actor</th><th>phase</th><th>message</th></tr>{}</table></details>)",
                   in.events.size(), all);
  h += R"(<p class="muted">midflight report · self-contained: no script, no network.</p></body></html>)";
  return h;
}

std::string BuildReport(const MigrationSpec& spec, StateStore& store, const std::string& engine_name) {
  ReportInput in;
  in.name = spec.name;
  in.engine = engine_name;
  in.source = RedactUri(spec.source);
  in.target = RedactUri(spec.target);
  in.phase = PhaseName(store.phase());
  in.generated_at = NowUnixMicros() / 1e6;
  in.events = store.Events(100000);
  in.tables = store.Tables();
  in.kv = store.GetAll();
  return ReportHtml(in);
}

}  // namespace midflight
