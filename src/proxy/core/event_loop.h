// An epoll event loop with timers and a cross-thread task queue: the engine
// of the proxy core (proxy/core/README in proxy/README.md). One loop is one
// thread; the proxy runs a small fixed pool of them, and every connection and
// session belongs to exactly one loop for its whole life.
//
// Thread-safety: Post, Stop and InLoop may be called from any thread; every
// other method only on the loop's own thread (inside a handler, a timer or a
// posted task).
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "base/status.h"
#include "base/thread_annotations.h"

namespace midflight::proxy::core {

using LoopClock = std::chrono::steady_clock;

class EventLoop {
 public:
  // Receives the events of one file descriptor; called on the loop thread.
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void OnEvents(uint32_t events) = 0;
    // Sends what was buffered for it during a dispatch (QueueFlush). Must
    // call back no owner and destroy nothing: errors wait for the next event.
    virtual void FlushBatch() {}
  };
  using TimerId = uint64_t;

  static Result<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();

  // Runs until Stop (on the calling thread, which becomes the loop thread).
  void Run();
  // Any thread: Run returns after the current iteration.
  void Stop();
  // Any thread: runs `fn` on the loop thread, in posting order. From the
  // loop thread itself no wakeup is needed (no eventfd write): the task runs
  // after the current iteration's events, before the loop sleeps again.
  void Post(std::function<void()> fn);
  bool InLoop() const { return std::this_thread::get_id() == thread_id_.load(std::memory_order_relaxed); }

  // Registers / changes / removes interest in `fd` (EPOLLIN, EPOLLOUT...).
  Status Add(int fd, uint32_t events, Handler* handler);
  void Modify(int fd, uint32_t events, Handler* handler);
  void Remove(int fd);

  // Runs `fn` once at `deadline` (or on the next iteration if it has passed).
  TimerId AddTimer(LoopClock::time_point deadline, std::function<void()> fn);
  // A cancelled or already fired timer is ignored.
  void CancelTimer(TimerId id);
  // Runs `fn` at the end of the current iteration: for destroying objects
  // whose handler may still be on the current event list.
  void Defer(std::function<void()> fn);

  // Output batching: a handler that buffered output during a dispatch asks
  // to be flushed once the dispatch (an event, the posted tasks, the timers)
  // returns, so everything a dispatch writes to one socket leaves in one
  // send. The handler keeps its own "queued" flag and cancels before it dies.
  void QueueFlush(Handler* h) { flush_.push_back(h); }
  void CancelFlush(Handler* h);

  size_t timers() const { return timers_.size(); }

 private:
  EventLoop() = default;
  void DrainPosted();
  void FlushQueued();
  void RunTimers();
  int NextTimeoutMs() const;

  int epfd_ = -1;
  int wakefd_ = -1;  // eventfd: Post and Stop wake epoll_wait
  std::atomic<std::thread::id> thread_id_{};  // set by Run
  bool stop_ = false;  // loop thread only; Stop posts it

  Mutex mu_;
  std::vector<std::function<void()>> posted_ GUARDED_BY(mu_);

  // Loop thread only.
  std::map<std::pair<LoopClock::time_point, TimerId>, std::function<void()>> timers_;
  std::map<TimerId, LoopClock::time_point> timer_deadlines_;
  TimerId next_timer_ = 1;
  std::vector<std::function<void()>> deferred_;
  std::vector<std::function<void()>> local_posted_;  // Post from the loop thread
  std::vector<Handler*> flush_;
};

}  // namespace midflight::proxy::core
