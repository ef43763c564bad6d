#include "base/stop.h"
#include "base/once_ok.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "base/thread_annotations.h"
#include "control/run_util.h"

namespace midflight {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How long `fn` took.
template <typename Fn>
Clock::duration Timed(Fn fn) {
  auto start = Clock::now();
  fn();
  return Clock::now() - start;
}

TEST(StopTest, WaitForTimesOutWhenNotStopped) {
  StopSource stop;
  bool stopped = true;
  auto took = Timed([&] { stopped = stop.WaitFor(30ms); });
  EXPECT_FALSE(stopped);
  EXPECT_GE(took, 30ms);
  EXPECT_FALSE(stop.stop_requested());
}

TEST(StopTest, StopWakesAWaiterAtOnce) {
  StopSource stop;
  bool stopped = false;
  Clock::duration took{};
  std::thread waiter([&] { took = Timed([&] { stopped = stop.WaitFor(60s); }); });
  std::this_thread::sleep_for(20ms);
  stop.Stop();
  waiter.join();
  EXPECT_TRUE(stopped);
  EXPECT_LT(took, 10s);
}

TEST(StopTest, WaitAfterStopReturnsAtOnce) {
  StopSource stop;
  stop.Stop();
  stop.Stop();  // idempotent
  EXPECT_TRUE(stop.stop_requested());
  EXPECT_TRUE(stop.WaitFor(60s));
  EXPECT_TRUE(stop.WaitFor(0s));
  stop.Wait();
}

TEST(StopTest, CopiesShareOneSignal) {
  StopSource stop;
  StopSource copy = stop;
  copy.Stop();
  EXPECT_TRUE(stop.stop_requested());
}

TEST(StopTest, StopWakesManyWaiters) {
  StopSource stop;
  std::vector<std::thread> waiters;
  std::atomic<int> woken{0};
  for (int i = 0; i < 4; ++i)
    waiters.emplace_back([&] {
      stop.Wait();
      ++woken;
    });
  stop.Stop();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(woken.load(), 4);
}

TEST(StopTest, ChildStopsWithItsParent) {
  StopSource parent;
  StopSource child = parent.Child();
  StopSource grandchild = child.Child();
  std::thread waiter([&] { EXPECT_TRUE(grandchild.WaitFor(60s)); });
  parent.Stop();
  waiter.join();
  EXPECT_TRUE(child.stop_requested());
  EXPECT_TRUE(grandchild.stop_requested());
}

TEST(StopTest, StoppingAChildLeavesTheParentRunning) {
  StopSource parent;
  StopSource child = parent.Child();
  child.Stop();
  EXPECT_TRUE(child.stop_requested());
  EXPECT_FALSE(parent.stop_requested());
}

TEST(StopTest, ChildOfAStoppedParentStartsStopped) {
  StopSource parent;
  parent.Stop();
  EXPECT_TRUE(parent.Child().stop_requested());
}

TEST(StopTest, ParentMayOutliveItsChildren) {
  StopSource parent;
  for (int i = 0; i < 100; ++i) parent.Child();
  parent.Stop();
  EXPECT_TRUE(parent.stop_requested());
}

TEST(StopRefTest, WaitsOnEitherForm) {
  StopSource source;
  std::atomic<bool> flag{false};
  EXPECT_FALSE(StopRef(source).WaitFor(1ms));
  EXPECT_FALSE(StopRef(flag).WaitFor(1ms));
  std::thread stopper([&] {
    std::this_thread::sleep_for(20ms);
    flag = true;
    source.Stop();
  });
  EXPECT_TRUE(StopRef(flag).WaitFor(60s));
  EXPECT_TRUE(StopRef(source).WaitFor(60s));
  stopper.join();
  StopRef ref = flag;
  EXPECT_TRUE(ref);
  EXPECT_TRUE(ref.stop_requested());
}

TEST(TickerTest, RunsAtOnceAndStopsAtOnceWhenDestroyed) {
  std::atomic<int> ticks{0};
  auto took = Timed([&] {
    Ticker ticker(std::chrono::hours(1), [&] { ++ticks; });
    while (ticks.load() == 0) std::this_thread::sleep_for(1ms);
  });
  EXPECT_EQ(ticks.load(), 1);
  EXPECT_LT(took, 10s);
}

TEST(CondVarTest, WaitForReturnsThePredicate) {
  Mutex mu;
  CondVar cv;
  bool ready = false;
  std::thread setter([&] {
    std::this_thread::sleep_for(10ms);
    {
      MutexLock lock(&mu);
      ready = true;
    }
    cv.NotifyAll();
  });
  {
    MutexLock lock(&mu);
    EXPECT_TRUE(cv.WaitFor(&mu, 60s, [&] { return ready; }));
  }
  setter.join();
  MutexLock lock(&mu);
  EXPECT_FALSE(cv.WaitFor(&mu, 1ms, [] { return false; }));
}

}  // namespace
}  // namespace midflight

namespace midflight {

// OnceOk (base/once_ok.h): a failure does not count, a success does.
TEST(OnceOkTest, AFailureIsTriedAgainAndASuccessIsNot) {
  OnceOk once;
  int calls = 0;
  Status first = once.Run([&] {
    ++calls;
    return RetryCall("target down");
  });
  EXPECT_FALSE(first.ok());
  EXPECT_EQ(first.message(), "target down");
  EXPECT_TRUE(once.Run([&] {
                    ++calls;
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_TRUE(once.Run([&] {
                    ++calls;
                    return RetryCall("never called");
                  })
                  .ok());
  EXPECT_EQ(calls, 2);
}

}  // namespace midflight
