// Check benchmark: 100,000 users, 10,000 groups, 1,000,000 memberships in a
// throwaway PostgreSQL; Zipf-skewed (user, group) lookups through the real
// gRPC server; Check throughput and latency vs an empty RPC (a BatchCheck
// with no checks: same server, same auth and request scope, no database)
// measured in the same run.
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/migrations.h"
#include "common/outbox.h"
#include "common/service_flags.h"
#include "services/membership/api/service.h"
#include "services/membership/migrations.h"
#include "tests/testing/postgres.h"

ABSL_FLAG(int, users, 100000, "users");
ABSL_FLAG(int, groups, 10000, "groups");
ABSL_FLAG(int, members_per_group, 100, "memberships per group");
ABSL_FLAG(int, threads, 16, "client threads");
ABSL_FLAG(int, seconds, 5, "seconds per measurement");
ABSL_FLAG(double, zipf_s, 1.0, "Zipf exponent");
ABSL_FLAG(bool, cache, true, "serve Check through the CheckCache");
ABSL_FLAG(int, warmup_seconds, 3, "Check warm-up before measuring");
ABSL_FLAG(int, rate, 10000,
          "open-loop offered rate (per second) for the latency phases; 0 "
          "skips them");

namespace guestlist::membership {
namespace {

constexpr char kSecret[] = "bench-internal";

class InternalOnly final : public Authenticator {
 public:
  absl::StatusOr<Principal> Authenticate(
      const grpc::ServerContextBase& ctx) override {
    if (HasInternalCredential(ctx, kSecret)) return InternalPrincipal();
    return absl::UnauthenticatedError("internal only");
  }
  bool AnswersFromMemory(const grpc::ServerContextBase&) override {
    return true;
  }
};

// Deterministic UUIDs the SQL generator produces too.
std::string UserId(int i) {
  return absl::StrFormat("00000000-0000-4000-8000-%012d", i);
}
std::string GroupId(int i) {
  return absl::StrFormat("00000000-0000-4000-9000-%012d", i);
}

// Zipf sampler over [1, n] by inverse CDF on a precomputed table.
class Zipf {
 public:
  Zipf(int n, double s) : cdf_(n) {
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += 1.0 / std::pow(i + 1, s);
    double acc = 0;
    for (int i = 0; i < n; ++i) {
      acc += 1.0 / std::pow(i + 1, s) / sum;
      cdf_[i] = acc;
    }
  }
  int operator()(std::mt19937_64& rng) const {
    double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), u) -
                            cdf_.begin()) +
           1;
  }

 private:
  std::vector<double> cdf_;
};

// CPU seconds (user + system) of this process so far: server and client.
double ProcessCpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The `percent` percentile of `v`, sorting it; 0 when empty.
double Percentile(std::vector<int64_t>& v, int percent) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() * percent / 100];
}

struct Result {
  double cpu_us_per_call = 0;  // this process's CPU per call
  double qps;
  double p50_us, p99_us;
  // Open loop only: p99 of the call alone (from its actual send) and of
  // the driver's lateness in sending it, which the due-time p99 includes.
  double p99_from_send_us = 0, p99_send_lag_us = 0;
  int64_t calls, errors, allowed;
};

// Runs `call` from `threads` threads for `duration`. Each phase seeds its
// threads differently: with the same seeds, the measured phase replayed the
// warm-up's exact (user, group) sequence, so every draw the warm-up had
// reached was a cache hit and the Zipf tail was hidden.
template <typename Fn>
Result Measure(int phase, int threads, absl::Duration duration, Fn call) {
  std::atomic<bool> stop{false};
  std::vector<std::vector<int64_t>> lat(threads);
  std::vector<int64_t> errors(threads), allowed(threads);
  std::vector<std::thread> ts;
  const absl::Time start = absl::Now();
  const double cpu0 = ProcessCpuSeconds();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(phase * 1000003 + t * 7919 + 1);
      lat[t].reserve(1 << 20);
      while (!stop.load(std::memory_order_relaxed)) {
        const absl::Time a = absl::Now();
        int r = call(t, rng);
        lat[t].push_back(absl::ToInt64Microseconds(absl::Now() - a));
        if (r < 0) ++errors[t];
        if (r > 0) ++allowed[t];
      }
    });
  }
  absl::SleepFor(duration);
  stop = true;
  for (auto& t : ts) t.join();
  const double cpu = ProcessCpuSeconds() - cpu0;
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<int64_t> all;
  Result r{};
  for (int t = 0; t < threads; ++t) {
    all.insert(all.end(), lat[t].begin(), lat[t].end());
    r.errors += errors[t];
    r.allowed += allowed[t];
  }
  r.calls = static_cast<int64_t>(all.size());
  r.qps = r.calls / secs;
  r.cpu_us_per_call = 1e6 * cpu / std::max<int64_t>(1, r.calls);
  r.p50_us = Percentile(all, 50);
  r.p99_us = Percentile(all, 99);
  return r;
}

// Open loop: call i is due at start + i / rate and its latency counts from
// the due time, so a stall shows up in the percentiles instead of slowing
// the offered load (no coordinated omission). Calls are asynchronous: one
// thread sends, one reaps completions, so the driver costs two threads
// rather than one blocked thread per call in flight.
template <typename Request, typename Response, typename Start>
Result OpenLoop(int phase, int rate, absl::Duration duration,
                Start start_call) {
  struct Call {
    grpc::ClientContext ctx;
    Response resp;
    grpc::Status status;
    absl::Time due;
    absl::Time sent;
  };
  grpc::CompletionQueue cq;
  const int64_t total =
      static_cast<int64_t>(rate * absl::ToDoubleSeconds(duration));
  std::vector<int64_t> lat, from_send, lag;
  lat.reserve(total);
  from_send.reserve(total);
  lag.reserve(total);
  Result r{};
  std::thread reaper([&] {
    void* tag;
    bool ok;
    for (int64_t done = 0; done < total && cq.Next(&tag, &ok); ++done) {
      std::unique_ptr<Call> c(static_cast<Call*>(tag));
      const absl::Time now = absl::Now();
      lat.push_back(absl::ToInt64Microseconds(now - c->due));
      from_send.push_back(absl::ToInt64Microseconds(now - c->sent));
      lag.push_back(absl::ToInt64Microseconds(c->sent - c->due));
      if (!ok || !c->status.ok()) {
        if (r.errors++ == 0) {
          fprintf(stderr, "first error: %d %s\n", c->status.error_code(),
                  c->status.error_message().c_str());
        }
      }
    }
  });
  std::mt19937_64 rng(phase * 1000003 + 1);
  const absl::Time start = absl::Now();
  const double cpu0 = ProcessCpuSeconds();
  for (int64_t i = 0; i < total; ++i) {
    auto c = std::make_unique<Call>();
    c->due = start + absl::Seconds(i) / rate;
    const absl::Time now = absl::Now();
    if (c->due > now) absl::SleepFor(c->due - now);
    c->ctx.AddMetadata(kInternalTokenKey, kSecret);
    c->sent = absl::Now();
    start_call(i, rng, &c->ctx, &cq)->Finish(&c->resp, &c->status, c.get());
    c.release();
  }
  reaper.join();
  cq.Shutdown();
  const double cpu = ProcessCpuSeconds() - cpu0;
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  r.calls = static_cast<int64_t>(lat.size());
  r.qps = r.calls / secs;
  r.cpu_us_per_call = 1e6 * cpu / std::max<int64_t>(1, r.calls);
  r.p50_us = Percentile(lat, 50);
  r.p99_us = Percentile(lat, 99);
  r.p99_from_send_us = Percentile(from_send, 99);
  r.p99_send_lag_us = Percentile(lag, 99);
  return r;
}

int Main() {
  // As ServiceRunner does in optimised builds.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const int users = absl::GetFlag(FLAGS_users);
  const int groups = absl::GetFlag(FLAGS_groups);
  const int per_group = absl::GetFlag(FLAGS_members_per_group);
  const int threads = absl::GetFlag(FLAGS_threads);
  guestlist::testing::TestPostgres db;
  pg::Pool pool({.conninfo = db.ConnInfo(),
                 .max_size = 32,
                 .statement_timeout = absl::ZeroDuration()});
  std::vector<Migration> m = Migrations();
  m.push_back(CommonTablesMigration("membership"));
  absl::Status s = RunMigrations(pool, "membership", m);
  if (!s.ok()) {
    fprintf(stderr, "migrate: %s\n", s.ToString().c_str());
    return 1;
  }
  const std::string ws = "00000000-0000-4000-a000-000000000001";
  const absl::Time load_start = absl::Now();
  // Failures throw nothing and exit nothing: Main returns, so the
  // throwaway cluster is stopped and removed by TestPostgres.
  bool load_ok = true;
  auto exec = [&](const std::string& sql) {
    if (!load_ok) return;
    auto r = pool.Exec(sql);
    if (!r.ok()) {
      fprintf(stderr, "load: %s\n", r.status().ToString().c_str());
      load_ok = false;
    }
  };
  exec(absl::StrCat("INSERT INTO membership.workspaces VALUES ('", ws,
                    "', 1000000, true, 1, now())"));
  // 1% admins, 59% members, 40% guests; 1% suspended.
  exec(absl::StrCat(
      "INSERT INTO membership.users (id, workspace_id, username, email, kind,"
      " status, version) SELECT ('00000000-0000-4000-8000-' || "
      "lpad(i::text, 12, '0'))::uuid, '",
      ws,
      "', 'user' || i, 'user' || i || "
      "'@bench.test', CASE WHEN i % 100 = 0 THEN 1 WHEN i % 10 < 6 THEN 2 "
      "ELSE 3 END, CASE WHEN i % 100 = 7 THEN 4 ELSE 3 END, 1 FROM "
      "generate_series(1, ",
      users, ") i"));
  exec(absl::StrCat(
      "INSERT INTO membership.groups (id, workspace_id, name, visibility) "
      "SELECT ('00000000-0000-4000-9000-' || lpad(i::text, 12, '0'))::uuid, '",
      ws, "', 'group ' || i, 1 + i % 3 FROM generate_series(1, ", groups,
      ") i"));
  exec(absl::StrCat(
      "INSERT INTO membership.group_members (group_id, user_id, role) SELECT "
      "('00000000-0000-4000-9000-' || lpad(g::text, 12, '0'))::uuid, "
      "('00000000-0000-4000-8000-' || lpad((1 + (g::bigint * 7919 + k::bigint "
      "* 104729) % ",
      users,
      ")::text, 12, '0'))::uuid, CASE WHEN k = 1 THEN 2 ELSE 1 END "
      "FROM generate_series(1, ",
      groups, ") g, generate_series(1, ", per_group,
      ") k ON CONFLICT DO NOTHING"));
  exec("ANALYZE membership.users");
  exec("ANALYZE membership.groups");
  exec("ANALYZE membership.group_members");
  if (!load_ok) return 1;
  auto count = pool.Exec("SELECT count(*) FROM membership.group_members");
  printf("loaded %d users, %d groups, %lld memberships in %.1f s\n", users,
         groups, static_cast<long long>(count->GetInt(0, 0)),
         absl::ToDoubleSeconds(absl::Now() - load_start));

  InternalOnly auth;
  SystemClock clock;
  const absl::Time warm_start = absl::Now();
  CheckCache cache(&pool, {});
  if (absl::GetFlag(FLAGS_cache)) {
    // A replica serves once its cache is warm (as the real server's
    // readiness does); the warm-up is timed separately.
    if (!cache.AwaitWarm(absl::Minutes(5))) {
      fprintf(stderr, "cache warm-up did not finish\n");
      return 1;
    }
    printf("cache warm-up: %.2f s\n",
           absl::ToDoubleSeconds(absl::Now() - warm_start));
  }
  MembershipServiceImpl service(&auth, &pool, &clock,
                                absl::GetFlag(FLAGS_cache) ? &cache : nullptr);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  grpc::ResourceQuota quota("membership");
  quota.SetMaxThreads(absl::GetFlag(FLAGS_max_threads));  // as the binary
  builder.SetResourceQuota(quota);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  // A few channels so client threads do not serialize on one connection.
  std::vector<std::unique_ptr<v1::MembershipService::Stub>> stubs;
  for (int i = 0; i < 4; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("bench_channel", i);  // distinct subchannels
    stubs.push_back(v1::MembershipService::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                  grpc::InsecureChannelCredentials(), args)));
  }
  Zipf zu(users, absl::GetFlag(FLAGS_zipf_s));
  Zipf zg(groups, absl::GetFlag(FLAGS_zipf_s));
  static const char* kPerms[] = {"group.view", "group.publish", "group.drive",
                                 "group.invite_guest"};
  auto check = [&](int t, std::mt19937_64& rng) {
    v1::CheckRequest req;
    req.set_user_id(UserId(zu(rng)));
    req.set_permission(kPerms[rng() % 4]);
    req.set_resource(absl::StrCat("groups/", GroupId(zg(rng))));
    v1::CheckResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata(kInternalTokenKey, kSecret);
    grpc::Status st = stubs[t % stubs.size()]->Check(&ctx, req, &resp);
    if (!st.ok()) return -1;
    return resp.allowed() ? 1 : 0;
  };
  auto empty = [&](int t, std::mt19937_64&) {
    v1::BatchCheckRequest req;
    v1::BatchCheckResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata(kInternalTokenKey, kSecret);
    return stubs[t % stubs.size()]->BatchCheck(&ctx, req, &resp).ok() ? 0 : -1;
  };
  const absl::Duration d = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  Measure(/*phase=*/1, threads,
          absl::Seconds(absl::GetFlag(FLAGS_warmup_seconds)),
          check);  // steady state: warm caches
  Result e = Measure(/*phase=*/2, threads, d, empty);
  const int64_t hits0 = cache.hits(), misses0 = cache.misses();
  Result c = Measure(/*phase=*/3, threads, d, check);
  const int64_t hits = cache.hits() - hits0, misses = cache.misses() - misses0;
  printf("threads=%d duration=%ds zipf_s=%.2f cache=%d\n", threads,
         absl::GetFlag(FLAGS_seconds), absl::GetFlag(FLAGS_zipf_s),
         absl::GetFlag(FLAGS_cache) ? 1 : 0);
  printf(
      "empty RPC: %.0f/s p50 %.0f us p99 %.0f us (errors %lld, CPU %.1f "
      "us/call)\n",
      e.qps, e.p50_us, e.p99_us, static_cast<long long>(e.errors),
      e.cpu_us_per_call);
  printf(
      "Check:     %.0f/s p50 %.0f us p99 %.0f us (errors %lld, allowed "
      "%.1f%%, CPU %.1f us/call)\n",
      c.qps, c.p50_us, c.p99_us, static_cast<long long>(c.errors),
      100.0 * c.allowed / std::max<int64_t>(1, c.calls), c.cpu_us_per_call);
  printf("Check / empty throughput: %.0f%%\n", 100.0 * c.qps / e.qps);
  printf(
      "cache lookups during Check run: %lld hits, %lld misses (%.1f%% hits)\n",
      static_cast<long long>(hits), static_cast<long long>(misses),
      100.0 * hits / std::max<int64_t>(1, hits + misses));
  const int rate = absl::GetFlag(FLAGS_rate);
  if (rate > 0) {
    // Requests are serialized when a call starts; they need not outlive it.
    const v1::BatchCheckRequest empty_request;
    Result oe = OpenLoop<v1::BatchCheckRequest, v1::BatchCheckResponse>(
        /*phase=*/4, rate, d,
        [&](int64_t i, std::mt19937_64&, grpc::ClientContext* ctx,
            grpc::CompletionQueue* cq) {
          return stubs[i % stubs.size()]->AsyncBatchCheck(ctx, empty_request,
                                                          cq);
        });
    // Drawn before the phase, so the sending thread only sends: drawing
    // and formatting on it made its sends late (a cost of the load
    // generator, not of the server).
    std::vector<v1::CheckRequest> requests(
        static_cast<size_t>(rate * absl::ToDoubleSeconds(d)));
    std::mt19937_64 draw(5 * 1000003 + 7);
    for (v1::CheckRequest& req : requests) {
      req.set_user_id(UserId(zu(draw)));
      req.set_permission(kPerms[draw() % 4]);
      req.set_resource(absl::StrCat("groups/", GroupId(zg(draw))));
    }
    Result oc = OpenLoop<v1::CheckRequest, v1::CheckResponse>(
        /*phase=*/5, rate, d,
        [&](int64_t i, std::mt19937_64&, grpc::ClientContext* ctx,
            grpc::CompletionQueue* cq) {
          return stubs[i % stubs.size()]->AsyncCheck(ctx, requests[i], cq);
        });
    printf("open loop (asynchronous client), offered %d/s:\n", rate);
    for (const auto& [name, x] :
         {std::pair<const char*, Result>{"empty RPC", oe}, {"Check    ", oc}}) {
      printf(
          "  %s: %.0f/s p50 %.0f us p99 %.0f us (errors %lld, CPU %.1f "
          "us/call; p99 from the actual send %.0f us, p99 send lag %.0f "
          "us)\n",
          name, x.qps, x.p50_us, x.p99_us, static_cast<long long>(x.errors),
          x.cpu_us_per_call, x.p99_from_send_us, x.p99_send_lag_us);
    }
  }
  server->Shutdown();
  return 0;
}

}  // namespace
}  // namespace guestlist::membership

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return guestlist::membership::Main();
}
