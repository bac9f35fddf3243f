// The gateway's routes, built at start from the google.api.http annotations
// of the compiled-in service descriptors: path templates ({field},
// {a.b}, {x=*}/{x=**}), custom `:verb` suffixes and HTTP methods. Adding an
// annotated RPC to a served service adds its route with no gateway code.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace guestlist::gateway {

// A parsed google.api.http path template.
struct PathTemplate {
  enum class Kind { kLiteral, kSingle, kMulti };
  struct Segment {
    Kind kind = Kind::kLiteral;
    std::string literal;  // kLiteral only
  };
  // A variable binds segments [begin, end) to a (dotted) field path; a
  // trailing `**` variable has end == -1 (to the end of the path).
  struct Variable {
    std::string field_path;
    int begin = 0;
    int end = 0;
  };
  std::vector<Segment> segments;
  std::vector<Variable> variables;
  std::string verb;  // without the ':'
};

// Parses "/v1/users/{user_id}:suspend". InvalidArgument naming the problem.
absl::StatusOr<PathTemplate> ParsePathTemplate(absl::string_view text);

// Decodes %XX escapes; InvalidArgument on a malformed escape.
absl::StatusOr<std::string> PercentDecode(absl::string_view text);

// Size limits that apply to a route's request body.
struct BodyLimits {
  size_t json = 1 << 20;              // ordinary JSON bodies
  size_t json_with_bytes = 14 << 20;  // JSON carrying base64 bytes
  size_t stream = size_t{100} << 20;  // raw bodies streamed upstream
};

struct Route {
  std::string http_method;  // "GET", "POST", ...
  std::string pattern;      // as written in the proto
  PathTemplate path;
  std::string body;           // "", "*" or a top-level field name
  std::string response_body;  // "" or a top-level field name
  const google::protobuf::MethodDescriptor* method = nullptr;
  // Prototypes of the input and output messages (generated classes), looked
  // up once here rather than per request.
  const google::protobuf::Message* request_prototype = nullptr;
  const google::protobuf::Message* response_prototype = nullptr;
  std::string grpc_path;  // "/pkg.Service/Method"
  std::string service;    // "pkg.Service"
  // The request body is raw bytes (a `bytes` body field): streamed as
  // chunks for client-streaming methods, else set whole.
  bool raw_body = false;
  // Response is google.api.HttpBody: returned raw with its content type.
  bool http_body_response = false;
  // Query parameters not found at the top level are looked up in this
  // top-level message field (the message holding the path variables of a
  // streaming method's first request, e.g. ImportUsers' `options`).
  std::string query_prefix;
  size_t max_body_bytes = 0;
  int literal_count = 0;  // for specificity when several routes match
};

class RouteTable final {
 public:
  enum class Outcome { kFound, kNotFound, kMethodNotAllowed };
  struct Match {
    Outcome outcome = Outcome::kNotFound;
    const Route* route = nullptr;
    // (field path, percent-decoded value) for each path variable.
    std::vector<std::pair<std::string, std::string>> bindings;
    // For kMethodNotAllowed: the methods the path accepts, sorted.
    std::vector<std::string> allowed;
  };

  // Builds the routes of every annotated method (including
  // additional_bindings) of `services`. InvalidArgument naming the method
  // for a bad template or body field; server-streaming methods are skipped.
  static absl::StatusOr<RouteTable> FromServices(
      const std::vector<const google::protobuf::ServiceDescriptor*>& services,
      const BodyLimits& limits);

  // Matches a request path (no query string) and method.
  Match Find(absl::string_view method, absl::string_view path) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace guestlist::gateway
