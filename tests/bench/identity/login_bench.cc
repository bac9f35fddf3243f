// 200 concurrent logins against the real identity binary (Stack): the
// process's peak RSS (VmHWM from /proc/<pid>/status) before and after, RSS
// sampled during the burst, and the completion-time distribution, which
// shows how many argon2id hashes (19 MiB each) ran at once: with a cap of C
// the first login finishes after about one hash and the rest follow C per
// hash time; without a cap all would finish together near the end. A
// second part runs the service's PasswordHasher in this process with 200
// threads and reads its peak_concurrency() directly. Figures in
// docs/BENCHMARKS.md.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/identity/domain/password.h"
#include "tests/bench/identity/bench_util.h"

ABSL_FLAG(int, concurrent, 200, "logins started at once");
ABSL_FLAG(int, rounds, 3, "bursts");

namespace guestlist::bench {
namespace {

struct Burst {
  std::vector<int64_t> done_us;  // completion times from the start, sorted
  int ok = 0;
  std::string first_error;
};

Burst LoginBurst(const std::string& addr, const BenchWorkspace& ws, int n) {
  std::vector<std::unique_ptr<iv1::IdentityService::Stub>> stubs;
  for (int i = 0; i < 8; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("bench_channel", i);
    stubs.push_back(iv1::IdentityService::NewStub(grpc::CreateCustomChannel(
        addr, grpc::InsecureChannelCredentials(), args)));
  }
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  Burst b;
  std::vector<std::thread> ts;
  absl::Time start;
  for (int i = 0; i < n; ++i) {
    ts.emplace_back([&, i] {
      iv1::LoginRequest req;
      req.set_workspace_id(ws.id);
      req.set_username(ws.admin_username);
      req.set_password(kAdminPassword);
      iv1::Session s;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(300));
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return go; });
      }
      grpc::Status st = stubs[i % stubs.size()]->Login(&ctx, req, &s);
      const int64_t t = absl::ToInt64Microseconds(absl::Now() - start);
      std::lock_guard<std::mutex> l(mu);
      if (st.ok()) {
        ++b.ok;
        b.done_us.push_back(t);
      } else if (b.first_error.empty()) {
        b.first_error = absl::StrCat(st.error_code(), " ", st.error_message());
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(200));  // let every thread park
  {
    std::lock_guard<std::mutex> l(mu);
    start = absl::Now();
    go = true;
  }
  cv.notify_all();
  for (auto& t : ts) t.join();
  std::sort(b.done_us.begin(), b.done_us.end());
  return b;
}

int Main() {
  testing::Stack stack;
  auto identity =
      iv1::IdentityService::NewStub(stack.Channel(stack.identity_addr()));
  BenchWorkspace ws = CreateWorkspace(stack, *identity, "benchlogin");
  const int pid = stack.process("identity").pid();
  std::printf("cores: %u; identity pid %d\n",
              std::thread::hardware_concurrency(), pid);

  // One login at a time: the time of one hash (+ RPC + session insert).
  std::vector<int64_t> single;
  for (int i = 0; i < 10; ++i) {
    iv1::LoginRequest req;
    req.set_workspace_id(ws.id);
    req.set_username(ws.admin_username);
    req.set_password(kAdminPassword);
    iv1::Session s;
    grpc::ClientContext ctx;
    const absl::Time a = absl::Now();
    grpc::Status st = identity->Login(&ctx, req, &s);
    if (!st.ok()) Die("Login", st);
    single.push_back(absl::ToInt64Microseconds(absl::Now() - a));
  }
  std::sort(single.begin(), single.end());
  const double h_ms = Pct(single, 50) / 1000.0;
  std::printf("sequential login: p50 %.1f ms, min %.1f ms  load %s\n", h_ms,
              single.front() / 1000.0, Load().c_str());
  std::printf("before bursts: VmRSS %lld kB, VmHWM %lld kB\n",
              static_cast<long long>(ProcStatusKb(pid, "VmRSS")),
              static_cast<long long>(ProcStatusKb(pid, "VmHWM")));
  std::fflush(stdout);

  const int n = absl::GetFlag(FLAGS_concurrent);
  for (int round = 1; round <= absl::GetFlag(FLAGS_rounds); ++round) {
    std::atomic<bool> stop{false};
    int64_t max_rss = 0;
    std::thread sampler([&] {
      while (!stop) {
        max_rss = std::max(max_rss, ProcStatusKb(pid, "VmRSS"));
        absl::SleepFor(absl::Milliseconds(2));
      }
    });
    const int64_t rss_before = ProcStatusKb(pid, "VmRSS");
    Burst b = LoginBurst(stack.identity_addr(), ws, n);
    stop = true;
    sampler.join();
    const auto& d = b.done_us;
    if (d.empty()) {
      std::printf("round %d: no login succeeded: %s\n", round,
                  b.first_error.c_str());
      continue;
    }
    const double total_ms = d.back() / 1000.0;
    // Effective parallelism: logins finished per hash time.
    const double per_hash = d.size() * h_ms / total_ms;
    std::printf(
        "round %d: %d/%d ok%s%s; completion ms: first %.1f, p10 %.1f, p50 "
        "%.1f, p90 %.1f, p99 %.1f, last %.1f; logins per hash time %.2f; "
        "VmRSS before %lld kB, max sampled during %lld kB, VmHWM after %lld "
        "kB  load %s\n",
        round, b.ok, n,
        b.first_error.empty() ? "" : "; first error: ", b.first_error.c_str(),
        d.front() / 1000.0, Pct(d, 10) / 1000.0, Pct(d, 50) / 1000.0,
        Pct(d, 90) / 1000.0, Pct(d, 99) / 1000.0, total_ms, per_hash,
        static_cast<long long>(rss_before), static_cast<long long>(max_rss),
        static_cast<long long>(ProcStatusKb(pid, "VmHWM")), Load().c_str());
    // Completions per 1/10 of the burst: flat under a cap, one spike at
    // the end without one.
    std::vector<int> hist(10);
    for (int64_t t : d) {
      hist[std::min<int64_t>(9, t * 10 / (d.back() + 1))]++;
    }
    std::printf("  completions per tenth of the burst:");
    for (int h : hist) std::printf(" %d", h);
    std::printf("\n");
    std::fflush(stdout);
  }

  // The hasher alone, in this process: the cap observed directly.
  identity::PasswordHasher hasher;
  const int64_t hwm_before = ProcStatusKb(getpid(), "VmHWM");
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  const absl::Time a = absl::Now();
  for (int i = 0; i < n; ++i) {
    ts.emplace_back([&, i] {
      auto h = hasher.Hash(absl::StrCat("password-", i));
      if (!h.ok()) ++failures;
    });
  }
  for (auto& t : ts) t.join();
  std::printf(
      "in-process PasswordHasher, %d threads: max_concurrent %d, "
      "peak_concurrency %d, failures %d, %.1f s; bench VmHWM %lld -> %lld "
      "kB\n",
      n, hasher.max_concurrent(), hasher.peak_concurrency(), failures.load(),
      absl::ToDoubleSeconds(absl::Now() - a),
      static_cast<long long>(hwm_before),
      static_cast<long long>(ProcStatusKb(getpid(), "VmHWM")));
  return 0;
}

}  // namespace
}  // namespace guestlist::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return guestlist::bench::Main();
}
