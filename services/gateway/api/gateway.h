// The gateway application: HTTP requests -> routes from the descriptors ->
// generic gRPC calls (raw bytes over grpc::GenericStub) to the service that
// owns the method; plus /healthz, /readyz, /metrics, /v1/openapi.json, CORS,
// request ids, metadata forwarding and the access log.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "services/gateway/api/http_server.h"
#include "services/gateway/domain/metrics.h"
#include "services/gateway/domain/route_table.h"

namespace guestlist::gateway {

struct GatewayOptions {
  // Origins allowed by CORS; "*" allows any.
  std::vector<std::string> cors_origins;
  // Deadline of every unary upstream call.
  absl::Duration upstream_timeout = absl::Seconds(10);
  // Deadline of a streamed upload (the service processes the whole file).
  absl::Duration upload_timeout = absl::Minutes(5);
  // Behind a trusted proxy (an ingress): pass on the incoming
  // X-Forwarded-For with the peer address appended. Otherwise only the
  // peer address is sent, so clients cannot forge it.
  bool trust_forwarded_for = false;
  // One JSON line per request on stderr (off when an ingress logs them).
  bool access_log = true;
  // Deadline of each peer's health check in /readyz.
  absl::Duration ready_timeout = absl::Seconds(1);
};

// A service the gateway talks to.
struct Upstream {
  std::string name;  // "identity", in /readyz
  // Full gRPC service names whose routes go to this upstream.
  std::vector<std::string> services;
  std::shared_ptr<grpc::Channel> channel;
};

class Gateway final : public HttpApplication {
 public:
  Gateway(RouteTable routes, std::vector<Upstream> upstreams,
          GatewayOptions options);
  ~Gateway() override;

  Dispatch OnRequest(const HttpRequestHead& head, Reply reply) override;
  HttpResponse BadRequest(int status, absl::string_view why) override;

  const RouteTable& routes() const { return routes_; }

 private:
  struct Peer {
    std::string name;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<grpc::GenericStub> stub;
  };

  void Ready(Reply reply);
  HttpResponse Preflight(const HttpRequestHead& head);
  void AddCors(const HttpRequestHead& head, HttpResponse* response) const;

  const RouteTable routes_;
  const GatewayOptions options_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::map<std::string, Peer*> by_service_;
  std::string openapi_;
  Metrics metrics_;
};

}  // namespace guestlist::gateway
