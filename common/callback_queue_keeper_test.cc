// The stall CallbackQueueKeeper prevents, reproduced: gRPC's callback-API
// threads sleep 100 ms after a second without events, so a callback call
// made after a quiet second completes up to 100 ms late. Probes made after
// 1.05 s of quiet, with and without a keeper in the process.
#include "common/callback_queue_keeper.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/slowdown.h"

namespace guestlist {
namespace {

using ::guestlist::testing::kSlowdown;

class CallbackQueueKeeperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
  }
  void TearDown() override { server_->Shutdown(); }

  // One health check with the callback API; how long it took.
  absl::Duration Probe() {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext context;
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);
    grpc::ByteBuffer response;
    absl::Notification done;
    const absl::Time start = absl::Now();
    stub.UnaryCall(&context, "/grpc.health.v1.Health/Check",
                   grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status) { done.Notify(); });
    done.WaitForNotification();
    return absl::Now() - start;
  }

  // The slowest of `n` probes, each after 1.05 s without callback calls.
  absl::Duration SlowestAfterQuiet(int n) {
    absl::Duration slowest;
    Probe();
    for (int i = 0; i < n; ++i) {
      absl::SleepFor(absl::Milliseconds(1050));
      slowest = std::max(slowest, Probe());
    }
    return slowest;
  }

  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(CallbackQueueKeeperTest, CallsAfterAQuietSecondAreNotDelayed) {
  // Without a keeper, the stall this class exists for (so that a gRPC
  // version without it shows here, and the keeper can be dropped).
  const absl::Duration without = SlowestAfterQuiet(3);
  CallbackQueueKeeper keeper(channel_);
  const absl::Duration with = SlowestAfterQuiet(3);
  keeper.Stop();
  EXPECT_GE(without, absl::Milliseconds(30))
      << "gRPC's callback threads no longer sleep after a quiet second";
  EXPECT_LT(with, absl::Milliseconds(30 * kSlowdown));
}

}  // namespace
}  // namespace guestlist
