// Bulk import of N new guests (2 groups and 1 app privilege each, emails
// queued) through ImportService against a real PostgreSQL, compared with
// COPYing the same rows (users + invitations) straight into the same tables
// in the same run. Membership and notification are in-process fakes, so
// the figure is identity's share of the work plus the batching overhead.
// IMPORT_BENCH_ROWS overrides N (default 100000); IMPORT_BENCH_NO_COPY=1
// skips the COPY comparison (for the 1,000,000-row memory run);
// IMPORT_BENCH_NO_COUNT_TRIGGER=1 disables identity's per-row user-count
// trigger (migration V002) in both databases.
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/migrations.h"
#include "common/outbox.h"
#include "common/pg.h"
#include "common/random.h"
#include "gtest/gtest.h"
#include "services/identity/identity_migrations.h"
#include "services/identity/import/import_service.h"
#include "tests/testing/postgres.h"

namespace guestlist::identity::import {
namespace {

constexpr char kWs[] = "11111111-1111-4111-8111-111111111111";

class BenchMembership final : public MembershipPeer {
 public:
  absl::StatusOr<std::vector<mv1::Group>> ListGroups(
      const std::string&) override {
    std::vector<mv1::Group> groups(2);
    groups[0].set_id("g1");
    groups[0].set_name("Partners");
    groups[1].set_id("g2");
    groups[1].set_name("Agencies");
    return groups;
  }
  absl::StatusOr<std::vector<mv1::App>> ListApps(const std::string&) override {
    std::vector<mv1::App> apps(1);
    apps[0].set_id("a1");
    apps[0].set_slug("sales-dashboard");
    return apps;
  }
  absl::StatusOr<mv1::GetUserAccessResponse> GetUserAccess(
      const mv1::GetUserAccessRequest&) override {
    return mv1::GetUserAccessResponse();
  }
  absl::StatusOr<mv1::ApplyGrantsResponse> ApplyGrants(
      const mv1::ApplyGrantsRequest& req) override {
    ++calls;
    mv1::ApplyGrantsResponse resp;
    for (const auto& u : req.users()) {
      auto* r = resp.add_results();
      r->set_user_id(u.user().id());
      r->set_ok(true);
      r->set_changed(true);
    }
    resp.set_applied(!req.dry_run());
    return resp;
  }
  absl::Status DeleteUsers(const mv1::DeleteUsersRequest&) override {
    return absl::OkStatus();
  }
  int calls = 0;
};

class BenchMail final : public MailPeer {
 public:
  absl::StatusOr<nv1::BatchSendEmailResponse> BatchSendEmail(
      const nv1::BatchSendEmailRequest& req) override {
    ++batches;
    messages += req.messages_size();
    return nv1::BatchSendEmailResponse();
  }
  int batches = 0;
  int messages = 0;
};

std::unique_ptr<pg::Pool> Database(guestlist::testing::TestPostgres& pg,
                                   const std::string& name) {
  auto pool = std::make_unique<pg::Pool>(
      pg::PoolOptions{.conninfo = pg.CreateDatabase(name),
                      .statement_timeout = absl::Minutes(5)});
  std::vector<Migration> migrations = IdentityMigrations();
  migrations.push_back(CommonTablesMigration("identity"));
  EXPECT_TRUE(RunMigrations(*pool, "identity", migrations).ok());
  if (std::getenv("IMPORT_BENCH_NO_COUNT_TRIGGER") != nullptr) {
    // To separate V002's per-row counting trigger from the import's work.
    EXPECT_TRUE(pool->Exec("ALTER TABLE identity.users DISABLE TRIGGER "
                           "users_count_insert_delete")
                    .ok());
  }
  EXPECT_TRUE(pool->Exec("INSERT INTO identity.workspaces (id, name, "
                         "display_name, create_time, update_time) VALUES "
                         "($1, 'bench', 'Bench', now(), now())",
                         {kWs})
                  .ok());
  return pool;
}

long MaxRssKib() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

TEST(ImportBench, HundredThousandGuestsVersusCopy) {
  const char* env = std::getenv("IMPORT_BENCH_ROWS");
  const int n = env ? std::atoi(env) : 100000;
  guestlist::testing::TestPostgres pg;

  std::string csv =
      "username,first_name,last_name,role,user-group-1,user-group-2,"
      "sales-dashboard,delete,metadata\r\n";
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&csv, "guest", i, "@bench.example,First", i, ",Last", i,
                    ",guest,Partners,Agencies,guest,,\r\n");
  }

  // 1. The import, end to end (parse, validate, diff, grants, write, mail).
  auto pool = Database(pg, "import_run");
  ImportStore store(pool.get());
  BenchMembership membership;
  BenchMail mail;
  SystemClock clock;
  SecureRandom random;
  Principal op;
  op.set_is_operator(true);
  const long rss_before = MaxRssKib();
  absl::Time start = absl::Now();
  absl::StatusOr<v1::ImportReport> report;
  {
    ImportService service(ImportConfig(), ImportDeps{&store, &membership, &mail,
                                                     &clock, &random});
    size_t offset = 0;
    bool options_sent = false;
    report = service.Import(
        op,
        [&](v1::ImportUsersRequest* m) {
          if (!options_sent) {
            options_sent = true;
            m->mutable_options()->set_workspace_id(kWs);
            return true;
          }
          if (offset >= csv.size()) return false;
          m->set_chunk(csv.substr(offset, 1 << 20));
          offset += 1 << 20;
          return true;
        },
        nullptr);
  }
  const absl::Duration import_time = absl::Now() - start;
  const long import_rss = MaxRssKib() - rss_before;
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->created(), n);
  // Emails are queued in identity's outbox (batches of 500), for the relay.
  auto queued = pool->Exec(
      "SELECT count(*), coalesce(sum(length(payload)), 0) FROM "
      "identity.outbox WHERE topic = 'notification.BatchSendEmail'");
  ASSERT_TRUE(queued.ok()) << queued.status();
  const int64_t email_rows = queued->GetInt(0, 0);
  EXPECT_EQ(email_rows, (n + 499) / 500);
  EXPECT_EQ(mail.messages, 0);  // nothing sent before the commit
  std::printf(
      "import_bench rows=%d import=%.2fs peak_rss_growth=%ld MiB "
      "email_outbox_rows=%lld\n",
      n, absl::ToDoubleSeconds(import_time), import_rss / 1024,
      static_cast<long long>(email_rows));
  if (std::getenv("IMPORT_BENCH_NO_COPY") != nullptr) return;

  // 2. The same rows COPYed straight into the same tables.
  auto copy_pool = Database(pg, "copy_run");
  start = absl::Now();
  {
    auto conn = copy_pool->Acquire();
    ASSERT_TRUE(conn.ok());
    std::string users;
    std::string invitations;
    const std::string now = "2026-11-22 00:00:00+00";
    for (int i = 0; i < n; ++i) {
      const std::string id = NewUuid(random);
      absl::StrAppend(&users, id, "\t", kWs, "\tguest", i,
                      "@bench.example\tguest", i, "@bench.example\tFirst", i,
                      "\tLast", i, "\tGUEST\tINVITED\t", now, "\t", now, "\n");
      absl::StrAppend(&invitations, NewUuid(random), "\t", kWs, "\t", id, "\t",
                      Sha256Hex(NewToken(random, 32, "gli_")), "\tPENDING\t",
                      now, "\t", now, "\n");
    }
    auto copy = [&](const std::string& sql, const std::string& data) {
      PGconn* raw = (*conn)->raw();
      PGresult* res = PQexec(raw, sql.c_str());
      ASSERT_EQ(PQresultStatus(res), PGRES_COPY_IN) << PQerrorMessage(raw);
      PQclear(res);
      ASSERT_EQ(PQputCopyData(raw, data.data(), static_cast<int>(data.size())),
                1);
      ASSERT_EQ(PQputCopyEnd(raw, nullptr), 1);
      res = PQgetResult(raw);
      EXPECT_EQ(PQresultStatus(res), PGRES_COMMAND_OK) << PQerrorMessage(raw);
      PQclear(res);
      while ((res = PQgetResult(raw)) != nullptr) PQclear(res);
    };
    ASSERT_TRUE((*conn)->ExecScript("BEGIN").ok());
    copy(
        "COPY identity.users (id, workspace_id, username, email, first_name, "
        "last_name, kind, status, create_time, update_time) FROM STDIN",
        users);
    copy(
        "COPY identity.invitations (id, workspace_id, user_id, token_hash, "
        "state, expire_time, create_time) FROM STDIN",
        invitations);
    ASSERT_TRUE((*conn)->ExecScript("COMMIT").ok());
  }
  const absl::Duration copy_time = absl::Now() - start;
  auto count = copy_pool->Exec("SELECT count(*) FROM identity.users");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count->GetInt(0, 0), n);

  std::printf(
      "import_bench rows=%d import=%.2fs copy=%.2fs ratio=%.2f "
      "apply_grants_calls=%d import_peak_rss_growth=%ld MiB\n",
      n, absl::ToDoubleSeconds(import_time), absl::ToDoubleSeconds(copy_time),
      absl::ToDoubleSeconds(import_time) / absl::ToDoubleSeconds(copy_time),
      membership.calls, import_rss / 1024);
  EXPECT_LE(import_time, absl::Seconds(10));
}

}  // namespace
}  // namespace guestlist::identity::import
