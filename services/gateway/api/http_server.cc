#include "services/gateway/api/http_server.h"

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"

namespace guestlist::gateway {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;

std::string HttpRequestHead::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return "";
}

namespace {

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(d));
}

}  // namespace

class HttpServer::Impl final : public std::enable_shared_from_this<Impl> {
 public:
  Impl(HttpServerOptions options, HttpApplication* app)
      : options_(std::move(options)),
        app_(app),
        acceptor_(net::make_strand(ioc_)),
        work_(net::make_work_guard(ioc_)) {}

  class Session;

  absl::StatusOr<int> Start();
  void Shutdown(absl::Duration grace);
  void DoAccept();
  void Register(const std::shared_ptr<Session>& session);
  void Unregister();
  bool NoSessions() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return live_sessions_ == 0;
  }

  const HttpServerOptions options_;
  HttpApplication* const app_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopped_{false};
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  int live_sessions_ ABSL_GUARDED_BY(mu_) = 0;
};

// One connection; every member is touched only on its strand.
class HttpServer::Impl::Session final
    : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Impl> server)
      : server_(std::move(server)), stream_(std::move(socket)) {
    beast::error_code ec;
    auto endpoint = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = endpoint.address().to_string();
  }

  ~Session() { server_->Unregister(); }

  void Start() {
    net::dispatch(stream_.get_executor(),
                  [self = shared_from_this()] { self->ReadHeader(); });
  }

  // Closes the connection if it is between requests (shutdown).
  void Drain() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->idle_) self->Close();
    });
  }

 private:
  void ReadHeader() {
    if (closed_) return;
    if (server_->draining_) return Close();
    parser_.emplace();
    parser_->header_limit(server_->options_.max_header_bytes);
    // The route's limit is set once the headers are read; until then a
    // declared length must not fail the header read itself.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    body_.clear();
    handler_.reset();
    responded_ = false;
    idle_ = true;
    ++generation_;
    stream_.expires_after(ToChrono(server_->options_.idle_timeout));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->OnHeader(ec);
        });
  }

  void OnHeader(beast::error_code ec) {
    idle_ = false;
    if (ec) {
      if (ec == http::error::header_limit) {
        return WriteResponse(
            server_->app_->BadRequest(431, "request headers are too large"),
            /*close=*/true);
      }
      if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
          ec == net::error::operation_aborted ||
          ec == net::error::connection_reset || ec == net::error::eof ||
          closed_) {
        return Close();
      }
      return WriteResponse(
          server_->app_->BadRequest(
              400, absl::StrCat("malformed HTTP request: ", ec.message())),
          /*close=*/true);
    }
    auto& req = parser_->get();
    HttpRequestHead head;
    head.method = std::string(req.method_string());
    head.target = std::string(req.target());
    const size_t q = head.target.find('?');
    head.path = head.target.substr(0, q);
    if (q != std::string::npos) head.query = head.target.substr(q + 1);
    for (const auto& field : req) {
      head.headers.emplace_back(
          absl::AsciiStrToLower(std::string(field.name_string())),
          std::string(field.value()));
    }
    head.remote_address = remote_;
    keep_alive_ = req.keep_alive();
    const uint64_t generation = generation_;
    Reply reply = [self = shared_from_this(), generation](HttpResponse r) {
      net::post(self->stream_.get_executor(),
                [self, generation, r = std::move(r)]() mutable {
                  if (generation != self->generation_) return;
                  self->OnReply(std::move(r));
                });
    };
    Dispatch dispatch = server_->app_->OnRequest(head, std::move(reply));
    if (dispatch.response.has_value()) {
      // An unread body would be taken for the next request: close instead.
      responded_ = true;
      const bool close = !parser_->is_done() || dispatch.response->close;
      return WriteResponse(std::move(*dispatch.response), close);
    }
    handler_ = std::move(dispatch.handler);
    parser_->body_limit(dispatch.body_limit);
    // Refuse a declared oversized body before the client sends it (and
    // before a `100 Continue` invites it to).
    if (parser_->content_length() &&
        *parser_->content_length() > dispatch.body_limit) {
      keep_alive_ = false;
      auto handler = handler_;
      if (handler) handler->OnBodyError(BodyError::kTooLarge);
      return;
    }
    if (!parser_->is_done() &&
        beast::iequals(req[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(
          http::status::continue_, 11);
      continue_pending_ = true;
      http::async_write(
          stream_, *cont,
          [self = shared_from_this(), cont](beast::error_code ec, size_t) {
            self->continue_pending_ = false;
            // An answer that came while `100 Continue` was
            // being written waited for it (one write at a
            // time); send it now.
            if (self->pending_reply_.has_value()) {
              HttpResponse r = std::move(*self->pending_reply_);
              self->pending_reply_.reset();
              return self->WriteResponse(std::move(r), true);
            }
            if (ec) return self->AbortBody();
            self->ReadBody();
          });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (closed_ || responded_) return;
    if (parser_->is_done()) {
      auto handler = handler_;
      if (handler) handler->OnEnd(std::move(body_));
      body_.clear();
      return;
    }
    parser_->get().body().data = chunk_;
    parser_->get().body().size = sizeof(chunk_);
    parser_->get().body().more = true;
    stream_.expires_after(ToChrono(server_->options_.idle_timeout));
    reading_ = true;
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->OnBody(ec);
                     });
  }

  void OnBody(beast::error_code ec) {
    reading_ = false;
    if (ec == http::error::need_buffer) ec = {};
    if (closed_) return;
    if (responded_) {
      // An early answer (e.g. 401 mid-upload) asked to linger while this
      // read was still pending: Beast allows one read at a time.
      if (lingering_) Discard();
      return;
    }
    if (ec) {
      if (ec == http::error::body_limit) {
        auto handler = handler_;
        keep_alive_ = false;
        if (handler) handler->OnBodyError(BodyError::kTooLarge);
        return;
      }
      return AbortBody();
    }
    const size_t got = sizeof(chunk_) - parser_->get().body().size;
    stream_.expires_never();
    if (handler_ && handler_->streaming()) {
      if (got == 0) return ReadBody();
      auto handler = handler_;
      const uint64_t generation = generation_;
      handler->OnChunk(
          std::string(chunk_, got), [self = shared_from_this(), generation] {
            net::post(self->stream_.get_executor(), [self, generation] {
              if (generation != self->generation_) return;
              self->ReadBody();
            });
          });
      return;
    }
    body_.append(chunk_, got);
    ReadBody();
  }

  void AbortBody() {
    auto handler = handler_;
    handler_.reset();
    if (handler) handler->OnBodyError(BodyError::kAborted);
    Close();
  }

  void OnReply(HttpResponse response) {
    if (closed_ || responded_) return;
    responded_ = true;
    if (continue_pending_) {
      pending_reply_ = std::move(response);
      return;
    }
    // Replying before the whole body was read (an error mid-upload): the
    // rest of the body cannot be told from the next request.
    const bool close = response.close || !parser_->is_done();
    WriteResponse(std::move(response), close);
  }

  void WriteResponse(HttpResponse response, bool close) {
    if (closed_) return;
    handler_.reset();
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(response.status));
    for (auto& [name, value] : response.headers) res->set(name, value);
    res->body() = std::move(response.body);
    const bool keep =
        keep_alive_ && !close && !server_->draining_ && parser_.has_value();
    res->keep_alive(keep);
    res->prepare_payload();
    stream_.expires_after(ToChrono(server_->options_.idle_timeout));
    const bool unread_body = !parser_.has_value() || !parser_->is_done();
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep, unread_body](
                          beast::error_code ec, size_t) {
                        if (!ec && !keep && unread_body) {
                          return self->LingeringClose();
                        }
                        if (ec || !keep) return self->Close();
                        self->ReadHeader();
                      });
  }

  // Closing with unread input makes the kernel send a reset, which can
  // destroy the response before the client read it (a 413 during an
  // upload): stop sending, discard input for a moment, then close.
  void LingeringClose() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    linger_until_ = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    lingering_ = true;
    if (!reading_) Discard();  // else OnBody continues once its read ends
  }

  void Discard() {
    if (closed_ || std::chrono::steady_clock::now() >= linger_until_) {
      return Close();
    }
    stream_.expires_at(linger_until_);
    stream_.async_read_some(
        net::buffer(chunk_, sizeof(chunk_)),
        [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->Close();
          self->Discard();
        });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    handler_.reset();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  // Shared: a session may outlive the server object in a late callback.
  // Declared before the stream so it is destroyed after it: the stream's
  // executor lives in the server's io_context, and the last reference to
  // a session (and so to the server) can be dropped on a gRPC thread.
  const std::shared_ptr<Impl> server_;
  beast::tcp_stream stream_;
  std::string remote_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::buffer_body>> parser_;
  char chunk_[kChunkBytes];
  std::string body_;
  std::shared_ptr<RequestHandler> handler_;
  std::chrono::steady_clock::time_point linger_until_;
  uint64_t generation_ = 0;  // guards against replies to an older request
  bool keep_alive_ = false;
  bool responded_ = false;
  bool idle_ = false;
  bool closed_ = false;
  bool reading_ = false;           // an async_read of the body is in flight
  bool continue_pending_ = false;  // `100 Continue` is being written
  std::optional<HttpResponse> pending_reply_;
  bool lingering_ = false;  // discarding input before closing
};

absl::StatusOr<int> HttpServer::Impl::Start() {
  beast::error_code ec;
  auto address = net::ip::make_address(options_.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad listen host \"", options_.host, "\""));
  }
  tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.host, ":", options_.port,
                     ": ", ec.message()));
  }
  const int port = acceptor_.local_endpoint().port();
  DoAccept();
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    threads_.emplace_back([this] { ioc_.run(); });
  }
  return port;
}

void HttpServer::Impl::DoAccept() {
  acceptor_.async_accept(
      net::make_strand(ioc_),
      [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
        if (self->draining_) return;
        if (!ec) {
          socket.set_option(tcp::no_delay(true), ec);
          auto session = std::make_shared<Session>(std::move(socket), self);
          self->Register(session);
          session->Start();
        }
        self->DoAccept();
      });
}

void HttpServer::Impl::Register(const std::shared_ptr<Session>& session) {
  absl::MutexLock lock(&mu_);
  ++live_sessions_;
  if (sessions_.size() > 64 &&
      sessions_.size() > 2 * static_cast<size_t>(live_sessions_)) {
    std::vector<std::weak_ptr<Session>> kept;
    for (auto& w : sessions_) {
      if (!w.expired()) kept.push_back(std::move(w));
    }
    sessions_ = std::move(kept);
  }
  sessions_.push_back(session);
}

void HttpServer::Impl::Unregister() {
  absl::MutexLock lock(&mu_);
  --live_sessions_;
}

void HttpServer::Impl::Shutdown(absl::Duration grace) {
  if (stopped_.exchange(true)) return;
  draining_ = true;
  net::post(acceptor_.get_executor(), [self = shared_from_this()] {
    beast::error_code ec;
    self->acceptor_.close(ec);
  });
  std::vector<std::shared_ptr<Session>> live;
  {
    absl::MutexLock lock(&mu_);
    for (auto& w : sessions_) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->Drain();
  live.clear();
  const absl::Time deadline = absl::Now() + grace;
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithDeadline(absl::Condition(this, &Impl::NoSessions), deadline);
    if (live_sessions_ > 0) {
      LogWarning("grace period over; closing connections",
                 {{"open", absl::StrCat(live_sessions_)}});
    }
  }
  work_.reset();
  ioc_.stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

HttpServer::HttpServer(HttpServerOptions options, HttpApplication* app)
    : impl_(std::make_shared<Impl>(std::move(options), app)) {}

HttpServer::~HttpServer() { impl_->Shutdown(absl::ZeroDuration()); }

absl::StatusOr<int> HttpServer::Start() { return impl_->Start(); }

void HttpServer::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }

}  // namespace guestlist::gateway
