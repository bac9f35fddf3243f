// ListUsers over 1,000,000 users in one workspace, through the real identity
// binary (Stack) with an admin session: the users are bulk-loaded straight
// into identity.users after the migrations ran (per-workspace counters of
// V002 recomputed), then the first page and the page 1,000 pages deep
// (reached by following page tokens) are timed for every sort order, with
// and without a prefix query. Figures in docs/BENCHMARKS.md.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/bench/identity/bench_util.h"

ABSL_FLAG(int, users, 1000000, "users bulk-loaded into the workspace");
ABSL_FLAG(int, page_size, 50, "ListUsers page size");
ABSL_FLAG(int, depth, 1000, "pages deep for the deep-page case");
ABSL_FLAG(int, repeats, 300, "timed calls per case");
ABSL_FLAG(std::string, queries, ",mar,zo,martin.sch",
          "prefix queries, comma-separated; empty entry = no query");
ABSL_FLAG(std::string, orders,
          "email,email desc,name,name desc,createTime,createTime desc",
          "sort orders (comma-separated)");
ABSL_FLAG(int, pause_seconds, 0,
          "keep the stack up this long at the end (psql / EXPLAIN by hand)");

namespace guestlist::bench {
namespace {

// 40 x 40 names; emails first.last<i>@<domain>, so email order is not
// insertion order, and prefixes select a realistic share. One INSERT: the
// counter triggers (row-level in V002, per statement since V004) keep
// identity.user_counts right; the recount after it only double-checks.
constexpr char kLoadSql[] = R"sql(
WITH fn AS (SELECT ARRAY['Maria','Mark','Martin','Anna','Ben','Chloe','David',
  'Elena','Felix','Greta','Hugo','Ines','Jonas','Karla','Lukas','Mia','Noah',
  'Olga','Paul','Quinn','Rosa','Sven','Tara','Ugo','Vera','Wim','Xenia','Yann',
  'Zoe','Amir','Bea','Carl','Dora','Emil','Fay','Gus','Hana','Ivo','Jana',
  'Kai'] AS a),
ln AS (SELECT ARRAY['Schmidt','Muller','Schneider','Fischer','Weber','Meyer',
  'Wagner','Becker','Schulz','Hoffmann','Koch','Richter','Klein','Wolf',
  'Neumann','Schwarz','Zimmermann','Braun','Kruger','Hofmann','Hartmann',
  'Lange','Werner','Krause','Lehmann','Kohler','Martin','Smith','Jones',
  'Brown','Taylor','Wilson','Davies','Evans','Thomas','Roberts','Lopez',
  'Garcia','Rossi','Bianchi'] AS a),
dom AS (SELECT ARRAY['partner.example','agency.example','client.example',
  'vendor.example','press.example'] AS a),
g AS (SELECT i,
        (SELECT a[1 + (i * 7919) % 40] FROM fn) AS f,
        (SELECT a[1 + (i * 104729 / 40) % 40] FROM ln) AS l,
        (SELECT a[1 + i % 5] FROM dom) AS d
      FROM generate_series(1::bigint, {N}::bigint) AS i)
INSERT INTO identity.users (id, workspace_id, username, email, first_name,
  last_name, kind, status, create_time, update_time)
SELECT md5('bench-user-' || i)::uuid, '{WS}',
       lower(f || '.' || l || i || '@' || d),
       f || '.' || l || i || '@' || d, f, l,
       CASE WHEN i % 10 = 0 THEN 'MEMBER' ELSE 'GUEST' END,
       CASE WHEN i % 7 = 0 THEN 'INVITED' ELSE 'ACTIVE' END,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '31 seconds'
         + ((i * 7919) % 1000) * interval '1 millisecond',
       timestamptz '2024-01-01 00:00:00+00' + i * interval '31 seconds'
FROM g;
DELETE FROM identity.user_counts WHERE workspace_id = '{WS}';
INSERT INTO identity.user_counts (workspace_id, kind, status, n)
SELECT workspace_id, kind, status, count(*) FROM identity.users
WHERE workspace_id = '{WS}' GROUP BY 1, 2, 3;
VACUUM ANALYZE identity.users;
SELECT sum(n) FROM identity.user_counts WHERE workspace_id = '{WS}';
)sql";

struct Case {
  std::string order, query, page;
  int64_t p50, p99, max;
  int total;
  int rows;
};

int Main() {
  testing::Stack stack;
  auto identity =
      iv1::IdentityService::NewStub(stack.Channel(stack.identity_addr()));
  BenchWorkspace ws = CreateWorkspace(stack, *identity, "benchlist");
  const int n = absl::GetFlag(FLAGS_users);
  const absl::Time load_start = absl::Now();
  const std::string out = stack.postgres().Psql(
      absl::StrReplaceAll(kLoadSql,
                          {{"{N}", absl::StrCat(n)}, {"{WS}", ws.id}}),
      "identity");
  std::printf("loaded %d users in %.1f s; user_counts total: %s\n", n,
              absl::ToDoubleSeconds(absl::Now() - load_start), out.c_str());
  std::printf("table + indexes: %s\n",
              stack.postgres()
                  .Psql("SELECT pg_size_pretty(pg_total_relation_size("
                        "'identity.users'))",
                        "identity")
                  .c_str());
  std::fflush(stdout);

  auto call = [&](const iv1::ListUsersRequest& req,
                  iv1::ListUsersResponse* resp) {
    grpc::ClientContext ctx;
    Authorize(&ctx, ws.admin_token, 30000);
    grpc::Status st = identity->ListUsers(&ctx, req, resp);
    if (!st.ok()) Die("ListUsers", st);
  };
  std::vector<Case> cases;
  const int repeats = absl::GetFlag(FLAGS_repeats);
  auto time_case = [&](const iv1::ListUsersRequest& req,
                       const std::string& order, const std::string& query,
                       const std::string& page) {
    std::vector<int64_t> lat;
    iv1::ListUsersResponse resp;
    for (int i = 0; i < 20; ++i) call(req, &resp);  // warm
    for (int i = 0; i < repeats; ++i) {
      resp.Clear();
      const absl::Time a = absl::Now();
      call(req, &resp);
      lat.push_back(absl::ToInt64Microseconds(absl::Now() - a));
    }
    std::sort(lat.begin(), lat.end());
    Case c{order,
           query,
           page,
           Pct(lat, 50),
           Pct(lat, 99),
           lat.back(),
           static_cast<int>(resp.total_size()),
           resp.users_size()};
    std::printf(
        "%-16s query %-12s %-12s p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms  "
        "rows %d  totalSize %d  load %s\n",
        order.c_str(), ("\"" + query + "\"").c_str(), page.c_str(),
        c.p50 / 1000.0, c.p99 / 1000.0, c.max / 1000.0, c.rows, c.total,
        Load().c_str());
    std::fflush(stdout);
    cases.push_back(c);
  };
  // Baseline: an RPC of the same server without the database work that
  // ListUsers does (Authenticate is a single indexed lookup).
  {
    std::vector<int64_t> lat;
    for (int i = 0; i < repeats; ++i) {
      iv1::AuthenticateRequest req;
      req.set_token(ws.admin_token);
      iv1::Principal p;
      grpc::ClientContext ctx;
      Authorize(&ctx, ws.admin_token);
      const absl::Time a = absl::Now();
      grpc::Status st = identity->Authenticate(&ctx, req, &p);
      lat.push_back(absl::ToInt64Microseconds(absl::Now() - a));
      if (!st.ok()) Die("Authenticate", st);
    }
    std::sort(lat.begin(), lat.end());
    std::printf("baseline Authenticate: p50 %.2f ms  p99 %.2f ms\n",
                Pct(lat, 50) / 1000.0, Pct(lat, 99) / 1000.0);
  }
  const int depth = absl::GetFlag(FLAGS_depth);
  for (absl::string_view q_view :
       absl::StrSplit(absl::GetFlag(FLAGS_queries), ',')) {
    const std::string q(q_view);
    for (absl::string_view o_view :
         absl::StrSplit(absl::GetFlag(FLAGS_orders), ',')) {
      const std::string order(o_view);
      iv1::ListUsersRequest req;
      req.set_workspace_id(ws.id);
      req.set_order_by(order);
      req.set_query(q);
      req.set_page_size(absl::GetFlag(FLAGS_page_size));
      time_case(req, order, q, "first page");
      // Follow page tokens down to page depth + 1.
      iv1::ListUsersResponse resp;
      int pages = 0;
      const absl::Time walk = absl::Now();
      std::string token;
      for (; pages < depth; ++pages) {
        req.set_page_token(token);
        resp.Clear();
        call(req, &resp);
        token = resp.next_page_token();
        if (token.empty()) break;
      }
      if (token.empty()) {
        std::printf("%-16s query %-12s only %d pages; no deep page\n",
                    order.c_str(), ("\"" + q + "\"").c_str(), pages + 1);
        continue;
      }
      std::printf("  walked %d pages in %.1f s (%.2f ms/page)\n", depth,
                  absl::ToDoubleSeconds(absl::Now() - walk),
                  absl::ToDoubleMilliseconds(absl::Now() - walk) / depth);
      req.set_page_token(token);
      time_case(req, order, q, absl::StrCat("page ", depth + 1));
    }
  }
  int64_t worst = 0;
  for (const Case& c : cases) worst = std::max(worst, c.p99);
  std::printf("worst p99 over %zu cases: %.2f ms (target 5 ms)\n", cases.size(),
              worst / 1000.0);
  const int pause = absl::GetFlag(FLAGS_pause_seconds);
  if (pause > 0) {
    std::printf("holding the stack %d s: %s (workspace %s)\n", pause,
                stack.postgres().ConnInfo("identity").c_str(), ws.id.c_str());
    std::fflush(stdout);
    absl::SleepFor(absl::Seconds(pause));
  }
  return 0;
}

}  // namespace
}  // namespace guestlist::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return guestlist::bench::Main();
}
