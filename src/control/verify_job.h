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
// State in the store: "verify_job" (JSON, the shape of GET .../verify-job:
// state, started_at, updated_at, rate, tables_total, tables_done, table,
// cursor {table, key}, rows_checked, rows_estimate, rows_per_s, eta_seconds,
// differences, lines, resumed, summary, error) and "verify_reports" (JSON
// array, the last kReportsKept runs of any verification, foreground too).
// A finished pass also sets what the write switch's verification gate reads
// (verify_clean, verify_summary, verify_at).
//
// Threads: every public method may be called from any thread; one job
// thread at a time runs the pass (mu_ guards it and its stop flag).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "base/status.h"
#include "base/thread_annotations.h"
#include "control/state_store.h"
#include "engines/engine.h"

namespace midflight {

class VerifyJob {
 public:
  static constexpr size_t kReportsKept = 20;
  static constexpr size_t kLinesKept = 100;
  // One verification from `run.start_after`, at `rows_per_s`, until done or
  // `stop` (Cutover::VerifyPass).
  using Pass = std::function<Result<ReplicationOps::VerifyOutcome>(
      const ReplicationOps::VerifyRun& run, std::function<int64_t()> rows_per_s, const std::atomic<bool>* stop)>;

  // `tables_total`, `rows_estimate`: what a whole pass covers. `knob_rate`:
  // the verify_rows_per_s knob, read live when a job has no rate of its own.
  VerifyJob(StateStore& store, Pass pass, int tables_total, int64_t rows_estimate, std::function<int64_t()> knob_rate);
  ~VerifyJob();  // Suspend()

  // A new pass from the first table. `rate`: rows per second (<0: the knob).
  // OperatorError while one runs.
  Result<std::string> Start(int64_t rate);
  // Ends the running pass (its progress stays for show). OperatorError when none runs.
  Result<std::string> Stop(const std::string& why = "stopped by the operator");
  // Stops the thread but leaves the stored state "running" (the process or
  // a switch stops it; ResumeIfRunning continues it). No-op when idle.
  void Suspend();
  // Continues the pass the store says is running, from its cursor.
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
  };
  void Launch(bool resume) REQUIRES(mu_);
  void Body(bool resume, std::shared_ptr<StopRequest> stop);
  // Stops the thread (if any) with `why` and joins it.
  void Halt(const std::string& why) REQUIRES(mu_);

  StateStore& store_;
  const Pass pass_;
  const int tables_total_;
  const int64_t rows_estimate_;
  const std::function<int64_t()> knob_rate_;
  Mutex mu_;
  std::thread thread_ GUARDED_BY(mu_);
  std::shared_ptr<StopRequest> stop_ GUARDED_BY(mu_);
  std::atomic<bool> busy_{false};  // the thread is in a pass
};

}  // namespace midflight
