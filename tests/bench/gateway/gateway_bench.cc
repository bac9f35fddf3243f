// Gateway overhead benchmark: the same small GetUser call made (a) directly
// over gRPC by an asynchronous load client and (b) over HTTP/JSON through
// the gateway by wrk, against one in-process fake IdentityService, in the
// same run. Prints throughput at a fixed concurrency and p50 latency at
// concurrency 1 for both, plus the ratio and the p50 delta.
//
//   bazel run -c opt //tests/bench/gateway:gateway_bench -- --seconds=10
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"
#include "services/gateway/api/gateway.h"
#include "services/gateway/api/http_server.h"

ABSL_FLAG(int, seconds, 10, "duration of each throughput run");
ABSL_FLAG(int, concurrency, 32, "concurrent requests in the throughput runs");
ABSL_FLAG(int, io_threads, 2, "gateway I/O threads");
ABSL_FLAG(std::string, wrk, "wrk", "path of wrk");
ABSL_FLAG(bool, access_log, true, "gateway access log (to stderr)");
ABSL_FLAG(int, rounds, 3, "alternating rounds (median reported)");
ABSL_FLAG(bool, gateway_only, false,
          "only load the gateway (for profiling it)");

namespace guestlist::gateway {
namespace {

namespace id = ::guestlist::identity::v1;

class FakeIdentity final : public id::IdentityService::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetUser(grpc::CallbackServerContext* ctx,
                                    const id::GetUserRequest* req,
                                    id::User* out) override {
    out->set_id(req->user_id());
    out->set_workspace_id("8a6e0804-2bd0-4672-b79d-d97027f9071b");
    out->set_username("guest@example.com");
    out->set_email("guest@example.com");
    out->set_first_name("Ada");
    out->set_last_name("Lovelace");
    out->set_kind(id::GUEST);
    out->set_status(id::ACTIVE);
    out->mutable_create_time()->set_seconds(1700000000);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

struct Result {
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

// Closed-loop async gRPC client: `concurrency` calls always outstanding.
Result DirectGrpc(const std::string& target, int concurrency,
                  absl::Duration duration) {
  auto channel =
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = id::IdentityService::NewStub(channel);
  grpc::CompletionQueue cq;
  struct Call {
    grpc::ClientContext context;
    id::GetUserRequest request;
    id::User response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<id::User>> reader;
    absl::Time start;
  };
  auto start_call = [&](Call* call) {
    call->request.set_user_id("0b9d7f3e-5f7a-4a45-9d7b-1c2e3f4a5b6c");
    call->start = absl::Now();
    call->reader =
        stub->PrepareAsyncGetUser(&call->context, call->request, &cq);
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call);
  };
  std::vector<double> latencies;
  latencies.reserve(1 << 20);
  const absl::Time begin = absl::Now();
  const absl::Time end = begin + duration;
  int outstanding = 0;
  for (int i = 0; i < concurrency; ++i) {
    start_call(new Call);
    ++outstanding;
  }
  int64_t done = 0;
  void* tag;
  bool ok;
  while (outstanding > 0 && cq.Next(&tag, &ok)) {
    std::unique_ptr<Call> call(static_cast<Call*>(tag));
    --outstanding;
    if (call->status.ok()) {
      ++done;
      latencies.push_back(
          absl::ToDoubleMilliseconds(absl::Now() - call->start));
    }
    if (absl::Now() < end) {
      start_call(new Call);
      ++outstanding;
    }
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - begin);
  Result r;
  r.rps = done / secs;
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    r.p50_ms = latencies[latencies.size() / 2];
    r.p99_ms = latencies[latencies.size() * 99 / 100];
  }
  return r;
}

double ParseLatencyMs(const std::string& text) {
  // "50.00%  412.00us" / "1.23ms" / "2.00s"
  std::smatch m;
  std::regex re(R"(([0-9.]+)(us|ms|s))");
  if (!std::regex_search(text, m, re)) return -1;
  double v = std::stod(m[1]);
  if (m[2] == "us") return v / 1000;
  if (m[2] == "s") return v * 1000;
  return v;
}

Result Wrk(const std::string& url, int concurrency, int seconds) {
  const std::string cmd = absl::StrCat(
      absl::GetFlag(FLAGS_wrk), " -t", std::min(2, concurrency), " -c",
      concurrency, " -d", seconds, "s --latency ", url, " 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  pclose(pipe);
  Result r;
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(Requests/sec:\s+([0-9.]+))"))) {
    r.rps = std::stod(m[1]);
  }
  if (std::regex_search(out, m, std::regex(R"(\n\s+50%\s+(\S+))"))) {
    r.p50_ms = ParseLatencyMs(m[1]);
  }
  if (std::regex_search(out, m, std::regex(R"(\n\s+99%\s+(\S+))"))) {
    r.p99_ms = ParseLatencyMs(m[1]);
  }
  if (std::regex_search(out, m, std::regex(R"(Non-2xx[^\n]*)"))) {
    std::fprintf(stderr, "wrk: %s\n", std::string(m[0]).c_str());
  }
  if (r.rps == 0 || r.p50_ms < 0) {
    std::fprintf(stderr, "wrk output:\n%s\n", out.c_str());
  }
  return r;
}

int Main() {
  FakeIdentity service;
  grpc::ServerBuilder builder;
  int backend_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &backend_port);
  builder.RegisterService(&service);
  auto backend = builder.BuildAndStart();
  const std::string target = absl::StrCat("127.0.0.1:", backend_port);

  const auto* identity =
      id::User::descriptor()->file()->FindServiceByName("IdentityService");
  auto routes = RouteTable::FromServices({identity}, BodyLimits{});
  if (!routes.ok()) return 1;
  std::vector<Upstream> upstreams = {
      {"identity",
       {identity->full_name()},
       grpc::CreateChannel(target, grpc::InsecureChannelCredentials())}};
  GatewayOptions gateway_options;
  gateway_options.access_log = absl::GetFlag(FLAGS_access_log);
  Gateway gateway(*std::move(routes), std::move(upstreams), gateway_options);
  HttpServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.io_threads = absl::GetFlag(FLAGS_io_threads);
  HttpServer server(options, &gateway);
  auto port = server.Start();
  if (!port.ok()) return 1;
  const std::string url =
      absl::StrCat("http://127.0.0.1:", *port,
                   "/v1/users/0b9d7f3e-5f7a-4a45-9d7b-1c2e3f4a5b6c");

  const int seconds = absl::GetFlag(FLAGS_seconds);
  const int c = absl::GetFlag(FLAGS_concurrency);
  if (absl::GetFlag(FLAGS_gateway_only)) {
    const Result r = Wrk(url, c, seconds);
    std::printf("gateway only: %.0f req/s, p50 %.3f ms\n", r.rps, r.p50_ms);
    server.Shutdown(absl::Seconds(1));
    backend->Shutdown();
    return 0;
  }
  // Warm up both paths (connections, allocator).
  DirectGrpc(target, c, absl::Seconds(1));
  Wrk(url, c, 1);

  // Alternate the two paths over several rounds: the machine is shared, so
  // each round compares runs made seconds apart; the median ratio is
  // reported.
  const int rounds = absl::GetFlag(FLAGS_rounds);
  std::vector<double> ratios, deltas;
  std::printf("concurrency %d, %d s per run, %d gateway I/O threads\n", c,
              seconds, options.io_threads);
  std::printf("%-6s %-28s %12s %10s %10s\n", "round", "", "req/s", "p50 ms",
              "p99 ms");
  auto row = [](int round, const char* name, const Result& r) {
    std::printf("%-6d %-28s %12.0f %10.3f %10.3f\n", round, name, r.rps,
                r.p50_ms, r.p99_ms);
  };
  for (int i = 1; i <= rounds; ++i) {
    const Result grpc_tp = DirectGrpc(target, c, absl::Seconds(seconds));
    const Result http_tp = Wrk(url, c, seconds);
    const Result grpc_lat =
        DirectGrpc(target, 1, absl::Seconds(seconds / 2 + 1));
    const Result http_lat = Wrk(url, 1, seconds / 2 + 1);
    row(i, "direct gRPC (async client)", grpc_tp);
    row(i, "gateway HTTP/JSON (wrk)", http_tp);
    row(i, "direct gRPC, concurrency 1", grpc_lat);
    row(i, "gateway, concurrency 1", http_lat);
    ratios.push_back(grpc_tp.rps > 0 ? http_tp.rps / grpc_tp.rps : 0);
    deltas.push_back(http_lat.p50_ms - grpc_lat.p50_ms);
    std::printf("round %d: throughput ratio %.2f, p50 delta %+.3f ms\n", i,
                ratios.back(), deltas.back());
    std::fflush(stdout);
  }
  std::sort(ratios.begin(), ratios.end());
  std::sort(deltas.begin(), deltas.end());
  std::printf("median throughput ratio gateway/direct: %.2f\n",
              ratios[ratios.size() / 2]);
  std::printf("median p50 delta at concurrency 1: %+.3f ms\n",
              deltas[deltas.size() / 2]);
  server.Shutdown(absl::Seconds(1));
  backend->Shutdown();
  return 0;
}

}  // namespace
}  // namespace guestlist::gateway

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return guestlist::gateway::Main();
}
