// InviteUser end to end on the real binaries (Stack): identity, membership
// ApplyGrants (one group + one app privilege per invite), the invitation
// email through identity's outbox into notification's queue. Measures
// (1) the sustained closed-loop rate and (2) latency at a fixed offered
// rate with open-loop pacing (latency counted from the scheduled send time,
// so a stalled server is not hidden by a waiting client). Figures in
// docs/BENCHMARKS.md.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/bench/identity/bench_util.h"

ABSL_FLAG(int, warmup, 300, "invites before measuring");
ABSL_FLAG(std::string, closed_threads, "16,48",
          "closed-loop concurrency levels for the sustained rate");
ABSL_FLAG(int, closed_seconds, 15, "seconds per closed-loop level");
ABSL_FLAG(std::string, rates, "500", "open-loop offered rates (per second)");
ABSL_FLAG(int, open_seconds, 20, "seconds per open-loop rate");
ABSL_FLAG(int, open_workers, 128, "client threads of the open-loop driver");
ABSL_FLAG(int, pause_seconds, 0,
          "keep the stack up this long at the end (psql / EXPLAIN by hand)");

namespace guestlist::bench {
namespace {

struct Target {
  BenchWorkspace ws;
  std::string group_id;
  std::string app_id;
};

class Inviter {
 public:
  Inviter(std::shared_ptr<grpc::Channel> channel, Target target)
      : stub_(iv1::IdentityService::NewStub(channel)), t_(std::move(target)) {}

  // One invite; true if OK.
  bool Invite(int64_t n, grpc::Status* out = nullptr) {
    iv1::InviteUserRequest req;
    req.set_workspace_id(t_.ws.id);
    req.set_email(absl::StrCat("guest", n, "@partner.example"));
    req.set_first_name("Guest");
    req.set_last_name(absl::StrCat("Number", n));
    req.set_kind(iv1::GUEST);
    req.add_group_ids(t_.group_id);
    auto* p = req.add_app_privileges();
    p->set_app_id(t_.app_id);
    p->set_privilege(iv1::AppPrivilegeGrant::GUEST);
    req.set_send_email(true);
    req.set_idempotency_key(absl::StrCat("bench-invite-", n));
    iv1::Invitation inv;
    grpc::ClientContext ctx;
    Authorize(&ctx, t_.ws.admin_token, 10000);
    grpc::Status st = stub_->InviteUser(&ctx, req, &inv);
    if (out != nullptr) *out = st;
    return st.ok() && !inv.invitation_url().empty();
  }

 private:
  std::unique_ptr<iv1::IdentityService::Stub> stub_;
  Target t_;
};

struct Summary {
  double achieved = 0;
  int64_t ok = 0, errors = 0;
  int64_t p50 = 0, p90 = 0, p99 = 0, max = 0;
  std::string first_error;
};

void Print(const std::string& label, const Summary& s) {
  std::printf(
      "%-28s achieved %8.1f/s  ok %7lld  errors %5lld  p50 %6.2f ms  "
      "p90 %6.2f ms  p99 %7.2f ms  max %7.2f ms  load %s\n",
      label.c_str(), s.achieved, static_cast<long long>(s.ok),
      static_cast<long long>(s.errors), s.p50 / 1000.0, s.p90 / 1000.0,
      s.p99 / 1000.0, s.max / 1000.0, Load().c_str());
  if (!s.first_error.empty())
    std::printf("  first error: %s\n", s.first_error.c_str());
  std::fflush(stdout);
}

Summary Finish(std::vector<std::vector<int64_t>>& lat, int64_t errors,
               double seconds, const std::string& first_error) {
  std::vector<int64_t> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  Summary s;
  s.ok = static_cast<int64_t>(all.size());
  s.errors = errors;
  s.achieved = s.ok / seconds;
  s.p50 = Pct(all, 50);
  s.p90 = Pct(all, 90);
  s.p99 = Pct(all, 99);
  s.max = all.empty() ? 0 : all.back();
  s.first_error = first_error;
  return s;
}

std::atomic<int64_t> g_next{1};

Summary ClosedLoop(std::vector<std::unique_ptr<Inviter>>& inviters, int threads,
                   absl::Duration d) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> errors{0};
  std::vector<std::vector<int64_t>> lat(threads);
  std::string first_error;
  std::mutex mu;
  std::vector<std::thread> ts;
  const absl::Time start = absl::Now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      Inviter& inv = *inviters[t % inviters.size()];
      while (!stop.load()) {
        const absl::Time a = absl::Now();
        grpc::Status st;
        if (inv.Invite(g_next++, &st)) {
          lat[t].push_back(absl::ToInt64Microseconds(absl::Now() - a));
        } else {
          ++errors;
          std::lock_guard<std::mutex> l(mu);
          if (first_error.empty()) first_error = st.error_message();
        }
      }
    });
  }
  absl::SleepFor(d);
  stop = true;
  for (auto& t : ts) t.join();
  return Finish(lat, errors, absl::ToDoubleSeconds(absl::Now() - start),
                first_error);
}

// Request i is due at start + i / rate; worker w sends i = w, w + W, ...
// Latency runs from the due time.
Summary OpenLoop(std::vector<std::unique_ptr<Inviter>>& inviters, int workers,
                 double rate, absl::Duration d) {
  const int64_t total = static_cast<int64_t>(rate * absl::ToDoubleSeconds(d));
  std::atomic<int64_t> errors{0};
  std::atomic<int64_t> late{0};
  std::vector<std::vector<int64_t>> lat(workers);
  std::string first_error;
  std::mutex mu;
  const int64_t base = g_next.fetch_add(total);
  const absl::Time start = absl::Now() + absl::Milliseconds(50);
  std::vector<std::thread> ts;
  for (int w = 0; w < workers; ++w) {
    ts.emplace_back([&, w] {
      Inviter& inv = *inviters[w % inviters.size()];
      for (int64_t i = w; i < total; i += workers) {
        const absl::Time due = start + absl::Seconds(i / rate);
        const absl::Time now = absl::Now();
        if (due > now) {
          absl::SleepFor(due - now);
        } else if (now - due > absl::Milliseconds(1)) {
          ++late;
        }
        grpc::Status st;
        if (inv.Invite(base + i, &st)) {
          lat[w].push_back(absl::ToInt64Microseconds(absl::Now() - due));
        } else {
          ++errors;
          std::lock_guard<std::mutex> l(mu);
          if (first_error.empty()) first_error = st.error_message();
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  Summary s = Finish(lat, errors, absl::ToDoubleSeconds(absl::Now() - start),
                     first_error);
  std::printf("  (sends started >1 ms after their due time: %lld of %lld)\n",
              static_cast<long long>(late.load()),
              static_cast<long long>(total));
  return s;
}

int64_t PsqlInt(testing::Stack& stack, const std::string& sql,
                const std::string& db) {
  std::string out = stack.postgres().Psql(sql, db);
  int64_t v = -1;
  (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &v);
  return v;
}

int Main() {
  testing::Stack::Options options;
  // Delivery is not what is measured here: keep the default file sink.
  testing::Stack stack(options);
  auto channel = stack.Channel(stack.identity_addr());
  auto identity = iv1::IdentityService::NewStub(channel);
  Target target;
  target.ws = CreateWorkspace(stack, *identity, "benchinvite", 1000000);
  auto membership =
      mv1::MembershipService::NewStub(stack.Channel(stack.membership_addr()));
  // Membership learns of the workspace through identity's outbox.
  for (int i = 0; i < 100; ++i) {
    mv1::CreateGroupRequest req;
    req.set_workspace_id(target.ws.id);
    req.mutable_group()->set_name("Partners");
    req.mutable_group()->set_visibility(mv1::Group::OPEN);
    mv1::Group g;
    grpc::ClientContext ctx;
    Authorize(&ctx, target.ws.admin_token);
    grpc::Status st = membership->CreateGroup(&ctx, req, &g);
    if (st.ok()) {
      target.group_id = g.id();
      break;
    }
    if (st.error_code() != grpc::StatusCode::NOT_FOUND) Die("CreateGroup", st);
    absl::SleepFor(absl::Milliseconds(100));
  }
  {
    mv1::CreateAppRequest req;
    req.set_workspace_id(target.ws.id);
    req.mutable_app()->set_slug("reports");
    req.mutable_app()->set_name("Reports");
    mv1::App app;
    grpc::ClientContext ctx;
    Authorize(&ctx, target.ws.admin_token);
    grpc::Status st = membership->CreateApp(&ctx, req, &app);
    if (!st.ok()) Die("CreateApp", st);
    target.app_id = app.id();
  }
  // A few channels so one HTTP/2 connection is not the bottleneck.
  std::vector<std::unique_ptr<Inviter>> inviters;
  for (int i = 0; i < 4; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("bench_channel", i);  // distinct subchannels
    inviters.push_back(std::make_unique<Inviter>(
        grpc::CreateCustomChannel(stack.identity_addr(),
                                  grpc::InsecureChannelCredentials(), args),
        target));
  }
  {
    grpc::Status st;
    if (!inviters[0]->Invite(g_next++, &st)) Die("first InviteUser", st);
  }
  std::printf("warm-up: %d invites\n", absl::GetFlag(FLAGS_warmup));
  Print("warm-up (16 threads)", ClosedLoop(inviters, 16, absl::Seconds(1)));
  const absl::Time t0 = absl::Now();
  while (g_next < absl::GetFlag(FLAGS_warmup) &&
         absl::Now() - t0 < absl::Seconds(30)) {
    ClosedLoop(inviters, 16, absl::Milliseconds(500));
  }
  for (absl::string_view c :
       absl::StrSplit(absl::GetFlag(FLAGS_closed_threads), ',')) {
    int threads = 0;
    if (!absl::SimpleAtoi(c, &threads)) continue;
    Print(absl::StrCat("closed loop, ", threads, " threads"),
          ClosedLoop(inviters, threads,
                     absl::Seconds(absl::GetFlag(FLAGS_closed_seconds))));
  }
  for (absl::string_view r : absl::StrSplit(absl::GetFlag(FLAGS_rates), ',')) {
    double rate = 0;
    if (!absl::SimpleAtod(r, &rate)) continue;
    Print(absl::StrCat("open loop, offered ", rate, "/s"),
          OpenLoop(inviters, absl::GetFlag(FLAGS_open_workers), rate,
                   absl::Seconds(absl::GetFlag(FLAGS_open_seconds))));
  }
  // Every invite's email must reach notification's queue: identity's outbox
  // drains into notification.messages (template invitation).
  const int64_t invited =
      PsqlInt(stack, "SELECT count(*) FROM identity.invitations", "identity");
  const absl::Time drain_start = absl::Now();
  int64_t queued = 0, pending = 0;
  while (absl::Now() - drain_start < absl::Seconds(120)) {
    pending =
        PsqlInt(stack, "SELECT count(*) FROM identity.outbox WHERE NOT dead",
                "identity");
    queued = PsqlInt(stack,
                     "SELECT count(*) FROM notification.messages WHERE "
                     "template = 'invitation'",
                     "notification");
    if (pending == 0 && queued >= invited) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  const int64_t grants = PsqlInt(
      stack, "SELECT count(*) FROM membership.group_members", "membership");
  std::printf(
      "invitations in identity: %lld; invitation emails in notification's "
      "queue: %lld (outbox rows pending: %lld, drained %.1f s after the "
      "last call); membership group_members rows: %lld\n",
      static_cast<long long>(invited), static_cast<long long>(queued),
      static_cast<long long>(pending),
      absl::ToDoubleSeconds(absl::Now() - drain_start),
      static_cast<long long>(grants));
  const int pause = absl::GetFlag(FLAGS_pause_seconds);
  if (pause > 0) {
    std::printf("holding the stack %d s: %s (workspace %s)\n", pause,
                stack.postgres().ConnInfo("membership").c_str(),
                target.ws.id.c_str());
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
