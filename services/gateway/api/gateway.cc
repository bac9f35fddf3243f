#include "services/gateway/api/gateway.h"

#include <atomic>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/message.h"
#include "google/protobuf/wire_format_lite.h"
#include "services/gateway/domain/openapi.h"
#include "services/gateway/domain/transcoder.h"
#include "services/gateway/domain/unsubscribe_page.h"

namespace guestlist::gateway {
namespace {

using google::protobuf::Message;

constexpr char kJson[] = "application/json";

HttpResponse ToResponse(HttpReply reply) {
  HttpResponse out;
  out.status = reply.status;
  out.headers.emplace_back("content-type", std::move(reply.content_type));
  out.body = std::move(reply.body);
  return out;
}

HttpResponse Error(int http_status, absl::StatusCode code,
                   absl::string_view message) {
  return ToResponse(ErrorReplyWithStatus(http_status, code, message));
}

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

bool ParseByteBuffer(const grpc::ByteBuffer& buffer, Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return false;
  if (slices.size() == 1) {
    return message->ParseFromArray(slices[0].begin(),
                                   static_cast<int>(slices[0].size()));
  }
  std::string joined;
  for (const auto& s : slices) {
    joined.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return message->ParseFromString(joined);
}

// A request id we accept from outside: short and printable, so it cannot
// break a log line or a metadata value.
bool IsGoodRequestId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (!absl::ascii_isgraph(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// A version 4 UUID for requests that came without an id. Request ids need
// no secrecy: a per-thread PRNG avoids a system call per request.
std::string NewRequestId() {
  thread_local absl::BitGen gen;
  const uint64_t hi = absl::Uniform<uint64_t>(gen);
  const uint64_t lo = absl::Uniform<uint64_t>(gen);
  unsigned char b[16];
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<unsigned char>(hi >> (56 - 8 * i));
    b[8 + i] = static_cast<unsigned char>(lo >> (56 - 8 * i));
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 15]);
  }
  return out;
}

// Header values go out as gRPC metadata, which must be printable ASCII.
bool IsPrintableAscii(absl::string_view value) {
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

std::string ShortService(absl::string_view full) {
  // "guestlist.identity.v1.IdentityService" -> "identity"
  std::vector<absl::string_view> parts = absl::StrSplit(full, '.');
  return parts.size() >= 2 ? std::string(parts[1]) : std::string(full);
}

// The upstream's status as the client sees it; transport failures get a
// message that says which service and what to do.
HttpResponse UpstreamError(const grpc::Status& status, const Route& route,
                           absl::Duration timeout) {
  auto code = static_cast<absl::StatusCode>(status.error_code());
  std::string message = status.error_message();
  // The HTTP client did not cancel (its connection would be gone): an
  // upstream CANCELLED means the service was shutting down as the call
  // arrived, which the caller should retry like any unavailability.
  if (code == absl::StatusCode::kCancelled) {
    code = absl::StatusCode::kUnavailable;
    message = absl::StrCat("the ", ShortService(route.service),
                           " service was shutting down; retry the call");
  }
  if (code == absl::StatusCode::kDeadlineExceeded &&
      message == "Deadline Exceeded") {
    message = absl::StrCat("the ", ShortService(route.service),
                           " service did not answer within ",
                           absl::FormatDuration(timeout), "; retry later");
  } else if (code == absl::StatusCode::kUnavailable &&
             (absl::StrContains(message, "failed to connect") ||
              absl::StrContains(message, "Connection refused") ||
              absl::StrContains(message, "Socket closed") ||
              absl::StrContains(message, "connections to all backends"))) {
    message =
        absl::StrCat("the ", ShortService(route.service),
                     " service is unavailable (", message, "); retry later");
  }
  return Error(HttpStatusForCode(code), code, message);
}

// What every call forwards: the caller's token, the request id and the
// client address. Nothing else (never x-guestlist-internal-token).
struct ForwardedMetadata {
  std::string authorization;
  std::string request_id;
  std::string client_address;

  void Apply(grpc::ClientContext* context) const {
    if (!authorization.empty()) {
      context->AddMetadata("authorization", authorization);
    }
    context->AddMetadata("x-request-id", request_id);
    if (!client_address.empty()) {
      context->AddMetadata("x-forwarded-for", client_address);
    }
  }
};

// A unary call: waits for the whole body, then one GenericStub call.
class UnaryHandler final : public RequestHandler,
                           public std::enable_shared_from_this<UnaryHandler> {
 public:
  UnaryHandler(const Route* route,
               std::vector<std::pair<std::string, std::string>> bindings,
               QueryParams query, BodyKind kind, grpc::GenericStub* stub,
               ForwardedMetadata metadata, absl::Duration timeout, Reply reply)
      : route_(route),
        bindings_(std::move(bindings)),
        query_(std::move(query)),
        kind_(kind),
        stub_(stub),
        metadata_(std::move(metadata)),
        timeout_(timeout),
        reply_(std::move(reply)) {}

  void OnEnd(std::string body) override {
    const Message* prototype = route_->request_prototype;
    std::unique_ptr<Message> request(prototype->New());
    absl::Status built =
        BuildRequest(*route_, bindings_, query_, kind_, body, request.get());
    if (!built.ok()) {
      return reply_(Error(400, built.code(), built.message()));
    }
    request_ = ToByteBuffer(request->SerializeAsString());
    context_.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    metadata_.Apply(&context_);
    stub_->UnaryCall(&context_, route_->grpc_path, grpc::StubOptions(),
                     &request_, &response_,
                     [self = shared_from_this()](grpc::Status status) {
                       self->OnDone(status);
                     });
  }

  void OnBodyError(BodyError error) override {
    if (error == BodyError::kTooLarge) {
      reply_(Error(413, absl::StatusCode::kInvalidArgument,
                   absl::StrCat("request body too large: the limit for ",
                                route_->http_method, " ", route_->pattern,
                                " is ", route_->max_body_bytes, " bytes")));
    }
  }

 private:
  void OnDone(const grpc::Status& status) {
    if (!status.ok()) return reply_(UpstreamError(status, *route_, timeout_));
    const Message* prototype = route_->response_prototype;
    std::unique_ptr<Message> response(prototype->New());
    if (!ParseByteBuffer(response_, response.get())) {
      return reply_(Error(500, absl::StatusCode::kInternal,
                          "the service's response could not be parsed"));
    }
    reply_(ToResponse(RenderResponse(*route_, *response)));
  }

  const Route* route_;
  std::vector<std::pair<std::string, std::string>> bindings_;
  QueryParams query_;
  BodyKind kind_;
  grpc::GenericStub* stub_;
  ForwardedMetadata metadata_;
  absl::Duration timeout_;
  Reply reply_;
  grpc::ClientContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
};

// A client-streaming call: the first message from the path and query, then
// one message per body chunk, each sent only after the previous one was
// taken by gRPC (so at most one chunk is held).
class StreamingHandler final
    : public RequestHandler,
      public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamingHandler(const Route* route, grpc::GenericStub* stub,
                   ForwardedMetadata metadata, absl::Duration timeout,
                   Reply reply)
      : route_(route), timeout_(timeout), reply_(std::move(reply)) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    metadata.Apply(&context_);
    stub->PrepareBidiStreamingCall(&context_, route_->grpc_path,
                                   grpc::StubOptions(), this);
  }

  // Starts the call with `first` (the options message). The reactor keeps
  // itself alive until OnDone via `self`.
  void Begin(std::shared_ptr<StreamingHandler> self, std::string first) {
    self_ = std::move(self);
    {
      absl::MutexLock lock(&mu_);
      writing_ = true;
      write_buffer_ = ToByteBuffer(first);
    }
    // The HTTP thread starts writes from outside the reactions; without a
    // hold the call could finish (the service answering early, e.g.
    // UNAUTHENTICATED) and be freed under such a write.
    AddHold();
    StartWrite(&write_buffer_);
    StartRead(&response_);
    StartCall();
  }

  bool streaming() const override { return true; }

  void OnChunk(std::string chunk, std::function<void()> resume) override {
    const Message* prototype = route_->request_prototype;
    std::unique_ptr<Message> message(prototype->New());
    message->GetReflection()->SetString(
        message.get(), message->GetDescriptor()->FindFieldByName(route_->body),
        std::move(chunk));
    bool release;
    {
      absl::MutexLock lock(&mu_);
      if (failed_) return;  // OnDone replies; stop reading
      pending_ = ToByteBuffer(message->SerializeAsString());
      has_pending_ = true;
      resume_ = std::move(resume);
      release = MaybeWriteLocked();
    }
    if (release) RemoveHold();
  }

  void OnEnd(std::string) override {
    bool release;
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
      release = MaybeWriteLocked();
    }
    if (release) RemoveHold();
  }

  void OnBodyError(BodyError error) override {
    if (error == BodyError::kTooLarge) {
      reply_(Error(
          413, absl::StatusCode::kInvalidArgument,
          absl::StrCat("upload too large: the limit for ", route_->pattern,
                       " is ", route_->max_body_bytes, " bytes")));
    }
    // After OnDone the call is freed: cancelling it then would touch
    // freed memory (seen as "pure virtual method called" under load).
    {
      absl::MutexLock lock(&cancel_mu_);
      if (!done_) context_.TryCancel();
    }
    bool release;
    {
      absl::MutexLock lock(&mu_);
      failed_ = true;  // no more writes
      release = TakeHoldLocked();
    }
    if (release) RemoveHold();
  }

  void OnWriteDone(bool ok) override {
    std::function<void()> resume;
    bool release;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        failed_ = true;  // the stream broke; OnDone has the status
        release = TakeHoldLocked();
      } else if (has_pending_) {
        release = MaybeWriteLocked();
      } else {
        resume = std::move(resume_);
        resume_ = nullptr;
        release = MaybeWriteLocked();
      }
    }
    if (release) RemoveHold();  // outside mu_: it may run OnDone
    if (resume) resume();
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    got_response_ = ok;
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&cancel_mu_);
      done_ = true;
    }
    bool got;
    {
      absl::MutexLock lock(&mu_);
      failed_ = true;
      got = got_response_;
    }
    if (!status.ok()) {
      reply_(UpstreamError(status, *route_, timeout_));
    } else {
      const Message* prototype = route_->response_prototype;
      std::unique_ptr<Message> response(prototype->New());
      if (!got || !ParseByteBuffer(response_, response.get())) {
        reply_(Error(500, absl::StatusCode::kInternal,
                     "the service's response could not be parsed"));
      } else {
        reply_(ToResponse(RenderResponse(*route_, *response)));
      }
    }
    self_.reset();  // may delete this
  }

 private:
  // Starts the next write or the writes-done; true when that was the last
  // operation this handler starts, so the caller must drop the hold.
  bool MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || failed_) return false;
    if (has_pending_) {
      write_buffer_ = std::move(pending_);
      has_pending_ = false;
      writing_ = true;
      StartWrite(&write_buffer_);
      return false;
    }
    if (ended_ && !writes_done_) {
      writes_done_ = true;
      StartWritesDone();
      return TakeHoldLocked();
    }
    return false;
  }

  // True exactly once: the caller drops the hold taken in Begin.
  bool TakeHoldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (hold_dropped_) return false;
    hold_dropped_ = true;
    return true;
  }

  const Route* route_;
  absl::Duration timeout_;
  Reply reply_;
  grpc::ClientContext context_;
  grpc::ByteBuffer response_;
  std::shared_ptr<StreamingHandler> self_;
  absl::Mutex mu_;
  grpc::ByteBuffer write_buffer_;
  grpc::ByteBuffer pending_ ABSL_GUARDED_BY(mu_);
  bool has_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> resume_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  bool got_response_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_dropped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex cancel_mu_;  // orders TryCancel against the end of the call
  bool done_ ABSL_GUARDED_BY(cancel_mu_) = false;
};

bool HasBody(const HttpRequestHead& head) {
  const std::string length = head.Header("content-length");
  if (!length.empty()) return length != "0";
  return !head.Header("transfer-encoding").empty();
}

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("content-type", kJson);
  r.body = std::move(body);
  return r;
}

// GET on the link in an email's body: a page whose button makes the
// one-click POST; a GET itself changes nothing.
HttpResponse UnsubscribePage(absl::string_view raw_query) {
  std::string token;
  if (auto query = ParseQuery(raw_query); query.ok()) {
    for (const auto& [name, value] : *query) {
      if (name == "token") token = value;
    }
  }
  HttpResponse r;
  const bool plausible = IsPlausibleUnsubscribeToken(token);
  r.status = plausible ? 200 : 400;
  r.headers.emplace_back("content-type", "text/html; charset=utf-8");
  r.headers.emplace_back("cache-control", "no-store");
  r.headers.emplace_back("referrer-policy", "no-referrer");
  r.headers.emplace_back("content-security-policy",
                         "default-src 'none'; form-action 'self'");
  r.body =
      plausible ? UnsubscribeConfirmationPage(token) : UnsubscribeBadLinkPage();
  return r;
}

}  // namespace

Gateway::Gateway(RouteTable routes, std::vector<Upstream> upstreams,
                 GatewayOptions options)
    : routes_(std::move(routes)), options_(std::move(options)) {
  for (Upstream& upstream : upstreams) {
    auto peer = std::make_unique<Peer>();
    peer->name = upstream.name;
    peer->channel = upstream.channel;
    peer->stub = std::make_unique<grpc::GenericStub>(upstream.channel);
    for (const std::string& service : upstream.services) {
      by_service_[service] = peer.get();
    }
    peers_.push_back(std::move(peer));
  }
  openapi_ = BuildOpenApi(routes_, "guestlist API");
}

Gateway::~Gateway() = default;

HttpResponse Gateway::BadRequest(int status, absl::string_view why) {
  HttpResponse r = Error(status, absl::StatusCode::kInvalidArgument, why);
  r.close = true;
  return r;
}

void Gateway::AddCors(const HttpRequestHead& head,
                      HttpResponse* response) const {
  const std::string origin = head.Header("origin");
  if (origin.empty() || options_.cors_origins.empty()) return;
  for (const std::string& allowed : options_.cors_origins) {
    if (allowed == "*") {
      response->headers.emplace_back("access-control-allow-origin", "*");
    } else if (allowed == origin) {
      response->headers.emplace_back("access-control-allow-origin", origin);
      response->headers.emplace_back("vary", "Origin");
    } else {
      continue;
    }
    response->headers.emplace_back("access-control-expose-headers",
                                   "x-request-id");
    return;
  }
}

HttpResponse Gateway::Preflight(const HttpRequestHead& head) {
  HttpResponse r;
  r.status = 204;
  auto match = routes_.Find("", head.path);
  std::string allow;
  if (match.outcome == RouteTable::Outcome::kMethodNotAllowed) {
    allow = absl::StrJoin(match.allowed, ", ");
  }
  if (!head.Header("access-control-request-method").empty()) {
    r.headers.emplace_back(
        "access-control-allow-methods",
        allow.empty() ? "GET, POST, PUT, PATCH, DELETE" : allow);
    r.headers.emplace_back(
        "access-control-allow-headers",
        "authorization, content-type, x-request-id, idempotency-key");
    r.headers.emplace_back("access-control-max-age", "600");
  }
  if (!allow.empty()) r.headers.emplace_back("allow", allow + ", OPTIONS");
  return r;
}

void Gateway::Ready(Reply reply) {
  struct State {
    absl::Mutex mu;
    int pending ABSL_GUARDED_BY(mu) = 0;
    std::vector<std::pair<std::string, std::string>> results
        ABSL_GUARDED_BY(mu);
    Reply reply;
  };
  auto state = std::make_shared<State>();
  state->reply = std::move(reply);
  {
    absl::MutexLock lock(&state->mu);
    state->pending = static_cast<int>(peers_.size());
  }
  auto finish = [state] {
    std::string peers;
    std::vector<std::string> down;
    {
      absl::MutexLock lock(&state->mu);
      std::sort(state->results.begin(), state->results.end());
      for (const auto& [name, status] : state->results) {
        absl::StrAppend(&peers, peers.empty() ? "" : ",", JsonQuote(name), ":",
                        JsonQuote(status));
        if (status != "SERVING") down.push_back(JsonQuote(name));
      }
    }
    if (down.empty()) {
      state->reply(JsonResponse(
          200, absl::StrCat("{\"status\":\"ok\",\"peers\":{", peers, "}}")));
    } else {
      state->reply(JsonResponse(
          503, absl::StrCat("{\"status\":\"unavailable\",\"notReady\":[",
                            absl::StrJoin(down, ","), "],\"peers\":{", peers,
                            "}}")));
    }
  };
  if (peers_.empty()) return finish();
  for (const auto& peer : peers_) {
    struct Call {
      grpc::ClientContext context;
      grpc::ByteBuffer request;
      grpc::ByteBuffer response;
    };
    auto call = std::make_shared<Call>();
    call->context.set_deadline(
        absl::ToChronoTime(absl::Now() + options_.ready_timeout));
    call->request = ToByteBuffer("");  // HealthCheckRequest{service: ""}
    const std::string name = peer->name;
    peer->stub->UnaryCall(
        &call->context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
        &call->request, &call->response,
        [state, call, name, finish](grpc::Status status) {
          std::string result;
          if (!status.ok()) {
            result = absl::StrCat("UNREACHABLE: ", status.error_message());
          } else {
            // HealthCheckResponse{status = 1}: 1 is SERVING.
            std::vector<grpc::Slice> slices;
            std::string bytes;
            if (call->response.Dump(&slices).ok()) {
              for (const auto& s : slices) {
                bytes.append(reinterpret_cast<const char*>(s.begin()),
                             s.size());
              }
            }
            google::protobuf::io::CodedInputStream in(
                reinterpret_cast<const uint8_t*>(bytes.data()),
                static_cast<int>(bytes.size()));
            uint32_t value = 0;
            uint32_t tag;
            while ((tag = in.ReadTag()) != 0) {
              if (tag == 8) {
                in.ReadVarint32(&value);
              } else if (!google::protobuf::internal::WireFormatLite::SkipField(
                             &in, tag)) {
                break;
              }
            }
            static const char* const kNames[] = {
                "UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
            result = value < 4 ? kNames[value] : "UNKNOWN";
          }
          bool last;
          {
            absl::MutexLock lock(&state->mu);
            state->results.emplace_back(name, result);
            last = --state->pending == 0;
          }
          if (last) finish();
        });
  }
}

Dispatch Gateway::OnRequest(const HttpRequestHead& head, Reply reply) {
  const absl::Time start = absl::Now();
  std::string request_id = head.Header("x-request-id");
  if (!IsGoodRequestId(request_id)) request_id = NewRequestId();

  // Every answer goes through here: common headers, metrics, access log.
  auto route_label = std::make_shared<std::string>("unmatched");
  auto once = std::make_shared<std::atomic<bool>>(false);
  Reply finish = [this, reply = std::move(reply), start, request_id,
                  route_label, once, method = head.method, path = head.path,
                  query = head.query, remote = head.remote_address,
                  origin_head = head](HttpResponse response) {
    if (once->exchange(true)) return;  // e.g. 413 then the cancelled call
    response.headers.emplace_back("x-request-id", request_id);
    AddCors(origin_head, &response);
    const absl::Duration took = absl::Now() - start;
    metrics_.Record(*route_label, method, response.status, took);
    const bool probe = *route_label == "/healthz" ||
                       *route_label == "/readyz" || *route_label == "/metrics";
    if (options_.access_log && (!probe || response.status >= 400)) {
      LogFields fields = {
          {"method", method},
          {"path", path},
          {"route", *route_label},
          {"status", absl::StrCat(response.status)},
          {"duration_ms", absl::StrCat(absl::ToDoubleMilliseconds(took))},
          {"remote", remote},
          {"request_id", request_id}};
      // Query strings may carry secrets (unsubscribe tokens).
      if (!query.empty() &&
          !absl::StrContains(absl::AsciiStrToLower(query), "token")) {
        fields["query"] = query;
      }
      Log(response.status >= 500 ? LogLevel::kWarning : LogLevel::kInfo,
          "http request", fields);
    }
    reply(std::move(response));
  };
  // Answers produced here go out through `finish` like any other; the
  // request's body, if any, is read (up to 64 KiB) and dropped so the
  // connection can be kept.
  class Discard final : public RequestHandler {
   public:
    void OnEnd(std::string) override {}
    void OnBodyError(BodyError) override {}
  };
  auto replied = [&finish](HttpResponse response) {
    finish(std::move(response));
    Dispatch d;
    d.handler = std::make_shared<Discard>();
    d.body_limit = 64 << 10;
    return d;
  };
  Dispatch dispatch;

  if (head.method == "OPTIONS") {
    *route_label = "OPTIONS";
    return replied(Preflight(head));
  }
  if (head.path == "/healthz" && head.method == "GET") {
    *route_label = "/healthz";
    return replied(JsonResponse(200, "{\"status\":\"ok\"}"));
  }
  if (head.path == "/readyz" && head.method == "GET") {
    *route_label = "/readyz";
    Ready(finish);
    Dispatch d;
    d.handler = std::make_shared<Discard>();
    d.body_limit = 64 << 10;
    return d;
  }
  if (head.path == "/metrics" && head.method == "GET") {
    *route_label = "/metrics";
    HttpResponse r;
    r.headers.emplace_back("content-type",
                           "text/plain; version=0.0.4; charset=utf-8");
    r.body = metrics_.Render();
    return replied(std::move(r));
  }
  if (head.path == "/v1/unsubscribe" && head.method == "GET") {
    *route_label = "/v1/unsubscribe";
    return replied(UnsubscribePage(head.query));
  }
  if (head.path == "/v1/openapi.json" && head.method == "GET") {
    *route_label = "/v1/openapi.json";
    return replied(JsonResponse(200, openapi_));
  }

  RouteTable::Match match = routes_.Find(head.method, head.path);
  if (match.outcome == RouteTable::Outcome::kNotFound) {
    return replied(Error(404, absl::StatusCode::kNotFound,
                         absl::StrCat("no route for ", head.method, " ",
                                      head.path, "; see /v1/openapi.json")));
  }
  if (match.outcome == RouteTable::Outcome::kMethodNotAllowed) {
    *route_label = "method_not_allowed";
    HttpResponse r =
        Error(405, absl::StatusCode::kUnimplemented,
              absl::StrCat(head.method, " is not allowed on ", head.path,
                           "; allowed: ", absl::StrJoin(match.allowed, ", ")));
    r.headers.emplace_back("allow", absl::StrJoin(match.allowed, ", "));
    return replied(std::move(r));
  }
  const Route* route = match.route;
  *route_label = route->pattern;
  auto peer = by_service_.find(route->service);
  if (peer == by_service_.end()) {
    return replied(
        Error(501, absl::StatusCode::kUnimplemented,
              absl::StrCat("no upstream configured for ", route->service)));
  }
  BodyKind kind = BodyKind::kNone;
  if (HasBody(head) || route->raw_body) {
    auto classified = ClassifyBody(*route, head.Header("content-type"));
    if (!classified.ok()) {
      return replied(Error(415, absl::StatusCode::kInvalidArgument,
                           classified.status().message()));
    }
    kind = *classified;
  }
  auto query = ParseQuery(head.query);
  if (!query.ok()) {
    return replied(Error(400, absl::StatusCode::kInvalidArgument,
                         query.status().message()));
  }
  const std::string authorization = head.Header("authorization");
  if (!IsPrintableAscii(authorization)) {
    return replied(Error(401, absl::StatusCode::kUnauthenticated,
                         "malformed authorization header: expected "
                         "\"Bearer <token>\" in printable ASCII"));
  }
  std::string forwarded_for = head.remote_address;
  const std::string incoming = head.Header("x-forwarded-for");
  if (options_.trust_forwarded_for && !incoming.empty() &&
      IsPrintableAscii(incoming)) {
    forwarded_for = absl::StrCat(incoming, ", ", head.remote_address);
  }
  ForwardedMetadata metadata{authorization, request_id, forwarded_for};
  dispatch.body_limit = route->max_body_bytes;
  if (route->method->client_streaming()) {
    const Message* prototype = route->request_prototype;
    std::unique_ptr<Message> first(prototype->New());
    absl::Status built = BuildRequest(*route, match.bindings, *query,
                                      BodyKind::kRaw, "", first.get());
    if (!built.ok()) {
      return replied(Error(400, built.code(), built.message()));
    }
    auto handler = std::make_shared<StreamingHandler>(
        route, peer->second->stub.get(), std::move(metadata),
        options_.upload_timeout, finish);
    handler->Begin(handler, first->SerializeAsString());
    dispatch.handler = handler;
    return dispatch;
  }
  dispatch.handler = std::make_shared<UnaryHandler>(
      route, std::move(match.bindings), *std::move(query), kind,
      peer->second->stub.get(), std::move(metadata), options_.upstream_timeout,
      finish);
  return dispatch;
}

}  // namespace guestlist::gateway
