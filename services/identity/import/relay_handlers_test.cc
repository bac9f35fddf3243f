// The outbox topics the import relies on, through identity's real relay
// handlers (services/identity/clients/outbox_relay.cc) on a real
// PostgreSQL: an intent row naming many users removes from membership only
// those identity lacks, and a row of invitation emails goes to
// notification as one batch.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/idempotency.h"
#include "common/migrations.h"
#include "common/outbox.h"
#include "common/pg.h"
#include "gtest/gtest.h"
#include "services/identity/clients/outbox_relay.h"
#include "services/identity/identity_migrations.h"
#include "services/identity/storage/pg_repository.h"
#include "tests/testing/postgres.h"

namespace guestlist::identity {
namespace {

constexpr char kWs[] = "11111111-1111-4111-8111-111111111111";
constexpr char kKept[] = "22222222-2222-4222-8222-222222222222";

class FakeMembership final : public MembershipClient {
 public:
  absl::Status SyncUsers(const mv1::SyncUsersRequest&) override {
    return absl::OkStatus();
  }
  absl::Status SyncWorkspace(const mv1::SyncWorkspaceRequest&) override {
    return absl::OkStatus();
  }
  absl::StatusOr<mv1::BatchCheckResponse> BatchCheck(
      const grpc::ServerContext&, const mv1::BatchCheckRequest&) override {
    return mv1::BatchCheckResponse();
  }
  absl::StatusOr<mv1::ApplyGrantsResponse> ApplyGrants(
      const mv1::ApplyGrantsRequest&) override {
    return mv1::ApplyGrantsResponse();
  }
  absl::Status DeleteUsers(const mv1::DeleteUsersRequest& r) override {
    deletes.push_back(r);
    return absl::OkStatus();
  }
  std::vector<mv1::DeleteUsersRequest> deletes;
};

class FakeNotification final : public NotificationClient {
 public:
  absl::Status SendEmail(const nv1::SendEmailRequest& m) override {
    ++singles;
    if (m.to() == refused) return absl::InvalidArgumentError("bad address");
    sent.push_back(m.to());
    return absl::OkStatus();
  }
  absl::Status BatchSendEmail(const nv1::BatchSendEmailRequest& r) override {
    batches.push_back(r.messages_size());
    for (const auto& m : r.messages()) {
      if (m.to() == refused) return absl::InvalidArgumentError("bad address");
    }
    for (const auto& m : r.messages()) sent.push_back(m.to());
    return absl::OkStatus();
  }
  std::string refused;  // an address notification refuses as malformed
  int singles = 0;
  std::vector<int> batches;
  std::vector<std::string> sent;
};

class RelayHandlersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = std::make_unique<pg::Pool>(
        pg::PoolOptions{.conninfo = db_.CreateDatabase("relay")});
    std::vector<Migration> migrations = IdentityMigrations();
    migrations.push_back(CommonTablesMigration("identity"));
    ASSERT_TRUE(RunMigrations(*pool_, "identity", migrations).ok());
    ASSERT_TRUE(pool_
                    ->Exec("INSERT INTO identity.workspaces (id, name, "
                           "display_name, create_time, update_time) VALUES "
                           "($1, 'acme', 'Acme', now(), now())",
                           {kWs})
                    .ok());
    repository_ = std::make_unique<PgRepository>(pool_.get(), &idempotency_);
    relay_ = std::make_unique<OutboxRelay>(pool_.get(), "identity");
    RegisterOutboxHandlers(relay_.get(), &membership_, &notification_,
                           repository_.get());
  }

  void Enqueue(const std::string& topic, const std::string& payload) {
    ASSERT_TRUE(pool_
                    ->Exec("INSERT INTO identity.outbox (topic, payload) "
                           "VALUES ($1, decode($2, 'hex'))",
                           {topic, absl::BytesToHexString(payload)})
                    .ok());
  }

  std::string Remaining() {
    auto r = pool_->Exec("SELECT count(*) FROM identity.outbox");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Get(0, 0) : "";
  }

  guestlist::testing::TestPostgres db_;
  std::unique_ptr<pg::Pool> pool_;
  IdempotencyStore idempotency_{"identity", ""};
  std::unique_ptr<PgRepository> repository_;
  std::unique_ptr<OutboxRelay> relay_;
  FakeMembership membership_;
  FakeNotification notification_;
};

TEST_F(RelayHandlersTest, ReconcileRemovesOnlyTheUsersIdentityLacks) {
  // An import's intent names 1000 users; one of them was committed.
  ASSERT_TRUE(pool_
                  ->Exec("INSERT INTO identity.users (id, workspace_id, "
                         "username, email, first_name, kind, status, "
                         "create_time, update_time) VALUES ($1, $2, "
                         "'kept@x.example', 'kept@x.example', 'K', 'GUEST', "
                         "'INVITED', now(), now())",
                         {kKept, kWs})
                  .ok());
  mv1::DeleteUsersRequest intent;
  intent.set_workspace_id(kWs);
  for (int i = 0; i < 999; ++i) {
    intent.add_user_ids(
        absl::StrCat("33333333-3333-4333-8333-", absl::StrFormat("%012d", i)));
  }
  intent.add_user_ids(kKept);
  Enqueue("identity.ReconcileInvite", intent.SerializeAsString());

  auto delivered = relay_->RunOnce();
  ASSERT_TRUE(delivered.ok()) << delivered.status();
  EXPECT_EQ(*delivered, 1);
  ASSERT_EQ(membership_.deletes.size(), 1u);
  const mv1::DeleteUsersRequest& sent = membership_.deletes[0];
  EXPECT_EQ(sent.workspace_id(), kWs);
  EXPECT_EQ(sent.user_ids_size(), 999);
  for (const std::string& id : sent.user_ids()) EXPECT_NE(id, kKept);
  EXPECT_EQ(Remaining(), "0");

  // Everyone committed: nothing to undo, no call.
  mv1::DeleteUsersRequest done;
  done.set_workspace_id(kWs);
  done.add_user_ids(kKept);
  Enqueue("identity.ReconcileInvite", done.SerializeAsString());
  ASSERT_TRUE(relay_->RunOnce().ok());
  EXPECT_EQ(membership_.deletes.size(), 1u);
  EXPECT_EQ(Remaining(), "0");
}

TEST_F(RelayHandlersTest, ImportEmailRowGoesAsOneBatch) {
  nv1::BatchSendEmailRequest batch;
  for (int i = 0; i < 3; ++i) {
    nv1::SendEmailRequest* m = batch.add_messages();
    m->set_to(absl::StrCat("guest", i, "@x.example"));
    m->set_template_("invitation");
    m->set_idempotency_key(absl::StrCat("invitation:", i, ":1"));
  }
  Enqueue("notification.BatchSendEmail", batch.SerializeAsString());
  auto delivered = relay_->RunOnce();
  ASSERT_TRUE(delivered.ok()) << delivered.status();
  EXPECT_EQ(*delivered, 1);
  EXPECT_EQ(notification_.batches, std::vector<int>{3});
  EXPECT_EQ(notification_.singles, 0);
  EXPECT_EQ(Remaining(), "0");
}

// One malformed message must not block the others, on either email
// topic: the batch is refused, its messages go one by one, the bad one is
// dropped and every row is done.
TEST_F(RelayHandlersTest, RefusedBatchGoesOneByOneAndDropsOnlyTheBadEmail) {
  notification_.refused = "bad@x.example";
  nv1::BatchSendEmailRequest batch;
  for (const char* to : {"a@x.example", "bad@x.example", "b@x.example"}) {
    batch.add_messages()->set_to(to);
  }
  Enqueue("notification.BatchSendEmail", batch.SerializeAsString());
  for (const char* to : {"c@x.example", "bad@x.example", "d@x.example"}) {
    nv1::SendEmailRequest single;
    single.set_to(to);
    Enqueue(kTopicSendEmail, single.SerializeAsString());
  }
  auto delivered = relay_->RunOnce();
  ASSERT_TRUE(delivered.ok()) << delivered.status();
  EXPECT_EQ(*delivered, 4);
  EXPECT_EQ(notification_.batches, (std::vector<int>{3, 3}));
  EXPECT_EQ(notification_.singles, 6);
  std::vector<std::string> sent = notification_.sent;
  std::sort(sent.begin(), sent.end());
  EXPECT_EQ(sent, (std::vector<std::string>{"a@x.example", "b@x.example",
                                            "c@x.example", "d@x.example"}));
  EXPECT_EQ(Remaining(), "0");
}

}  // namespace
}  // namespace guestlist::identity
