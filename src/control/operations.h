// The traffic operations an operator asks of a running migration (API
// POST /api/migrations/NAME/<op>, CLI `midflight switch|rollback|complete|
// approve|verify`), as typed requests and results, and the one rule for the
// phases each is allowed in.
//
//   switch-reads  replicating, reads_switched   (percent 0 moves reads back)
//   switch-writes reads_switched                (switch reads first: it opens the validation window)
//   rollback      writes_switched
//   complete      writes_switched
//   approve       reads_switched
//   verify        replicating, reads_switched, writes_switched
//   verify-start  replicating, reads_switched, writes_switched (the background job, control/verify_job.h)
//   verify-stop   replicating, reads_switched, writes_switched
//   sequences-sync replicating, reads_switched, writes_switched (from the side writes go to)
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "control/gates.h"
#include "control/phase.h"

namespace midflight {

enum class TrafficOp {
  kSwitchReads,
  kSwitchWrites,
  kRollback,
  kComplete,
  kApprove,
  kVerify,
  kVerifyStart,
  kVerifyStop,
  kSyncSequences,
};

// "switch-reads" -> kSwitchReads ...; nullopt for any other name.
std::optional<TrafficOp> ParseTrafficOp(std::string_view name);
// "switch-reads", ...
const char* TrafficOpName(TrafficOp op);

struct TrafficRequest {
  TrafficOp op = TrafficOp::kVerify;
  bool force = false;    // override the checks that allow it (lag, validation window, approval, verification)
  int percent = 100;     // switch-reads: share of read-only transactions sent to the target
  bool repair = false;   // verify: apply the reference's rows where the other side differs
  int64_t rate = -1;     // verify: rows per second (-1: the verify_rows_per_s knob)
  // switch-reads, switch-writes, rollback without a proxy: the operator
  // moved the applications by other means and records it (no pause is
  // possible; see control/cutover.h).
  bool external = false;
  // switch-reads, switch-writes, rollback, complete: run every check the
  // operation makes (control/gates.h) and report them; change nothing.
  bool dry_run = false;
};

struct TrafficResult {
  std::string message;  // for the operator; several lines for verify
  bool clean = true;    // verify: nothing differed; dry run: every check passed
  std::vector<GateCheck> checks;  // dry run: every check, in the order the operation makes them
};

// Serves one request at a time (a second one is refused naming the first).
// Errors: OperatorError (refused: phase, lag, window...; the API answers
// 409), InvalidArgument (a bad parameter; 400), others (500).
using TrafficHandler = std::function<Result<TrafficResult>(const TrafficRequest&)>;

// OperatorError naming the phases `op` is allowed in, when `now` is not one.
Status CheckTrafficPhase(TrafficOp op, Phase now, const std::string& migration);

}  // namespace midflight
