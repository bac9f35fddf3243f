// End-to-end tests of the notification service in one process: real
// PostgreSQL (throwaway cluster), the real gRPC server on port 0 called over
// a socket, real delivery workers sending over SMTP (libcurl) to a sink the
// test runs, and fake identity/membership gRPC servers.
#include "services/notification/api/notification_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/random.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"
#include "guestlist/membership/v1/membership.grpc.pb.h"
#include "guestlist/notification/v1/notification.grpc.pb.h"
#include "services/notification/delivery/dispatcher.h"
#include "services/notification/delivery/mail_sender.h"
#include "services/notification/migrations.h"
#include "services/notification/storage/message_store.h"
#include "services/notification/testing/smtp_sink.h"
#include "tests/testing/postgres.h"

namespace guestlist::notification {
namespace {

using ::testing::HasSubstr;
namespace idpb = ::guestlist::identity::v1;
namespace mpb = ::guestlist::membership::v1;

constexpr char kInternal[] = "internal-secret";
constexpr char kWorkspace[] = "11111111-1111-4111-8111-111111111111";
constexpr char kOtherWorkspace[] = "22222222-2222-4222-8222-222222222222";
constexpr char kAdminId[] = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
constexpr char kGuestId[] = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
constexpr char kAppId[] = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

// identity: tokens -> principals, and the users BatchGetUsers knows.
class FakeIdentity final : public idpb::IdentityService::Service {
 public:
  FakeIdentity() {
    Principal admin;
    admin.set_user_id(kAdminId);
    admin.set_workspace_id(kWorkspace);
    admin.set_kind(idpb::ADMIN);
    admin.set_status(idpb::ACTIVE);
    principals_["admin"] = admin;
    Principal other_admin = admin;
    other_admin.set_user_id("dddddddd-dddd-4ddd-8ddd-dddddddddddd");
    other_admin.set_workspace_id(kOtherWorkspace);
    principals_["other-admin"] = other_admin;
    Principal guest;
    guest.set_user_id(kGuestId);
    guest.set_workspace_id(kWorkspace);
    guest.set_kind(idpb::GUEST);
    guest.set_status(idpb::ACTIVE);
    principals_["guest"] = guest;
    Principal key;
    key.set_workspace_id(kWorkspace);
    key.set_api_key_id("key-1");
    key.add_scopes("reports.publish");
    principals_["apikey"] = key;
    Principal weak_key = key;
    weak_key.clear_scopes();
    weak_key.add_scopes("users.read");
    principals_["weak-apikey"] = weak_key;

    idpb::User g;
    g.set_id(kGuestId);
    g.set_workspace_id(kWorkspace);
    g.set_email("Guest@Example.com");
    g.set_kind(idpb::GUEST);
    users_[kGuestId] = g;
  }

  grpc::Status Authenticate(grpc::ServerContext*,
                            const idpb::AuthenticateRequest* request,
                            Principal* response) override {
    auto it = principals_.find(request->token());
    if (it == principals_.end()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "invalid or expired token");
    }
    *response = it->second;
    return grpc::Status::OK;
  }

  grpc::Status BatchGetUsers(grpc::ServerContext* context,
                             const idpb::BatchGetUsersRequest* request,
                             idpb::BatchGetUsersResponse* response) override {
    if (!HasInternalCredential(*context, kInternal)) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "internal");
    }
    for (const std::string& id : request->user_ids()) {
      auto it = users_.find(id);
      if (it != users_.end() &&
          it->second.workspace_id() == request->workspace_id()) {
        *response->add_users() = it->second;
      }
    }
    return grpc::Status::OK;
  }

 private:
  std::map<std::string, Principal> principals_;
  std::map<std::string, idpb::User> users_;
};

class FakeMembership final : public mpb::MembershipService::Service {
 public:
  grpc::Status ListAppRecipients(
      grpc::ServerContext* context,
      const mpb::ListAppRecipientsRequest* request,
      mpb::ListAppRecipientsResponse* response) override {
    if (!HasInternalCredential(*context, kInternal)) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "internal");
    }
    if (request->app_id() != kAppId) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "app not found");
    }
    response->set_workspace_id(kWorkspace);
    response->set_app_name("Sales");
    // Two pages, to exercise paging.
    const bool first = request->page_token().empty();
    for (int i = first ? 0 : 2; i < (first ? 2 : 3); ++i) {
      mpb::DirectoryUser* u = response->add_users();
      u->set_id(absl::StrCat("user-", i));
      u->set_email(absl::StrCat("guest", i, "@example.com"));
      u->set_first_name("Zoë");
      u->set_last_name(absl::StrCat("Nr", i));
      u->set_kind(mpb::DirectoryUser::GUEST);
      u->set_status(mpb::DirectoryUser::ACTIVE);
    }
    if (first) response->set_next_page_token("p2");
    return grpc::Status::OK;
  }
};

class NotificationServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    InitMailTransport();
    postgres_ = new guestlist::testing::TestPostgres();
  }
  static void TearDownTestSuite() {
    delete postgres_;
    postgres_ = nullptr;
  }

  void SetUp() override {
    static int db_counter = 0;
    const std::string conninfo =
        postgres_->CreateDatabase(absl::StrCat("notif", ++db_counter));
    pool_ = std::make_unique<pg::Pool>(
        pg::PoolOptions{.conninfo = conninfo, .max_size = 16});
    ASSERT_TRUE(
        RunMigrations(*pool_, "notification", NotificationMigrations()).ok());
    store_ = std::make_unique<MessageStore>(pool_.get());
    ASSERT_TRUE(sink_.Start());

    grpc::ServerBuilder peers;
    int peer_port = 0;
    peers.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &peer_port);
    peers.RegisterService(&identity_);
    peers.RegisterService(&membership_);
    peer_server_ = peers.BuildAndStart();
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", peer_port),
                                       grpc::InsecureChannelCredentials());
    identity_stub_ = idpb::IdentityService::NewStub(channel);
    membership_stub_ = mpb::MembershipService::NewStub(channel);
    authenticator_ = std::make_unique<RemoteAuthenticator>(identity_stub_, "",
                                                           kInternal, &clock_);

    StartDispatcher();
    ServiceOptions options;
    options.internal_token = kInternal;
    options.unsubscribe_secret = "unsubscribe-key";
    options.public_url = "https://gl.test";
    options.on_queued = [this] {
      if (dispatcher_) dispatcher_->Notify();
    };
    service_ = std::make_unique<NotificationService>(
        store_.get(), authenticator_.get(), &clock_, &random_, identity_stub_,
        membership_stub_, options);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    builder.SetMaxReceiveMessageSize(16 << 20);  // as ServiceRunner
    server_ = builder.BuildAndStart();
    stub_ = pb::NotificationService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    server_->Shutdown();
    if (dispatcher_) dispatcher_->Stop();
    peer_server_->Shutdown();
    sink_.Stop();
  }

  void StartDispatcher(int max_attempts = 5, const std::string& username = "",
                       const std::string& password = "",
                       double domain_rate = 0) {
    DispatcherOptions o;
    o.workers = 2;
    o.batch_size = 10;
    o.max_attempts = max_attempts;
    o.lease = absl::Seconds(30);
    o.poll_interval = poll_interval_;
    o.wake_gather = wake_gather_;
    o.retry_base = absl::Milliseconds(100);
    o.retry_max = absl::Milliseconds(400);
    o.from_address = "no-reply@guestlist.test";
    o.owner_prefix = "test";
    o.domain_rate_per_second = domain_rate;
    auto factory = MakeMailSenderFactory(
        {.url = sink_.url(), .username = username, .password = password});
    ASSERT_TRUE(factory.ok());
    dispatcher_ =
        std::make_unique<Dispatcher>(store_.get(), &clock_, *factory, o);
    dispatcher_->Start();
  }

  std::unique_ptr<grpc::ClientContext> Internal() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata(kInternalTokenKey, kInternal);
    return ctx;
  }
  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    return ctx;
  }

  pb::SendEmailRequest Expiry(const std::string& to) {
    pb::SendEmailRequest r;
    r.set_workspace_id(kWorkspace);
    r.set_template_("access_expiry");
    r.set_to(to);
    r.set_to_name("Zoë Müller");
    (*r.mutable_variables())["workspace_name"] = "Acme";
    (*r.mutable_variables())["expire_time"] = "2026-12-01";
    return r;
  }

  pb::Message Send(const pb::SendEmailRequest& r) {
    pb::Message m;
    grpc::Status s = stub_->SendEmail(Internal().get(), r, &m);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return m;
  }

  // Polls GetMessage until `state` (or timeout); returns the last answer.
  pb::Message WaitForState(const std::string& id, pb::Message::State state,
                           absl::Duration timeout = absl::Seconds(15)) {
    const absl::Time deadline = absl::Now() + timeout;
    pb::Message m;
    while (absl::Now() < deadline) {
      grpc::Status s = stub_->GetMessage(As("admin").get(), MessageId(id), &m);
      if (s.ok() && m.state() == state) return m;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return m;
  }

  static pb::GetMessageRequest MessageId(const std::string& id) {
    pb::GetMessageRequest r;
    r.set_message_id(id);
    return r;
  }

  static guestlist::testing::TestPostgres* postgres_;
  SystemClock clock_;
  SecureRandom random_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<MessageStore> store_;
  testing::SmtpSink sink_;
  FakeIdentity identity_;
  FakeMembership membership_;
  std::unique_ptr<grpc::Server> peer_server_;
  std::shared_ptr<idpb::IdentityService::StubInterface> identity_stub_;
  std::shared_ptr<mpb::MembershipService::StubInterface> membership_stub_;
  std::unique_ptr<RemoteAuthenticator> authenticator_;
  std::unique_ptr<Dispatcher> dispatcher_;
  // Of the next StartDispatcher().
  absl::Duration poll_interval_ = absl::Milliseconds(50);
  absl::Duration wake_gather_ = absl::ZeroDuration();
  std::unique_ptr<NotificationService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<pb::NotificationService::Stub> stub_;
};

guestlist::testing::TestPostgres* NotificationServiceTest::postgres_ = nullptr;

TEST_F(NotificationServiceTest, SendEmailNeedsInternalCredential) {
  pb::Message m;
  grpc::Status s =
      stub_->SendEmail(As("admin").get(), Expiry("a@example.com"), &m);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  pb::BatchSendEmailResponse batch;
  pb::BatchSendEmailRequest req;
  *req.add_messages() = Expiry("a@example.com");
  s = stub_->BatchSendEmail(As("admin").get(), req, &batch);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(NotificationServiceTest, SendEmailValidates) {
  pb::Message m;
  pb::SendEmailRequest bad = Expiry("not-an-address");
  EXPECT_EQ(stub_->SendEmail(Internal().get(), bad, &m).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  bad = Expiry("a@example.com");
  bad.mutable_variables()->erase("expire_time");
  grpc::Status s = stub_->SendEmail(Internal().get(), bad, &m);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("expire_time"));
  bad = Expiry("a@example.com");
  bad.set_template_("newsletter");
  EXPECT_EQ(stub_->SendEmail(Internal().get(), bad, &m).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  pb::BatchSendEmailRequest batch;
  *batch.add_messages() = Expiry("a@example.com");
  *batch.add_messages() = Expiry("broken");
  pb::BatchSendEmailResponse resp;
  s = stub_->BatchSendEmail(Internal().get(), batch, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("messages[1]"));
  EXPECT_EQ(*store_->CountByState(MessageState::kQueued), 0);
}

TEST_F(NotificationServiceTest, SendEmailIsDeliveredOverSmtp) {
  pb::Message queued = Send(Expiry("zoe@example.com"));
  EXPECT_EQ(queued.state(), pb::Message::QUEUED);
  EXPECT_EQ(queued.message_id_header(),
            absl::StrCat("<", queued.id(), "@guestlist>"));
  pb::Message sent = WaitForState(queued.id(), pb::Message::SENT);
  ASSERT_EQ(sent.state(), pb::Message::SENT);
  EXPECT_EQ(sent.attempts(), 1);
  EXPECT_TRUE(sent.has_send_time());
  EXPECT_EQ(sent.subject(), "Your access to Acme expires soon");
  ASSERT_TRUE(sink_.WaitForCount(1, absl::Seconds(5)));
  const testing::ReceivedMail mail = sink_.messages()[0];
  EXPECT_EQ(mail.from, "no-reply@guestlist.test");
  EXPECT_EQ(mail.recipients, std::vector<std::string>{"zoe@example.com"});
  EXPECT_EQ(mail.message_id(), queued.message_id_header());
  EXPECT_THAT(mail.data, HasSubstr("To: =?UTF-8?B?"));
  EXPECT_THAT(
      mail.data,
      HasSubstr("List-Unsubscribe: <https://gl.test/v1/unsubscribe?token="));
  EXPECT_THAT(mail.data,
              HasSubstr("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
}

// Emails queued one by one within the wake-gather window (a burst of
// invites) are claimed by one worker in one statement: the claim gives all
// of them the same lease expiry (next_attempt_time).
TEST_F(NotificationServiceTest,
       MessagesQueuedWithinTheGatherWindowShareAClaim) {
  dispatcher_->Stop();
  poll_interval_ = absl::Seconds(30);  // no idle poll in between
  // Far longer than five sends take, even under a sanitizer on a loaded
  // machine (a send after the first claim would need a second one).
  wake_gather_ = absl::Seconds(3);
  StartDispatcher();
  // Each worker claims once as it starts (and one polls): let those pass
  // before the burst, or one of them may take part of it.
  absl::SleepFor(absl::Seconds(1));
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(Send(Expiry(absl::StrCat("burst", i, "@example.com"))).id());
  }
  for (const std::string& id : ids) {
    ASSERT_EQ(WaitForState(id, pb::Message::SENT).state(), pb::Message::SENT);
  }
  absl::StatusOr<pg::Result> claims = pool_->Exec(
      "SELECT count(DISTINCT next_attempt_time) FROM notification.messages "
      "WHERE id = ANY($1::uuid[])",
      {pg::TextArray(ids)});
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->GetInt(0, 0), 1) << "one claim for the five messages";
  EXPECT_TRUE(sink_.WaitForCount(5, absl::Seconds(5)));
}

TEST_F(NotificationServiceTest, LinesStartingWithDotsSurviveSmtp) {
  // 7bit bodies rely on SMTP dot-stuffing; a lone "." must not end DATA.
  pb::SendEmailRequest r;
  r.set_workspace_id(kWorkspace);
  r.set_template_("access_request");
  r.set_to("admin@example.com");
  (*r.mutable_variables())["requester_email"] = "r@x.io";
  (*r.mutable_variables())["workspace_name"] = "Acme";
  (*r.mutable_variables())["review_url"] = "https://gl.test/review";
  (*r.mutable_variables())["message"] = ".hidden\n.\nend of message";
  pb::Message m = Send(r);
  ASSERT_EQ(WaitForState(m.id(), pb::Message::SENT).state(), pb::Message::SENT);
  ASSERT_TRUE(sink_.WaitForCount(1, absl::Seconds(5)));
  const std::string data = sink_.messages()[0].data;
  EXPECT_THAT(data, HasSubstr("\r\n.hidden\r\n.\r\nend of message\r\n"));
  EXPECT_THAT(data, HasSubstr("Review the request: https://gl.test/review"));
}

TEST_F(NotificationServiceTest, ConnectionIsReused) {
  for (int i = 0; i < 20; ++i)
    Send(Expiry(absl::StrCat("u", i, "@example.com")));
  ASSERT_TRUE(sink_.WaitForCount(20, absl::Seconds(15)));
  // Two workers, one connection each.
  EXPECT_LE(sink_.connections(), 2);
}

TEST_F(NotificationServiceTest, PerDomainRateLimit) {
  dispatcher_->Stop();
  StartDispatcher(5, "", "", /*domain_rate=*/4.0);
  const absl::Time start = absl::Now();
  std::vector<std::string> slow;
  for (int i = 0; i < 10; ++i) {
    slow.push_back(Send(Expiry(absl::StrCat("r", i, "@slow.example"))).id());
  }
  pb::Message other = Send(Expiry("someone@fast.example"));
  EXPECT_EQ(WaitForState(other.id(), pb::Message::SENT).state(),
            pb::Message::SENT);
  const absl::Duration other_done = absl::Now() - start;
  for (const std::string& id : slow) {
    ASSERT_EQ(WaitForState(id, pb::Message::SENT).state(), pb::Message::SENT);
  }
  const absl::Duration all_done = absl::Now() - start;
  // Burst of 4, then 6 more at 4/s: at least 1.5 s for slow.example, while
  // another domain is not held up behind it.
  EXPECT_GE(all_done, absl::Milliseconds(1400));
  EXPECT_LT(other_done, absl::Milliseconds(1000));
  // Rate-limited messages are handed back, not counted as attempts.
  pb::Message last;
  ASSERT_TRUE(
      stub_->GetMessage(As("admin").get(), MessageId(slow.back()), &last).ok());
  EXPECT_EQ(last.attempts(), 1);
}

TEST_F(NotificationServiceTest, InvitationHasNoUnsubscribeHeader) {
  pb::SendEmailRequest r;
  r.set_workspace_id(kWorkspace);
  r.set_template_("invitation");
  r.set_to("new@example.com");
  (*r.mutable_variables())["workspace_name"] = "Acme";
  (*r.mutable_variables())["invitation_url"] =
      "https://gl.test/invite#token=gli_x";
  pb::Message m = Send(r);
  ASSERT_EQ(WaitForState(m.id(), pb::Message::SENT).state(), pb::Message::SENT);
  ASSERT_TRUE(sink_.WaitForCount(1, absl::Seconds(5)));
  EXPECT_THAT(sink_.messages()[0].data,
              ::testing::Not(HasSubstr("List-Unsubscribe")));
}

TEST_F(NotificationServiceTest, IdempotencyKey) {
  pb::SendEmailRequest r = Expiry("idem@example.com");
  r.set_idempotency_key("k1");
  pb::Message first = Send(r);
  pb::Message second = Send(r);
  EXPECT_EQ(first.id(), second.id());
  r.set_to("other@example.com");
  pb::Message m;
  grpc::Status s = stub_->SendEmail(Internal().get(), r, &m);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_EQ(WaitForState(first.id(), pb::Message::SENT).state(),
            pb::Message::SENT);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(sink_.count(), 1u);
}

// A batch's keys are looked up and stored together: keys seen before give
// the first message, new ones are stored, a key used twice in one batch
// gives one message, and a key reused with another request is refused.
TEST_F(NotificationServiceTest, BatchIdempotencyKeys) {
  auto keyed = [this](const std::string& to, const std::string& key) {
    pb::SendEmailRequest r = Expiry(to);
    r.set_idempotency_key(key);
    return r;
  };
  pb::BatchSendEmailRequest first;
  *first.add_messages() = keyed("b1@example.com", "b1");
  *first.add_messages() = keyed("b2@example.com", "b2");
  pb::BatchSendEmailResponse one;
  ASSERT_TRUE(stub_->BatchSendEmail(Internal().get(), first, &one).ok());
  ASSERT_EQ(one.messages_size(), 2);

  pb::BatchSendEmailRequest second;
  *second.add_messages() = keyed("b3@example.com", "b3");
  *second.add_messages() = keyed("b2@example.com", "b2");
  *second.add_messages() = keyed("b4@example.com", "b4");
  pb::BatchSendEmailResponse two;
  ASSERT_TRUE(stub_->BatchSendEmail(Internal().get(), second, &two).ok());
  ASSERT_EQ(two.messages_size(), 3);
  EXPECT_EQ(two.messages(1).id(), one.messages(1).id());
  EXPECT_NE(two.messages(0).id(), two.messages(2).id());
  EXPECT_EQ(two.messages(0).recipient(), "b3@example.com");
  EXPECT_EQ(two.messages(2).recipient(), "b4@example.com");

  pb::BatchSendEmailRequest twice;
  *twice.add_messages() = keyed("b5@example.com", "b5");
  *twice.add_messages() = keyed("b5@example.com", "b5");
  pb::BatchSendEmailResponse same;
  ASSERT_TRUE(stub_->BatchSendEmail(Internal().get(), twice, &same).ok());
  ASSERT_EQ(same.messages_size(), 2);
  EXPECT_EQ(same.messages(0).id(), same.messages(1).id());

  pb::BatchSendEmailRequest changed;
  *changed.add_messages() = keyed("b6@example.com", "b6");
  *changed.add_messages() = keyed("other@example.com", "b1");
  pb::BatchSendEmailResponse refused;
  grpc::Status s = stub_->BatchSendEmail(Internal().get(), changed, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("message 1"));

  // b1..b5: five messages, each sent once; b6 was not stored.
  for (const auto& m : {one.messages(0), one.messages(1), two.messages(0),
                        two.messages(2), same.messages(0)}) {
    ASSERT_EQ(WaitForState(m.id(), pb::Message::SENT).state(),
              pb::Message::SENT);
  }
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(sink_.count(), 5u);
}

TEST_F(NotificationServiceTest, DedupeUnderConcurrency) {
  constexpr int kCallers = 16;
  std::vector<pb::Message> results(kCallers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([this, i, &results] {
      pb::SendEmailRequest r;
      r.set_workspace_id(kWorkspace);
      r.set_template_("access_request");
      r.set_to("admin@example.com");
      (*r.mutable_variables())["requester_email"] = "r@x.io";
      (*r.mutable_variables())["workspace_name"] = "Acme";
      (*r.mutable_variables())["review_url"] = "https://gl.test/review";
      r.set_dedupe_key("access_request:admin:r@x.io:2026-11-22");
      r.mutable_dedupe_window()->set_seconds(86400);
      grpc::Status s = stub_->SendEmail(Internal().get(), r, &results[i]);
      EXPECT_TRUE(s.ok()) << s.error_message();
    });
  }
  for (auto& t : threads) t.join();
  int queued = 0, deduplicated = 0;
  std::string winner;
  for (const pb::Message& m : results) {
    if (m.state() == pb::Message::QUEUED) {
      ++queued;
      winner = m.id();
    }
    if (m.state() == pb::Message::DEDUPLICATED) ++deduplicated;
  }
  EXPECT_EQ(queued, 1);
  EXPECT_EQ(deduplicated, kCallers - 1);
  ASSERT_EQ(WaitForState(winner, pb::Message::SENT).state(), pb::Message::SENT);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(sink_.count(), 1u);
}

TEST_F(NotificationServiceTest, DedupeWindowExpires) {
  // Time is passed in, so the window is tested without sleeping.
  // Near the real time, so the workers' housekeeping (which purges keys
  // that ended an hour ago) never touches these.
  const absl::Time t0 = absl::Now();
  auto message = [](const std::string& id) {
    NewMessage m;
    m.id = id;
    m.workspace_id = kWorkspace;
    m.recipient = "a@example.com";
    m.category = "access_request";
    m.template_name = "access_request";
    m.subject = "s";
    m.message_id_header = absl::StrCat("<", id, "@guestlist>");
    m.dedupe_key = "k";
    m.dedupe_window = absl::Hours(24);
    return m;
  };
  auto first = store_->Enqueue(
      {message("00000000-0000-4000-8000-000000000001")}, {}, t0);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)[0].state, MessageState::kQueued);
  auto second =
      store_->Enqueue({message("00000000-0000-4000-8000-000000000002")}, {},
                      t0 + absl::Hours(23));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)[0].state, MessageState::kDeduplicated);
  // Housekeeping removes only keys whose window is over.
  EXPECT_EQ(*store_->PurgeDedupeKeys(t0 + absl::Hours(23)), 0);
  EXPECT_EQ(*store_->PurgeDedupeKeys(t0 + absl::Hours(25)), 1);
  auto third =
      store_->Enqueue({message("00000000-0000-4000-8000-000000000003")}, {},
                      t0 + absl::Hours(24));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ((*third)[0].state, MessageState::kQueued);
}

TEST_F(NotificationServiceTest, UnsubscribeSuppresses) {
  pb::Message first = Send(Expiry("Leaver@Example.com"));
  ASSERT_EQ(WaitForState(first.id(), pb::Message::SENT).state(),
            pb::Message::SENT);
  ASSERT_TRUE(sink_.WaitForCount(1, absl::Seconds(5)));
  const std::string data = sink_.messages()[0].data;
  const size_t start = data.find("unsubscribe?token=") + 18;
  const std::string token = data.substr(start, data.find('>', start) - start);

  pb::UnsubscribeRequest req;
  req.set_token(token);
  pb::UnsubscribeResponse resp;
  grpc::ClientContext ctx;  // public: no credentials at all
  grpc::Status s = stub_->Unsubscribe(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.recipient(), "leaver@example.com");
  EXPECT_EQ(resp.category(), "access_expiry");
  grpc::ClientContext again;
  EXPECT_TRUE(stub_->Unsubscribe(&again, req, &resp).ok());

  pb::Message second = Send(Expiry("leaver@example.com"));
  EXPECT_EQ(second.state(), pb::Message::SUPPRESSED);
  // Other categories still arrive.
  pb::SendEmailRequest report;
  report.set_workspace_id(kWorkspace);
  report.set_template_("report");
  report.set_to("leaver@example.com");
  (*report.mutable_variables())["app_name"] = "Sales";
  (*report.mutable_variables())["title"] = "May";
  EXPECT_EQ(Send(report).state(), pb::Message::QUEUED);
  ASSERT_TRUE(sink_.WaitForCount(2, absl::Seconds(5)));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(sink_.count(), 2u);

  req.set_token(token.substr(0, token.size() - 1) +
                (token.back() == 'a' ? "b" : "a"));
  grpc::ClientContext tampered;
  EXPECT_EQ(stub_->Unsubscribe(&tampered, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(NotificationServiceTest, TemporaryFailureThenSuccess) {
  sink_.FailNext(2, "451 4.3.0 try again later");
  pb::Message m = Send(Expiry("retry@example.com"));
  pb::Message sent = WaitForState(m.id(), pb::Message::SENT);
  ASSERT_EQ(sent.state(), pb::Message::SENT);
  EXPECT_EQ(sent.attempts(), 3);
  EXPECT_EQ(sink_.count(), 1u);
}

TEST_F(NotificationServiceTest, PermanentFailureKeepsReply) {
  sink_.RejectRecipient("nobody@example.com", "550 5.1.1 no such user here");
  pb::Message m = Send(Expiry("nobody@example.com"));
  pb::Message failed = WaitForState(m.id(), pb::Message::FAILED);
  ASSERT_EQ(failed.state(), pb::Message::FAILED);
  EXPECT_EQ(failed.attempts(), 1);
  EXPECT_EQ(failed.last_error(), "550 5.1.1 no such user here");
}

TEST_F(NotificationServiceTest, TooManyTemporaryFailuresFail) {
  sink_.FailNext(100, "421 4.7.0 busy");
  pb::Message m = Send(Expiry("busy@example.com"));
  pb::Message failed = WaitForState(m.id(), pb::Message::FAILED);
  ASSERT_EQ(failed.state(), pb::Message::FAILED);
  EXPECT_EQ(failed.attempts(), 5);
  EXPECT_THAT(failed.last_error(), HasSubstr("421 4.7.0 busy"));
}

TEST_F(NotificationServiceTest, RelayDownThenUpLosesNothing) {
  const int port = sink_.port();
  sink_.Stop();
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    ids.push_back(Send(Expiry(absl::StrCat("down", i, "@example.com"))).id());
  }
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(*store_->CountByState(MessageState::kSent), 0);
  ASSERT_TRUE(sink_.Start(port));
  for (const std::string& id : ids) {
    EXPECT_EQ(WaitForState(id, pb::Message::SENT).state(), pb::Message::SENT);
  }
  EXPECT_EQ(sink_.count(), 30u);
  EXPECT_EQ(*store_->CountByState(MessageState::kFailed), 0);
}

TEST_F(NotificationServiceTest, SmtpAuth) {
  dispatcher_->Stop();
  sink_.RequireAuth("relay-user", "relay-pass");
  StartDispatcher(5, "relay-user", "wrong");
  pb::Message m = Send(Expiry("auth@example.com"));
  absl::SleepFor(absl::Milliseconds(500));
  pb::Message pending;
  ASSERT_TRUE(
      stub_->GetMessage(As("admin").get(), MessageId(m.id()), &pending).ok());
  // A rejected login is the relay configuration's fault: retried, not FAILED.
  EXPECT_EQ(pending.state(), pb::Message::QUEUED);
  EXPECT_THAT(pending.last_error(), HasSubstr("535"));
  EXPECT_EQ(sink_.count(), 0u);

  dispatcher_->Stop();
  StartDispatcher(5, "relay-user", "relay-pass");
  EXPECT_EQ(WaitForState(m.id(), pb::Message::SENT).state(), pb::Message::SENT);
  EXPECT_EQ(sink_.count(), 1u);
}

TEST_F(NotificationServiceTest, GetAndListMessagesForAdminsOnly) {
  pb::Message a = Send(Expiry("list1@example.com"));
  pb::SendEmailRequest r = Expiry("list2@example.com");
  pb::Message b = Send(r);
  pb::SendEmailRequest report;
  report.set_workspace_id(kWorkspace);
  report.set_template_("report");
  report.set_to("LIST1@example.com");
  (*report.mutable_variables())["app_name"] = "Sales";
  (*report.mutable_variables())["title"] = "May";
  pb::Message c = Send(report);

  pb::Message got;
  EXPECT_EQ(stub_->GetMessage(As("guest").get(), MessageId(a.id()), &got)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stub_->GetMessage(As("other-admin").get(), MessageId(a.id()), &got)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(
      stub_->GetMessage(As("nope").get(), MessageId(a.id()), &got).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      stub_->GetMessage(As("admin").get(), MessageId("x"), &got).error_code(),
      grpc::StatusCode::NOT_FOUND);

  pb::ListMessagesRequest list;
  list.set_workspace_id(kWorkspace);
  list.set_page_size(2);
  pb::ListMessagesResponse page1;
  ASSERT_TRUE(stub_->ListMessages(As("admin").get(), list, &page1).ok());
  ASSERT_EQ(page1.messages_size(), 2);
  EXPECT_EQ(page1.messages(0).id(), c.id());  // newest first
  EXPECT_EQ(page1.messages(1).id(), b.id());
  ASSERT_FALSE(page1.next_page_token().empty());
  list.set_page_token(page1.next_page_token());
  pb::ListMessagesResponse page2;
  ASSERT_TRUE(stub_->ListMessages(As("admin").get(), list, &page2).ok());
  ASSERT_EQ(page2.messages_size(), 1);
  EXPECT_EQ(page2.messages(0).id(), a.id());
  EXPECT_TRUE(page2.next_page_token().empty());

  pb::ListMessagesRequest filtered;
  filtered.set_workspace_id(kWorkspace);
  filtered.set_recipient("list1@EXAMPLE.com");
  filtered.set_category("report");
  pb::ListMessagesResponse one;
  ASSERT_TRUE(stub_->ListMessages(As("admin").get(), filtered, &one).ok());
  ASSERT_EQ(one.messages_size(), 1);
  EXPECT_EQ(one.messages(0).id(), c.id());

  filtered.set_page_token("garbage!");
  EXPECT_EQ(stub_->ListMessages(As("admin").get(), filtered, &one).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  pb::ListMessagesRequest other;
  other.set_workspace_id(kWorkspace);
  EXPECT_EQ(
      stub_->ListMessages(As("other-admin").get(), other, &one).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(NotificationServiceTest, Preferences) {
  pb::GetPreferencesRequest get;
  get.set_user_id(kGuestId);
  pb::NotificationPreferences prefs;
  ASSERT_TRUE(stub_->GetPreferences(As("guest").get(), get, &prefs).ok());
  EXPECT_EQ(prefs.email(), "Guest@Example.com");
  EXPECT_EQ(prefs.unsubscribed_categories_size(), 0);

  pb::UpdatePreferencesRequest update;
  update.set_user_id(kGuestId);
  update.mutable_preferences()->add_unsubscribed_categories("report");
  update.mutable_update_mask()->add_paths("unsubscribed_categories");
  ASSERT_TRUE(stub_->UpdatePreferences(As("admin").get(), update, &prefs).ok());
  EXPECT_THAT(prefs.unsubscribed_categories(),
              ::testing::ElementsAre("report"));

  update.mutable_preferences()->add_unsubscribed_categories("invitation");
  EXPECT_EQ(
      stub_->UpdatePreferences(As("guest").get(), update, &prefs).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      stub_->GetPreferences(As("other-admin").get(), get, &prefs).error_code(),
      grpc::StatusCode::NOT_FOUND);
  get.set_user_id(kAdminId);
  EXPECT_EQ(stub_->GetPreferences(As("guest").get(), get, &prefs).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // The preference applies to mail for that address.
  pb::SendEmailRequest report;
  report.set_workspace_id(kWorkspace);
  report.set_template_("report");
  report.set_to("guest@example.com");
  (*report.mutable_variables())["app_name"] = "Sales";
  (*report.mutable_variables())["title"] = "May";
  EXPECT_EQ(Send(report).state(), pb::Message::SUPPRESSED);
}

TEST_F(NotificationServiceTest, PublishReport) {
  // guest1 left reports.
  ASSERT_TRUE(
      store_
          ->Unsubscribe(kWorkspace, "GUEST1@example.com", "report", absl::Now())
          .ok());
  pb::PublishReportRequest req;
  req.set_app_id(kAppId);
  req.set_title("May figures");
  req.set_filename("sales-2026-05.pdf");
  const std::string pdf = "%PDF-1.7\n" + std::string(300000, 'x');
  req.set_content(pdf);
  req.set_idempotency_key("r1");

  pb::PublishReportResponse resp;
  EXPECT_EQ(stub_->PublishReport(As("guest").get(), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(
      stub_->PublishReport(As("weak-apikey").get(), req, &resp).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  pb::PublishReportRequest not_pdf = req;
  not_pdf.set_content("hello");
  EXPECT_EQ(
      stub_->PublishReport(As("admin").get(), not_pdf, &resp).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  pb::PublishReportRequest too_big = req;
  too_big.set_content("%PDF-" + std::string((10 << 20), 'x'));
  EXPECT_EQ(
      stub_->PublishReport(As("admin").get(), too_big, &resp).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  pb::PublishReportRequest unknown = req;
  unknown.set_app_id("99999999-9999-4999-8999-999999999999");
  EXPECT_EQ(
      stub_->PublishReport(As("admin").get(), unknown, &resp).error_code(),
      grpc::StatusCode::NOT_FOUND);

  grpc::Status s = stub_->PublishReport(As("apikey").get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.recipients(), 2);
  EXPECT_EQ(resp.suppressed(), 1);
  pb::PublishReportResponse again;
  ASSERT_TRUE(stub_->PublishReport(As("admin").get(), req, &again).ok());
  EXPECT_EQ(again.report_id(), resp.report_id());

  ASSERT_TRUE(sink_.WaitForCount(2, absl::Seconds(15)));
  absl::SleepFor(absl::Milliseconds(300));
  std::set<std::string> to;
  for (const testing::ReceivedMail& m : sink_.messages()) {
    to.insert(m.recipients[0]);
    EXPECT_THAT(m.data, HasSubstr("Content-Type: multipart/mixed"));
    EXPECT_THAT(m.data, HasSubstr("Content-Disposition: attachment; "
                                  "filename=\"sales-2026-05.pdf\""));
    EXPECT_THAT(m.data, HasSubstr("Subject: Sales: May figures"));
  }
  EXPECT_EQ(
      to, (std::set<std::string>{"guest0@example.com", "guest2@example.com"}));
  EXPECT_EQ(*store_->CountByState(MessageState::kSuppressed), 1);
}

}  // namespace
}  // namespace guestlist::notification
