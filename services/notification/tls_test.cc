// SMTP over TLS against a real server (Debian's python3-aiosmtpd with a
// self-signed certificate made by openssl): STARTTLS and implicit TLS
// (smtps://), both with AUTH, and a relay that insists on STARTTLS when
// --smtp_starttls is off.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/migrations.h"
#include "common/pg.h"
#include "common/random.h"
#include "services/notification/delivery/dispatcher.h"
#include "services/notification/delivery/mail_sender.h"
#include "services/notification/migrations.h"
#include "services/notification/storage/message_store.h"
#include "tests/testing/postgres.h"

namespace guestlist::notification {
namespace {

using ::testing::HasSubstr;

std::string TmpDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr ? tmp : "/tmp";
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    InitMailTransport();
    postgres_ = new guestlist::testing::TestPostgres();
    dir_ = absl::StrCat(TmpDir(), "/tls");
    std::filesystem::create_directories(dir_);
    guestlist::testing::Run(absl::StrCat(
        "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 "
        "-addext subjectAltName=IP:127.0.0.1 -days 1 -keyout ",
        dir_, "/key.pem -out ", dir_, "/cert.pem 2>/dev/null"));
  }
  static void TearDownTestSuite() {
    delete postgres_;
    postgres_ = nullptr;
  }

  void SetUp() override {
    static int n = 0;
    pool_ = std::make_unique<pg::Pool>(pg::PoolOptions{
        .conninfo = postgres_->CreateDatabase(absl::StrCat("tls", ++n)),
        .max_size = 4});
    ASSERT_TRUE(
        RunMigrations(*pool_, "notification", NotificationMigrations()).ok());
    store_ = std::make_unique<MessageStore>(pool_.get());
    out_ = absl::StrCat(dir_, "/out", n);
    std::filesystem::create_directories(out_);
  }

  void TearDown() override {
    if (dispatcher_) dispatcher_->Stop();
    if (sink_pid_ > 0) {
      kill(sink_pid_, SIGTERM);
      int status = 0;
      waitpid(sink_pid_, &status, 0);
    }
  }

  // Starts the Python sink; returns its port.
  int StartSink(const std::string& mode) {
    const int port = guestlist::testing::FreePort();
    const char* srcdir = std::getenv("TEST_SRCDIR");
    const std::string script = absl::StrCat(
        srcdir != nullptr ? srcdir : ".",
        "/guestlist/services/notification/testing/tls_smtp_sink.py");
    std::vector<std::string> args = {"/usr/bin/python3",
                                     script,
                                     absl::StrCat("--port=", port),
                                     absl::StrCat("--cert=", dir_, "/cert.pem"),
                                     absl::StrCat("--key=", dir_, "/key.pem"),
                                     absl::StrCat("--mode=", mode),
                                     absl::StrCat("--out=", out_),
                                     "--user=relay",
                                     "--password=s3cret"};
    sink_pid_ = fork();
    if (sink_pid_ == 0) {
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline &&
           !std::filesystem::exists(absl::StrCat(out_, "/READY"))) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    return port;
  }

  void StartDispatcher(const SmtpOptions& smtp) {
    auto factory = MakeMailSenderFactory(smtp);
    ASSERT_TRUE(factory.ok());
    DispatcherOptions o;
    o.workers = 1;
    o.max_attempts = 3;
    o.poll_interval = absl::Milliseconds(50);
    o.retry_base = absl::Milliseconds(100);
    o.from_address = "no-reply@guestlist.test";
    o.owner_prefix = "tls";
    dispatcher_ =
        std::make_unique<Dispatcher>(store_.get(), &clock_, *factory, o);
    dispatcher_->Start();
  }

  std::string Enqueue(const std::string& to) {
    NewMessage m;
    m.id = NewUuid(random_);
    m.workspace_id = "ws";
    m.recipient = to;
    m.category = "access_expiry";
    m.template_name = "access_expiry";
    m.subject = "Grüße";
    m.text_body = "hello";
    m.html_body = "<p>hello</p>";
    m.message_id_header = absl::StrCat("<", m.id, "@guestlist>");
    auto stored = store_->Enqueue({m}, {}, clock_.Now());
    EXPECT_TRUE(stored.ok()) << stored.status();
    dispatcher_->Notify();
    return m.id;
  }

  StoredMessage WaitUntilDone(const std::string& id) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    absl::StatusOr<StoredMessage> m = store_->Get(id);
    while (absl::Now() < deadline && m.ok() &&
           m->state == MessageState::kQueued) {
      absl::SleepFor(absl::Milliseconds(50));
      m = store_->Get(id);
    }
    EXPECT_TRUE(m.ok());
    return *m;
  }

  std::string ReadOut(int n) {
    std::ifstream in(absl::StrCat(out_, "/", n, ".eml"));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  static guestlist::testing::TestPostgres* postgres_;
  static std::string dir_;
  std::string out_;
  SystemClock clock_;
  SecureRandom random_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<MessageStore> store_;
  std::unique_ptr<Dispatcher> dispatcher_;
  pid_t sink_pid_ = -1;
};

guestlist::testing::TestPostgres* TlsTest::postgres_ = nullptr;
std::string TlsTest::dir_;

TEST_F(TlsTest, StartTlsWithAuth) {
  const int port = StartSink("starttls");
  StartDispatcher({.url = absl::StrCat("smtp://127.0.0.1:", port),
                   .username = "relay",
                   .password = "s3cret",
                   .starttls = true,
                   .ca_file = absl::StrCat(dir_, "/cert.pem")});
  const std::string id = Enqueue("tls@example.com");
  StoredMessage m = WaitUntilDone(id);
  EXPECT_EQ(m.state, MessageState::kSent) << m.last_error;
  const std::string mail = ReadOut(1);
  EXPECT_THAT(mail, HasSubstr("X-Envelope-To: <tls@example.com>"));
  EXPECT_THAT(mail,
              HasSubstr(absl::StrCat("Message-ID: <", id, "@guestlist>")));
  EXPECT_THAT(mail, HasSubstr("Subject: =?UTF-8?B?R3LDvMOfZQ==?="));
}

TEST_F(TlsTest, ImplicitTlsWithAuth) {
  const int port = StartSink("smtps");
  StartDispatcher({.url = absl::StrCat("smtps://127.0.0.1:", port),
                   .username = "relay",
                   .password = "s3cret",
                   .ca_file = absl::StrCat(dir_, "/cert.pem")});
  const std::string id = Enqueue("smtps@example.com");
  StoredMessage m = WaitUntilDone(id);
  EXPECT_EQ(m.state, MessageState::kSent) << m.last_error;
  EXPECT_THAT(ReadOut(1), HasSubstr("X-Envelope-To: <smtps@example.com>"));
}

TEST_F(TlsTest, RelayDemandingStartTlsRejectsPlainSession) {
  const int port = StartSink("starttls");
  StartDispatcher({.url = absl::StrCat("smtp://127.0.0.1:", port)});
  StoredMessage m = WaitUntilDone(Enqueue("plain@example.com"));
  EXPECT_EQ(m.state, MessageState::kFailed);
  EXPECT_THAT(m.last_error,
              HasSubstr("530 Must issue a STARTTLS command first"));
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(out_, "/1.eml")));
}

}  // namespace
}  // namespace guestlist::notification
