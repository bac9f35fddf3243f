// A small asynchronous HTTP/1.1 server (Boost.Beast over Asio): keep-alive,
// header size and idle-time limits, bodies read in chunks of at most
// kChunkBytes and either buffered or handed to the application one chunk
// at a time (with backpressure), and graceful shutdown. It knows nothing
// about gRPC; HttpApplication decides what each request means.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace guestlist::gateway {

inline constexpr size_t kChunkBytes = 64 << 10;

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequestHead {
  std::string method;  // "GET"
  std::string target;  // as sent: path plus optional "?query"
  std::string path;    // target before '?'
  std::string query;   // after '?', "" if none
  Headers headers;     // names in lower case
  std::string remote_address;
  // Returns the first header named `name` (lower case), "" if absent.
  std::string Header(absl::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  Headers headers;
  std::string body;
  // Close the connection after this response.
  bool close = false;
};

// Sends the response of one request. Callable from any thread, once; later
// calls (and calls after the client went away) are ignored.
using Reply = std::function<void(HttpResponse)>;

enum class BodyError {
  kTooLarge,  // the body exceeds the limit: reply (413); the connection closes
  kAborted,   // the client went away or timed out: no reply is possible
};

// One request's body consumer.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Streaming handlers get the body chunk by chunk via OnChunk and an empty
  // string in OnEnd; others get the whole body in OnEnd.
  virtual bool streaming() const { return false; }
  // Called with each chunk; call `resume` (any thread, once) to read the
  // next one, or reply instead to stop reading.
  virtual void OnChunk(std::string chunk, std::function<void()> resume) {
    resume();
  }
  virtual void OnEnd(std::string body) = 0;
  virtual void OnBodyError(BodyError error) = 0;
};

// What to do with a request once its headers are read.
struct Dispatch {
  // Set: answered at once (the body, if any, is not read; the connection
  // closes unless the request had none).
  std::optional<HttpResponse> response;
  std::shared_ptr<RequestHandler> handler;
  uint64_t body_limit = 0;
};

class HttpApplication {
 public:
  virtual ~HttpApplication() = default;
  // Called on an I/O thread; must not block. `reply` answers the request.
  virtual Dispatch OnRequest(const HttpRequestHead& head, Reply reply) = 0;
  // The answer to a request whose headers are too large or malformed.
  virtual HttpResponse BadRequest(int status, absl::string_view why) = 0;
};

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8080;  // 0: any free port
  int io_threads = 2;
  uint32_t max_header_bytes = 16 << 10;
  // Waiting for a request's headers, or for the next body chunk, longer
  // than this closes the connection.
  absl::Duration idle_timeout = absl::Seconds(60);
};

class HttpServer final {
 public:
  HttpServer(HttpServerOptions options, HttpApplication* app);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the I/O threads. Returns the bound port, or
  // Unavailable naming the address.
  absl::StatusOr<int> Start();
  // Stops accepting, closes idle connections, lets in-flight requests
  // finish for up to `grace`, then stops the threads. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace guestlist::gateway
