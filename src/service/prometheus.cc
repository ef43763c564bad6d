// The Prometheus text exposition writer; see prometheus.h.
#include "service/prometheus.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

namespace midflight {
namespace {

bool IsLetter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

std::string Sanitize(std::string_view name, bool allow_colon) {
  std::string out;
  out.reserve(name.size() + 1);
  if (name.empty() || IsDigit(name.front())) out += '_';
  for (char c : name) out += IsLetter(c) || IsDigit(c) || (allow_colon && c == ':') ? c : '_';
  return out;
}

std::string Escape(std::string_view s, bool quotes) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string PromMetricName(std::string_view name) {
  return Sanitize(name, /*allow_colon=*/true);
}
std::string PromLabelName(std::string_view name) {
  return Sanitize(name, /*allow_colon=*/false);
}
std::string PromEscapeLabelValue(std::string_view value) {
  return Escape(value, /*quotes=*/true);
}
std::string PromEscapeHelp(std::string_view help) {
  return Escape(help, /*quotes=*/false);
}

std::string PromValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::trunc(value) && std::fabs(value) < 9.2e18) return fmt::format("{}", static_cast<int64_t>(value));
  return fmt::format("{}", value);
}

void PromWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  std::string metric = PromMetricName(name);
  for (current_ = 0; current_ < groups_.size(); ++current_) {
    if (groups_[current_].name == metric) return;
  }
  if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary") type = "untyped";
  groups_.push_back({metric, fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric, PromEscapeHelp(help), metric, type)});
}

void PromWriter::Sample(std::string_view name, const PromLabels& labels, double value) {
  std::string metric = PromMetricName(name);
  if (current_ >= groups_.size()) {
    groups_.push_back({metric, ""});
    current_ = groups_.size() - 1;
  }
  std::string& out = groups_[current_].text;
  out += metric;
  if (!labels.empty()) {
    out += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) out += ',';
      out += fmt::format("{}=\"{}\"", PromLabelName(labels[i].first), PromEscapeLabelValue(labels[i].second));
    }
    out += '}';
  }
  out += ' ';
  out += PromValue(value);
  out += '\n';
}

std::string PromWriter::Take() {
  std::string out;
  for (const Group& g : groups_) out += g.text;
  groups_.clear();
  current_ = 0;
  return out;
}

}  // namespace midflight
