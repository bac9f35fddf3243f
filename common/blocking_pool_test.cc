#include "common/blocking_pool.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace guestlist {
namespace {

TEST(BlockingPoolTest, RunsEveryScheduledItem) {
  std::atomic<int> ran{0};
  {
    BlockingPool pool(3, 1000);
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE(pool.Schedule([&] { ran.fetch_add(1); }));
    }
  }  // the destructor runs what is still queued
  EXPECT_EQ(ran.load(), 500);
}

TEST(BlockingPoolTest, RefusesBeyondTheQueueLimit) {
  absl::Notification release;
  absl::Notification started;
  std::atomic<int> ran{0};
  BlockingPool pool(1, 2);
  // The only worker blocks, so the next two wait in the queue.
  ASSERT_TRUE(pool.Schedule([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  EXPECT_TRUE(pool.Schedule([&] { ran.fetch_add(1); }));
  EXPECT_TRUE(pool.Schedule([&] { ran.fetch_add(1); }));
  EXPECT_FALSE(pool.Schedule([&] { ran.fetch_add(100); }));
  release.Notify();
  // Once the queue drains there is room again.
  while (ran.load() < 2) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_TRUE(pool.Schedule([&] { ran.fetch_add(1); }));
  while (ran.load() < 3) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(ran.load(), 3);
}

}  // namespace
}  // namespace guestlist
