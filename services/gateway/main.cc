// The HTTP/JSON gateway binary: flags, upstream channels, the route table
// from the compiled-in descriptors, the HTTP server, and graceful shutdown
// on SIGTERM/SIGINT (stop accepting, finish in-flight requests, exit 0).
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <algorithm>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/callback_queue_keeper.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/service_flags.h"
#include "guestlist/identity/v1/identity.pb.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "guestlist/notification/v1/notification.pb.h"
#include "services/gateway/api/gateway.h"
#include "services/gateway/api/http_server.h"
#include "services/gateway/domain/route_table.h"

ABSL_FLAG(std::string, cors_origins, "",
          "comma-separated origins allowed by CORS (e.g. the admin "
          "console's https://admin.example.com); \"*\" allows any");
ABSL_FLAG(absl::Duration, upstream_timeout, absl::Seconds(10),
          "deadline of every upstream gRPC call");
ABSL_FLAG(absl::Duration, upload_timeout, absl::Minutes(5),
          "deadline of a streamed CSV upload (ImportUsers)");
ABSL_FLAG(absl::Duration, idle_timeout, absl::Seconds(60),
          "close a connection idle (no request, or a stalled body) this long");
ABSL_FLAG(int64_t, max_body_bytes, int64_t{1} << 20,
          "limit of a JSON request body");
ABSL_FLAG(int64_t, max_binary_body_bytes, int64_t{14} << 20,
          "limit of a JSON body carrying base64 bytes (a PDF report)");
ABSL_FLAG(int64_t, max_upload_bytes, int64_t{100} << 20,
          "limit of a streamed upload (CSV import)");
ABSL_FLAG(int, max_header_bytes, 16 << 10, "limit of a request's headers");
ABSL_FLAG(bool, trust_forwarded_for, false,
          "pass on the client's X-Forwarded-For (only behind a trusted "
          "proxy); otherwise the services see the peer address only");
ABSL_FLAG(bool, access_log, true,
          "log one JSON line per request (method, route, status, duration, "
          "request id; never query strings holding tokens)");
ABSL_FLAG(int, io_threads, 0, "HTTP I/O threads; 0 = one per core (min 2)");

namespace guestlist::gateway {
namespace {

constexpr int kDefaultPort = 8080;

// Upstream channels reconnect quickly after a restart of the service (the
// default backoff grows to two minutes, turning a short outage into a
// long run of 503s).
std::shared_ptr<grpc::Channel> UpstreamChannel(const std::string& address) {
  if (absl::GetFlag(FLAGS_tls_cert_file).empty() &&
      absl::GetFlag(FLAGS_tls_ca_file).empty()) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(16 << 20);
    args.SetMaxSendMessageSize(16 << 20);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    return grpc::CreateCustomChannel(address,
                                     grpc::InsecureChannelCredentials(), args);
  }
  auto channel = PeerChannel(address);
  if (!channel.ok())
    ExitWithError("gateway", std::string(channel.status().message()));
  return *channel;
}

int Main(int argc, char** argv) {
  BlockTerminationSignals();
  ParseFlagsAndEnvironment("gateway", argc, argv);
  SetLogService("gateway");

  // Referencing a message of each file links its descriptors in.
  const google::protobuf::ServiceDescriptor* identity =
      identity::v1::User::descriptor()->file()->FindServiceByName(
          "IdentityService");
  const google::protobuf::ServiceDescriptor* membership =
      membership::v1::Group::descriptor()->file()->FindServiceByName(
          "MembershipService");
  const google::protobuf::ServiceDescriptor* notification =
      notification::v1::Message::descriptor()->file()->FindServiceByName(
          "NotificationService");
  BodyLimits limits;
  limits.json = static_cast<size_t>(absl::GetFlag(FLAGS_max_body_bytes));
  limits.json_with_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_binary_body_bytes));
  limits.stream = static_cast<size_t>(absl::GetFlag(FLAGS_max_upload_bytes));
  auto routes =
      RouteTable::FromServices({identity, membership, notification}, limits);
  if (!routes.ok())
    ExitWithError("gateway", std::string(routes.status().message()));

  std::vector<Upstream> upstreams = {
      {"identity",
       {identity->full_name()},
       UpstreamChannel(absl::GetFlag(FLAGS_identity_addr))},
      {"membership",
       {membership->full_name()},
       UpstreamChannel(absl::GetFlag(FLAGS_membership_addr))},
      {"notification",
       {notification->full_name()},
       UpstreamChannel(absl::GetFlag(FLAGS_notification_addr))},
  };
  GatewayOptions options;
  for (absl::string_view origin : absl::StrSplit(
           absl::GetFlag(FLAGS_cors_origins), ',', absl::SkipWhitespace())) {
    options.cors_origins.emplace_back(absl::StripAsciiWhitespace(origin));
  }
  options.upstream_timeout = absl::GetFlag(FLAGS_upstream_timeout);
  options.upload_timeout = absl::GetFlag(FLAGS_upload_timeout);
  options.trust_forwarded_for = absl::GetFlag(FLAGS_trust_forwarded_for);
  options.access_log = absl::GetFlag(FLAGS_access_log);
  const size_t route_count = routes->routes().size();
  Gateway gateway(*std::move(routes), std::move(upstreams), options);

  HttpServerOptions server_options;
  server_options.host = absl::GetFlag(FLAGS_listen_host);
  const int port = absl::GetFlag(FLAGS_port);
  server_options.port = port < 0 ? kDefaultPort : port;
  server_options.idle_timeout = absl::GetFlag(FLAGS_idle_timeout);
  server_options.max_header_bytes =
      static_cast<uint32_t>(absl::GetFlag(FLAGS_max_header_bytes));
  int threads = absl::GetFlag(FLAGS_io_threads);
  if (threads <= 0) {
    threads =
        std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  }
  server_options.io_threads = threads;
  // Every upstream call uses gRPC's callback API: keep its threads awake
  // (common/callback_queue_keeper.h) with calls to a local health service.
  grpc::EnableDefaultHealthCheckService(true);
  std::unique_ptr<grpc::Server> local_health =
      grpc::ServerBuilder().BuildAndStart();
  CallbackQueueKeeper keeper(
      local_health->InProcessChannel(grpc::ChannelArguments()));
  HttpServer server(server_options, &gateway);
  auto bound = server.Start();
  if (!bound.ok())
    ExitWithError("gateway", std::string(bound.status().message()), 1);
  LogInfo("listening", {{"port", absl::StrCat(*bound)},
                        {"routes", absl::StrCat(route_count)},
                        {"io_threads", absl::StrCat(threads)}});

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  int sig = 0;
  sigwait(&set, &sig);
  LogInfo("shutting down", {{"signal", absl::StrCat(sig)}});
  server.Shutdown(absl::GetFlag(FLAGS_grace_period));
  keeper.Stop();
  local_health->Shutdown();
  LogInfo("stopped");
  return 0;
}

}  // namespace
}  // namespace guestlist::gateway

int main(int argc, char** argv) { return guestlist::gateway::Main(argc, argv); }
