#include "common/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/callback_queue_keeper.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/random.h"

namespace guestlist {
namespace {

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

class ServiceRunner::Impl {
 public:
  explicit Impl(ServerOptions options) : options_(std::move(options)) {}

  ServerOptions options_;
  std::vector<grpc::Service*> services_;
  std::function<absl::Status()> probe_;
  std::vector<std::function<void()>> hooks_;
  std::unique_ptr<grpc::Server> server_;
  // See callback_queue_keeper.h: without it, calls on connections that
  // gRPC's callback queue polls stall ~100 ms every 1.1 s.
  std::unique_ptr<CallbackQueueKeeper> keeper_;
  std::thread probe_thread_;
  absl::Notification stop_probe_;
  std::atomic<bool> shutdown_requested_{false};

  void SetServing(bool serving) {
    grpc::HealthCheckServiceInterface* health =
        server_->GetHealthCheckService();
    if (health == nullptr) return;
    health->SetServingStatus("", serving);
    for (const std::string& name : options_.health_names) {
      health->SetServingStatus(name, serving);
    }
  }
};

ServiceRunner::ServiceRunner(ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {
#ifdef NDEBUG
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles
  // (a debug aid costing ~1-2% of an RPC's CPU in profiles); optimised
  // builds turn it off, test builds keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

ServiceRunner::~ServiceRunner() {
  if (!impl_->stop_probe_.HasBeenNotified()) impl_->stop_probe_.Notify();
  if (impl_->probe_thread_.joinable()) impl_->probe_thread_.join();
}

void ServiceRunner::AddService(grpc::Service* service) {
  impl_->services_.push_back(service);
}

void ServiceRunner::SetReadinessProbe(std::function<absl::Status()> probe) {
  impl_->probe_ = std::move(probe);
}

void ServiceRunner::AddShutdownHook(std::function<void()> hook) {
  impl_->hooks_.push_back(std::move(hook));
}

absl::StatusOr<int> ServiceRunner::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  auto creds = impl_->options_.credentials ? impl_->options_.credentials
                                           : grpc::InsecureServerCredentials();
  builder.AddListeningPort(impl_->options_.listen_address, creds, &port);
  grpc::ResourceQuota quota(impl_->options_.service_name);
  quota.SetMaxThreads(impl_->options_.max_threads);
  builder.SetResourceQuota(quota);
  builder.SetMaxReceiveMessageSize(impl_->options_.max_message_bytes);
  builder.SetMaxSendMessageSize(impl_->options_.max_message_bytes);
  // Without this a second process could silently share our port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE,
                             impl_->options_.max_metadata_bytes);
  for (grpc::Service* s : impl_->services_) builder.RegisterService(s);
  impl_->server_ = builder.BuildAndStart();
  if (impl_->server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", impl_->options_.listen_address,
        " (is the port in use? set --port / GUESTLIST_",
        absl::AsciiStrToUpper(impl_->options_.service_name), "_PORT)"));
  }
  impl_->SetServing(true);
  impl_->keeper_ = std::make_unique<CallbackQueueKeeper>(
      impl_->server_->InProcessChannel(grpc::ChannelArguments()));
  if (impl_->probe_) {
    impl_->probe_thread_ = std::thread([this] {
      bool serving = true;
      while (!impl_->stop_probe_.WaitForNotificationWithTimeout(
          absl::Seconds(1))) {
        if (impl_->shutdown_requested_) break;
        const absl::Status s = impl_->probe_();
        if (s.ok() != serving) {
          serving = s.ok();
          impl_->SetServing(serving);
          Log(serving ? LogLevel::kInfo : LogLevel::kWarning,
              serving ? "ready" : "not ready",
              {{"reason", std::string(s.message())}});
        }
      }
    });
  }
  LogInfo("serving", {{"address", impl_->options_.listen_address},
                      {"port", absl::StrCat(port)}});
  return port;
}

void ServiceRunner::RequestShutdown() {
  impl_->shutdown_requested_ = true;
  kill(getpid(), SIGTERM);
}

int ServiceRunner::WaitForShutdown() {
  sigset_t set = TerminationSignals();
  int sig = 0;
  sigwait(&set, &sig);
  impl_->shutdown_requested_ = true;
  LogInfo("shutting down", {{"signal", absl::StrCat(sig)}});
  if (!impl_->stop_probe_.HasBeenNotified()) impl_->stop_probe_.Notify();
  if (impl_->probe_thread_.joinable()) impl_->probe_thread_.join();
  impl_->SetServing(false);
  // Lame duck: keep serving briefly while health checks report
  // NOT_SERVING, so load balancers and clients move away and calls already
  // queued in the server are picked up rather than cancelled by Shutdown.
  absl::SleepFor(std::min(impl_->options_.grace / 4, absl::Seconds(1)));
  // In-flight calls may finish until the deadline; later ones are cancelled.
  if (impl_->keeper_ != nullptr) impl_->keeper_->Stop();
  impl_->server_->Shutdown(
      absl::ToChronoTime(absl::Now() + impl_->options_.grace));
  for (auto it = impl_->hooks_.rbegin(); it != impl_->hooks_.rend(); ++it) {
    (*it)();
  }
  impl_->server_->Wait();
  LogInfo("stopped");
  return 0;
}

RequestScope::RequestScope(grpc::ServerContextBase* context, const char* method)
    : context_(context), method_(method), start_(absl::Now()) {
  const auto& md = context->client_metadata();
  auto it = md.find("x-request-id");
  if (it != md.end() && it->second.size() <= 128) {
    request_id_ = std::string(it->second.data(), it->second.size());
  } else {
    SecureRandom random;
    request_id_ = NewUuid(random);
  }
  context->AddInitialMetadata("x-request-id", request_id_);
  scoped_id_ = std::make_unique<ScopedRequestId>(request_id_);
  // gRPC reports "no deadline" as a far-future time point.
  const absl::Time deadline = absl::FromChrono(context->deadline());
  scoped_deadline_ = std::make_unique<ScopedCallDeadline>(
      deadline > absl::Now() + absl::Hours(24 * 365) ? absl::InfiniteFuture()
                                                     : deadline);
}

RequestScope::~RequestScope() {
  const auto code = static_cast<absl::StatusCode>(status_.error_code());
  LogFields fields = {
      {"method", method_},
      {"code", absl::StatusCodeToString(code)},
      {"duration_ms",
       absl::StrCat(absl::ToDoubleMilliseconds(absl::Now() - start_))},
      {"peer", context_->peer()}};
  if (!status_.ok()) fields["error"] = status_.error_message();
  Log(IsServerError(code) ? LogLevel::kError : LogLevel::kInfo, "rpc", fields);
}

grpc::Status RequestScope::Done(grpc::Status status) {
  status_ = status;
  done_ = true;
  return status;
}

grpc::Status RequestScope::Done(const absl::Status& status) {
  return Done(ToGrpcStatus(status));
}

}  // namespace guestlist
