// Server bootstrap shared by the gRPC services: health (overall and per
// service name), reflection, size limits, a readiness probe, and graceful
// shutdown on SIGTERM/SIGINT (health NOT_SERVING, drain in-flight calls
// for up to the grace period, stop workers, exit 0).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/logging.h"

namespace guestlist {

struct ServerOptions {
  std::string service_name;    // "identity", for logs
  std::string listen_address;  // "0.0.0.0:50051"; port 0 = any
  absl::Duration grace = absl::Seconds(10);
  int max_threads = 64;  // beyond: RESOURCE_EXHAUSTED
  int max_message_bytes = 16 << 20;
  int max_metadata_bytes = 16 << 10;
  // Full gRPC service names reported by the health service.
  std::vector<std::string> health_names;
  // Optional server credentials (TLS); insecure when null.
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

// Blocks SIGTERM/SIGINT/SIGHUP in the calling thread and all threads it
// creates afterwards; call first thing in main() so Run() can sigwait.
void BlockTerminationSignals();

class ServiceRunner final {
 public:
  explicit ServiceRunner(ServerOptions options);
  ~ServiceRunner();

  void AddService(grpc::Service* service);
  // Polled every second while serving; an error flips health to NOT_SERVING.
  void SetReadinessProbe(std::function<absl::Status()> probe);
  // Run after the server drained, in reverse order of registration.
  void AddShutdownHook(std::function<void()> hook);

  // Starts serving. Returns the bound port, or Unavailable naming the
  // address when it cannot listen.
  absl::StatusOr<int> Start();
  // Blocks until a termination signal (or RequestShutdown), then drains.
  // Returns the process exit code (0).
  int WaitForShutdown();
  // Asks WaitForShutdown to return (tests, fatal errors).
  void RequestShutdown();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Per-call context: request id from `x-request-id` (or generated), an
// access log line with method, code and duration at the end.
class RequestScope final {
 public:
  RequestScope(grpc::ServerContextBase* context, const char* method);
  ~RequestScope();
  // Records the outcome and returns it, so handlers `return scope.Done(s);`.
  grpc::Status Done(grpc::Status status);
  grpc::Status Done(const absl::Status& status);
  const std::string& request_id() const { return request_id_; }

 private:
  grpc::ServerContextBase* context_;
  const char* method_;
  std::string request_id_;
  std::unique_ptr<ScopedRequestId> scoped_id_;
  std::unique_ptr<ScopedCallDeadline> scoped_deadline_;
  absl::Time start_;
  grpc::Status status_;
  bool done_ = false;
};

}  // namespace guestlist
