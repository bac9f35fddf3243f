// identity against a real PostgreSQL (throwaway cluster) over real gRPC:
// the server listens on port 0; membership and notification are small fake
// gRPC servers in the same process.
#include "services/identity/api/identity_service.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/idempotency.h"
#include "common/migrations.h"
#include "common/outbox.h"
#include "common/pg.h"
#include "common/random.h"
#include "gtest/gtest.h"
#include "services/identity/api/convert.h"
#include "services/identity/api/import_handlers.h"
#include "services/identity/clients/expiry_sweeper.h"
#include "services/identity/clients/outbox_relay.h"
#include "services/identity/clients/peers.h"
#include "services/identity/identity_migrations.h"
#include "services/identity/storage/pg_repository.h"
#include "tests/testing/postgres.h"

namespace guestlist::identity {
namespace {

constexpr char kOperatorToken[] = "test-operator-token";
constexpr char kInternalToken[] = "test-internal-token";
constexpr char kPassword[] = "correct horse battery";

class FakeMembership final : public mv1::MembershipService::Service {
 public:
  grpc::Status SyncUsers(grpc::ServerContext*, const mv1::SyncUsersRequest* req,
                         mv1::SyncUsersResponse*) override {
    absl::MutexLock lock(&mu_);
    if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    for (const auto& u : req->users()) {
      if (refuse_members_ && u.kind() == mv1::DirectoryUser::MEMBER) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            "not enough licences: 1 more needed");
      }
    }
    for (const auto& u : req->users()) users_.push_back(u);
    return grpc::Status::OK;
  }
  grpc::Status SyncWorkspace(grpc::ServerContext*,
                             const mv1::SyncWorkspaceRequest* req,
                             mv1::SyncWorkspaceResponse*) override {
    absl::MutexLock lock(&mu_);
    if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    workspaces_.push_back(req->workspace());
    return grpc::Status::OK;
  }
  grpc::Status BatchCheck(grpc::ServerContext*,
                          const mv1::BatchCheckRequest* req,
                          mv1::BatchCheckResponse* resp) override {
    absl::MutexLock lock(&mu_);
    for (const auto& c : req->checks()) {
      auto* r = resp->add_results();
      r->set_allowed(!denied_.count(c.resource()));
      if (!r->allowed()) r->set_reason("the group is secret");
    }
    return grpc::Status::OK;
  }
  grpc::Status ApplyGrants(grpc::ServerContext*,
                           const mv1::ApplyGrantsRequest* req,
                           mv1::ApplyGrantsResponse* resp) override {
    absl::MutexLock lock(&mu_);
    if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    grants_.push_back(*req);
    for (const auto& u : req->users()) {
      auto* r = resp->add_results();
      r->set_user_id(u.user().id());
      if (refuse_grants_) {
        r->set_ok(false);
        r->set_error_code(9);
        r->set_error_message("not enough licences: 1 more needed");
      } else {
        r->set_ok(true);
        r->set_changed(true);
      }
    }
    resp->set_applied(!refuse_grants_);
    return grpc::Status::OK;
  }
  grpc::Status DeleteUsers(grpc::ServerContext*,
                           const mv1::DeleteUsersRequest* req,
                           mv1::DeleteUsersResponse*) override {
    absl::MutexLock lock(&mu_);
    for (const auto& id : req->user_ids()) deleted_.push_back(id);
    return grpc::Status::OK;
  }

  absl::Mutex mu_;
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  bool refuse_members_ ABSL_GUARDED_BY(mu_) = false;
  bool refuse_grants_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> denied_ ABSL_GUARDED_BY(mu_);
  std::vector<mv1::UserRecord> users_ ABSL_GUARDED_BY(mu_);
  std::vector<mv1::WorkspaceRecord> workspaces_ ABSL_GUARDED_BY(mu_);
  std::vector<mv1::ApplyGrantsRequest> grants_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> deleted_ ABSL_GUARDED_BY(mu_);
};

class FakeNotification final : public nv1::NotificationService::Service {
 public:
  grpc::Status SendEmail(grpc::ServerContext* ctx,
                         const nv1::SendEmailRequest* req,
                         nv1::Message*) override {
    absl::MutexLock lock(&mu_);
    if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    if (!HasInternalCredential(*ctx, kInternalToken)) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "internal only");
    }
    sent_.push_back(*req);
    return grpc::Status::OK;
  }
  grpc::Status BatchSendEmail(grpc::ServerContext* ctx,
                              const nv1::BatchSendEmailRequest* req,
                              nv1::BatchSendEmailResponse*) override {
    absl::MutexLock lock(&mu_);
    if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    if (!HasInternalCredential(*ctx, kInternalToken)) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "internal only");
    }
    ++batches_;
    for (const auto& m : req->messages()) sent_.push_back(m);
    return grpc::Status::OK;
  }
  std::vector<nv1::SendEmailRequest> SentTo(const std::string& to,
                                            const std::string& tmpl) {
    absl::MutexLock lock(&mu_);
    std::vector<nv1::SendEmailRequest> out;
    for (const auto& m : sent_) {
      if (m.to() == to && m.template_() == tmpl) out.push_back(m);
    }
    return out;
  }
  absl::Mutex mu_;
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<nv1::SendEmailRequest> sent_ ABSL_GUARDED_BY(mu_);
  int batches_ ABSL_GUARDED_BY(mu_) = 0;
};

struct Env {
  testing::TestPostgres postgres;
  std::unique_ptr<pg::Pool> pool;
  FakeMembership membership_service;
  FakeNotification notification_service;
  std::unique_ptr<grpc::Server> peers_server;
  std::unique_ptr<GrpcMembershipClient> membership;
  std::unique_ptr<GrpcNotificationClient> notification;
  std::unique_ptr<PgRepository> repository;
  FakeClock clock{absl::Now()};
  SecureRandom random;
  PasswordHasher hasher{2, 1 << 20, 1};
  ImportHandlers imports;
  IdempotencyStore idempotency{"identity", kInternalToken};
  std::unique_ptr<guestlist::OutboxRelay> relay;
  std::unique_ptr<ExpirySweeper> sweeper;
  std::unique_ptr<IdentityServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::IdentityService::Stub> stub;

  Env() {
    pool = std::make_unique<pg::Pool>(pg::PoolOptions{
        .conninfo = postgres.CreateDatabase("identity"), .max_size = 16});
    std::vector<Migration> migrations = IdentityMigrations();
    migrations.push_back(CommonTablesMigration("identity"));
    absl::Status migrated = RunMigrations(*pool, "identity", migrations);
    if (!migrated.ok()) {
      ADD_FAILURE() << migrated;
      abort();
    }
    int peers_port = 0;
    grpc::ServerBuilder pb;
    pb.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                        &peers_port);
    pb.RegisterService(&membership_service);
    pb.RegisterService(&notification_service);
    peers_server = pb.BuildAndStart();
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", peers_port),
                                       grpc::InsecureChannelCredentials());
    membership = std::make_unique<GrpcMembershipClient>(
        mv1::MembershipService::NewStub(channel), kInternalToken,
        absl::Seconds(5));
    notification = std::make_unique<GrpcNotificationClient>(
        nv1::NotificationService::NewStub(channel), kInternalToken,
        absl::Seconds(5));
    repository = std::make_unique<PgRepository>(pool.get(), &idempotency);
    relay = std::make_unique<guestlist::OutboxRelay>(pool.get(), "identity");
    RegisterOutboxHandlers(relay.get(), membership.get(), notification.get(),
                           repository.get());
    sweeper =
        std::make_unique<ExpirySweeper>(repository.get(), &clock, nullptr);
    IdentityOptions options;
    options.operator_token = kOperatorToken;
    options.internal_token = kInternalToken;
    options.public_url = "https://guests.example.com/";
    // Long sessions: tests move the clock by days.
    options.session_ttl = absl::Hours(24 * 30);
    options.login_per_account = {3, absl::Minutes(15)};
    options.login_per_address = {100000, absl::Minutes(15)};
    options.request_access_per_address = {100000, absl::Hours(1)};
    options.request_access_per_email = {3, absl::Hours(1)};
    options.token_per_address = {100000, absl::Minutes(1)};
    IdentityDeps deps;
    deps.repository = repository.get();
    deps.membership = membership.get();
    deps.notification = notification.get();
    deps.hasher = &hasher;
    deps.clock = &clock;
    deps.random = &random;
    deps.imports = &imports;
    service = std::make_unique<IdentityServiceImpl>(options, deps);
    int port = 0;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service.get());
    b.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                          8);
    server = b.BuildAndStart();
    stub = v1::IdentityService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  ~Env() {
    server->Shutdown();
    peers_server->Shutdown();
  }
};

Env* env = nullptr;

class IdentityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { env = new Env(); }
  static void TearDownTestSuite() {
    delete env;
    env = nullptr;
  }

  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return ctx;
  }

  struct Ws {
    v1::Workspace workspace;
    std::string admin_email;
    std::string admin_token;
    std::string admin_id;
  };

  // A fresh workspace and a signed-in admin.
  Ws NewWorkspace(const std::string& name, bool request_access = false) {
    Ws ws;
    v1::CreateWorkspaceRequest req;
    req.mutable_workspace()->set_name(name);
    req.mutable_workspace()->set_display_name("Display " + name);
    req.mutable_workspace()->set_license_count(10);
    req.mutable_workspace()->mutable_settings()->set_request_access_enabled(
        request_access);
    ws.admin_email = "admin@" + name + ".example.com";
    req.set_admin_email(ws.admin_email);
    req.set_admin_password(kPassword);
    grpc::Status s = env->stub->CreateWorkspace(Ctx(kOperatorToken).get(), req,
                                                &ws.workspace);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::LoginRequest login;
    login.set_workspace_id(ws.workspace.id());
    login.set_username(ws.admin_email);
    login.set_password(kPassword);
    v1::Session session;
    s = env->stub->Login(Ctx("").get(), login, &session);
    EXPECT_TRUE(s.ok()) << s.error_message();
    ws.admin_token = session.token();
    ws.admin_id = session.user().id();
    return ws;
  }

  static grpc::Status Invite(const std::string& token,
                             const std::string& workspace_id,
                             const std::string& email, v1::Invitation* out,
                             const std::string& first = "Gus",
                             bool send_email = true) {
    v1::InviteUserRequest req;
    req.set_workspace_id(workspace_id);
    req.set_email(email);
    req.set_first_name(first);
    req.set_last_name("Guest");
    req.set_send_email(send_email);
    return env->stub->InviteUser(Ctx(token).get(), req, out);
  }

  static std::string TokenOf(const v1::Invitation& inv) {
    const std::string url = inv.invitation_url();
    return url.substr(url.find("#token=") + 7);
  }

  static grpc::Status Accept(const std::string& token, v1::Session* session) {
    v1::AcceptInvitationRequest req;
    req.set_token(token);
    req.set_password(kPassword);
    return env->stub->AcceptInvitation(Ctx("").get(), req, session);
  }

  // Every user of `ws` that `req` lists, following page tokens; *total is
  // the first page's totalSize.
  static std::vector<v1::User> ListAll(const Ws& ws, v1::ListUsersRequest req,
                                       int* total) {
    std::vector<v1::User> out;
    req.set_workspace_id(ws.workspace.id());
    for (int pages = 0; pages < 100; ++pages) {
      v1::ListUsersResponse resp;
      grpc::Status s =
          env->stub->ListUsers(Ctx(ws.admin_token).get(), req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) break;
      if (pages == 0) *total = resp.total_size();
      for (const auto& u : resp.users()) out.push_back(u);
      if (resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
    return out;
  }

  // The emails of every user of `ws` matching `query` (pages of 500).
  static std::vector<std::string> ListAllEmails(const Ws& ws,
                                                const std::string& order,
                                                const std::string& query,
                                                v1::UserKind kind, int* total) {
    v1::ListUsersRequest req;
    req.set_order_by(order);
    req.set_query(query);
    req.set_kind(kind);
    req.set_page_size(500);
    std::vector<std::string> emails;
    for (const v1::User& u : ListAll(ws, req, total)) {
      emails.push_back(u.email());
    }
    return emails;
  }

  // Each of `emails` (one listing in `order`) appears once, `n` in all, in
  // the order's direction when the order is by email.
  static void ExpectEachOnceInOrder(const std::vector<std::string>& emails,
                                    const std::string& order, size_t n) {
    EXPECT_EQ(emails.size(), n) << order;
    EXPECT_EQ(std::set<std::string>(emails.begin(), emails.end()).size(), n)
        << order;
    if (order == "email") {
      EXPECT_TRUE(std::is_sorted(emails.begin(), emails.end()));
    }
    if (order == "email desc") {
      EXPECT_TRUE(std::is_sorted(emails.rbegin(), emails.rend()));
    }
  }

  // The ids of the users of `ws` some search key of whom starts with
  // `query` (and of `kind` unless empty), in `order` ("name desc"...) then
  // id: what a listing must give, from a plain query of the five keys.
  static std::vector<std::string> PlainSearch(const Ws& ws,
                                              const std::string& query,
                                              const std::string& order,
                                              const std::string& kind = "") {
    const std::vector<std::string> words = absl::StrSplit(order, ' ');
    const std::string col = words[0] == "email"  ? "email_lc"
                            : words[0] == "name" ? "name_lc"
                                                 : "create_time";
    const char* dir = words.size() > 1 ? " DESC" : "";
    auto r = env->pool->Exec(
        absl::StrCat("SELECT id FROM identity.users WHERE workspace_id = $1 "
                     "AND ($3 = '' OR kind = $3) AND (starts_with(email_lc, "
                     "lower($2)) OR starts_with(username_lc, lower($2)) OR "
                     "starts_with(first_lc, lower($2)) OR starts_with(last_lc, "
                     "lower($2)) OR starts_with(name_lc, lower($2))) ORDER BY ",
                     col, dir, ", id", dir),
        {ws.workspace.id(), query, kind});
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<std::string> ids;
    for (int i = 0; r.ok() && i < r->rows(); ++i) ids.push_back(r->Get(i, 0));
    return ids;
  }

  // The ids ListUsers lists for `query` in `order`, page after page.
  static std::vector<std::string> ListAllIds(const Ws& ws,
                                             const std::string& order,
                                             const std::string& query,
                                             v1::UserKind kind, int page_size,
                                             int* total) {
    v1::ListUsersRequest req;
    req.set_order_by(order);
    req.set_query(query);
    req.set_kind(kind);
    req.set_page_size(page_size);
    std::vector<std::string> ids;
    for (const v1::User& u : ListAll(ws, req, total)) ids.push_back(u.id());
    return ids;
  }

  struct SearchCase {
    std::string query;
    v1::UserKind kind;
    size_t matches;
  };
  // Each case, listed in each of `orders` in pages of 500, gives what
  // PlainSearch does, with `matches` users and an estimated totalSize over
  // the union's cap.
  static void ExpectManyMatchesListedInOrder(
      const Ws& ws, const std::vector<std::string>& orders,
      const std::vector<SearchCase>& cases) {
    for (const SearchCase& c : cases) {
      for (const std::string& order : orders) {
        int total = 0;
        std::vector<std::string> want =
            PlainSearch(ws, c.query, order, c.kind == v1::GUEST ? "GUEST" : "");
        EXPECT_EQ(want.size(), c.matches) << c.query;
        EXPECT_EQ(ListAllIds(ws, order, c.query, c.kind, 500, &total), want)
            << c.query << " " << order;
        EXPECT_GT(total, 5000) << c.query;
      }
    }
  }

  // Inserts straight into identity.users the rows of `select` ($1 is the
  // workspace id), in the column order below: many users at once.
  static void BulkInsertUsers(const Ws& ws, const std::string& select) {
    auto loaded = env->pool->Exec(
        "INSERT INTO identity.users (id, workspace_id, username, email, "
        "first_name, last_name, kind, status, version, create_time, "
        "update_time) " +
            select,
        {ws.workspace.id()});
    ASSERT_TRUE(loaded.ok()) << loaded.status();
  }

  static void DrainOutbox() {
    for (int i = 0; i < 10; ++i) {
      auto n = env->relay->RunOnce();
      ASSERT_TRUE(n.ok()) << n.status();
      if (*n == 0) return;
    }
  }
};

TEST_F(IdentityTest, CreateWorkspaceIsOperatorOnlyAndSyncsMembership) {
  v1::CreateWorkspaceRequest req;
  req.mutable_workspace()->set_name("ws-create");
  req.mutable_workspace()->set_display_name("Create Co");
  req.set_admin_email("boss@create.example.com");
  req.set_admin_password(kPassword);
  v1::Workspace ws;
  EXPECT_EQ(env->stub->CreateWorkspace(Ctx("").get(), req, &ws).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      env->stub->CreateWorkspace(Ctx("gls_nope").get(), req, &ws).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_TRUE(
      env->stub->CreateWorkspace(Ctx(kOperatorToken).get(), req, &ws).ok());
  EXPECT_EQ(ws.name(), "ws-create");
  EXPECT_EQ(ws.settings().invitation_ttl().seconds(), 7 * 24 * 3600);
  EXPECT_TRUE(ws.settings().members_can_invite_guests());
  v1::Workspace again;
  EXPECT_EQ(env->stub->CreateWorkspace(Ctx(kOperatorToken).get(), req, &again)
                .error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  DrainOutbox();
  absl::MutexLock lock(&env->membership_service.mu_);
  bool synced_ws = false, synced_admin = false;
  for (const auto& w : env->membership_service.workspaces_) {
    synced_ws |= w.workspace_id() == ws.id();
  }
  for (const auto& u : env->membership_service.users_) {
    synced_admin |= u.workspace_id() == ws.id() &&
                    u.username() == "boss@create.example.com" &&
                    u.kind() == mv1::DirectoryUser::ADMIN &&
                    u.status() == mv1::DirectoryUser::ACTIVE;
  }
  EXPECT_TRUE(synced_ws);
  EXPECT_TRUE(synced_admin);
}

TEST_F(IdentityTest, MembershipDownLeavesSyncQueuedUntilItIsBack) {
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    env->membership_service.down_ = true;
  }
  Ws ws = NewWorkspace("ws-down");
  EXPECT_FALSE(ws.admin_token.empty());
  EXPECT_EQ(*env->relay->RunOnce(), 0);
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    env->membership_service.down_ = false;
  }
  absl::SleepFor(absl::Milliseconds(1100));  // the first retry's backoff
  DrainOutbox();
  absl::MutexLock lock(&env->membership_service.mu_);
  bool synced = false;
  for (const auto& w : env->membership_service.workspaces_) {
    synced |= w.workspace_id() == ws.workspace.id();
  }
  EXPECT_TRUE(synced);
}

TEST_F(IdentityTest, LoginAuthenticateAndRateLimit) {
  Ws ws = NewWorkspace("ws-login");
  v1::Principal p;
  v1::AuthenticateRequest auth;
  auth.set_token(ws.admin_token);
  ASSERT_TRUE(env->stub->Authenticate(Ctx("").get(), auth, &p).ok());
  EXPECT_EQ(p.user_id(), ws.admin_id);
  EXPECT_EQ(p.workspace_id(), ws.workspace.id());
  EXPECT_EQ(p.kind(), v1::ADMIN);
  EXPECT_EQ(p.status(), v1::ACTIVE);
  auth.set_token("gls_unknown");
  EXPECT_EQ(env->stub->Authenticate(Ctx("").get(), auth, &p).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auth.set_token(kOperatorToken);
  ASSERT_TRUE(env->stub->Authenticate(Ctx("").get(), auth, &p).ok());
  EXPECT_TRUE(p.is_operator());

  v1::LoginRequest login;
  login.set_workspace_id(ws.workspace.id());
  login.set_username("ADMIN@ws-login.example.com");  // case-insensitive
  login.set_password("wrong password!");
  v1::Session session;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(env->stub->Login(Ctx("").get(), login, &session).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  grpc::Status limited = env->stub->Login(Ctx("").get(), login, &session);
  EXPECT_EQ(limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(limited.error_message(), "retry in"))
      << limited.error_message();
  login.set_password(kPassword);  // even the right one, until the window ends
  EXPECT_EQ(env->stub->Login(Ctx("").get(), login, &session).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  env->clock.Advance(absl::Minutes(16));
  ASSERT_TRUE(env->stub->Login(Ctx("").get(), login, &session).ok());
  EXPECT_TRUE(absl::StartsWith(session.token(), "gls_"));

  // Logout ends the session.
  google::protobuf::Empty empty;
  ASSERT_TRUE(
      env->stub->Logout(Ctx(session.token()).get(), v1::LogoutRequest(), &empty)
          .ok());
  auth.set_token(session.token());
  EXPECT_EQ(env->stub->Authenticate(Ctx("").get(), auth, &p).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Sessions expire.
  env->clock.Advance(absl::Hours(24 * 31));
  auth.set_token(ws.admin_token);
  EXPECT_EQ(env->stub->Authenticate(Ctx("").get(), auth, &p).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(IdentityTest, InviteEmailsLinkAndOnlyOneOfConcurrentAcceptsWins) {
  Ws ws = NewWorkspace("ws-race");
  v1::Invitation inv;
  ASSERT_TRUE(Invite(ws.admin_token, ws.workspace.id(),
                     "Racer@Partner.technology", &inv)
                  .ok());
  EXPECT_TRUE(absl::StartsWith(inv.invitation_url(),
                               "https://guests.example.com/invite#token=gli_"))
      << inv.invitation_url();
  EXPECT_EQ(inv.state(), v1::Invitation::PENDING);
  EXPECT_EQ(inv.user().status(), v1::INVITED);
  EXPECT_EQ(inv.user().kind(), v1::GUEST);
  EXPECT_EQ(inv.user().username(), "racer@partner.technology");
  EXPECT_EQ(inv.inviter_id(), ws.admin_id);
  DrainOutbox();
  auto emails = env->notification_service.SentTo("Racer@Partner.technology",
                                                 "invitation");
  ASSERT_EQ(emails.size(), 1u);
  EXPECT_EQ(emails[0].variables().at("invitation_url"), inv.invitation_url());
  EXPECT_EQ(emails[0].variables().at("workspace_name"), "Display ws-race");
  EXPECT_EQ(emails[0].idempotency_key(),
            absl::StrCat("invitation:", inv.id(), ":1"));
  EXPECT_EQ(emails[0].category(), "invitation");

  const std::string token = TokenOf(inv);
  v1::InvitationInfo info;
  v1::GetInvitationRequest lookup;
  lookup.set_token(token);
  ASSERT_TRUE(env->stub->GetInvitation(Ctx("").get(), lookup, &info).ok());
  EXPECT_EQ(info.workspace_display_name(), "Display ws-race");
  EXPECT_EQ(info.state(), v1::Invitation::PENDING);

  std::atomic<int> ok{0}, precondition{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&] {
      v1::Session s;
      grpc::Status st = Accept(token, &s);
      if (st.ok()) {
        ++ok;
      } else if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
        ++precondition;  // a used link looks like an unknown one
      } else {
        ++other;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(precondition.load(), 99);
  EXPECT_EQ(other.load(), 0);
  // Once used, the lookup refuses the link exactly like an unknown one.
  EXPECT_EQ(env->stub->GetInvitation(Ctx("").get(), lookup, &info).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Inviting the same address again names the existing user's status.
  v1::Invitation dup;
  grpc::Status s = Invite(ws.admin_token, ws.workspace.id(),
                          "racer@partner.technology", &dup);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "ACTIVE"))
      << s.error_message();
  // The refused invite's intent row (written with its reads) is gone.
  auto intents = env->pool->Exec(
      "SELECT count(*) FROM identity.outbox WHERE topic = "
      "'identity.ReconcileInvite'");
  ASSERT_TRUE(intents.ok()) << intents.status();
  EXPECT_EQ(intents->GetInt(0, 0), 0);
}

TEST_F(IdentityTest, ResendKillsTheOldTokenAndRevokeKillsTheNew) {
  Ws ws = NewWorkspace("ws-resend");
  v1::Invitation inv;
  ASSERT_TRUE(
      Invite(ws.admin_token, ws.workspace.id(), "re@x.example.com", &inv).ok());
  v1::ResendInvitationRequest resend;
  resend.set_invitation_id(inv.id());
  v1::Invitation second;
  ASSERT_TRUE(
      env->stub->ResendInvitation(Ctx(ws.admin_token).get(), resend, &second)
          .ok());
  EXPECT_NE(TokenOf(second), TokenOf(inv));
  v1::Session session;
  EXPECT_EQ(Accept(TokenOf(inv), &session).error_code(),
            grpc::StatusCode::NOT_FOUND);
  DrainOutbox();
  auto emails =
      env->notification_service.SentTo("re@x.example.com", "invitation");
  ASSERT_EQ(emails.size(), 2u);
  EXPECT_EQ(emails[1].idempotency_key(),
            absl::StrCat("invitation:", inv.id(), ":2"));

  v1::RevokeInvitationRequest revoke;
  revoke.set_invitation_id(inv.id());
  v1::Invitation revoked;
  ASSERT_TRUE(
      env->stub->RevokeInvitation(Ctx(ws.admin_token).get(), revoke, &revoked)
          .ok());
  EXPECT_EQ(revoked.state(), v1::Invitation::REVOKED);
  EXPECT_EQ(Accept(TokenOf(second), &session).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::ListInvitationsRequest list;
  list.set_workspace_id(ws.workspace.id());
  list.set_state(v1::Invitation::REVOKED);
  v1::ListInvitationsResponse listed;
  ASSERT_TRUE(
      env->stub->ListInvitations(Ctx(ws.admin_token).get(), list, &listed)
          .ok());
  ASSERT_EQ(listed.invitations_size(), 1);
  EXPECT_EQ(listed.invitations(0).id(), inv.id());
  EXPECT_TRUE(listed.invitations(0).invitation_url().empty());
}

TEST_F(IdentityTest, SuspensionFailsTheSessionOnItsNextCall) {
  Ws ws = NewWorkspace("ws-suspend");
  v1::Invitation inv;
  ASSERT_TRUE(
      Invite(ws.admin_token, ws.workspace.id(), "sus@x.example.com", &inv)
          .ok());
  v1::Session guest;
  ASSERT_TRUE(Accept(TokenOf(inv), &guest).ok());
  EXPECT_EQ(guest.user().status(), v1::ACTIVE);
  v1::GetUserRequest get;
  get.set_user_id(guest.user().id());
  v1::User user;
  ASSERT_TRUE(env->stub->GetUser(Ctx(guest.token()).get(), get, &user).ok());

  v1::SuspendUserRequest suspend;
  suspend.set_user_id(guest.user().id());
  ASSERT_TRUE(
      env->stub->SuspendUser(Ctx(ws.admin_token).get(), suspend, &user).ok());
  EXPECT_EQ(user.status(), v1::SUSPENDED);
  grpc::Status s = env->stub->GetUser(Ctx(guest.token()).get(), get, &user);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "SUSPENDED"))
      << s.error_message();
  v1::AuthenticateRequest auth;
  auth.set_token(guest.token());
  v1::Principal p;
  EXPECT_EQ(env->stub->Authenticate(Ctx("").get(), auth, &p).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::LoginRequest login;
  login.set_workspace_id(ws.workspace.id());
  login.set_username("sus@x.example.com");
  login.set_password(kPassword);
  v1::Session again;
  s = env->stub->Login(Ctx("").get(), login, &again);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "SUSPENDED"));
  // Guests cannot invite; the last admin cannot be suspended.
  v1::ReactivateUserRequest reactivate;
  reactivate.set_user_id(guest.user().id());
  ASSERT_TRUE(
      env->stub->ReactivateUser(Ctx(ws.admin_token).get(), reactivate, &user)
          .ok());
  EXPECT_EQ(user.status(), v1::ACTIVE);
  ASSERT_TRUE(env->stub->Login(Ctx("").get(), login, &again).ok());
  v1::Invitation nope;
  EXPECT_EQ(Invite(again.token(), ws.workspace.id(), "x@y.example.com", &nope)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  suspend.set_user_id(ws.admin_id);
  EXPECT_EQ(env->stub->SuspendUser(Ctx(ws.admin_token).get(), suspend, &user)
                .error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // Archiving ends the sessions and cannot be undone by reactivation.
  v1::ArchiveUserRequest archive;
  archive.set_user_id(guest.user().id());
  ASSERT_TRUE(
      env->stub->ArchiveUser(Ctx(ws.admin_token).get(), archive, &user).ok());
  EXPECT_EQ(user.status(), v1::ARCHIVED);
  EXPECT_EQ(
      env->stub->GetUser(Ctx(again.token()).get(), get, &user).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      env->stub->ReactivateUser(Ctx(ws.admin_token).get(), reactivate, &user)
          .error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(IdentityTest, ListUsersPagesOrdersSearchesAndCounts) {
  Ws ws = NewWorkspace("ws-list");
  const std::vector<std::string> firsts = {"Bob", "bea", "Carl", "Dana", "Eve"};
  for (int i = 0; i < 25; ++i) {
    v1::Invitation inv;
    ASSERT_TRUE(Invite(ws.admin_token, ws.workspace.id(),
                       absl::StrCat("user", 100 + i, "@list.example.com"), &inv,
                       firsts[i % firsts.size()], false)
                    .ok());
  }
  auto list_all = [&](const std::string& order, const std::string& query,
                      int page_size, int* total) {
    v1::ListUsersRequest req;
    req.set_order_by(order);
    req.set_query(query);
    req.set_page_size(page_size);
    return ListAll(ws, req, total);
  };
  int total = 0;
  auto by_email = list_all("email", "", 10, &total);
  EXPECT_EQ(total, 26);
  ASSERT_EQ(by_email.size(), 26u);
  for (size_t i = 1; i < by_email.size(); ++i) {
    EXPECT_LT(by_email[i - 1].email(), by_email[i].email());
  }
  auto desc = list_all("email desc", "", 7, &total);
  ASSERT_EQ(desc.size(), 26u);
  EXPECT_EQ(desc.front().email(), by_email.back().email());
  EXPECT_EQ(desc.back().email(), by_email.front().email());
  auto by_time = list_all("createTime desc", "", 4, &total);
  ASSERT_EQ(by_time.size(), 26u);
  std::set<std::string> ids;
  for (const auto& u : by_time) ids.insert(u.id());
  EXPECT_EQ(ids.size(), 26u);
  auto by_name = list_all("name", "", 6, &total);
  ASSERT_EQ(by_name.size(), 26u);
  auto b = list_all("name", "B", 3, &total);  // Bob and bea, any case
  EXPECT_EQ(total, 10);
  EXPECT_EQ(b.size(), 10u);
  for (const auto& u : b) {
    EXPECT_TRUE(u.first_name() == "Bob" || u.first_name() == "bea");
  }
  auto one = list_all("email", "USER107@", 10, &total);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].email(), "user107@list.example.com");

  v1::ListUsersRequest bad;
  bad.set_workspace_id(ws.workspace.id());
  bad.set_order_by("password");
  v1::ListUsersResponse resp;
  grpc::Status s = env->stub->ListUsers(Ctx(ws.admin_token).get(), bad, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "order_by"));
  // A token from another query is refused.
  v1::ListUsersRequest first;
  first.set_workspace_id(ws.workspace.id());
  first.set_page_size(2);
  ASSERT_TRUE(
      env->stub->ListUsers(Ctx(ws.admin_token).get(), first, &resp).ok());
  first.set_page_token(resp.next_page_token());
  first.set_order_by("name");
  EXPECT_EQ(env->stub->ListUsers(Ctx(ws.admin_token).get(), first, &resp)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// Past kExactCountCap (1,000) matches a query's totalSize is an estimate
// and the page comes from the sort index; below it, exact from the union of
// the search indexes. Both must list every match once, in order.
TEST_F(IdentityTest, ListUsersWithManyAndFewMatchesOfAQuery) {
  Ws ws = NewWorkspace("ws-list-big");
  BulkInsertUsers(
      ws,
      "SELECT gen_random_uuid(), $1, 'zed' || i || '@big.example.com', "
      "'zed' || i || '@big.example.com', 'Z' || i, 'Last', CASE WHEN i % 3 "
      "= 0 THEN 'MEMBER' ELSE 'GUEST' END, 'INVITED', 1, now() - "
      "make_interval(secs => i), now() FROM generate_series(0, 5999) i");
  auto list_all = [&](const std::string& order, const std::string& query,
                      v1::UserKind kind, int* total) {
    return ListAllEmails(ws, order, query, kind, total);
  };
  for (const std::string order : {"email", "email desc", "createTime"}) {
    int total = 0;
    ExpectEachOnceInOrder(
        list_all(order, "ZED", v1::USER_KIND_UNSPECIFIED, &total), order, 6000);
    EXPECT_GT(total, 5000) << order;  // an estimate above the cap
    // zed1, zed10-19, zed100-199, zed1000-1999: exact below the cap.
    std::vector<std::string> few =
        list_all(order, "zed1", v1::USER_KIND_UNSPECIFIED, &total);
    EXPECT_EQ(total, 1111) << order;
    EXPECT_EQ(few.size(), 1111u) << order;
    if (order == "email") {
      EXPECT_TRUE(std::is_sorted(few.begin(), few.end()));
    }
  }
  int total = 0;
  std::vector<std::string> members =
      list_all("name", "zed", v1::MEMBER, &total);
  EXPECT_EQ(total, 2000);
  EXPECT_EQ(members.size(), 2000u);
  // Once ANALYZE has run, the planner's estimate from its statistics is
  // close to the 6,000 matches, where the bare cap (5,001) is all there is
  // without statistics.
  ASSERT_TRUE(env->pool->Exec("ANALYZE identity.users").ok());
  list_all("email", "zed", v1::USER_KIND_UNSPECIFIED, &total);
  EXPECT_GT(total, 5001);
  EXPECT_NEAR(total, 6000, 1200);
}

// Many matches that all sort after a long run of other users: in creation
// order the walk of the sort index gives up at its cap and the union of
// the key ranges answers (email and name order merge, see below; their
// cases here still check the same listing).
TEST_F(IdentityTest, ListUsersFindsManyMatchesPastALongRunOfOthers) {
  Ws ws = NewWorkspace("ws-list-far");
  BulkInsertUsers(
      ws,
      "SELECT gen_random_uuid(), $1, e, e, f, 'Last', 'GUEST', 'INVITED', 1, "
      "now() - make_interval(days => 1, secs => 30000 - i), now() FROM "
      "generate_series(0, 29999) i, LATERAL (SELECT CASE WHEN i < 24000 THEN "
      "'Anna' ELSE 'Zoe' END AS f) n, LATERAL (SELECT lower(f) || i || "
      "'@far.example.com' AS e) m");
  for (const std::string order :
       {"email", "email desc", "createTime", "createTime desc", "name"}) {
    int total = 0;
    std::vector<std::string> zoes =
        ListAllEmails(ws, order, "zo", v1::USER_KIND_UNSPECIFIED, &total);
    ExpectEachOnceInOrder(zoes, order, 6000);
    EXPECT_GT(total, 5000) << order;
    for (const std::string& email : zoes) {
      ASSERT_EQ(email.rfind("zoe", 0), 0u) << order << ": " << email;
    }
  }
}

// Many matches in email order come from a merge of sorted runs: the email
// range, one run per first and last name, and the users whose username or
// full name no other run covers. Every listing equals the one a plain
// query of the five keys gives, page after page, both ways.
TEST_F(IdentityTest, ListUsersInEmailOrderMergesEveryKindOfMatch) {
  Ws ws = NewWorkspace("ws-list-merge");
  // By i % 8: 0 email "zo..."; 1 first name Zoe only; 2 last name Zorn
  // only; 3 a username of its own; 4 a first name with a leading space (so
  // the full name "zed berg" starts with z, the first name does not); 5 no
  // email, username "zoey..."; 6 nothing; 7 email "zo...", a MEMBER.
  BulkInsertUsers(
      ws,
      "SELECT gen_random_uuid(), $1, CASE g WHEN 3 THEN 'zorro' || i WHEN 5 "
      "THEN 'zoey' || i ELSE e END, e, CASE g WHEN 2 THEN 'Bob' WHEN 3 THEN "
      "'Carl' WHEN 4 THEN ' Zed' WHEN 5 THEN 'Eve' WHEN 6 THEN 'Eve' ELSE "
      "'Zoe' END, CASE g WHEN 2 THEN 'Zorn' ELSE 'Berg' END, CASE g WHEN 7 "
      "THEN 'MEMBER' ELSE 'GUEST' END, 'ACTIVE', 1, now() - "
      "make_interval(secs => i), now() FROM generate_series(0, 15999) i, "
      "LATERAL (SELECT i % 8 AS g) a, LATERAL (SELECT CASE i % 8 WHEN 0 "
      "THEN 'zo' WHEN 1 THEN 'anna' WHEN 2 THEN 'bob' WHEN 3 THEN 'carl' "
      "WHEN 4 THEN 'dan' WHEN 5 THEN '' WHEN 6 THEN 'eve' ELSE 'zom' END AS "
      "local) l, LATERAL (SELECT CASE WHEN local = '' THEN '' ELSE local || "
      "i || '@merge.example.com' END AS e) m");
  ExpectManyMatchesListedInOrder(ws, {"email", "email desc"},
                                 {{"zo", v1::USER_KIND_UNSPECIFIED, 12000},
                                  {"Z", v1::USER_KIND_UNSPECIFIED, 14000},
                                  {"zoe b", v1::USER_KIND_UNSPECIFIED, 6000},
                                  {"zo", v1::GUEST, 10000}});
}

// Many matches in name order come from a merge of sorted runs too: the
// full-name range, one run per last name, and the users whose username or
// email no other run covers (an email not starting with the first name, or
// matching the query past a first name that is one of its proper
// prefixes). Every listing equals the one a plain query of the five keys
// gives, user for user, page after page, both ways.
TEST_F(IdentityTest, ListUsersInNameOrderMergesEveryKindOfMatch) {
  Ws ws = NewWorkspace("ws-list-name-merge");
  // Classes: 0 Zoe Berg, email "zoe..."; 1 last name Zorn only; 2 a
  // username of its own; 3 an email "zo.x..." not starting with the first
  // name Eve; 4 first name Z, email "zombie..." (past the first name); 5 no
  // email, username "zoey..."; 6 nothing; 7 Zoe Berg, a MEMBER; 8 no first
  // name, last name Zorn; 9 Zed Berg, email "zed...". 500 users per slot
  // of 40: the full-name run alone is over the union's cap, the runs read
  // whole are small.
  BulkInsertUsers(
      ws,
      "SELECT gen_random_uuid(), $1, CASE g WHEN 2 THEN 'zorro' || i WHEN 5 "
      "THEN 'zoey' || i ELSE e END, e, CASE g WHEN 0 THEN 'Zoe' WHEN 1 THEN "
      "'Anna' WHEN 2 THEN 'Carl' WHEN 4 THEN 'Z' WHEN 7 THEN 'Zoe' WHEN 8 "
      "THEN '' WHEN 9 THEN 'Zed' ELSE 'Eve' END, CASE WHEN g IN (1, 8) THEN "
      "'Zorn' ELSE 'Berg' END, CASE g WHEN 7 THEN 'MEMBER' ELSE 'GUEST' END, "
      "'ACTIVE', 1, now() - make_interval(secs => i), now() FROM "
      "generate_series(0, 19999) i, LATERAL (SELECT (ARRAY[0, 0, 0, 0, 0, 0, "
      "0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 4, "
      "5, 6, 6, 6, 7, 7, 8, 8, 9, 9])[1 + i % 40] AS g) a, LATERAL (SELECT "
      "CASE g WHEN 0 THEN 'zoe' WHEN 1 THEN 'anna' WHEN 2 THEN 'carl' WHEN 3 "
      "THEN 'zo.x' WHEN 4 THEN 'zombie' WHEN 5 THEN '' WHEN 6 THEN 'eve' WHEN "
      "7 THEN 'zoe.m' WHEN 8 THEN 'x' ELSE 'zed' END AS local) l, LATERAL "
      "(SELECT CASE WHEN local = '' THEN '' ELSE local || i || "
      "'@name-merge.example.com' END AS e) m");
  // As autovacuum would soon: the merge's plan is made from statistics (a
  // table that looks empty gets plans that are right, only slower), and
  // its index-only scans skip the heap.
  ASSERT_TRUE(env->pool->Exec("VACUUM ANALYZE identity.users").ok());
  ExpectManyMatchesListedInOrder(ws, {"name", "name desc"},
                                 {{"zo", v1::USER_KIND_UNSPECIFIED, 17500},
                                  {"Z", v1::USER_KIND_UNSPECIFIED, 18500},
                                  {"zoe b", v1::USER_KIND_UNSPECIFIED, 13000},
                                  {"zo", v1::GUEST, 16500}});
}

// Few matches come from the union of the email, first- and last-name
// ranges and the small ranges of usernames and full names of their own:
// every order lists what a plain query of the five keys gives, with the
// exact count.
TEST_F(IdentityTest, ListUsersWithFewMatchesFindsEveryKindOfMatch) {
  Ws ws = NewWorkspace("ws-list-few");
  // By i % 8: 0 email "zo..."; 1 first name Zoe only; 2 last name Zorn
  // only; 3 a username of its own; 4 a first name with a leading space (so
  // the full name "zed berg" starts with z, the first name does not); 5 no
  // email, username "zoey..."; 6 nothing; 7 Zoe Berg, email "zoe.b...".
  BulkInsertUsers(
      ws,
      "SELECT gen_random_uuid(), $1, CASE g WHEN 3 THEN 'zorro' || i WHEN 5 "
      "THEN 'zoey' || i ELSE e END, e, CASE g WHEN 2 THEN 'Bob' WHEN 3 THEN "
      "'Carl' WHEN 4 THEN ' Zed' WHEN 5 THEN 'Eve' WHEN 6 THEN 'Eve' WHEN 0 "
      "THEN 'Ann' ELSE 'Zoe' END, CASE g WHEN 2 THEN 'Zorn' ELSE 'Berg' END, "
      "'GUEST', 'ACTIVE', 1, now() - make_interval(secs => i), now() FROM "
      "generate_series(0, 79) i, LATERAL (SELECT i % 8 AS g) a, LATERAL "
      "(SELECT CASE g WHEN 0 THEN 'zo' WHEN 1 THEN 'anna' WHEN 2 THEN 'bob' "
      "WHEN 3 THEN 'carl' WHEN 4 THEN 'dan' WHEN 5 THEN '' WHEN 6 THEN 'eve' "
      "ELSE 'zoe.b' END AS local) l, LATERAL (SELECT CASE WHEN local = '' "
      "THEN '' ELSE local || i || '@few.example.com' END AS e) m");
  struct Case {
    std::string query;
    int matches;
  };
  for (const Case& c : {Case{"zo", 60}, Case{"Z", 70}, Case{"zoe b", 20},
                        Case{"zorro", 10}, Case{"zed b", 10}}) {
    for (const std::string order : {"email", "email desc", "name", "name desc",
                                    "createTime", "createTime desc"}) {
      int total = 0;
      std::vector<std::string> want = PlainSearch(ws, c.query, order);
      EXPECT_EQ(want.size(), static_cast<size_t>(c.matches)) << c.query;
      EXPECT_EQ(
          ListAllIds(ws, order, c.query, v1::USER_KIND_UNSPECIFIED, 7, &total),
          want)
          << c.query << " " << order;
      EXPECT_EQ(total, c.matches) << c.query << " " << order;
    }
  }
}

TEST_F(IdentityTest, NothingOfOneWorkspaceIsVisibleFromAnother) {
  Ws a = NewWorkspace("ws-iso-a");
  Ws b = NewWorkspace("ws-iso-b");
  v1::Invitation inv_b;
  ASSERT_TRUE(
      Invite(b.admin_token, b.workspace.id(), "bee@iso.example.com", &inv_b)
          .ok());
  v1::GetWorkspaceRequest gw;
  gw.set_workspace_id(b.workspace.id());
  v1::Workspace w;
  EXPECT_EQ(
      env->stub->GetWorkspace(Ctx(a.admin_token).get(), gw, &w).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  v1::ListUsersRequest lu;
  lu.set_workspace_id(b.workspace.id());
  v1::ListUsersResponse users;
  EXPECT_EQ(
      env->stub->ListUsers(Ctx(a.admin_token).get(), lu, &users).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  v1::GetUserRequest gu;
  gu.set_user_id(inv_b.user().id());
  v1::User u;
  EXPECT_EQ(env->stub->GetUser(Ctx(a.admin_token).get(), gu, &u).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::SuspendUserRequest su;
  su.set_user_id(inv_b.user().id());
  EXPECT_EQ(
      env->stub->SuspendUser(Ctx(a.admin_token).get(), su, &u).error_code(),
      grpc::StatusCode::NOT_FOUND);
  v1::ResendInvitationRequest ri;
  ri.set_invitation_id(inv_b.id());
  v1::Invitation inv;
  EXPECT_EQ(env->stub->ResendInvitation(Ctx(a.admin_token).get(), ri, &inv)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Invite(a.admin_token, b.workspace.id(), "x@iso.example.com", &inv)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(env->stub->GetUser(Ctx(b.admin_token).get(), gu, &u).ok());
  EXPECT_EQ(u.email(), "bee@iso.example.com");
}

TEST_F(IdentityTest,
       RequestAccessReusesTheRequestAndEmailsAdminsWithDedupeKey) {
  Ws ws = NewWorkspace("ws-ra", /*request_access=*/true);
  v1::RequestAccessRequest req;
  req.set_workspace_id(ws.workspace.id());
  req.set_email("Req@Outside.example.com");
  req.set_first_name("Rita");
  req.set_message("please let me in");
  v1::AccessRequest first, second;
  ASSERT_TRUE(env->stub->RequestAccess(Ctx("").get(), req, &first).ok());
  ASSERT_TRUE(env->stub->RequestAccess(Ctx("").get(), req, &second).ok());
  EXPECT_EQ(first.id(), second.id());
  EXPECT_EQ(first.state(), v1::AccessRequest::PENDING);
  EXPECT_EQ(first.user().status(), v1::REQUESTED);
  DrainOutbox();
  auto emails =
      env->notification_service.SentTo(ws.admin_email, "access_request");
  ASSERT_EQ(emails.size(), 2u);  // notification deduplicates by key
  const std::string day =
      absl::FormatTime("%Y-%m-%d", env->clock.Now(), absl::UTCTimeZone());
  EXPECT_EQ(emails[0].dedupe_key(),
            absl::StrCat("access_request:", ws.admin_id,
                         ":req@outside.example.com:", day));
  EXPECT_EQ(emails[0].dedupe_window().seconds(), 86400);
  EXPECT_EQ(emails[0].variables().at("requester_email"),
            "Req@Outside.example.com");
  EXPECT_EQ(emails[0].category(), "access_request");

  v1::AccessRequest third;
  ASSERT_TRUE(env->stub->RequestAccess(Ctx("").get(), req, &third).ok());
  grpc::Status limited = env->stub->RequestAccess(Ctx("").get(), req, &third);
  EXPECT_EQ(limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(limited.error_message(), "retry in"));

  v1::ListAccessRequestsRequest list;
  list.set_workspace_id(ws.workspace.id());
  v1::ListAccessRequestsResponse listed;
  ASSERT_TRUE(
      env->stub->ListAccessRequests(Ctx(ws.admin_token).get(), list, &listed)
          .ok());
  ASSERT_EQ(listed.access_requests_size(), 1);

  v1::ApproveAccessRequestRequest approve;
  approve.set_access_request_id(first.id());
  v1::ApproveAccessRequestResponse approved;
  ASSERT_TRUE(
      env->stub
          ->ApproveAccessRequest(Ctx(ws.admin_token).get(), approve, &approved)
          .ok());
  EXPECT_EQ(approved.access_request().state(), v1::AccessRequest::APPROVED);
  EXPECT_EQ(approved.invitation().user().status(), v1::INVITED);
  EXPECT_EQ(approved.invitation().user().id(), first.user().id());
  EXPECT_FALSE(approved.invitation().invitation_url().empty());
  EXPECT_EQ(
      env->stub
          ->ApproveAccessRequest(Ctx(ws.admin_token).get(), approve, &approved)
          .error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);

  // A known user's email gets the same kind of answer, revealing nothing.
  v1::RequestAccessRequest known;
  known.set_workspace_id(ws.workspace.id());
  known.set_email(ws.admin_email);
  known.set_first_name("Who");
  v1::AccessRequest k1, k2;
  ASSERT_TRUE(env->stub->RequestAccess(Ctx("").get(), known, &k1).ok());
  ASSERT_TRUE(env->stub->RequestAccess(Ctx("").get(), known, &k2).ok());
  EXPECT_EQ(k1.id(), k2.id());
  EXPECT_NE(k1.user().id(), ws.admin_id);
  EXPECT_EQ(k1.user().status(), v1::REQUESTED);
  EXPECT_EQ(k1.user().kind(), v1::GUEST);

  Ws closed = NewWorkspace("ws-ra-closed");
  req.set_workspace_id(closed.workspace.id());
  req.set_email("other@outside.example.com");
  EXPECT_EQ(env->stub->RequestAccess(Ctx("").get(), req, &third).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(IdentityTest, IdempotencyReplaysAndRejectsAnotherBody) {
  Ws ws = NewWorkspace("ws-idem");
  v1::InviteUserRequest req;
  req.set_workspace_id(ws.workspace.id());
  req.set_email("idem@x.example.com");
  req.set_first_name("Ida");
  req.set_idempotency_key("key-1");
  v1::Invitation first, second;
  ASSERT_TRUE(
      env->stub->InviteUser(Ctx(ws.admin_token).get(), req, &first).ok());
  ASSERT_TRUE(
      env->stub->InviteUser(Ctx(ws.admin_token).get(), req, &second).ok());
  EXPECT_EQ(first.id(), second.id());
  EXPECT_EQ(first.invitation_url(), second.invitation_url());
  req.set_email("other@x.example.com");
  grpc::Status s =
      env->stub->InviteUser(Ctx(ws.admin_token).get(), req, &second);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "idempotency_key"));
  // The stored response holds the link, so it is encrypted at rest.
  auto rows = env->pool->Exec(
      "SELECT count(*) FROM identity.idempotency_keys WHERE position("
      "convert_to($1, 'UTF8') in response) > 0",
      {TokenOf(first)});
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->GetInt(0, 0), 0);

  v1::CreateApiKeyRequest key_req;
  key_req.set_workspace_id(ws.workspace.id());
  key_req.mutable_api_key()->set_display_name("reporter");
  key_req.mutable_api_key()->add_scopes("users.read");
  key_req.set_idempotency_key("key-2");
  v1::ApiKey k1, k2;
  ASSERT_TRUE(
      env->stub->CreateApiKey(Ctx(ws.admin_token).get(), key_req, &k1).ok());
  ASSERT_TRUE(
      env->stub->CreateApiKey(Ctx(ws.admin_token).get(), key_req, &k2).ok());
  EXPECT_EQ(k1.id(), k2.id());
  EXPECT_EQ(k1.key(), k2.key());
  EXPECT_TRUE(absl::StartsWith(k1.key(), "glk_"));
}

// Same key sent concurrently (a client retrying on a timeout): every call
// gets the one response that was committed together with the guest.
TEST_F(IdentityTest, ConcurrentCallsWithOneKeyMakeOneGuest) {
  Ws ws = NewWorkspace("ws-idem-race");
  v1::InviteUserRequest req;
  req.set_workspace_id(ws.workspace.id());
  req.set_email("race@x.example.com");
  req.set_first_name("Rae");
  req.set_idempotency_key("race-key");
  constexpr int kCalls = 8;
  std::vector<v1::Invitation> answers(kCalls);
  std::vector<grpc::Status> statuses(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      statuses[i] =
          env->stub->InviteUser(Ctx(ws.admin_token).get(), req, &answers[i]);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << i << ": " << statuses[i].error_message();
    EXPECT_EQ(answers[i].id(), answers[0].id());
    EXPECT_EQ(answers[i].invitation_url(), answers[0].invitation_url());
  }
  auto rows = env->pool->Exec(
      "SELECT (SELECT count(*) FROM identity.users WHERE username = $1),"
      " (SELECT count(*) FROM identity.idempotency_keys WHERE key = $2)",
      {"race@x.example.com", "race-key"});
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->GetInt(0, 0), 1);
  EXPECT_EQ(rows->GetInt(0, 1), 1);
}

// V007 spreads the per-workspace user counts over shards chosen by the
// writing backend, so concurrent invites do not queue on one counter row.
// Writers on different backends land in different shards, and totalSize
// (the sum) stays exact through concurrent invites.
TEST_F(IdentityTest, UserCountsSpreadOverShardsStayExact) {
  Ws ws = NewWorkspace("ws-shards");
  std::vector<std::thread> inviters;
  for (int t = 0; t < 4; ++t) {
    inviters.emplace_back([&, t] {
      for (int i = 0; i < 2; ++i) {
        v1::Invitation inv;
        grpc::Status s =
            Invite(ws.admin_token, ws.workspace.id(),
                   absl::StrCat("shard", t, "-", i, "@x.example.com"), &inv);
        EXPECT_TRUE(s.ok()) << s.error_message();
      }
    });
  }
  for (std::thread& t : inviters) t.join();
  // Two backends whose pids fall in different shards each add a user.
  std::vector<std::unique_ptr<pg::Connection>> writers;
  absl::flat_hash_set<int64_t> shards;
  const std::string conninfo = env->postgres.ConnInfo("identity");
  while (writers.size() < 2) {
    auto conn = std::make_unique<pg::Connection>(PQconnectdb(conninfo.c_str()));
    absl::StatusOr<pg::Result> pid = conn->Exec("SELECT pg_backend_pid() % 16");
    ASSERT_TRUE(pid.ok()) << pid.status();
    if (shards.insert(pid->GetInt(0, 0)).second) {
      writers.push_back(std::move(conn));
    }
  }
  for (size_t i = 0; i < writers.size(); ++i) {
    ASSERT_TRUE(writers[i]
                    ->Exec("INSERT INTO identity.users (id, workspace_id, "
                           "username, first_name, kind, status, create_time, "
                           "update_time) VALUES (gen_random_uuid(), $1, $2, "
                           "'Sam', 'GUEST', 'INVITED', now(), now())",
                           {ws.workspace.id(), absl::StrCat("raw", i)})
                    .ok());
  }
  absl::StatusOr<pg::Result> rows = env->pool->Exec(
      "SELECT (SELECT count(*) FROM identity.users WHERE workspace_id = $1), "
      "(SELECT sum(n) FROM identity.user_counts WHERE workspace_id = $1), "
      "(SELECT count(DISTINCT shard) FROM identity.user_counts WHERE "
      "workspace_id = $1)",
      {ws.workspace.id()});
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->GetInt(0, 0), 11);  // the admin, 8 invited, 2 raw
  EXPECT_EQ(rows->GetInt(0, 1), 11);
  EXPECT_GE(rows->GetInt(0, 2), 2);
  v1::ListUsersRequest lu;
  lu.set_workspace_id(ws.workspace.id());
  v1::ListUsersResponse users;
  ASSERT_TRUE(env->stub->ListUsers(Ctx(ws.admin_token).get(), lu, &users).ok());
  EXPECT_EQ(users.total_size(), 11);
}

TEST_F(IdentityTest, ApiKeysAreLimitedByScopeAndDieWhenDeleted) {
  Ws ws = NewWorkspace("ws-keys");
  v1::CreateApiKeyRequest req;
  req.set_workspace_id(ws.workspace.id());
  req.mutable_api_key()->set_display_name("reader");
  req.mutable_api_key()->add_scopes("users.read");
  v1::ApiKey key;
  ASSERT_TRUE(
      env->stub->CreateApiKey(Ctx(ws.admin_token).get(), req, &key).ok());
  v1::ListUsersRequest lu;
  lu.set_workspace_id(ws.workspace.id());
  v1::ListUsersResponse users;
  ASSERT_TRUE(env->stub->ListUsers(Ctx(key.key()).get(), lu, &users).ok());
  EXPECT_EQ(users.total_size(), 1);
  v1::Invitation inv;
  EXPECT_EQ(Invite(key.key(), ws.workspace.id(), "k@x.example.com", &inv)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ListApiKeysRequest lk;
  lk.set_workspace_id(ws.workspace.id());
  v1::ListApiKeysResponse keys;
  ASSERT_TRUE(
      env->stub->ListApiKeys(Ctx(ws.admin_token).get(), lk, &keys).ok());
  ASSERT_EQ(keys.api_keys_size(), 1);
  EXPECT_TRUE(keys.api_keys(0).key().empty());
  EXPECT_EQ(keys.api_keys(0).prefix(), key.key().substr(0, 12));
  v1::DeleteApiKeyRequest del;
  del.set_api_key_id(key.id());
  google::protobuf::Empty empty;
  ASSERT_TRUE(
      env->stub->DeleteApiKey(Ctx(ws.admin_token).get(), del, &empty).ok());
  EXPECT_EQ(env->stub->ListUsers(Ctx(key.key()).get(), lu, &users).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(IdentityTest, BadInputNamesTheField) {
  Ws ws = NewWorkspace("ws-bad", false);
  v1::UpdateWorkspaceRequest upd;
  upd.set_workspace_id(ws.workspace.id());
  upd.mutable_workspace()->mutable_settings()->add_blocked_email_domains(
      "blocked.example.com");
  upd.mutable_update_mask()->add_paths("settings.blocked_email_domains");
  v1::Workspace w;
  ASSERT_TRUE(
      env->stub->UpdateWorkspace(Ctx(ws.admin_token).get(), upd, &w).ok());
  ASSERT_EQ(w.settings().blocked_email_domains_size(), 1);

  auto invite = [&](const std::function<void(v1::InviteUserRequest*)>& edit) {
    v1::InviteUserRequest req;
    req.set_workspace_id(ws.workspace.id());
    req.set_email("fine@x.example.com");
    req.set_first_name("Fine");
    req.set_send_email(false);
    edit(&req);
    v1::Invitation inv;
    return env->stub->InviteUser(Ctx(ws.admin_token).get(), req, &inv);
  };
  struct Case {
    const char* field;
    std::function<void(v1::InviteUserRequest*)> edit;
    grpc::StatusCode code = grpc::StatusCode::INVALID_ARGUMENT;
  };
  std::vector<Case> cases = {
      {"email", [](auto* r) { r->set_email("not-an-email"); }},
      {"email", [](auto* r) { r->set_email("a@b"); }},
      {"email",
       [](auto* r) {
         r->clear_email();
         r->clear_username();
       }},
      {"first_name", [](auto* r) { r->clear_first_name(); }},
      {"first_name",
       [](auto* r) { r->set_first_name(std::string("a\0b", 3)); }},
      {"last_name", [](auto* r) { r->set_last_name(std::string(101, 'x')); }},
      {"metadata",
       [](auto* r) {
         (*r->mutable_metadata()->mutable_fields())["big"].set_string_value(
             std::string(17000, 'x'));
       }},
      {"access_expire_time",
       [](auto* r) { r->mutable_access_expire_time()->set_seconds(1000); }},
      {"kind", [](auto* r) { r->set_kind(static_cast<v1::UserKind>(42)); }},
      {"group_ids[0]", [](auto* r) { r->add_group_ids("not-a-uuid"); }},
      {"username", [](auto* r) { r->set_username("has space"); }},
      {"workspace_id", [](auto* r) { r->set_workspace_id("nope"); }},
      {"email", [](auto* r) { r->set_email("x@blocked.example.com"); },
       grpc::StatusCode::FAILED_PRECONDITION},
  };
  for (const Case& c : cases) {
    grpc::Status s = invite(c.edit);
    EXPECT_EQ(s.error_code(), c.code) << c.field << ": " << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), c.field))
        << c.field << ": " << s.error_message();
  }
  // Guests may come without an email; long TLDs are fine.
  EXPECT_TRUE(invite([](auto* r) {
                r->clear_email();
                r->set_username("no-email-guest");
              }).ok());
  EXPECT_TRUE(invite([](auto* r) { r->set_email("a@b.technology"); }).ok());
  // Nothing was written by the refused requests.
  v1::ListUsersRequest lu;
  lu.set_workspace_id(ws.workspace.id());
  v1::ListUsersResponse users;
  ASSERT_TRUE(env->stub->ListUsers(Ctx(ws.admin_token).get(), lu, &users).ok());
  EXPECT_EQ(users.total_size(), 3);

  v1::CreateWorkspaceRequest cw;
  cw.mutable_workspace()->set_name("Bad Name");
  cw.mutable_workspace()->set_display_name("x");
  cw.set_admin_email("a@b.example.com");
  cw.set_admin_password(kPassword);
  grpc::Status s =
      env->stub->CreateWorkspace(Ctx(kOperatorToken).get(), cw, &w);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "workspace.name"));
  cw.mutable_workspace()->set_name("good-name");
  cw.set_admin_password("short");
  s = env->stub->CreateWorkspace(Ctx(kOperatorToken).get(), cw, &w);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "admin_password"));
  cw.set_admin_password(kPassword);
  cw.mutable_workspace()
      ->mutable_settings()
      ->mutable_invitation_ttl()
      ->set_seconds(31 * 86400);
  s = env->stub->CreateWorkspace(Ctx(kOperatorToken).get(), cw, &w);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "invitation_ttl"));
}

TEST_F(IdentityTest, ConvertNeedsMembershipToAcceptAndChangesNothingOtherwise) {
  Ws ws = NewWorkspace("ws-convert");
  v1::Invitation inv;
  ASSERT_TRUE(
      Invite(ws.admin_token, ws.workspace.id(), "conv@x.example.com", &inv)
          .ok());
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    env->membership_service.refuse_members_ = true;
  }
  v1::ConvertGuestToMemberRequest req;
  req.set_user_id(inv.user().id());
  v1::User user;
  grpc::Status s =
      env->stub->ConvertGuestToMember(Ctx(ws.admin_token).get(), req, &user);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "licence"));
  v1::GetUserRequest get;
  get.set_user_id(inv.user().id());
  ASSERT_TRUE(env->stub->GetUser(Ctx(ws.admin_token).get(), get, &user).ok());
  EXPECT_EQ(user.kind(), v1::GUEST);
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    env->membership_service.refuse_members_ = false;
  }
  ASSERT_TRUE(
      env->stub->ConvertGuestToMember(Ctx(ws.admin_token).get(), req, &user)
          .ok());
  EXPECT_EQ(user.kind(), v1::MEMBER);
  EXPECT_EQ(user.id(), inv.user().id());
}

TEST_F(IdentityTest, RefusedGrantsLeaveNoHalfMadeGuest) {
  Ws ws = NewWorkspace("ws-refuse");
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    env->membership_service.refuse_grants_ = true;
  }
  v1::Invitation inv;
  grpc::Status s =
      Invite(ws.admin_token, ws.workspace.id(), "half@x.example.com", &inv);
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    env->membership_service.refuse_grants_ = false;
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  v1::ListUsersRequest lu;
  lu.set_workspace_id(ws.workspace.id());
  v1::ListUsersResponse users;
  ASSERT_TRUE(env->stub->ListUsers(Ctx(ws.admin_token).get(), lu, &users).ok());
  EXPECT_EQ(users.total_size(), 1);
}

TEST_F(IdentityTest, TemporaryAccessRemindsOnceThenExpires) {
  Ws ws = NewWorkspace("ws-temp");
  v1::InviteUserRequest req;
  req.set_workspace_id(ws.workspace.id());
  req.set_email("temp@x.example.com");
  req.set_first_name("Tem");
  *req.mutable_access_expire_time() =
      ToTimestamp(env->clock.Now() + absl::Hours(24 * 5));
  v1::Invitation inv;
  ASSERT_TRUE(env->stub->InviteUser(Ctx(ws.admin_token).get(), req, &inv).ok());
  v1::Session guest;
  ASSERT_TRUE(Accept(TokenOf(inv), &guest).ok());
  auto r = env->sweeper->RunOnce();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reminded, 0);
  env->clock.Advance(absl::Hours(24 * 2 + 1));  // 71 h left
  r = env->sweeper->RunOnce();
  ASSERT_TRUE(r.ok());
  EXPECT_GE(r->reminded, 1);
  r = env->sweeper->RunOnce();
  DrainOutbox();
  auto reminders =
      env->notification_service.SentTo("temp@x.example.com", "access_expiry");
  ASSERT_EQ(reminders.size(), 1u);
  EXPECT_EQ(reminders[0].category(), "access_expiry");
  EXPECT_EQ(reminders[0].variables().at("workspace_name"), "Display ws-temp");

  env->clock.Advance(absl::Hours(72));
  // Past the end: the very next call fails, before the sweeper runs.
  v1::GetUserRequest get;
  get.set_user_id(guest.user().id());
  v1::User user;
  grpc::Status s = env->stub->GetUser(Ctx(guest.token()).get(), get, &user);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "EXPIRED"));
  r = env->sweeper->RunOnce();
  ASSERT_TRUE(r.ok());
  EXPECT_GE(r->expired, 1);
  ASSERT_TRUE(env->stub->GetUser(Ctx(ws.admin_token).get(), get, &user).ok());
  EXPECT_EQ(user.status(), v1::EXPIRED);
  DrainOutbox();
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    bool synced = false;
    for (const auto& u : env->membership_service.users_) {
      synced |= u.id() == guest.user().id() &&
                u.status() == mv1::DirectoryUser::EXPIRED;
    }
    EXPECT_TRUE(synced);
  }
  // An admin gives a new end date: the guest is back.
  v1::ReactivateUserRequest reactivate;
  reactivate.set_user_id(guest.user().id());
  reactivate.mutable_access_expire_time()->set_seconds(1000);
  EXPECT_EQ(
      env->stub->ReactivateUser(Ctx(ws.admin_token).get(), reactivate, &user)
          .error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  *reactivate.mutable_access_expire_time() =
      ToTimestamp(env->clock.Now() + absl::Hours(24 * 10));
  ASSERT_TRUE(
      env->stub->ReactivateUser(Ctx(ws.admin_token).get(), reactivate, &user)
          .ok());
  EXPECT_EQ(user.status(), v1::ACTIVE);
  ASSERT_TRUE(env->stub->GetUser(Ctx(guest.token()).get(), get, &user).ok());
}

TEST_F(IdentityTest, InternalMethodsNeedTheInternalCredential) {
  Ws ws = NewWorkspace("ws-internal");
  v1::ListAdminsRequest req;
  req.set_workspace_id(ws.workspace.id());
  v1::ListAdminsResponse resp;
  EXPECT_EQ(
      env->stub->ListAdmins(Ctx(ws.admin_token).get(), req, &resp).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  auto ctx = Ctx("");
  ctx->AddMetadata(kInternalTokenKey, kInternalToken);
  ASSERT_TRUE(env->stub->ListAdmins(ctx.get(), req, &resp).ok());
  ASSERT_EQ(resp.users_size(), 1);
  EXPECT_EQ(resp.users(0).id(), ws.admin_id);
  v1::BatchGetUsersRequest batch;
  batch.set_workspace_id(ws.workspace.id());
  batch.add_user_ids(ws.admin_id);
  batch.add_user_ids("00000000-0000-4000-8000-000000000000");
  v1::BatchGetUsersResponse got;
  auto ctx2 = Ctx("");
  ctx2->AddMetadata(kInternalTokenKey, kInternalToken);
  ASSERT_TRUE(env->stub->BatchGetUsers(ctx2.get(), batch, &got).ok());
  ASSERT_EQ(got.users_size(), 1);

  // The internal credential is accepted only in its own header, never as
  // a bearer token (which the gateway forwards from outside).
  v1::ListAdminsResponse none;
  EXPECT_EQ(
      env->stub->ListAdmins(Ctx(kInternalToken).get(), req, &none).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  v1::AuthenticateRequest auth;
  auth.set_token(kInternalToken);
  v1::Principal p;
  EXPECT_EQ(env->stub->Authenticate(Ctx("").get(), auth, &p).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  v1::GetImportRequest gi;
  v1::ImportReport report;
  EXPECT_EQ(
      env->stub->GetImport(Ctx(ws.admin_token).get(), gi, &report).error_code(),
      grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(IdentityTest, MembersInviteGuestsOnlyWhereAllowed) {
  Ws ws = NewWorkspace("ws-members");
  v1::InviteUserRequest req;
  req.set_workspace_id(ws.workspace.id());
  req.set_email("mem@members.example.com");
  req.set_first_name("Mem");
  req.set_kind(v1::MEMBER);
  v1::Invitation inv;
  ASSERT_TRUE(env->stub->InviteUser(Ctx(ws.admin_token).get(), req, &inv).ok());
  v1::Session member;
  ASSERT_TRUE(Accept(TokenOf(inv), &member).ok());
  EXPECT_EQ(member.user().kind(), v1::MEMBER);

  const std::string open_group = "11111111-1111-4111-8111-111111111111";
  const std::string secret_group = "22222222-2222-4222-8222-222222222222";
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    env->membership_service.denied_.insert("groups/" + secret_group);
  }
  v1::InviteUserRequest guest;
  guest.set_workspace_id(ws.workspace.id());
  guest.set_email("g1@members.example.com");
  guest.set_first_name("G");
  guest.add_group_ids(open_group);
  ASSERT_TRUE(
      env->stub->InviteUser(Ctx(member.token()).get(), guest, &inv).ok());
  EXPECT_EQ(inv.inviter_id(), member.user().id());
  guest.set_email("g2@members.example.com");
  guest.add_group_ids(secret_group);
  grpc::Status s =
      env->stub->InviteUser(Ctx(member.token()).get(), guest, &inv);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), secret_group));
  req.set_email("mem2@members.example.com");
  EXPECT_EQ(
      env->stub->InviteUser(Ctx(member.token()).get(), req, &inv).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);

  v1::ListInvitationsRequest list;
  list.set_workspace_id(ws.workspace.id());
  v1::ListInvitationsResponse mine;
  ASSERT_TRUE(
      env->stub->ListInvitations(Ctx(member.token()).get(), list, &mine).ok());
  ASSERT_EQ(mine.invitations_size(), 1);
  EXPECT_EQ(mine.invitations(0).user().email(), "g1@members.example.com");
  v1::ListUsersRequest lu;
  lu.set_workspace_id(ws.workspace.id());
  v1::ListUsersResponse users;
  EXPECT_EQ(
      env->stub->ListUsers(Ctx(member.token()).get(), lu, &users).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);

  v1::UpdateWorkspaceRequest upd;
  upd.set_workspace_id(ws.workspace.id());
  upd.mutable_workspace()->mutable_settings()->set_members_can_invite_guests(
      false);
  upd.mutable_update_mask()->add_paths("settings.members_can_invite_guests");
  v1::Workspace w;
  EXPECT_EQ(env->stub->UpdateWorkspace(Ctx(member.token()).get(), upd, &w)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(
      env->stub->UpdateWorkspace(Ctx(ws.admin_token).get(), upd, &w).ok());
  EXPECT_FALSE(w.settings().members_can_invite_guests());
  guest.clear_group_ids();
  guest.set_email("g3@members.example.com");
  EXPECT_EQ(env->stub->InviteUser(Ctx(member.token()).get(), guest, &inv)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(IdentityTest, UpdateUserRespectsWhoMayChangeWhat) {
  Ws ws = NewWorkspace("ws-update");
  v1::Invitation inv;
  ASSERT_TRUE(
      Invite(ws.admin_token, ws.workspace.id(), "up@x.example.com", &inv).ok());
  v1::Session guest;
  ASSERT_TRUE(Accept(TokenOf(inv), &guest).ok());
  v1::UpdateUserRequest req;
  req.set_user_id(guest.user().id());
  req.mutable_user()->set_first_name("Renamed");
  req.mutable_update_mask()->add_paths("first_name");
  v1::User user;
  ASSERT_TRUE(env->stub->UpdateUser(Ctx(guest.token()).get(), req, &user).ok());
  EXPECT_EQ(user.first_name(), "Renamed");
  req.mutable_update_mask()->Clear();
  req.mutable_update_mask()->add_paths("metadata");
  (*req.mutable_user()->mutable_metadata()->mutable_fields())["team"]
      .set_string_value("sales");
  EXPECT_EQ(
      env->stub->UpdateUser(Ctx(guest.token()).get(), req, &user).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  req.mutable_update_mask()->add_paths("email");
  req.mutable_user()->set_email("Moved@x.example.com");
  ASSERT_TRUE(
      env->stub->UpdateUser(Ctx(ws.admin_token).get(), req, &user).ok());
  EXPECT_EQ(user.metadata().fields().at("team").string_value(), "sales");
  EXPECT_EQ(user.email(), "Moved@x.example.com");
  EXPECT_EQ(user.username(), "moved@x.example.com");  // follows the email
  req.mutable_update_mask()->Clear();
  req.mutable_update_mask()->add_paths("kind");
  grpc::Status s = env->stub->UpdateUser(Ctx(ws.admin_token).get(), req, &user);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "update_mask"));
  req.mutable_update_mask()->Clear();
  req.mutable_update_mask()->add_paths("username");
  req.mutable_user()->set_username(ws.admin_email);
  EXPECT_EQ(
      env->stub->UpdateUser(Ctx(ws.admin_token).get(), req, &user).error_code(),
      grpc::StatusCode::ALREADY_EXISTS);
  DrainOutbox();
  absl::MutexLock lock(&env->membership_service.mu_);
  int64_t version = 0;
  for (const auto& u : env->membership_service.users_) {
    if (u.id() == guest.user().id()) version = std::max(version, u.version());
  }
  EXPECT_GE(version, 3);  // accept, rename, email change
}

TEST_F(IdentityTest, DenyArchivesTheRequestedUser) {
  Ws ws = NewWorkspace("ws-deny", /*request_access=*/true);
  v1::RequestAccessRequest req;
  req.set_workspace_id(ws.workspace.id());
  req.set_email("den@outside.example.com");
  req.set_last_name("Nied");
  v1::AccessRequest ar;
  ASSERT_TRUE(env->stub->RequestAccess(Ctx("").get(), req, &ar).ok());
  v1::DenyAccessRequestRequest deny;
  deny.set_access_request_id(ar.id());
  v1::AccessRequest denied;
  ASSERT_TRUE(
      env->stub->DenyAccessRequest(Ctx(ws.admin_token).get(), deny, &denied)
          .ok());
  EXPECT_EQ(denied.state(), v1::AccessRequest::DENIED);
  EXPECT_EQ(denied.user().status(), v1::ARCHIVED);
  ASSERT_TRUE(
      env->stub->DenyAccessRequest(Ctx(ws.admin_token).get(), deny, &denied)
          .ok());
  v1::ApproveAccessRequestRequest approve;
  approve.set_access_request_id(ar.id());
  v1::ApproveAccessRequestResponse approved;
  EXPECT_EQ(
      env->stub
          ->ApproveAccessRequest(Ctx(ws.admin_token).get(), approve, &approved)
          .error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(IdentityTest, LicenceCountChangeNeedsMembership) {
  Ws ws = NewWorkspace("ws-licence");
  v1::UpdateWorkspaceRequest upd;
  upd.set_workspace_id(ws.workspace.id());
  upd.mutable_workspace()->set_license_count(3);
  upd.mutable_update_mask()->add_paths("license_count");
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    env->membership_service.down_ = true;
  }
  v1::Workspace w;
  grpc::Status s =
      env->stub->UpdateWorkspace(Ctx(ws.admin_token).get(), upd, &w);
  {
    absl::MutexLock lock(&env->membership_service.mu_);
    env->membership_service.down_ = false;
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  v1::GetWorkspaceRequest get;
  get.set_workspace_id(ws.workspace.id());
  ASSERT_TRUE(env->stub->GetWorkspace(Ctx(ws.admin_token).get(), get, &w).ok());
  EXPECT_EQ(w.license_count(), 10);
  ASSERT_TRUE(
      env->stub->UpdateWorkspace(Ctx(ws.admin_token).get(), upd, &w).ok());
  EXPECT_EQ(w.license_count(), 3);
  EXPECT_EQ(w.settings().license_count(), 3);
  upd.mutable_update_mask()->Clear();
  upd.mutable_update_mask()->add_paths("name");
  s = env->stub->UpdateWorkspace(Ctx(ws.admin_token).get(), upd, &w);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "update_mask"));
}

TEST_F(IdentityTest, ConcurrentRequestsForOneEmailMakeOneUser) {
  Ws ws = NewWorkspace("ws-ra-race", /*request_access=*/true);
  std::atomic<int> ok{0};
  std::vector<std::string> ids(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      v1::RequestAccessRequest req;
      req.set_workspace_id(ws.workspace.id());
      req.set_email(absl::StrCat("race", i % 2, "@outside.example.com"));
      req.set_first_name("Racy");
      v1::AccessRequest ar;
      if (env->stub->RequestAccess(Ctx("").get(), req, &ar).ok()) {
        ++ok;
        ids[i] = ar.id();
      }
    });
  }
  for (auto& t : threads) t.join();
  // Per-email limit is 3 an hour: some may be refused, none may duplicate.
  EXPECT_GE(ok.load(), 2);
  std::set<std::string> distinct;
  for (const auto& id : ids) {
    if (!id.empty()) distinct.insert(id);
  }
  EXPECT_EQ(distinct.size(), 2u);
  v1::ListUsersRequest lu;
  lu.set_workspace_id(ws.workspace.id());
  lu.set_status(v1::REQUESTED);
  v1::ListUsersResponse users;
  ASSERT_TRUE(env->stub->ListUsers(Ctx(ws.admin_token).get(), lu, &users).ok());
  EXPECT_EQ(users.total_size(), 2);
}

}  // namespace
}  // namespace guestlist::identity
