// Outbox relay and idempotency store against a throwaway PostgreSQL.
#include "common/outbox.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/idempotency.h"
#include "gtest/gtest.h"
#include "tests/testing/postgres.h"

namespace guestlist {
namespace {

class OutboxTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new guestlist::testing::TestPostgres();
    pool_ = new pg::Pool({.conninfo = db_->ConnInfo()});
    ASSERT_TRUE(
        RunMigrations(*pool_, "svc", {CommonTablesMigration("svc")}).ok());
  }
  static void TearDownTestSuite() {
    delete pool_;
    delete db_;
  }
  void SetUp() override {
    ASSERT_TRUE(pool_->Exec("TRUNCATE svc.outbox, svc.idempotency_keys").ok());
  }
  static void Enqueue(const std::string& topic, const std::string& payload,
                      bool commit = true) {
    auto conn = pool_->Acquire();
    ASSERT_TRUE(conn.ok());
    pg::Transaction tx(*conn);
    ASSERT_TRUE(EnqueueOutbox(tx, "svc", topic, payload).ok());
    if (commit) {
      ASSERT_TRUE(tx.Commit().ok());
    }
  }
  static guestlist::testing::TestPostgres* db_;
  static pg::Pool* pool_;
};
guestlist::testing::TestPostgres* OutboxTest::db_ = nullptr;
pg::Pool* OutboxTest::pool_ = nullptr;

TEST_F(OutboxTest, DeliversCommittedMessagesOnlyAndDeletesThem) {
  Enqueue("email", std::string("a\0b", 3));
  Enqueue("email", "rolled back", /*commit=*/false);
  std::vector<std::string> seen;
  OutboxRelay relay(pool_, "svc");
  relay.Register("email", [&](const std::string& p) {
    seen.push_back(p);
    return absl::OkStatus();
  });
  auto n = relay.RunOnce();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(seen, std::vector<std::string>{std::string("a\0b", 3)});
  EXPECT_EQ(db_->Psql("SELECT count(*) FROM svc.outbox"), "0\n");
}

TEST_F(OutboxTest, FailureIsRetriedLaterWithTheErrorKept) {
  Enqueue("sync", "x");
  OutboxRelay relay(pool_, "svc");
  relay.Register("sync", [](const std::string&) {
    return absl::UnavailableError("down");
  });
  ASSERT_EQ(*relay.RunOnce(), 0);
  EXPECT_EQ(db_->Psql("SELECT attempts, last_error LIKE '%down%', "
                      "next_attempt_at > now() FROM svc.outbox"),
            "1|t|t\n");
  // Not due yet: nothing is claimed.
  ASSERT_EQ(*relay.RunOnce(), 0);
  EXPECT_EQ(db_->Psql("SELECT attempts FROM svc.outbox"), "1\n");
}

TEST_F(OutboxTest, ConcurrentRelaysDeliverEachMessageOnce) {
  for (int i = 0; i < 200; ++i) Enqueue("t", std::to_string(i));
  std::atomic<int> calls{0};
  auto handler = [&](const std::string&) {
    ++calls;
    return absl::OkStatus();
  };
  OutboxRelay a(pool_, "svc", {.batch_size = 10});
  OutboxRelay b(pool_, "svc", {.batch_size = 10});
  a.Register("t", handler);
  b.Register("t", handler);
  std::thread ta([&] {
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(a.RunOnce().ok());
  });
  std::thread tb([&] {
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(b.RunOnce().ok());
  });
  ta.join();
  tb.join();
  EXPECT_EQ(calls.load(), 200);
}

// A batch topic's due rows reach its handler in one call; rows it fails are
// retried later, the others deleted; other topics still go one by one.
TEST_F(OutboxTest, BatchTopicIsDeliveredInOneCallWithPerRowOutcomes) {
  Enqueue("email", "e1");
  Enqueue("sync", "s1");
  Enqueue("email", "e2");
  Enqueue("email", "bad");
  std::vector<std::vector<std::string>> batches;
  std::vector<std::string> singles;
  OutboxRelay relay(pool_, "svc");
  relay.RegisterBatch("email", [&](const std::vector<std::string>& payloads) {
    batches.push_back(payloads);
    std::vector<absl::Status> out;
    for (const auto& p : payloads) {
      out.push_back(p == "bad" ? absl::UnavailableError("try later")
                               : absl::OkStatus());
    }
    return out;
  });
  relay.Register("sync", [&](const std::string& p) {
    singles.push_back(p);
    return absl::OkStatus();
  });
  auto n = relay.RunOnce();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0], (std::vector<std::string>{"e1", "e2", "bad"}));
  EXPECT_EQ(singles, std::vector<std::string>{"s1"});
  EXPECT_EQ(db_->Psql("SELECT encode(payload, 'escape'), attempts, "
                      "last_error LIKE '%try later%' FROM svc.outbox"),
            "bad|1|t\n");
}

TEST_F(OutboxTest, AWokenRelayLetsCommitsGatherIntoOneClaim) {
  absl::Mutex mu;
  std::vector<std::vector<std::string>> batches;
  OutboxRelay relay(
      pool_, "svc",
      {.poll_interval = absl::Seconds(30), .wake_gather = absl::Seconds(1)});
  relay.RegisterBatch("email", [&](const std::vector<std::string>& payloads) {
    absl::MutexLock lock(&mu);
    batches.push_back(payloads);
    return std::vector<absl::Status>(payloads.size());
  });
  relay.Start();
  absl::SleepFor(absl::Milliseconds(200));  // its first, empty claim
  // Two commits 50 ms apart, each waking the relay: one claim takes both.
  Enqueue("email", "e1");
  relay.Wake();
  absl::SleepFor(absl::Milliseconds(50));
  Enqueue("email", "e2");
  relay.Wake();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    absl::MutexLock lock(&mu);
    if (!batches.empty()) break;
    mu.Unlock();
    absl::SleepFor(absl::Milliseconds(10));
    mu.Lock();
  }
  relay.Stop();
  absl::MutexLock lock(&mu);
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0], (std::vector<std::string>{"e1", "e2"}));
}

TEST_F(OutboxTest, IdempotencyReplaysAndRejectsADifferentBody) {
  IdempotencyStore store("svc", "secret");
  {
    auto conn = pool_->Acquire();
    ASSERT_TRUE(conn.ok());
    pg::Transaction tx(*conn);
    auto first = store.Lookup(tx, "Invite/w1", "k1", RequestHash("req"));
    ASSERT_TRUE(first.ok());
    EXPECT_FALSE(first->has_value());
    ASSERT_TRUE(store
                    .Save(tx, "Invite/w1", "k1", RequestHash("req"),
                          "response with secret")
                    .ok());
    ASSERT_TRUE(tx.Commit().ok());
  }
  auto again = store.Lookup(*pool_, "Invite/w1", "k1", RequestHash("req"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->value(), "response with secret");
  auto other = store.Lookup(*pool_, "Invite/w1", "k1", RequestHash("other"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  auto scoped = store.Lookup(*pool_, "Invite/w2", "k1", RequestHash("other"));
  ASSERT_TRUE(scoped.ok());
  EXPECT_FALSE(scoped->has_value());
  // Stored encrypted: the plain text is not in the table.
  EXPECT_EQ(db_->Psql("SELECT position('secret'::bytea in response) FROM "
                      "svc.idempotency_keys"),
            "0\n");
}

}  // namespace
}  // namespace guestlist
