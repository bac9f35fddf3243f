// The bulk import over the real suite (tests/testing/stack.h: the identity,
// membership, notification and gateway binaries on a throwaway PostgreSQL):
// N new guests (2 groups and 1 app privilege each, emails on) streamed to
// identity's ImportUsers over gRPC in 1 MiB chunks, generated on the fly.
// Prints the time to the report and each service's peak resident memory
// (VmHWM from /proc/<pid>/status, plus the largest VmRSS sampled every
// 100 ms during the import and the email drain that follows).
// IMPORT_BENCH_ROWS overrides N (default 1000000); IMPORT_BENCH_DRAIN_S the
// seconds sampled after the import (default 10).
// Before the import, in the same run and on the same PostgreSQL, the
// baseline: N guests' rows COPYed straight into every table the import
// writes them to (identity: users, invitations; membership: group_members,
// app_privileges, users), one table after the other, in fresh databases
// with the services' migrations; for N <= 100,000 unless
// IMPORT_BENCH_NO_COPY=1.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/migrations.h"
#include "common/outbox.h"
#include "common/pg.h"
#include "gtest/gtest.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"
#include "services/identity/identity_migrations.h"
#include "services/membership/migrations.h"
#include "tests/testing/stack.h"

namespace guestlist {
namespace {

using ::guestlist::testing::HttpResponse;
using ::guestlist::testing::Stack;
using json = nlohmann::json;

constexpr char kPassword[] = "a long enough password";
// The COPY baseline builds its rows in memory (~750 bytes each): only for
// the 100,000-row comparison, not for the 1,000,000-row memory run.
constexpr int kMaxCopyRows = 100000;
const char* const kServices[] = {"identity", "membership", "notification"};

long ProcStatusKb(pid_t pid, const std::string& key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, key + ":")) {
      return std::atol(line.c_str() + key.size() + 1);
    }
  }
  return -1;
}

// A random version-4 UUID (as the services make them: B-tree inserts in
// random order, like the import's).
std::string RandomUuid(std::mt19937_64& rng) {
  const uint64_t a = rng(), b = rng();
  return absl::StrFormat("%08x-%04x-4%03x-%04x-%012x", a >> 32,
                         (a >> 16) & 0xffff, a & 0xfff,
                         0x8000 | ((b >> 48) & 0x3fff), b & 0xffffffffffff);
}

// COPYs `data` (text format) with `sql` on `conn`.
void Copy(pg::Connection& conn, const std::string& sql,
          const std::string& data) {
  PGconn* raw = conn.raw();
  PGresult* res = PQexec(raw, sql.c_str());
  ASSERT_EQ(PQresultStatus(res), PGRES_COPY_IN) << PQerrorMessage(raw);
  PQclear(res);
  ASSERT_EQ(PQputCopyData(raw, data.data(), static_cast<int>(data.size())), 1);
  ASSERT_EQ(PQputCopyEnd(raw, nullptr), 1);
  res = PQgetResult(raw);
  EXPECT_EQ(PQresultStatus(res), PGRES_COMMAND_OK) << PQerrorMessage(raw);
  PQclear(res);
  while ((res = PQgetResult(raw)) != nullptr) PQclear(res);
}

// A fresh database with `schema`'s migrations, as the service runs them.
std::unique_ptr<pg::Connection> FreshSchema(Stack& stack,
                                            const std::string& schema,
                                            std::vector<Migration> migrations) {
  const std::string conninfo =
      stack.postgres().CreateDatabase(absl::StrCat("copy_", schema));
  pg::Pool pool({.conninfo = conninfo, .max_size = 1});
  migrations.push_back(CommonTablesMigration(schema));
  EXPECT_TRUE(RunMigrations(pool, schema, migrations).ok());
  return std::make_unique<pg::Connection>(PQconnectdb(conninfo.c_str()));
}

// The baseline: n new guests (2 groups, 1 app privilege each) COPYed into
// the tables the import writes them to, in fresh databases with the same
// migrations (the services' own databases are in use), one transaction
// per database.
absl::Duration CopyBaseline(Stack& stack, int n) {
  std::unique_ptr<pg::Connection> identity =
      FreshSchema(stack, "identity", identity::IdentityMigrations());
  std::unique_ptr<pg::Connection> membership =
      FreshSchema(stack, "membership", membership::Migrations());
  const std::string ws = "11111111-1111-4111-8111-111111111111";
  const std::string groups[] = {"22222222-2222-4222-8222-222222222221",
                                "22222222-2222-4222-8222-222222222222"};
  const std::string app = "33333333-3333-4333-8333-333333333333";
  EXPECT_TRUE(membership
                  ->Exec("INSERT INTO membership.workspaces (id, "
                         "license_count, version) VALUES ($1, $2, 1)",
                         {ws, absl::StrCat(2 * n)})
                  .ok());
  EXPECT_TRUE(membership
                  ->Exec("INSERT INTO membership.groups (id, workspace_id, "
                         "name, visibility) VALUES ($1, $3, 'Partners', 1), "
                         "($2, $3, 'Agencies', 1)",
                         {groups[0], groups[1], ws})
                  .ok());
  EXPECT_TRUE(membership
                  ->Exec("INSERT INTO membership.apps (id, workspace_id, "
                         "slug, name) VALUES ($1, $2, 'sales-dashboard', "
                         "'Sales dashboard')",
                         {app, ws})
                  .ok());
  std::mt19937_64 rng(42);
  const std::string now = "2026-11-22 00:00:00+00";
  std::string users, invitations, m_users, members, privileges;
  for (int i = 0; i < n; ++i) {
    const std::string id = RandomUuid(rng);
    const std::string name = absl::StrCat("guest", i, "@bench.example");
    absl::StrAppend(&users, id, "\t", ws, "\t", name, "\t", name, "\tFirst", i,
                    "\tLast", i, "\tGUEST\tINVITED\t", now, "\t", now, "\n");
    absl::StrAppend(
        &invitations, RandomUuid(rng), "\t", ws, "\t", id, "\t",
        absl::StrFormat("%016x%016x%016x%016x", rng(), rng(), rng(), rng()),
        "\tPENDING\t", now, "\t", now, "\n");
    absl::StrAppend(&m_users, id, "\t", ws, "\t", name, "\t", name, "\tFirst",
                    i, "\tLast", i, "\t3\t2\t1\t2\n");
    for (const std::string& g : groups) {
      absl::StrAppend(&members, g, "\t", id, "\t1\n");
    }
    absl::StrAppend(&privileges, app, "\t", id, "\t1\n");
  }
  const absl::Time start = absl::Now();
  EXPECT_TRUE(identity->ExecScript("BEGIN").ok());
  Copy(*identity,
       "COPY identity.users (id, workspace_id, username, email, first_name, "
       "last_name, kind, status, create_time, update_time) FROM STDIN",
       users);
  Copy(*identity,
       "COPY identity.invitations (id, workspace_id, user_id, token_hash, "
       "state, expire_time, create_time) FROM STDIN",
       invitations);
  EXPECT_TRUE(identity->ExecScript("COMMIT").ok());
  // Memberships first, then their users with group_count set, as the
  // import writes them (V005): the counter trigger then has no user row to
  // update a second time.
  EXPECT_TRUE(membership->ExecScript("BEGIN").ok());
  Copy(*membership,
       "COPY membership.group_members (group_id, user_id, role) FROM STDIN",
       members);
  Copy(*membership,
       "COPY membership.app_privileges (app_id, user_id, privilege) FROM STDIN",
       privileges);
  Copy(*membership,
       "COPY membership.users (id, workspace_id, username, email, first_name, "
       "last_name, kind, status, version, group_count) FROM STDIN",
       m_users);
  EXPECT_TRUE(membership->ExecScript("COMMIT").ok());
  const absl::Duration elapsed = absl::Now() - start;
  absl::StatusOr<pg::Result> counted = membership->Exec(
      "SELECT single_group_guests, used_by_multi_group_guests FROM "
      "membership.workspaces");
  EXPECT_TRUE(counted.ok() && counted->GetInt(0, 1) == n)
      << "the COPYed guests are counted like imported ones";
  return elapsed;
}

json Body(const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, false);
  return j.is_object() ? j : json::object();
}

// POSTs until the peer knows the workspace (membership learns of it from
// identity's outbox, just after CreateWorkspace returns).
HttpResponse PostWhenKnown(Stack& stack, const std::string& path,
                           const json& body, const std::string& token) {
  HttpResponse r;
  for (int i = 0; i < 100; ++i) {
    r = stack.Http("POST", path, body.dump(), token);
    if (r.status != 404) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return r;
}

TEST(ImportStackBench, MillionGuestsMemoryPerService) {
  const char* rows_env = std::getenv("IMPORT_BENCH_ROWS");
  const int n = rows_env ? std::atoi(rows_env) : 1000000;
  const char* drain_env = std::getenv("IMPORT_BENCH_DRAIN_S");
  const int drain_s = drain_env ? std::atoi(drain_env) : 10;
  Stack stack;

  auto created = stack.Http("POST", "/v1/workspaces",
                            json{{"workspace",
                                  {{"name", "bench"},
                                   {"displayName", "Bench"},
                                   {"licenseCount", 2 * n + 10}}},
                                 {"adminEmail", "admin@bench.admin.example"},
                                 {"adminPassword", kPassword}}
                                .dump(),
                            stack.operator_token());
  ASSERT_EQ(created.status, 200) << created.body;
  const std::string ws = Body(created).value("id", "");
  auto login = stack.Http(
      "POST", "/v1/workspaces/" + ws + "/sessions",
      json{{"username", "admin@bench.admin.example"}, {"password", kPassword}}
          .dump());
  ASSERT_EQ(login.status, 200) << login.body;
  const std::string admin = Body(login).value("token", "");
  for (const char* group : {"Partners", "Agencies"}) {
    auto g =
        PostWhenKnown(stack, "/v1/workspaces/" + ws + "/groups",
                      json{{"name", group}, {"visibility", "OPEN"}}, admin);
    ASSERT_EQ(g.status, 200) << g.body;
  }
  auto app = PostWhenKnown(
      stack, "/v1/workspaces/" + ws + "/apps",
      json{{"slug", "sales-dashboard"}, {"name", "Sales dashboard"}}, admin);
  ASSERT_EQ(app.status, 200) << app.body;

  // The baseline runs first, on the quiet stack (after the import, the
  // email delivery would still compete with it).
  absl::Duration copy;
  if (n <= kMaxCopyRows && std::getenv("IMPORT_BENCH_NO_COPY") == nullptr) {
    copy = CopyBaseline(stack, n);
  }

  std::map<std::string, pid_t> pids;
  std::map<std::string, long> before_kb, max_rss_kb;
  for (const char* s : kServices) {
    pids[s] = stack.process(s).pid();
    before_kb[s] = ProcStatusKb(pids[s], "VmRSS");
  }
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      for (const char* s : kServices) {
        max_rss_kb[s] = std::max(max_rss_kb[s], ProcStatusKb(pids[s], "VmRSS"));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  });
  // Joined on every way out (an ASSERT returns early).
  struct Joiner {
    std::atomic<bool>& flag;
    std::thread& thread;
    ~Joiner() {
      flag = false;
      if (thread.joinable()) thread.join();
    }
  } joiner{sampling, sampler};

  auto stub = identity::v1::IdentityService::NewStub(
      stack.Channel(stack.identity_addr()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + admin);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(1));
  identity::v1::ImportReport report;
  const absl::Time start = absl::Now();
  {
    auto writer = stub->ImportUsers(&ctx, &report);
    identity::v1::ImportUsersRequest req;
    auto* options = req.mutable_options();
    options->set_workspace_id(ws);
    options->set_mode(identity::v1::ALL_OR_NOTHING);
    options->set_send_emails(true);
    bool open = writer->Write(req);
    std::string chunk =
        "username,first_name,last_name,role,user-group-1,user-group-2,"
        "sales-dashboard,delete,metadata\r\n";
    for (int i = 0; open && i < n; ++i) {
      absl::StrAppend(&chunk, "guest", i, "@bench.example,First", i, ",Last", i,
                      ",guest,Partners,Agencies,guest,,\r\n");
      if (chunk.size() >= (1u << 20) || i + 1 == n) {
        identity::v1::ImportUsersRequest part;
        part.set_chunk(std::move(chunk));
        open = writer->Write(part);
        chunk.clear();
      }
    }
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    ASSERT_TRUE(status.ok())
        << status.error_code() << " " << status.error_message();
  }
  const double import_s = absl::ToDoubleSeconds(absl::Now() - start);
  EXPECT_EQ(report.state(), identity::v1::ImportReport::SUCCEEDED);
  EXPECT_EQ(report.created(), n);
  // The emails drain from identity's outbox meanwhile.
  absl::SleepFor(absl::Seconds(drain_s));
  sampling = false;
  sampler.join();

  std::printf("import_stack_bench rows=%d import=%.2fs created=%d\n", n,
              import_s, report.created());
  // Identity logs where the time went (upload, check, apply, commit).
  for (absl::string_view line : absl::StrSplit(stack.Logs(), '\n')) {
    if (absl::StrContains(line, "finished: rows")) {
      std::printf("import_stack_bench phases: %s\n", std::string(line).c_str());
    }
  }
  for (const char* s : kServices) {
    const long hwm = ProcStatusKb(pids[s], "VmHWM");
    std::printf(
        "import_stack_bench %s: VmRSS before %ld MiB, max sampled %ld MiB, "
        "VmHWM %ld MiB\n",
        s, before_kb[s] / 1024, max_rss_kb[s] / 1024, hwm / 1024);
    EXPECT_LE(hwm, 300 * 1024) << s << " peak resident memory";
  }
  if (copy > absl::ZeroDuration()) {
    std::printf(
        "import_stack_bench rows=%d import=%.2fs copy_all_tables=%.2fs "
        "ratio=%.2f\n",
        n, import_s, absl::ToDoubleSeconds(copy),
        import_s / absl::ToDoubleSeconds(copy));
    // Issue #7's targets for 100,000 rows, on an otherwise idle machine.
    EXPECT_LE(import_s, 2 * absl::ToDoubleSeconds(copy));
    if (n <= 100000) {
      EXPECT_LE(import_s, 10.0);
    }
  }
}

}  // namespace
}  // namespace guestlist
