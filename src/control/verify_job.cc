#include "control/verify_job.h"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/log.h"
#include "control/phase_driver.h"
#include "control/run_util.h"

namespace midflight {

using json = nlohmann::json;

namespace {

json Load(StateStore& store) {
  auto j = json::parse(store.Get("verify_job").value_or(""), nullptr, false);
  return j.is_object() ? j : json{{"state", "none"}};
}

double NowS() { return NowUnixMicros() / 1e6; }

// The stored job for a new pass from the first table; what the continuous
// loop knows (on, passes, repaired) carries over from `previous`.
json NewPass(int64_t rate, const std::string& kind, bool continuous, int tables_total, int64_t rows_estimate,
             const json& previous) {
  return json{{"state", "running"},
              {"kind", kind},
              {"continuous", continuous},
              {"passes", previous.value("passes", 0)},
              {"started_at", NowS()},
              {"updated_at", NowS()},
              {"actor", kind == "continuous" ? std::string("continuous verification") : ActorScope::Current()},
              {"rate", rate},
              {"tables_total", tables_total},
              {"tables_done", 0},
              {"table", ""},
              {"cursor", {{"table", ""}, {"key", json::array()}}},
              {"rows_checked", 0},
              {"rows_estimate", rows_estimate},
              {"rows_per_s", 0.0},
              {"eta_seconds", nullptr},
              {"differences", 0},
              {"repaired", 0},
              {"lines", json::array()},
              {"resumed", 0},
              {"summary", ""},
              {"error", ""}};
}

}  // namespace

VerifyJob::VerifyJob(StateStore& store, Pass pass, int tables_total, int64_t rows_estimate,
                     std::function<int64_t()> knob_rate, Continuous continuous, Repair repair)
    : store_(store),
      pass_(std::move(pass)),
      tables_total_(tables_total),
      rows_estimate_(rows_estimate),
      knob_rate_(std::move(knob_rate)),
      continuous_(std::move(continuous)),
      repair_(std::move(repair)) {}

VerifyJob::~VerifyJob() { Suspend(); }

void VerifyJob::Halt(const std::string& why) {
  if (stop_) {
    if (!stop_->flag) {
      stop_->why = why;
      stop_->flag.store(true, std::memory_order_release);
      stop_->wake.Stop();
    }
  }
  if (thread_.joinable()) thread_.join();
  stop_.reset();
}

Result<std::string> VerifyJob::Start(int64_t rate) {
  MutexLock lock(&mu_);
  if (busy_) {
    json j = Load(store_);
    return OperatorError(fmt::format("a verification job is running (started {}, {} of {} rows checked); `midflight "
                                     "verify stop` ends it",
                                     IsoUtc(static_cast<int64_t>(j.value("started_at", 0.0) * 1e6)), j.value("rows_checked", int64_t{0}),
                                     j.value("rows_estimate", int64_t{0})));
  }
  Halt("suspend");  // a thread that ended on its own, or the continuous loop waiting
  json j = NewPass(rate, "job", continuous_.on, tables_total_, rows_estimate_, Load(store_));
  RETURN_IF_ERROR(store_.Put("verify_job", j.dump()));
  (void)store_.AddEvent(fmt::format("verification job started ({})",
                                    rate >= 0 ? fmt::format("{} rows/s", rate) : "rate: knob verify_rows_per_s"));
  Launch(Begin::kNew);
  return fmt::format("verification job started: {} tables, about {} rows; `midflight verify show` follows it{}",
                     tables_total_, rows_estimate_, continuous_.on ? " (continuous verification goes on after it)" : "");
}

Result<std::string> VerifyJob::Stop(const std::string& why) {
  MutexLock lock(&mu_);
  json j = Load(store_);
  // The continuous loop between two passes: the thread waits for the next one.
  const bool waiting = !busy_ && alive_ && stop_ && !stop_->flag;
  if (j.value("state", "") != "running" && !waiting)
    return OperatorError(fmt::format("no verification job is running (it is {})", j.value("state", "none")));
  Halt(why);
  // A suspended one (no thread now) is stopped in the store alone; a stopped
  // continuous loop stays off (across restarts too) until `verify start`.
  j = Load(store_);
  if (j.value("state", "") == "running" || waiting) {
    j["state"] = "stopped";
    j["summary"] = why;
    j["updated_at"] = NowS();
  }
  if (j.value("continuous", false)) j["summary"] = j.value("summary", why) + " (continuous verification off until `midflight verify start`)";
  j["continuous"] = false;
  j.erase("next_pass_at");
  RETURN_IF_ERROR(store_.Put("verify_job", j.dump()));
  (void)store_.AddEvent(fmt::format("verification job {} after {} rows", why, j.value("rows_checked", int64_t{0})));
  return fmt::format("verification job {} ({} of about {} rows checked)", why, j.value("rows_checked", int64_t{0}),
                     j.value("rows_estimate", int64_t{0}));
}

void VerifyJob::Suspend() {
  MutexLock lock(&mu_);
  Halt("suspend");
}

void VerifyJob::ResumeIfRunning() {
  MutexLock lock(&mu_);
  if (busy_) return;
  const std::string state = Load(store_).value("state", "none");
  if (state == "running") {
    Halt("suspend");
    Launch(Begin::kResume);
  } else if (continuous_.on && state != "stopped") {
    if (alive_ && stop_ && !stop_->flag) return;  // the loop is waiting already
    Halt("suspend");
    Launch(Begin::kWait);
  }
}

void VerifyJob::Launch(Begin begin) {
  stop_ = std::make_shared<StopRequest>();
  busy_ = begin != Begin::kWait;
  alive_ = true;
  thread_ = std::thread([this, begin, stop = stop_] {
    Body(begin, stop);
    alive_ = false;
  });
}

void VerifyJob::Body(Begin begin, std::shared_ptr<StopRequest> stop) {
  for (;;) {
    if (begin == Begin::kWait) {
      json j = Load(store_);
      const double at = j.value("next_pass_at", 0.0);
      if (at > NowS() && stop->wake.WaitFor(std::chrono::duration<double>(at - NowS()))) return;
      if (stop->flag.load(std::memory_order_acquire)) return;
      busy_ = true;
      j = NewPass(-1, "continuous", true, tables_total_, rows_estimate_, j);
      if (Status st = store_.Put("verify_job", j.dump()); !st.ok()) {
        LOG_WARN("continuous verification: the next pass cannot be recorded: {}", st.message());
        busy_ = false;
        if (stop->wake.WaitFor(std::chrono::duration<double>(continuous_.pause_seconds))) return;
        continue;
      }
      Say(fmt::format("continuous verification: pass {} started", j.value("passes", 0) + 1));
    }
    const bool finished = RunPass(begin == Begin::kResume, *stop);
    busy_ = false;
    if (!finished || !continuous_.on) return;
    // The loop goes on (after a failed pass too: the next one may succeed).
    json j = Load(store_);
    if (!j.value("continuous", false)) return;
    j["passes"] = j.value("passes", 0) + 1;
    j["next_pass_at"] = NowS() + continuous_.pause_seconds;
    (void)store_.Put("verify_job", j.dump());
    begin = Begin::kWait;
  }
}

bool VerifyJob::RunPass(bool resume, StopRequest& stop_request) {
  StopRequest* stop = &stop_request;
  json j = Load(store_);
  const int64_t rate = j.value("rate", int64_t{-1});
  const bool continuous_pass = j.value("kind", "") == "continuous";
  const bool repair = continuous_pass && continuous_.repair && repair_;
  std::function<int64_t()> rows_per_s = continuous_pass && continuous_.rows_per_s ? continuous_.rows_per_s : knob_rate_;
  if (rate >= 0) rows_per_s = [rate] { return rate; };
  // What was done before this run (a resumed pass) and what this run adds.
  json base_lines = j.value("lines", json::array());
  const int64_t base_rows = j.value("rows_checked", int64_t{0});
  const int base_tables = j.value("tables_done", 0);
  const int64_t base_diffs = j.value("differences", int64_t{0});
  int64_t run_rows_finished = 0;   // rows of tables this run finished
  int64_t run_diffs_finished = 0;  // and their differences
  int run_tables = 0;
  const double run_start = NowS();
  ReplicationOps::VerifyRun run;
  if (resume) {
    run.start_after.table = j["cursor"].value("table", "");
    for (const auto& k : j["cursor"].value("key", json::array()))
      run.start_after.key.push_back(k.is_null() ? std::nullopt : std::optional<std::string>(k.get<std::string>()));
    j["resumed"] = j.value("resumed", 0) + 1;
    (void)store_.Put("verify_job", j.dump());
    Say(fmt::format("verify job: resuming after {} {}", run.start_after.table.empty() ? "the start" : run.start_after.table,
                    j["cursor"]["key"].dump()));
  }
  run.on_progress = [&](const ReplicationOps::VerifyProgress& p) {
    json lines = base_lines;
    for (const auto& l : p.lines)
      if (lines.size() < kLinesKept) lines.push_back(l);
    const int64_t rows = base_rows + run_rows_finished + p.table_rows;
    const double elapsed = NowS() - run_start;
    const double speed = elapsed > 0 ? (run_rows_finished + p.table_rows) / elapsed : 0;
    j["table"] = p.table;
    j["rows_checked"] = rows;
    j["rows_per_s"] = speed;
    j["eta_seconds"] = speed > 0 ? json(std::max<double>(0, (rows_estimate_ - rows) / speed)) : json(nullptr);
    j["differences"] = base_diffs + run_diffs_finished + static_cast<int64_t>(p.lines.size());
    j["lines"] = lines;
    json key = json::array();
    for (const auto& k : p.done_through.key) key.push_back(k ? json(*k) : json(nullptr));
    j["cursor"] = {{"table", p.done_through.table}, {"key", key}};
    if (p.table_done) {
      run_rows_finished += p.table_rows;
      ++run_tables;
      run_diffs_finished += static_cast<int64_t>(p.lines.size());
      base_lines = lines;
    }
    j["tables_done"] = base_tables + run_tables;
    j["updated_at"] = NowS();
    // Written after every chunk: this is where a restarted run resumes.
    if (Status st = store_.Put("verify_job", j.dump()); !st.ok()) LOG_WARN("verify job: progress not saved: {}", st.message());
    CrashPoint("verify-chunk", rows);
  };
  auto outcome = pass_(run, rows_per_s, &stop->flag, repair);
  const bool stopped = stop->flag.load(std::memory_order_acquire);
  if (stopped && stop->why == "suspend") return false;  // the store still says running: the next run continues
  size_t repaired = 0;
  if (outcome.ok() && !stopped && repair && !outcome->repairs.empty()) {
    auto n = repair_(std::move(outcome->repairs));
    if (n.ok()) {
      repaired = *n;
    } else {
      LOG_WARN("verify job: the repairs were not applied: {}", n.status().message());
      (void)store_.AddEvent("verification job: the repairs were not applied: " + n.status().message());
    }
  }
  j["updated_at"] = NowS();
  if (stopped) {
    j["state"] = "stopped";
    j["summary"] = stop->why;
  } else if (!outcome.ok()) {
    j["state"] = "failed";
    j["error"] = outcome.status().message();
    j["summary"] = "failed: " + outcome.status().message();
    (void)store_.AddEvent("verification job failed: " + outcome.status().message());
  } else {
    const int64_t diffs = j.value("differences", int64_t{0});
    const bool clean = outcome->clean && diffs == 0;
    const double seconds = NowS() - j.value("started_at", NowS());
    const std::string kind = continuous_pass ? "continuous" : "job";
    j["state"] = "done";
    j["tables_done"] = tables_total_;
    j["eta_seconds"] = 0;
    j["repaired"] = repaired;
    const std::string summary =
        fmt::format("verify {}: {}; {} tables, {} rows in {:.1f} s{}{}", kind,
                    clean ? "clean" : fmt::format("{} differences", diffs), tables_total_,
                    j.value("rows_checked", int64_t{0}), seconds,
                    j.value("resumed", 0) ? fmt::format(" (resumed {} time(s))", j.value("resumed", 0)) : "",
                    repaired ? fmt::format("; {} row(s) repaired through the apply path", repaired) : "");
    j["summary"] = summary;
    j["clean"] = clean;
    json report_lines = json::array();
    for (const auto& l : j.value("lines", json::array()))
      if (report_lines.size() < kReportLines) report_lines.push_back(l);
    (void)store_.PutMany({{"verify_state", "done"},
                          {"verify_clean", clean ? "true" : "false"},
                          {"verify_at", std::to_string(NowUnixMicros())},
                          {"verify_summary", summary}});
    AddReport(store_, json{{"at", NowS()},
                           {"kind", kind},
                           {"actor", j.value("actor", "")},
                           {"tables", tables_total_},
                           {"rows", j.value("rows_checked", int64_t{0})},
                           {"seconds", seconds},
                           {"clean", clean},
                           {"differences", diffs},
                           {"repaired", repaired},
                           {"resumed", j.value("resumed", 0)},
                           {"lines", report_lines},
                           {"summary", summary}}
                          .dump());
    // A clean continuous pass every few minutes would bury the audit trail:
    // those are in the reports; what differed is an event.
    if (!continuous_pass || !clean)
      (void)store_.AddEvent(report_lines.empty() ? summary
                                                 : fmt::format("{}; first: {}", summary, report_lines[0].get<std::string>()));
    Say(summary);
  }
  (void)store_.Put("verify_job", j.dump());
  return !stopped;
}

std::string VerifyJob::ShowJson(StateStore& store) {
  json j = Load(store);
  auto reports = json::parse(store.Get("verify_reports").value_or("[]"), nullptr, false);
  j["reports"] = reports.is_array() ? reports : json::array();
  return j.dump();
}

void VerifyJob::AddReport(StateStore& store, const std::string& report_json) {
  auto reports = json::parse(store.Get("verify_reports").value_or("[]"), nullptr, false);
  if (!reports.is_array()) reports = json::array();
  reports.push_back(json::parse(report_json));
  while (reports.size() > kReportsKept) reports.erase(reports.begin());
  (void)store.Put("verify_reports", reports.dump());
}

}  // namespace midflight
