// Benchmark: a burst of 10,000 emails queued through the notification
// binary's BatchSendEmail (20 x 500) and delivered over SMTP to a local sink
// (in this process). Prints the enqueue rate and the end-to-end delivery
// rate; the target is >= 1,000 messages/s. A second case measures delivery
// alone: 10,000 messages already queued when the binary starts. Run with
//   bazel test //tests/bench:notification_delivery_bench --test_output=all
// Flags for the binary can be added with NOTIFICATION_BENCH_ARGS.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "common/migrations.h"
#include "common/pg.h"
#include "guestlist/notification/v1/notification.grpc.pb.h"
#include "services/notification/migrations.h"
#include "services/notification/storage/message_store.h"
#include "services/notification/testing/smtp_sink.h"
#include "tests/testing/postgres.h"

namespace guestlist::notification {
namespace {

namespace pb = ::guestlist::notification::v1;

constexpr char kInternal[] = "bench-internal";
constexpr int kMessages = 10000;
constexpr int kBatch = 500;

TEST(NotificationDeliveryBench, TenThousandMessageBurst) {
  guestlist::testing::TestPostgres postgres;
  const std::string conninfo = postgres.CreateDatabase("notif_bench");
  pg::Pool pool(pg::PoolOptions{.conninfo = conninfo, .max_size = 2});
  ASSERT_TRUE(
      RunMigrations(pool, "notification", NotificationMigrations()).ok());
  MessageStore store(&pool);
  testing::SmtpSink sink;
  ASSERT_TRUE(sink.Start());

  const int port = guestlist::testing::FreePort();
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const std::string binary =
      absl::StrCat(srcdir != nullptr ? srcdir : ".",
                   "/guestlist/services/notification/notification");
  std::vector<std::string> args = {binary,
                                   absl::StrCat("--port=", port),
                                   absl::StrCat("--database_url=", conninfo),
                                   absl::StrCat("--internal_token=", kInternal),
                                   absl::StrCat("--smtp_url=", sink.url()),
                                   "--identity_addr=127.0.0.1:1",
                                   "--membership_addr=127.0.0.1:1"};
  if (const char* extra = std::getenv("NOTIFICATION_BENCH_ARGS")) {
    for (absl::string_view a : absl::StrSplit(extra, ' ', absl::SkipEmpty())) {
      args.emplace_back(a);
    }
  }
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }

  auto stub = pb::NotificationService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  {
    // Wait until the binary serves, so start-up is not measured.
    grpc::ClientContext ctx;
    ctx.AddMetadata(kInternalTokenKey, kInternal);
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    pb::BatchSendEmailResponse resp;
    ASSERT_TRUE(
        stub->BatchSendEmail(&ctx, pb::BatchSendEmailRequest(), &resp).ok());
  }

  const absl::Time start = absl::Now();
  for (int b = 0; b < kMessages / kBatch; ++b) {
    pb::BatchSendEmailRequest req;
    for (int i = 0; i < kBatch; ++i) {
      pb::SendEmailRequest* m = req.add_messages();
      m->set_workspace_id("ws");
      m->set_template_("access_expiry");
      m->set_to(
          absl::StrCat("user", b * kBatch + i, "@example", i % 7, ".com"));
      m->set_to_name("Zoë Müller");
      (*m->mutable_variables())["workspace_name"] = "Acme";
      (*m->mutable_variables())["expire_time"] = "2026-12-01";
    }
    grpc::ClientContext ctx;
    ctx.AddMetadata(kInternalTokenKey, kInternal);
    pb::BatchSendEmailResponse resp;
    grpc::Status s = stub->BatchSendEmail(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const absl::Duration enqueue = absl::Now() - start;
  const bool all = sink.WaitForCount(kMessages, absl::Seconds(120));
  const absl::Duration delivered = absl::Now() - start;
  // The last SENT rows are written right after the relay's reply.
  absl::Time sent_deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < sent_deadline &&
         *store.CountByState(MessageState::kSent) < kMessages) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);

  ASSERT_TRUE(all) << "only " << sink.count() << " of " << kMessages;
  std::set<std::string> ids;
  for (const testing::ReceivedMail& m : sink.messages())
    ids.insert(m.message_id());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kMessages));
  EXPECT_EQ(*store.CountByState(MessageState::kSent), kMessages);

  const double rate = kMessages / absl::ToDoubleSeconds(delivered);
  std::cout << "notification_delivery_bench: " << kMessages
            << " messages queued in " << absl::FormatDuration(enqueue) << " ("
            << kMessages / absl::ToDoubleSeconds(enqueue)
            << "/s); all delivered " << absl::FormatDuration(delivered)
            << " after the first call: " << rate << " messages/s over "
            << sink.connections() << " SMTP connections\n";
  EXPECT_GE(rate, 1000.0);
}

TEST(NotificationDeliveryBench, DeliveryOfTenThousandQueuedMessages) {
  guestlist::testing::TestPostgres postgres;
  const std::string conninfo = postgres.CreateDatabase("notif_bench2");
  pg::Pool pool(pg::PoolOptions{.conninfo = conninfo, .max_size = 2});
  ASSERT_TRUE(
      RunMigrations(pool, "notification", NotificationMigrations()).ok());
  MessageStore store(&pool);
  const absl::Time now = absl::Now();
  for (int b = 0; b < kMessages / kBatch; ++b) {
    std::vector<NewMessage> batch;
    for (int i = 0; i < kBatch; ++i) {
      NewMessage m;
      m.id = absl::StrFormat("00000000-0000-4000-8000-%012d", b * kBatch + i);
      m.workspace_id = "ws";
      m.recipient = absl::StrCat("user", b * kBatch + i, "@example.com");
      m.recipient_name = "Zoë Müller";
      m.category = "access_expiry";
      m.template_name = "access_expiry";
      m.subject = "Your access to Acme expires soon";
      m.text_body = std::string(600, 'x');
      m.html_body = std::string(900, 'y');
      m.message_id_header = absl::StrCat("<", m.id, "@guestlist>");
      m.unsubscribe_url = "https://gl.test/v1/unsubscribe?token=t";
      batch.push_back(std::move(m));
    }
    ASSERT_TRUE(store.Enqueue(batch, {}, now).ok());
  }
  testing::SmtpSink sink;
  ASSERT_TRUE(sink.Start());
  const int port = guestlist::testing::FreePort();
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const std::string binary =
      absl::StrCat(srcdir != nullptr ? srcdir : ".",
                   "/guestlist/services/notification/notification");
  std::vector<std::string> args = {binary,
                                   absl::StrCat("--port=", port),
                                   absl::StrCat("--database_url=", conninfo),
                                   absl::StrCat("--internal_token=", kInternal),
                                   absl::StrCat("--smtp_url=", sink.url()),
                                   "--identity_addr=127.0.0.1:1",
                                   "--membership_addr=127.0.0.1:1"};
  if (const char* extra = std::getenv("NOTIFICATION_BENCH_ARGS")) {
    for (absl::string_view a : absl::StrSplit(extra, ' ', absl::SkipEmpty())) {
      args.emplace_back(a);
    }
  }
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  // Measured from the first message the sink receives (start-up excluded).
  ASSERT_TRUE(sink.WaitForCount(1, absl::Seconds(30)));
  const absl::Time first = absl::Now();
  const bool all = sink.WaitForCount(kMessages, absl::Seconds(120));
  const absl::Duration elapsed = absl::Now() - first;
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(all) << "only " << sink.count() << " of " << kMessages;
  const double rate = (kMessages - 1) / absl::ToDoubleSeconds(elapsed);
  std::cout << "notification_delivery_bench (delivery only): " << kMessages
            << " queued messages delivered in " << absl::FormatDuration(elapsed)
            << ": " << rate << " messages/s over " << sink.connections()
            << " SMTP connections\n";
  EXPECT_GE(rate, 1000.0);
}

}  // namespace
}  // namespace guestlist::notification
