#pragma once
// OnceOk: a step that must succeed once per process (creating a table a later
// step needs), shared by threads. Unlike std::call_once, a failure does not
// count: it is returned, and the next caller tries again.

#include <functional>

#include "base/status.h"
#include "base/thread_annotations.h"

namespace midflight {

class OnceOk {
 public:
  // Runs `fn` unless a call succeeded before; callers wait for each other.
  Status Run(const std::function<Status()>& fn) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (done_) return Status::Ok();
    Status st = fn();
    if (st.ok()) done_ = true;
    return st;
  }

 private:
  Mutex mu_;
  bool done_ GUARDED_BY(mu_) = false;
};

}  // namespace midflight
