#include "control/knobs.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>

#include "control/spec.h"

namespace midflight {

const std::array<KnobDef, static_cast<size_t>(Knob::kCount)>& KnobDefs() {
  static const std::array<KnobDef, static_cast<size_t>(Knob::kCount)> defs = {{
      {Knob::kParallelism, "parallelism", 1, 64, true, "copy connections working at once"},
      {Knob::kCopyRowsPerS, "copy_rows_per_s", 0, 1e10, true, "copy rate limit, all workers together (0 = unlimited)"},
      {Knob::kApplyBatchSize, "apply_batch_size", 1, 100000, true, "changes per apply transaction"},
      {Knob::kApplyCommitMs, "apply_commit_ms", 0, 10000, true,
       "how long an applier waits to fill a batch before committing (commit frequency)"},
      {Knob::kApplyChangesPerS, "apply_changes_per_s", 0, 1e10, true,
       "apply rate limit, all partitions together (0 = unlimited)"},
      {Knob::kVerifyRowsPerS, "verify_rows_per_s", 0, 1e10, true,
       "live verification: source rows read per second (0 = unlimited)"},
      {Knob::kMaxLagSeconds, "max_lag_seconds", 0, 86400, false, "switch writes is refused above this lag"},
      {Knob::kDrainTimeoutSeconds, "drain_timeout_seconds", 0.1, 3600, false,
       "a write switch waits this long for open transactions to end; past it the switch is abandoned"},
      {Knob::kLockTimeoutMs, "lock_timeout_ms", 100, 3600000, true,
       "apply sessions' lock_timeout on the target; a partition that waits longer backs off and retries"},
      {Knob::kThrottleMaxBackoffMs, "throttle_max_backoff_ms", 100, 600000, true,
       "longest pause of a distressed partition before it retries"},
      {Knob::kFailAfterSeconds, "fail_after_seconds", 1, 604800, false,
       "an error that retries have not fixed for this long moves the migration to failed"},
      {Knob::kReplicaMaxLagSeconds, "replica_max_lag_seconds", 0, 86400, false,
       "appliers wait while a physical replica of the target replays further behind than this; a MySQL copy "
       "starts no new chunk while the source replica it reads lags more (0 = off)"},
      {Knob::kLagAlertSeconds, "lag_alert_seconds", 0, 604800, false, "webhook alert when lag stays above this ..."},
      {Knob::kLagAlertAfterSeconds, "lag_alert_after_seconds", 0, 604800, false, "... for longer than this"},
      {Knob::kStopOnConflict, "stop_on_conflict", 0, 1, true,
       "apply conflicts (insert of an existing row, update or delete of a missing one): 0 = overwrite, counted and "
       "logged; 1 = stop the migration naming table, key, position and kind (spec on_conflict: overwrite | stop)"},
      {Knob::kContinuousVerifyRowsPerS, "continuous_verify_rows_per_s", 0, 1e10, true,
       "continuous verification (spec verify.continuous): source rows its passes read per second (0 = unlimited)"},
  }};
  return defs;
}

Knobs::Knobs(const MigrationSpec& spec) {
  auto set = [&](Knob k, double v) { defaults_[static_cast<size_t>(k)] = v; };
  set(Knob::kParallelism, spec.copy_workers);
  set(Knob::kCopyRowsPerS, 0);
  set(Knob::kApplyBatchSize, spec.batch_size);
  set(Knob::kApplyCommitMs, 10);
  set(Knob::kApplyChangesPerS, 0);
  set(Knob::kVerifyRowsPerS, static_cast<double>(spec.verify.rows_per_s));
  set(Knob::kMaxLagSeconds, spec.cutover.max_lag_seconds);
  set(Knob::kDrainTimeoutSeconds, spec.cutover.drain_timeout_seconds);
  set(Knob::kLockTimeoutMs, 10000);
  set(Knob::kThrottleMaxBackoffMs, 5000);
  set(Knob::kFailAfterSeconds, 300);
  set(Knob::kReplicaMaxLagSeconds, 30);
  set(Knob::kLagAlertSeconds, 30);
  set(Knob::kLagAlertAfterSeconds, 60);
  set(Knob::kStopOnConflict, spec.on_conflict == "stop" ? 1 : 0);
  set(Knob::kContinuousVerifyRowsPerS, static_cast<double>(spec.verify.continuous_rows_per_s));
  for (const auto& [name, v] : spec.knobs)
    for (const auto& d : KnobDefs())
      if (name == d.name) defaults_[static_cast<size_t>(d.id)] = v;
  for (size_t i = 0; i < values_.size(); ++i) values_[i] = defaults_[i];
}

namespace {
const KnobDef* Find(std::string_view name) {
  for (const auto& d : KnobDefs())
    if (name == d.name) return &d;
  return nullptr;
}
std::string Names() {
  std::string out;
  for (const auto& d : KnobDefs()) out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}
std::string Num(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}
}  // namespace

Status Knobs::Set(std::string_view name, double value) {
  const KnobDef* d = Find(name);
  if (!d) return InvalidArgument(fmt::format("unknown knob '{}'; knobs are: {}", name, Names()));
  if (!std::isfinite(value) || value < d->min || value > d->max)
    return InvalidArgument(fmt::format("knob {}: {} is out of range ({} to {})", d->name, Num(value), Num(d->min), Num(d->max)));
  if (d->integer && value != std::floor(value))
    return InvalidArgument(fmt::format("knob {}: {} is not a whole number", d->name, Num(value)));
  values_[static_cast<size_t>(d->id)] = value;
  return Status::Ok();
}

Status Knobs::SetText(std::string_view name, std::string_view text) {
  if (!Find(name)) return Set(name, 0);
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    return InvalidArgument(fmt::format("knob {}: '{}' is not a number", name, text));
  return Set(name, v);
}

std::optional<double> Knobs::Value(std::string_view name) const {
  const KnobDef* d = Find(name);
  if (!d) return std::nullopt;
  return Get(d->id);
}

std::string Knobs::ToJson() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& d : KnobDefs()) {
    double v = Get(d.id);
    if (d.integer) j[d.name] = static_cast<int64_t>(v);
    else j[d.name] = v;
  }
  return j.dump();
}

std::string Knobs::OverridesJson() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& d : KnobDefs())
    if (Get(d.id) != defaults_[static_cast<size_t>(d.id)]) j[d.name] = Get(d.id);
  return j.dump();
}

Status Knobs::LoadOverrides(const std::string& json) {
  if (json.empty()) return Status::Ok();
  auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return InvalidArgument("stored knobs are not a JSON object");
  for (const auto& [k, v] : j.items()) {
    if (!v.is_number()) continue;
    if (Status st = Set(k, v.get<double>()); !st.ok()) return st;
  }
  return Status::Ok();
}

}  // namespace midflight
