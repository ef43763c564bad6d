// Verification as a background job (`midflight verify start|show|stop`, API
// verify-start / verify-stop / verify-job): one pass over every migrated
// table, inside the running migration, at a rate, while the operator does
// other things. Its progress (tables, rows checked, rate, ETA) and where it
// stands (the last finished chunk: table and key) are written to the state
// store after every chunk, so a migration killed in the middle resumes the
// pass where it stood when it runs again; the last reports are kept.
//
//   (none) ─start─► running ─pass ends─► done (clean or not) ─start─► running …
//                      │  ╲─stop─► stopped      ╲─error─► failed
//                      └─ process stops / a switch moves writes: Suspend;
//                         the store still says running, and ResumeIfRunning
//                         (the next run, or the switch's end) continues it
//
// Continuous verification (spec verify.continuous): the same thread, after a
// pass ends (done or failed), waits `pause_seconds` ("next_pass_at" in the
// store) and starts the next pass, of kind "continuous", at the
// continuous_verify_rows_per_s knob; with `repair` the rows a pass finds
// different are re-copied through the apply path. The loop starts by itself
// when the migration replicates (and after a restart or a switch), unless the
// operator stopped it: `verify stop` ends it (state stopped, kept across
// restarts) until `verify start`.
//
// State in the store: "verify_job" (JSON, the shape of GET .../verify-job:
// state, started_at, updated_at, rate, tables_total, tables_done, table,
// cursor {table, key}, rows_checked, rows_estimate, rows_per_s, eta_seconds,
// differences, lines, resumed, summary, error; kind "job" or "continuous",
// continuous (the loop is on), passes (passes the loop finished),
// next_pass_at, repaired) and "verify_reports" (JSON array, the last
// kReportsKept runs of any verification, foreground too; with the first
// kReportLines lines of what differed).
// A finished pass also sets what the write switch's verification gate reads
// (verify_clean, verify_summary, verify_at).
//
// Threads: every public method may be called from any thread; one job
// thread at a time runs the pass, or waits for the next continuous one (mu_
// guards it and its stop request).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <vector>

#include "base/status.h"
#include "base/stop.h"
#include "base/thread_annotations.h"
#include "control/state_store.h"
#include "engines/engine.h"

namespace midflight {

class VerifyJob {
 public:
  static constexpr size_t kReportsKept = 20;
  static constexpr size_t kLinesKept = 100;
  static constexpr size_t kReportLines = 20;
  // One verification from `run.start_after`, at `rows_per_s`, until done or
  // `stop` (Cutover::VerifyPass); with `repair` the outcome carries the repairs.
  using Pass = std::function<Result<ReplicationOps::VerifyOutcome>(
      const ReplicationOps::VerifyRun& run, std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop,
      bool repair)>;
  // Applies a pass's repairs through the apply path, waits until they are
  // applied; how many.
  using Repair = std::function<Result<size_t>(std::vector<Change> repairs)>;

  struct Continuous {
    bool on = false;
    double pause_seconds = 60;
    bool repair = false;
    std::function<int64_t()> rows_per_s;  // the continuous_verify_rows_per_s knob, read live
  };

  // `tables_total`, `rows_estimate`: what a whole pass covers. `knob_rate`:
  // the verify_rows_per_s knob, read live when a job has no rate of its own.
  // `continuous`: the spec's verify.continuous settings (off: one pass per
  // start); `repair`: how a continuous pass's repairs are applied.
  VerifyJob(StateStore& store, Pass pass, int tables_total, int64_t rows_estimate, std::function<int64_t()> knob_rate,
            Continuous continuous, Repair repair);
  ~VerifyJob();  // Suspend()

  // A new pass from the first table. `rate`: rows per second (<0: the knob).
  // With continuous verification on, the loop goes on after it.
  // OperatorError while one runs.
  Result<std::string> Start(int64_t rate);
  // Ends the running pass (its progress stays for show), or the continuous
  // loop waiting for its next pass. OperatorError when neither runs.
  Result<std::string> Stop(const std::string& why = "stopped by the operator");
  // Stops the thread but leaves the stored state as it is (the process or a
  // switch stops it; ResumeIfRunning continues it). No-op when idle.
  void Suspend();
  // Continues the pass the store says is running, from its cursor; or, with
  // continuous verification on and not stopped by the operator, starts the
  // loop (its next pass at the stored next_pass_at, or now).
  void ResumeIfRunning();

  // The stored job (JSON object; {"state": "none"} when never started).
  static std::string ShowJson(StateStore& store);
  // Appends one report to verify_reports (bounded), for the job and the foreground verify.
  static void AddReport(StateStore& store, const std::string& report_json);

 private:
  // What stops one pass: `why` is written before `flag` is set and read
  // after the pass saw it ("suspend": the stored state stays running).
  struct StopRequest {
    std::atomic<bool> flag{false};
    std::string why;
    StopSource wake;  // stopped with `flag`: ends the wait between continuous passes
  };
  // How the thread begins: the stored pass anew (Start wrote it), the stored
  // pass from its cursor, or waiting for the next continuous pass.
  enum class Begin { kNew, kResume, kWait };
  void Launch(Begin begin) REQUIRES(mu_);
  void Body(Begin begin, std::shared_ptr<StopRequest> stop);
  // One pass (Body's loop); false when it was stopped.
  bool RunPass(bool resume, StopRequest& stop);
  // Stops the thread (if any) with `why` and joins it.
  void Halt(const std::string& why) REQUIRES(mu_);

  StateStore& store_;
  const Pass pass_;
  const int tables_total_;
  const int64_t rows_estimate_;
  const std::function<int64_t()> knob_rate_;
  const Continuous continuous_;
  const Repair repair_;
  Mutex mu_;
  std::thread thread_ GUARDED_BY(mu_);
  std::shared_ptr<StopRequest> stop_ GUARDED_BY(mu_);
  std::atomic<bool> busy_{false};   // the thread is in a pass (not waiting for the next one)
  std::atomic<bool> alive_{false};  // the thread has not returned yet (in a pass, or waiting)
};

}  // namespace midflight
