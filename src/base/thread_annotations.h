// Clang's thread-safety annotations, and the annotated mutex midflight uses.
//
// Mark state a mutex guards `GUARDED_BY(mu_)` and functions that must be
// called with it held `REQUIRES(mu_)`; a clang build (the `tsan` preset, used
// by CI) compiles with -Wthread-safety -Werror and fails on an unguarded
// access. Under gcc every macro expands to nothing.
//
// libstdc++'s std::mutex and std::lock_guard carry no annotations, so the
// analysis cannot see them: guard annotated state with midflight::Mutex and
// MutexLock (or Mutex::Lock/Unlock), and wait on it with CondVar.
//
//   class Queue {
//    public:
//     void Push(int v) EXCLUDES(mu_) {
//       { MutexLock lock(&mu_); items_.push_back(v); }
//       nonempty_.NotifyOne();
//     }
//     int Pop() EXCLUDES(mu_) {
//       MutexLock lock(&mu_);
//       nonempty_.Wait(&mu_, [&]() REQUIRES(mu_) { return !items_.empty(); });
//       ...
//     }
//    private:
//     Mutex mu_;
//     CondVar nonempty_;
//     std::deque<int> items_ GUARDED_BY(mu_);
//   };
//
// Use NO_THREAD_SAFETY_ANALYSIS only where the analysis cannot follow the
// locking (a lock taken in one function and released in another through a
// pointer it cannot name), with a comment saying why.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define MIDFLIGHT_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define MIDFLIGHT_THREAD_ANNOTATION(x)
#endif

// A class that is a lock (midflight::Mutex).
#define CAPABILITY(x) MIDFLIGHT_THREAD_ANNOTATION(capability(x))
// An RAII class that holds a lock for its lifetime (midflight::MutexLock).
#define SCOPED_CAPABILITY MIDFLIGHT_THREAD_ANNOTATION(scoped_lockable)
// A member that may be read or written only with the given mutex held.
#define GUARDED_BY(x) MIDFLIGHT_THREAD_ANNOTATION(guarded_by(x))
// A pointer member whose pointee may be accessed only with the mutex held.
#define PT_GUARDED_BY(x) MIDFLIGHT_THREAD_ANNOTATION(pt_guarded_by(x))
// The caller must hold the mutex(es).
#define REQUIRES(...) MIDFLIGHT_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// The caller must not hold the mutex(es) (the function takes them).
#define EXCLUDES(...) MIDFLIGHT_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// The function takes the mutex and returns holding it.
#define ACQUIRE(...) MIDFLIGHT_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
// The function releases a mutex the caller held.
#define RELEASE(...) MIDFLIGHT_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
// The function takes the mutex when it returns the given value (true).
#define TRY_ACQUIRE(...) MIDFLIGHT_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// The function returns a reference to the given mutex (for accessors).
#define RETURN_CAPABILITY(x) MIDFLIGHT_THREAD_ANNOTATION(lock_returned(x))
// Turns the analysis off for one function; say why next to it.
#define NO_THREAD_SAFETY_ANALYSIS MIDFLIGHT_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace midflight {

// std::mutex with the annotations clang's analysis needs. Not recursive:
// taking it twice on one thread deadlocks (and clang reports it).
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis (not the program) that the caller holds this mutex:
  // for a callback the analysis cannot see is called under the lock.
  void AssertHeld() const MIDFLIGHT_THREAD_ANNOTATION(assert_capability(this)) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` from construction to destruction.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable over a midflight::Mutex. Every wait is called with the
// mutex held and returns with it held (it is released while waiting). Notify
// may be called with or without the mutex.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Waits until `done()` is true (checked under the mutex, before any wait).
  template <typename Pred>
  void Wait(Mutex* mu, Pred done) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock, done);
    lock.release();
  }
  // Waits until `done()` is true or `timeout` has passed; returns done().
  template <typename Rep, typename Period, typename Pred>
  bool WaitFor(Mutex* mu, std::chrono::duration<Rep, Period> timeout, Pred done) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    bool result = cv_.wait_for(lock, timeout, done);
    lock.release();
    return result;
  }
  // Waits until `done()` is true or the clock reaches `deadline`; returns done().
  template <typename Clock, typename Duration, typename Pred>
  bool WaitUntil(Mutex* mu, std::chrono::time_point<Clock, Duration> deadline, Pred done) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    bool result = cv_.wait_until(lock, deadline, done);
    lock.release();
    return result;
  }

  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace midflight
