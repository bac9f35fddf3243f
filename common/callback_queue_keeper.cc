#include "common/callback_queue_keeper.h"

#include <grpcpp/generic/generic_stub.h>

namespace guestlist {

CallbackQueueKeeper::CallbackQueueKeeper(std::shared_ptr<grpc::Channel> channel,
                                         absl::Duration interval)
    : channel_(std::move(channel)), interval_(interval) {
  thread_ = std::thread([this] { Run(); });
}

CallbackQueueKeeper::~CallbackQueueKeeper() { Stop(); }

void CallbackQueueKeeper::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void CallbackQueueKeeper::Run() {
  grpc::GenericStub stub(channel_);
  while (!stop_.WaitForNotificationWithTimeout(interval_)) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    // An empty HealthCheckRequest (the server's overall health).
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);
    grpc::ByteBuffer response;
    absl::Notification done;
    stub.UnaryCall(&context, "/grpc.health.v1.Health/Check",
                   grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status) { done.Notify(); });
    done.WaitForNotification();
  }
}

}  // namespace guestlist
