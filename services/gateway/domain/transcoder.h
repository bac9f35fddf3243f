// HTTP <-> proto translation for one route: path bindings, query
// parameters and the body into the request message; the response message
// into proto3 JSON (or the raw google.api.HttpBody); gRPC status codes into
// HTTP statuses and the error body of API.md. Pure: no I/O.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "services/gateway/domain/route_table.h"

namespace guestlist::gateway {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// Splits and percent-decodes "a=1&b=x+y" ('+' is a space). InvalidArgument
// on a malformed escape.
absl::StatusOr<QueryParams> ParseQuery(absl::string_view query);

// How a request body is interpreted.
enum class BodyKind { kNone, kJson, kForm, kRaw };

// Returns how the route reads a body of `content_type` (the header value,
// parameters allowed); InvalidArgument naming the accepted types when the
// route does not take that type (the caller answers 415).
absl::StatusOr<BodyKind> ClassifyBody(const Route& route,
                                      absl::string_view content_type);

// Fills `request` (of the route's input type) from the path bindings, the
// query and the body. For raw-body streaming routes the body is ignored
// (the caller streams it). InvalidArgument naming the field or parameter.
absl::Status BuildRequest(
    const Route& route,
    const std::vector<std::pair<std::string, std::string>>& bindings,
    const QueryParams& query, BodyKind kind, absl::string_view body,
    google::protobuf::Message* request);

// Sets a (dotted; proto or JSON names) field from its text form: scalars,
// enums by name or number, bytes as base64, Timestamp / Duration /
// FieldMask / wrappers as in proto3 JSON. Repeated fields get the value
// appended. InvalidArgument naming `path` on an unknown field or bad value.
absl::Status SetFieldFromString(google::protobuf::Message* message,
                                absl::string_view path,
                                absl::string_view value);

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Renders a successful response (proto3 JSON, or the HttpBody as is).
HttpReply RenderResponse(const Route& route,
                         const google::protobuf::Message& response);

// The HTTP status for a gRPC / absl status code (API.md's mapping).
int HttpStatusForCode(absl::StatusCode code);

// {"code": <grpc code>, "message": ..., "details": []} with the mapped status.
HttpReply ErrorReply(absl::StatusCode code, absl::string_view message);
// Same body with an explicit HTTP status (404 route, 405, 413, 415).
HttpReply ErrorReplyWithStatus(int http_status, absl::StatusCode code,
                               absl::string_view message);

// Quotes `text` as a JSON string (UTF-8 passed through, controls escaped).
std::string JsonQuote(absl::string_view text);

}  // namespace guestlist::gateway
