// Keeps gRPC's callback-API completion queue polled.
//
// gRPC 1.51 (Debian 12) has no background poller for the callback API: its
// completions (callback methods of a server, callback calls of a client)
// go to one process-wide queue served by a few "nexting" threads, and each
// of those, after a second without an event of its own, sleeps 100 ms.
// Sockets that only those threads poll (a server connection bound to that
// queue's pollset, a client's upstream connection) then go unread: calls
// stalled for up to 100 ms every 1.1 s (docs/BENCHMARKS.md, InviteUser
// session 5). A tiny callback call every `interval` gives the threads
// events, so one of them is always polling.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace guestlist {

class CallbackQueueKeeper final {
 public:
  // Calls grpc.health.v1.Health/Check on `channel` (an in-process channel
  // of the process's own server, or a peer) every `interval`, with the
  // callback API; the answer does not matter.
  explicit CallbackQueueKeeper(
      std::shared_ptr<grpc::Channel> channel,
      absl::Duration interval = absl::Milliseconds(100));
  // Stops (waits for the call in flight).
  ~CallbackQueueKeeper();
  CallbackQueueKeeper(const CallbackQueueKeeper&) = delete;
  CallbackQueueKeeper& operator=(const CallbackQueueKeeper&) = delete;

  void Stop();

 private:
  void Run();

  std::shared_ptr<grpc::Channel> channel_;
  const absl::Duration interval_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace guestlist
