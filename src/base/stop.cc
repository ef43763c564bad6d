#include "base/stop.h"

#include <atomic>
#include <vector>

#include "base/thread_annotations.h"

namespace midflight {

// One signal. `stopped` is also kept as an atomic so stop_requested() takes
// no lock; it only ever goes false -> true, set under `mu` so that a waiter
// that checked it under `mu` cannot miss the notify.
struct StopSource::State {
  std::atomic<bool> stopped{false};
  Mutex mu;
  CondVar cv;
  std::vector<std::weak_ptr<State>> children GUARDED_BY(mu);

  void Stop() {
    std::vector<std::weak_ptr<State>> to_stop;
    {
      MutexLock lock(&mu);
      if (stopped.load()) return;
      stopped.store(true);
      to_stop.swap(children);
    }
    cv.NotifyAll();
    for (auto& weak : to_stop)
      if (auto child = weak.lock()) child->Stop();
  }
};

StopSource::StopSource() : state_(std::make_shared<State>()) {}

void StopSource::Stop() { state_->Stop(); }

bool StopSource::stop_requested() const { return state_->stopped.load(); }

bool StopSource::WaitUntil(Clock::time_point deadline) const {
  State& s = *state_;
  if (s.stopped.load()) return true;
  MutexLock lock(&s.mu);
  return s.cv.WaitUntil(&s.mu, deadline, [&s] { return s.stopped.load(); });
}

void StopSource::Wait() const {
  State& s = *state_;
  MutexLock lock(&s.mu);
  s.cv.Wait(&s.mu, [&s] { return s.stopped.load(); });
}

StopSource StopSource::Child() const {
  auto child = std::make_shared<State>();
  {
    MutexLock lock(&state_->mu);
    if (!state_->stopped.load()) {
      // Drop links to children already gone, so a long-lived parent that
      // hands out many short-lived children does not grow without bound.
      std::erase_if(state_->children, [](const std::weak_ptr<State>& w) { return w.expired(); });
      state_->children.push_back(child);
      return StopSource(std::move(child));
    }
  }
  child->Stop();
  return StopSource(std::move(child));
}

}  // namespace midflight
