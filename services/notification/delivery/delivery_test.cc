// Unit tests of the delivery helpers that need no database or network: the
// per-domain rate limiter, the backoff schedule, the file:// transport and
// the workers' priority.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/pg.h"
#include "services/notification/delivery/dispatcher.h"
#include "services/notification/delivery/mail_sender.h"

namespace guestlist::notification {
namespace {

TEST(DomainRateLimiterTest, LimitsPerDomain) {
  DomainRateLimiter limiter(2.0);  // 2/s, burst 2
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_EQ(limiter.Reserve("a.com", t0), absl::ZeroDuration());
  EXPECT_EQ(limiter.Reserve("a.com", t0), absl::ZeroDuration());
  EXPECT_EQ(limiter.Reserve("a.com", t0), absl::Milliseconds(500));
  // Another domain has its own bucket.
  EXPECT_EQ(limiter.Reserve("b.com", t0), absl::ZeroDuration());
  // Half a second later one token is back.
  EXPECT_EQ(limiter.Reserve("a.com", t0 + absl::Milliseconds(500)),
            absl::ZeroDuration());
  EXPECT_GT(limiter.Reserve("a.com", t0 + absl::Milliseconds(500)),
            absl::ZeroDuration());
}

TEST(DomainRateLimiterTest, ZeroMeansUnlimited) {
  DomainRateLimiter limiter(0);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(limiter.Reserve("a.com", absl::UnixEpoch()),
              absl::ZeroDuration());
  }
}

TEST(BackoffTest, DoublesUpToTheMaximum) {
  const absl::Duration base = absl::Seconds(2);
  const absl::Duration max = absl::Seconds(30);
  EXPECT_EQ(Dispatcher::Backoff(1, base, max), absl::Seconds(2));
  EXPECT_EQ(Dispatcher::Backoff(2, base, max), absl::Seconds(4));
  EXPECT_EQ(Dispatcher::Backoff(4, base, max), absl::Seconds(16));
  EXPECT_EQ(Dispatcher::Backoff(5, base, max), absl::Seconds(30));
  EXPECT_EQ(Dispatcher::Backoff(60, base, max), absl::Seconds(30));
}

// Delivery is background work: its threads run at the configured nice value
// and yield the CPU to API calls on a shared machine. (No database here: the
// workers' claims fail and are retried, which does not matter.)
TEST(DispatcherTest, WorkersRunAtTheConfiguredNiceValue) {
  pg::Pool pool({.conninfo = "host=/nonexistent dbname=none",
                 .acquire_timeout = absl::Milliseconds(10)});
  MessageStore store(&pool);
  SystemClock clock;
  auto files = MakeMailSenderFactory({.url = "file:///nonexistent"});
  ASSERT_TRUE(files.ok());
  std::atomic<int> nice{-100};
  absl::Notification started;
  DispatcherOptions options;
  options.workers = 1;
  options.nice = 7;
  Dispatcher dispatcher(
      &store, &clock,
      [&]() {
        // Called on the worker thread as it starts.
        nice =
            getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
        started.Notify();
        return (*files)();
      },
      options);
  dispatcher.Start();
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  dispatcher.Stop();
  EXPECT_EQ(nice.load(), 7);
}

TEST(MailSenderFactoryTest, RejectsUnknownSchemes) {
  EXPECT_EQ(MakeMailSenderFactory({.url = "http://x"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeMailSenderFactory({.url = "file://relative"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MakeMailSenderFactory({.url = "smtp://127.0.0.1:25"}).ok());
  EXPECT_TRUE(MakeMailSenderFactory({.url = "smtps://127.0.0.1:465"}).ok());
}

TEST(FileSenderTest, WritesOneFilePerMessageId) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/mail");
  auto factory = MakeMailSenderFactory({.url = absl::StrCat("file://", dir)});
  ASSERT_TRUE(factory.ok());
  std::unique_ptr<MailSender> sender = (*factory)();
  const Envelope envelope{"from@guestlist.test", "to@example.com",
                          "abc-123@guestlist"};
  SendOutcome first = sender->Send(envelope, "Subject: one\r\n\r\nx\r\n", {});
  ASSERT_EQ(first.kind, SendOutcome::Kind::kSent) << first.error;
  // A re-send after a crash replaces the file instead of adding one.
  SendOutcome again = sender->Send(envelope, "Subject: two\r\n\r\nx\r\n", {});
  ASSERT_EQ(again.kind, SendOutcome::Kind::kSent);
  std::ifstream in(absl::StrCat(dir, "/abc-123@guestlist.eml"));
  std::stringstream content;
  content << in.rdbuf();
  EXPECT_EQ(content.str(),
            "X-Envelope-From: <from@guestlist.test>\r\n"
            "X-Envelope-To: <to@example.com>\r\nSubject: two\r\n\r\nx\r\n");
}

}  // namespace
}  // namespace guestlist::notification
