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
  loop->thread_id_ = std::this_thread::get_id();
  return loop;
}

EventLoop::~EventLoop() {
  if (wakefd_ >= 0) close(wakefd_);
  if (epfd_ >= 0) close(epfd_);
}

void EventLoop::Post(std::function<void()> fn) {
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

void EventLoop::DrainPosted() {
  std::vector<std::function<void()>> tasks;
  {
    MutexLock lock(&mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EventLoop::RunTimers() {
  const auto now = LoopClock::now();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_deadlines_.erase(node.key().second);
    node.mapped()();
  }
}

int EventLoop::NextTimeoutMs() const {
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
    }
    DrainPosted();
    RunTimers();
    while (!deferred_.empty()) {
      auto d = std::move(deferred_);
      deferred_.clear();
      for (auto& f : d) f();
    }
  }
}

}  // namespace midflight::proxy::core
