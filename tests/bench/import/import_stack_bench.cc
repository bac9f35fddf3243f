// The bulk import over the real suite (tests/testing/stack.h: the identity,
// membership, notification and gateway binaries on a throwaway PostgreSQL):
// N new guests (2 groups and 1 app privilege each, emails on) streamed to
// identity's ImportUsers over gRPC in 1 MiB chunks, generated on the fly.
// Prints the time to the report and each service's peak resident memory
// (VmHWM from /proc/<pid>/status, plus the largest VmRSS sampled every
// 100 ms during the import and the email drain that follows).
// IMPORT_BENCH_ROWS overrides N (default 1000000); IMPORT_BENCH_DRAIN_S the
// seconds sampled after the import (default 10).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"
#include "tests/testing/stack.h"

namespace guestlist {
namespace {

using ::guestlist::testing::HttpResponse;
using ::guestlist::testing::Stack;
using json = nlohmann::json;

constexpr char kPassword[] = "a long enough password";
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
}

}  // namespace
}  // namespace guestlist
