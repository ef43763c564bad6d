#include "proxy/core/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace midflight::proxy::core {

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (loop->epfd_ < 0) return Internal(fmt::format("proxy: epoll_create1: {}", strerror(errno)));
  loop->wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (loop->wakefd_ < 0) return Internal(fmt::format("proxy: eventfd: {}", strerror(errno)));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake fd
  if (epoll_ctl(loop->epfd_, EPOLL_CTL_ADD, loop->wakefd_, &ev) != 0)
    return Internal(fmt::format("proxy: epoll_ctl: {}", strerror(errno)));
  // thread_id_ stays "no thread" until Run: a Post from the creating thread
  // before that must take the locked queue, not the loop-thread one.
  return loop;
}

EventLoop::~EventLoop() {
  if (wakefd_ >= 0) close(wakefd_);
  if (epfd_ >= 0) close(epfd_);
}

void EventLoop::Post(std::function<void()> fn) {
  if (InLoop()) {
    // No wakeup: Run drains these before it waits again (NextTimeoutMs is 0
    // while any are queued). Saves an eventfd write and read per task.
    local_posted_.push_back(std::move(fn));
    return;
  }
  {
    MutexLock lock(&mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  (void)!write(wakefd_, &one, sizeof one);
}

void EventLoop::Stop() {
  Post([this] { stop_ = true; });
}

Status EventLoop::Add(int fd, uint32_t events, Handler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0)
    return Internal(fmt::format("proxy: epoll_ctl add: {}", strerror(errno)));
  return Status::Ok();
}

void EventLoop::Modify(int fd, uint32_t events, Handler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::Remove(int fd) { epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

EventLoop::TimerId EventLoop::AddTimer(LoopClock::time_point deadline, std::function<void()> fn) {
  TimerId id = next_timer_++;
  timers_.emplace(std::make_pair(deadline, id), std::move(fn));
  timer_deadlines_.emplace(id, deadline);
  return id;
}

void EventLoop::CancelTimer(TimerId id) {
  auto it = timer_deadlines_.find(id);
  if (it == timer_deadlines_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_deadlines_.erase(it);
}

void EventLoop::Defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }

void EventLoop::CancelFlush(Handler* h) {
  for (auto& f : flush_)
    if (f == h) f = nullptr;
}

void EventLoop::FlushQueued() {
  // FlushBatch calls no owner back, so nothing is queued or destroyed meanwhile.
  for (Handler* h : flush_)
    if (h != nullptr) h->FlushBatch();
  flush_.clear();
}

void EventLoop::DrainPosted() {
  // Tasks posted while these run (from this thread or another) run in the
  // next iteration: what a task posted relies on (Conn's TLS read task).
  std::vector<std::function<void()>> tasks;
  tasks.swap(local_posted_);
  {
    MutexLock lock(&mu_);
    if (!posted_.empty()) {
      if (tasks.empty()) {
        tasks.swap(posted_);
      } else {
        // Both queues: the other threads' first (they were posted before
        // this iteration's events were handled).
        for (auto& t : tasks) posted_.push_back(std::move(t));
        tasks.clear();
        tasks.swap(posted_);
      }
    }
  }
  for (auto& t : tasks) {
    t();
    FlushQueued();
  }
}

void EventLoop::RunTimers() {
  const auto now = LoopClock::now();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_deadlines_.erase(node.key().second);
    node.mapped()();
    FlushQueued();
  }
}

int EventLoop::NextTimeoutMs() const {
  if (!local_posted_.empty()) return 0;
  if (timers_.empty()) return -1;
  auto d = timers_.begin()->first.first - LoopClock::now();
  if (d <= LoopClock::duration::zero()) return 0;
  return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(d).count());
}

void EventLoop::Run() {
  thread_id_ = std::this_thread::get_id();
  epoll_event events[128];
  while (!stop_) {
    int n = epoll_wait(epfd_, events, 128, NextTimeoutMs());
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      auto* h = static_cast<Handler*>(events[i].data.ptr);
      if (h == nullptr) {
        uint64_t v;
        (void)!read(wakefd_, &v, sizeof v);
        continue;
      }
      h->OnEvents(events[i].events);
      FlushQueued();
    }
    DrainPosted();
    RunTimers();
    while (!deferred_.empty()) {
      auto d = std::move(deferred_);
      deferred_.clear();
      for (auto& f : d) f();
      FlushQueued();
    }
  }
}

}  // namespace midflight::proxy::core
