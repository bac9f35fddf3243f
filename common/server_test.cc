// ServiceRunner over a real socket: health, drain on SIGTERM, resource
// quota. A slow handler stands in for an in-flight call.
#include "common/server.h"

#include <grpcpp/grpcpp.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"

namespace guestlist {
namespace {

namespace idv1 = ::guestlist::identity::v1;

class SlowIdentity final : public idv1::IdentityService::Service {
 public:
  grpc::Status GetWorkspace(grpc::ServerContext* context,
                            const idv1::GetWorkspaceRequest* request,
                            idv1::Workspace* response) override {
    RequestScope scope(context, "GetWorkspace");
    started.Notify();
    absl::SleepFor(absl::Milliseconds(700));
    response->set_id(request->workspace_id());
    return scope.Done(grpc::Status::OK);
  }
  absl::Notification started;
};

TEST(ServerTest, HealthServingThenDrainsInFlightCallOnSigterm) {
  BlockTerminationSignals();
  SlowIdentity service;
  ServiceRunner runner(
      {.service_name = "test",
       .listen_address = "127.0.0.1:0",
       .grace = absl::Seconds(5),
       .health_names = {"guestlist.identity.v1.IdentityService"}});
  runner.AddService(&service);
  bool hook_ran = false;
  runner.AddShutdownHook([&] { hook_ran = true; });
  absl::StatusOr<int> port = runner.Start();
  ASSERT_TRUE(port.ok()) << port.status();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", *port),
                                     grpc::InsecureChannelCredentials());

  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const char* name : {"", "guestlist.identity.v1.IdentityService"}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(name);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }

  grpc::Status call_status;
  idv1::Workspace workspace;
  std::thread call([&] {
    auto stub = idv1::IdentityService::NewStub(channel);
    grpc::ClientContext ctx;
    idv1::GetWorkspaceRequest req;
    req.set_workspace_id("w1");
    call_status = stub->GetWorkspace(&ctx, req, &workspace);
  });
  service.started.WaitForNotification();
  runner.RequestShutdown();
  EXPECT_EQ(runner.WaitForShutdown(), 0);
  call.join();
  EXPECT_TRUE(call_status.ok()) << call_status.error_message();
  EXPECT_EQ(workspace.id(), "w1");
  EXPECT_TRUE(hook_ran);
}

TEST(ServerTest, ListenFailureNamesTheAddress) {
  ServiceRunner first({.service_name = "one", .listen_address = "127.0.0.1:0"});
  absl::StatusOr<int> port = first.Start();
  ASSERT_TRUE(port.ok());
  ServiceRunner second({.service_name = "two",
                        .listen_address = absl::StrCat("127.0.0.1:", *port)});
  absl::StatusOr<int> taken = second.Start();
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(taken.status().message().find(absl::StrCat(*port)),
            std::string::npos);
}

}  // namespace
}  // namespace guestlist
