// What an engine's change stream implements: decoding only. It reads the
// source's log (PostgreSQL: pgoutput from a slot; MySQL: the binlog) and
// hands every change to the Sequencer in source order, framed by Begin and
// Commit; it knows nothing of routing, barriers, the snapshot filter or the
// target. The Flow (flow.h) runs it on its own thread and reconnects.
#pragma once

#include <atomic>
#include <string>

#include "base/status.h"
#include "base/stop.h"
#include "pipeline/sequencer.h"

namespace midflight {

class ChangeSource {
 public:
  virtual ~ChangeSource() = default;
  // Connects and streams into `seq` until `stop` is requested (returns Ok). A lost
  // or refused connection returns RetryCall (the Flow reconnects after a
  // backoff and calls Stream again: the source then starts again from
  // seq.Confirmable(), or the server resends from what it was told);
  // anything else stops the flow. Sets seq.stats().connected while streaming.
  virtual Status Stream(Sequencer& seq, StopRef stop) = 0;
  // Opens what the first Stream call needs (its connection) ahead of it:
  // the Flow calls it once, on another thread, while it opens its sinks,
  // and joins that thread before it starts streaming. A failure is left for
  // Stream to meet and report. Optional.
  virtual void Prepare() {}
  // Asks the source to report its current position soon (an idle stream
  // then shows it is caught up). Any thread. Optional.
  virtual void Poke() {}
};

}  // namespace midflight
