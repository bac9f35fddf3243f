// End-to-end checks of the foundation with the real binaries: every service
// serves health and reflection, the gateway answers /healthz, bad settings
// give one line naming the setting, SIGTERM exits 0, and a service keeps
// working after PostgreSQL restarts under it.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/stack.h"

namespace guestlist {
namespace {

using ::guestlist::testing::ChildProcess;
using ::guestlist::testing::RunfilePath;
using ::guestlist::testing::Stack;

grpc::health::v1::HealthCheckResponse::ServingStatus HealthOf(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& name) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(name);
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(&ctx, req, &resp);
  if (!s.ok()) return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  return resp.status();
}

// Lists services through server reflection with a hand-encoded request
// (field 7 list_services = ""), returning the raw response bytes.
std::string ReflectionList(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  const char request[] = {0x3a, 0x00};
  grpc::Slice slice(request, sizeof(request));
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  std::string bytes;
  if (ok) {
    std::vector<grpc::Slice> slices;
    (void)in.Dump(&slices);
    for (auto& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  call->WritesDone(reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  return bytes;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class FoundationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { stack_ = new Stack(); }
  static void TearDownTestSuite() { delete stack_; }
  static Stack* stack_;
};
Stack* FoundationTest::stack_ = nullptr;

TEST_F(FoundationTest, EveryServiceServesHealthAndReflection) {
  const std::pair<std::string, std::string> services[] = {
      {stack_->identity_addr(), "guestlist.identity.v1.IdentityService"},
      {stack_->membership_addr(), "guestlist.membership.v1.MembershipService"},
      {stack_->notification_addr(),
       "guestlist.notification.v1.NotificationService"},
  };
  for (const auto& [addr, name] : services) {
    auto channel = stack_->Channel(addr);
    EXPECT_EQ(HealthOf(channel, ""),
              grpc::health::v1::HealthCheckResponse::SERVING)
        << addr;
    EXPECT_EQ(HealthOf(channel, name),
              grpc::health::v1::HealthCheckResponse::SERVING)
        << name;
    const std::string listed = ReflectionList(channel);
    EXPECT_NE(listed.find(name), std::string::npos) << name;
    EXPECT_NE(listed.find("grpc.health.v1.Health"), std::string::npos);
  }
}

TEST_F(FoundationTest, GatewayAnswersHealthz) {
  auto r = stack_->Http("GET", "/healthz");
  EXPECT_EQ(r.status, 200);
}

TEST_F(FoundationTest, ServiceKeepsWorkingAfterPostgresRestart) {
  auto channel = stack_->Channel(stack_->identity_addr());
  stack_->postgres().Stop();
  // Readiness follows the database within a few probe periods.
  bool not_serving = false;
  for (int i = 0; i < 50 && !not_serving; ++i) {
    not_serving = HealthOf(channel, "") ==
                  grpc::health::v1::HealthCheckResponse::NOT_SERVING;
    if (!not_serving) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(not_serving);
  stack_->postgres().Start();
  bool serving = false;
  for (int i = 0; i < 50 && !serving; ++i) {
    serving =
        HealthOf(channel, "") == grpc::health::v1::HealthCheckResponse::SERVING;
    if (!serving) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(serving);
  // A real call that needs the database works again, no restart needed.
  auto r = stack_->Http(
      "POST", "/v1/workspaces",
      R"({"workspace": {"name": "after-restart", "displayName": "After",
          "licenseCount": 3}, "adminEmail": "admin@after.example",
          "adminPassword": "a long enough password"})",
      stack_->operator_token());
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST(StartupTest, BadFlagGivesOneLineNamingTheSetting) {
  char tmpl[] = "/tmp/guestlist-startup-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  for (const char* svc : {"identity", "membership", "notification"}) {
    const std::string log = dir + "/" + svc + "-flag.log";
    ChildProcess p(
        RunfilePath(absl::StrCat("services/", svc, "/", svc)), {},
        {{absl::StrCat("GUESTLIST_", absl::AsciiStrToUpper(svc), "_PORT"),
          "not-a-port"}},
        log);
    EXPECT_EQ(p.Wait(10000), 2) << svc;
    const std::string out = ReadAll(log);
    EXPECT_NE(out.find("_PORT"), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  }
}

TEST(StartupTest, UnreachableDatabaseGivesOneLineNamingTheSetting) {
  char tmpl[] = "/tmp/guestlist-startup-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  for (const char* svc : {"identity", "membership", "notification"}) {
    const std::string log = dir + "/" + svc + "-db.log";
    ChildProcess p(RunfilePath(absl::StrCat("services/", svc, "/", svc)),
                   {"--port=0", "--db_connect_wait=1s",
                    "--database_url=host=127.0.0.1 port=1 dbname=nope"},
                   {{"GUESTLIST_OPERATOR_TOKEN", "startup-test-token"}}, log);
    EXPECT_EQ(p.Wait(20000), 2) << svc;
    const std::string out = ReadAll(log);
    EXPECT_NE(out.find("DATABASE_URL"), std::string::npos) << out;
    EXPECT_EQ(out.find("Aborted"), std::string::npos) << out;
    // Structured log lines may precede it; the error itself is one line.
    EXPECT_NE(out.find(absl::StrCat(svc, ": cannot reach the database")),
              std::string::npos)
        << out;
  }
}

TEST(StartupTest, SigtermExitsZero) {
  Stack stack;
  for (const char* svc :
       {"identity", "membership", "notification", "gateway"}) {
    stack.process(svc).Signal(SIGTERM);
    EXPECT_EQ(stack.process(svc).Wait(15000), 0) << svc;
  }
}

}  // namespace
}  // namespace guestlist
