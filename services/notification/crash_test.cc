// Fault test: the real notification binary delivers a burst over SMTP and
// is killed with SIGKILL in the middle of it, twice, then restarted. Every
// message must arrive; a message may arrive twice only when a crash hit it
// between the relay's acceptance and the SENT row (at most one per crash),
// and a duplicate carries the same Message-ID.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

#if defined(__SANITIZE_ADDRESS__)
constexpr int kLeaseSeconds = 12;
#else
constexpr int kLeaseSeconds = 4;
#endif
// Each worker has at most one message between "the SMTP server accepted
// it" and "marked SENT" when the process is killed: the duplicate bound.
constexpr int kWorkers = 4;

namespace pb = ::guestlist::notification::v1;

constexpr char kInternal[] = "crash-test-internal";
constexpr int kMessages = 2000;

std::string BinaryPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".",
                      "/guestlist/services/notification/notification");
}

class Process final {
 public:
  Process(const std::string& path, const std::vector<std::string>& args) {
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(path.c_str()));
      for (const std::string& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(path.c_str(), argv.data());
      _exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0) Kill(SIGTERM);
  }
  void Kill(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

TEST(CrashTest,
     KillNineMidBatchLosesNothingAndDuplicatesAtMostOncePerWorkerPerCrash) {
  guestlist::testing::TestPostgres postgres;
  const std::string conninfo = postgres.CreateDatabase("notif_crash");
  pg::Pool pool(pg::PoolOptions{.conninfo = conninfo, .max_size = 2});
  ASSERT_TRUE(
      RunMigrations(pool, "notification", NotificationMigrations()).ok());
  MessageStore store(&pool);

  testing::SmtpSink sink;
  ASSERT_TRUE(sink.Start());
  const int port = guestlist::testing::FreePort();
  const std::vector<std::string> args = {
      absl::StrCat("--port=", port), absl::StrCat("--database_url=", conninfo),
      absl::StrCat("--internal_token=", kInternal),
      absl::StrCat("--smtp_url=", sink.url()),
      absl::StrCat("--delivery_workers=", kWorkers), "--delivery_batch_size=25",
      // A worker hands back what it has not sent by half its lease; a
      // sanitized build is several times slower, so its lease is longer.
      absl::StrCat("--lease=", kLeaseSeconds, "s"), "--retry_base_delay=100ms",
      "--identity_addr=127.0.0.1:1", "--membership_addr=127.0.0.1:1",
      "--grace_period=1s"};

  auto process = std::make_unique<Process>(BinaryPath(), args);
  auto stub = pb::NotificationService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  // Queue the burst (4 x 500) through the real API.
  for (int b = 0; b < kMessages / 500; ++b) {
    pb::BatchSendEmailRequest req;
    for (int i = 0; i < 500; ++i) {
      pb::SendEmailRequest* m = req.add_messages();
      m->set_workspace_id("ws");
      m->set_template_("access_expiry");
      m->set_to(absl::StrCat("u", b * 500 + i, "@example.com"));
      (*m->mutable_variables())["workspace_name"] = "Acme";
      (*m->mutable_variables())["expire_time"] = "tomorrow";
    }
    pb::BatchSendEmailResponse resp;
    grpc::Status s;
    for (int attempt = 0; attempt < 100; ++attempt) {
      grpc::ClientContext ctx;
      ctx.AddMetadata(kInternalTokenKey, kInternal);
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
      ctx.set_wait_for_ready(true);
      s = stub->BatchSendEmail(&ctx, req, &resp);
      if (s.ok()) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.messages_size(), 500);
  }

  // Two crashes in the middle of delivery.
  int crashes = 0;
  for (size_t kill_at : {size_t{300}, size_t{1100}}) {
    ASSERT_TRUE(sink.WaitForCount(kill_at, absl::Seconds(30)))
        << "only " << sink.count() << " delivered";
    process->Kill(SIGKILL);
    ++crashes;
    const size_t at_crash = sink.count();
    EXPECT_LT(at_crash, static_cast<size_t>(kMessages))
        << "crash was not mid-burst";
    process = std::make_unique<Process>(BinaryPath(), args);
  }

  const absl::Time deadline = absl::Now() + absl::Seconds(40);
  while (absl::Now() < deadline &&
         *store.CountByState(MessageState::kSent) < kMessages) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(*store.CountByState(MessageState::kSent), kMessages);
  EXPECT_EQ(*store.CountByState(MessageState::kQueued), 0);
  process->Kill(SIGTERM);
  sink.Stop();

  std::map<std::string, int> by_id;
  std::map<std::string, std::string> recipient_of;
  for (const testing::ReceivedMail& m : sink.messages()) {
    ++by_id[m.message_id()];
    auto [it, inserted] = recipient_of.emplace(m.message_id(), m.recipients[0]);
    // A duplicate is the same message (same Message-ID, same recipient).
    EXPECT_TRUE(inserted || it->second == m.recipients[0]);
  }
  EXPECT_EQ(by_id.size(), static_cast<size_t>(kMessages)) << "lost messages";
  const int duplicates =
      static_cast<int>(sink.count()) - static_cast<int>(by_id.size());
  std::cout << "delivered " << sink.count() << ", distinct " << by_id.size()
            << ", duplicates " << duplicates << ", crashes " << crashes << "\n";
  EXPECT_LE(duplicates, crashes * kWorkers);
}

}  // namespace
}  // namespace guestlist::notification
