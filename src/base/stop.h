// A cancellable stop signal: what a thread that must stop waits on, instead
// of polling an atomic<bool> through sleep_for (CONVENTIONS.md, Concurrency).
//
//   StopSource stop;
//   std::thread worker([stop] {
//     while (!stop.stop_requested()) {
//       DoOneRound();
//       if (stop.WaitFor(std::chrono::seconds(1))) break;  // wakes at once on Stop()
//     }
//   });
//   ...
//   stop.Stop();    // every waiter returns now
//   worker.join();
//
// A StopSource is a handle: copies share one signal (stop one, all see it),
// so a thread may capture it by value. Every member may be called from any
// thread at any time. Stop is one-way: nothing un-stops a signal.
//
// Chaining: `parent.Child()` is a new signal that is stopped by its own
// Stop() and also when the parent is stopped (at once if it already is);
// stopping the child leaves the parent alone. A flow that can be restarted
// takes a child of the migration's signal, so stopping the migration stops
// the flow, and stopping the flow stops only the flow.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

namespace midflight {

class StopSource {
 public:
  using Clock = std::chrono::steady_clock;

  StopSource();

  // Stops this signal (and its children): every current and future wait
  // returns true at once. Idempotent.
  void Stop();
  bool stop_requested() const;

  // Waits until stopped or `timeout` passed; true when stopped.
  template <typename Rep, typename Period>
  bool WaitFor(std::chrono::duration<Rep, Period> timeout) const {
    if (timeout <= timeout.zero()) return stop_requested();
    return WaitUntil(Clock::now() + std::chrono::ceil<Clock::duration>(timeout));
  }
  // Waits until stopped or the steady clock reaches `deadline`; true when stopped.
  bool WaitUntil(Clock::time_point deadline) const;
  // Waits until stopped.
  void Wait() const;

  // A new signal stopped with this one (see above). The child may outlive
  // the parent and the other way round.
  StopSource Child() const;

 private:
  struct State;
  explicit StopSource(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

// The stop signal a function was handed, for code that accepts both forms
// while its callers move to StopSource: a StopSource (waits wake at once) or
// a `const std::atomic<bool>&` from a caller not converted yet (nothing can
// wait on an atomic, so a wait looks at it every kAtomicSlice). Refers to,
// does not own, what it was made from: it must outlive the StopRef. Cheap to
// copy; pass by value.
class StopRef {
 public:
  static constexpr std::chrono::milliseconds kAtomicSlice{20};

  StopRef(const StopSource& source) : source_(&source) {}  // NOLINT: implicit on purpose
  StopRef(const std::atomic<bool>& flag) : flag_(&flag) {}  // NOLINT: implicit on purpose

  bool stop_requested() const { return source_ ? source_->stop_requested() : flag_->load(); }
  explicit operator bool() const { return stop_requested(); }

  // Waits until stopped or `timeout` passed; true when stopped.
  template <typename Rep, typename Period>
  bool WaitFor(std::chrono::duration<Rep, Period> timeout) const {
    if (source_) return source_->WaitFor(timeout);
    const auto until = StopSource::Clock::now() + std::chrono::ceil<StopSource::Clock::duration>(timeout);
    for (;;) {
      if (flag_->load()) return true;
      const auto now = StopSource::Clock::now();
      if (now >= until) return false;
      std::this_thread::sleep_for(std::min<StopSource::Clock::duration>(until - now, kAtomicSlice));
    }
  }

 private:
  const StopSource* source_ = nullptr;
  const std::atomic<bool>* flag_ = nullptr;
};

}  // namespace midflight
