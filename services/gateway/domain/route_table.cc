#include "services/gateway/domain/route_table.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/api/annotations.pb.h"
#include "google/api/http.pb.h"

namespace guestlist::gateway {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::MethodDescriptor;
using google::protobuf::ServiceDescriptor;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Parses `Segments` of the template grammar into `out`, appending; `text` is
// the part between slashes (no leading '/').
absl::Status ParseSegments(absl::string_view text, PathTemplate* out) {
  for (absl::string_view part : absl::StrSplit(text, '/')) {
    PathTemplate::Segment seg;
    if (part == "*") {
      seg.kind = PathTemplate::Kind::kSingle;
    } else if (part == "**") {
      seg.kind = PathTemplate::Kind::kMulti;
    } else if (part.empty()) {
      return absl::InvalidArgumentError("empty path segment");
    } else if (part.find_first_of("{}*=") != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid path segment \"", part, "\""));
    } else {
      seg.literal = std::string(part);
    }
    if (!out->segments.empty() &&
        out->segments.back().kind == PathTemplate::Kind::kMulti) {
      return absl::InvalidArgumentError("`**` must be the last segment");
    }
    out->segments.push_back(std::move(seg));
  }
  return absl::OkStatus();
}

// Resolves a dotted field path in `message`; null if a part is missing or
// a non-final part is not a singular message.
const FieldDescriptor* ResolveFieldPath(const Descriptor* message,
                                        absl::string_view path) {
  const FieldDescriptor* field = nullptr;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    if (message == nullptr) return nullptr;
    field = message->FindFieldByName(std::string(part));
    if (field == nullptr) return nullptr;
    message =
        field->type() == FieldDescriptor::TYPE_MESSAGE && !field->is_repeated()
            ? field->message_type()
            : nullptr;
  }
  return field;
}

bool HasBytesField(const Descriptor* message) {
  for (int i = 0; i < message->field_count(); ++i) {
    if (message->field(i)->type() == FieldDescriptor::TYPE_BYTES) return true;
  }
  return false;
}

absl::Status AddRoute(const MethodDescriptor* method,
                      const google::api::HttpRule& rule,
                      const BodyLimits& limits, std::vector<Route>* routes) {
  Route route;
  switch (rule.pattern_case()) {
    case google::api::HttpRule::kGet:
      route.http_method = "GET";
      route.pattern = rule.get();
      break;
    case google::api::HttpRule::kPut:
      route.http_method = "PUT";
      route.pattern = rule.put();
      break;
    case google::api::HttpRule::kPost:
      route.http_method = "POST";
      route.pattern = rule.post();
      break;
    case google::api::HttpRule::kDelete:
      route.http_method = "DELETE";
      route.pattern = rule.delete_();
      break;
    case google::api::HttpRule::kPatch:
      route.http_method = "PATCH";
      route.pattern = rule.patch();
      break;
    case google::api::HttpRule::kCustom:
      route.http_method = rule.custom().kind();
      route.pattern = rule.custom().path();
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(method->full_name(), ": http rule without a pattern"));
  }
  auto parsed = ParsePathTemplate(route.pattern);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(method->full_name(), ": path \"", route.pattern,
                     "\": ", parsed.status().message()));
  }
  route.path = *std::move(parsed);
  route.method = method;
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  route.request_prototype = factory->GetPrototype(method->input_type());
  route.response_prototype = factory->GetPrototype(method->output_type());
  if (route.request_prototype == nullptr ||
      route.response_prototype == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(method->full_name(), ": messages are not compiled in"));
  }
  route.service = method->service()->full_name();
  route.grpc_path =
      absl::StrCat("/", method->service()->full_name(), "/", method->name());
  route.body = rule.body();
  route.response_body = rule.response_body();
  route.http_body_response =
      method->output_type()->full_name() == "google.api.HttpBody";
  const Descriptor* input = method->input_type();
  for (const auto& var : route.path.variables) {
    const FieldDescriptor* field = ResolveFieldPath(input, var.field_path);
    if (field == nullptr || field->is_repeated() ||
        field->type() == FieldDescriptor::TYPE_MESSAGE) {
      return absl::InvalidArgumentError(absl::StrCat(
          method->full_name(), ": path variable {", var.field_path,
          "} is not a singular scalar field of ", input->full_name()));
    }
  }
  for (const auto& seg : route.path.segments) {
    if (seg.kind == PathTemplate::Kind::kLiteral) ++route.literal_count;
  }
  if (!route.path.verb.empty()) ++route.literal_count;

  const FieldDescriptor* body_field = nullptr;
  if (!route.body.empty() && route.body != "*") {
    body_field = input->FindFieldByName(route.body);
    if (body_field == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(method->full_name(), ": body field \"", route.body,
                       "\" is not a field of ", input->full_name()));
    }
    route.raw_body = body_field->type() == FieldDescriptor::TYPE_BYTES &&
                     !body_field->is_repeated();
  }
  if (method->server_streaming()) return absl::OkStatus();  // not mapped
  if (method->client_streaming()) {
    // Only "stream the raw body as chunks" can be expressed over HTTP/1.1.
    if (!route.raw_body) return absl::OkStatus();
    route.max_body_bytes = limits.stream;
    for (const auto& var : route.path.variables) {
      const size_t dot = var.field_path.find('.');
      if (dot != std::string::npos) {
        route.query_prefix = var.field_path.substr(0, dot);
        break;
      }
    }
  } else if (route.raw_body) {
    route.max_body_bytes = limits.json_with_bytes;
  } else if (route.body == "*") {
    route.max_body_bytes =
        HasBytesField(input) ? limits.json_with_bytes : limits.json;
  } else if (body_field != nullptr &&
             body_field->type() == FieldDescriptor::TYPE_MESSAGE &&
             HasBytesField(body_field->message_type())) {
    route.max_body_bytes = limits.json_with_bytes;
  } else {
    route.max_body_bytes = limits.json;
  }
  routes->push_back(std::move(route));
  return absl::OkStatus();
}

// Matches `segments` (raw, still percent-encoded) against a template.
bool MatchSegments(const PathTemplate& path,
                   const std::vector<absl::string_view>& segments) {
  const auto& tmpl = path.segments;
  const bool multi =
      !tmpl.empty() && tmpl.back().kind == PathTemplate::Kind::kMulti;
  if (multi ? segments.size() < tmpl.size() : segments.size() != tmpl.size()) {
    return false;
  }
  for (size_t i = 0; i < tmpl.size(); ++i) {
    switch (tmpl[i].kind) {
      case PathTemplate::Kind::kLiteral:
        if (segments[i] != tmpl[i].literal) return false;
        break;
      case PathTemplate::Kind::kSingle:
        if (segments[i].empty()) return false;
        break;
      case PathTemplate::Kind::kMulti:
        break;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> PercentDecode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) {
      return absl::InvalidArgumentError("truncated percent escape");
    }
    const int hi = HexValue(text[i + 1]);
    const int lo = HexValue(text[i + 2]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError("malformed percent escape");
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

absl::StatusOr<PathTemplate> ParsePathTemplate(absl::string_view text) {
  if (text.empty() || text[0] != '/') {
    return absl::InvalidArgumentError("must start with '/'");
  }
  PathTemplate out;
  text.remove_prefix(1);
  // The verb follows the last ':' outside braces.
  size_t depth = 0;
  size_t verb_at = absl::string_view::npos;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}') {
      if (depth == 0) return absl::InvalidArgumentError("unbalanced '}'");
      --depth;
    }
    if (text[i] == ':' && depth == 0) verb_at = i;
  }
  if (depth != 0) return absl::InvalidArgumentError("unbalanced '{'");
  if (verb_at != absl::string_view::npos) {
    out.verb = std::string(text.substr(verb_at + 1));
    if (out.verb.empty()) return absl::InvalidArgumentError("empty verb");
    text = text.substr(0, verb_at);
  }
  size_t pos = 0;
  while (pos <= text.size()) {
    if (pos < text.size() && text[pos] == '{') {
      const size_t close = text.find('}', pos);
      absl::string_view inner = text.substr(pos + 1, close - pos - 1);
      PathTemplate::Variable var;
      const size_t eq = inner.find('=');
      var.field_path = std::string(inner.substr(0, eq));
      if (var.field_path.empty()) {
        return absl::InvalidArgumentError("empty variable name");
      }
      var.begin = static_cast<int>(out.segments.size());
      if (eq == absl::string_view::npos) {
        out.segments.push_back({PathTemplate::Kind::kSingle, ""});
      } else {
        absl::Status s = ParseSegments(inner.substr(eq + 1), &out);
        if (!s.ok()) return s;
      }
      var.end = out.segments.back().kind == PathTemplate::Kind::kMulti
                    ? -1
                    : static_cast<int>(out.segments.size());
      out.variables.push_back(std::move(var));
      pos = close + 1;
      if (pos < text.size() && text[pos] != '/') {
        return absl::InvalidArgumentError("a variable must end its segment");
      }
      if (pos >= text.size()) break;
      ++pos;
      continue;
    }
    size_t slash = text.find('/', pos);
    if (slash == absl::string_view::npos) slash = text.size();
    absl::Status s = ParseSegments(text.substr(pos, slash - pos), &out);
    if (!s.ok()) return s;
    if (slash >= text.size()) break;
    pos = slash + 1;
  }
  return out;
}

absl::StatusOr<RouteTable> RouteTable::FromServices(
    const std::vector<const ServiceDescriptor*>& services,
    const BodyLimits& limits) {
  RouteTable table;
  for (const ServiceDescriptor* service : services) {
    for (int i = 0; i < service->method_count(); ++i) {
      const MethodDescriptor* method = service->method(i);
      if (!method->options().HasExtension(google::api::http)) continue;
      const google::api::HttpRule& rule =
          method->options().GetExtension(google::api::http);
      absl::Status s = AddRoute(method, rule, limits, &table.routes_);
      if (!s.ok()) return s;
      for (const auto& extra : rule.additional_bindings()) {
        s = AddRoute(method, extra, limits, &table.routes_);
        if (!s.ok()) return s;
      }
    }
  }
  return table;
}

RouteTable::Match RouteTable::Find(absl::string_view method,
                                   absl::string_view path) const {
  Match result;
  if (path.empty() || path[0] != '/') return result;
  std::vector<absl::string_view> segments = absl::StrSplit(path.substr(1), '/');
  // A custom verb is the text after the last ':' of the last segment.
  std::vector<absl::string_view> without_verb = segments;
  absl::string_view verb;
  const size_t colon = segments.back().rfind(':');
  if (colon != absl::string_view::npos) {
    verb = segments.back().substr(colon + 1);
    without_verb.back() = segments.back().substr(0, colon);
  }
  std::vector<const Route*> matches;
  bool verb_matched = false;
  for (const Route& route : routes_) {
    const bool has_verb = !route.path.verb.empty();
    if (has_verb &&
        (colon == absl::string_view::npos || verb != route.path.verb)) {
      continue;
    }
    if (!MatchSegments(route.path, has_verb ? without_verb : segments)) {
      continue;
    }
    verb_matched |= has_verb;
    matches.push_back(&route);
  }
  // `/users/x:suspend` also matches `/users/{id}` with id "x:suspend"; the
  // custom method is the intended one.
  if (verb_matched) {
    matches.erase(
        std::remove_if(matches.begin(), matches.end(),
                       [](const Route* r) { return r->path.verb.empty(); }),
        matches.end());
  }
  if (matches.empty()) return result;
  const Route* best = nullptr;
  std::set<std::string> allowed;
  for (const Route* route : matches) {
    allowed.insert(route->http_method);
    if (route->http_method != method) continue;
    if (best == nullptr || route->literal_count > best->literal_count) {
      best = route;
    }
  }
  if (best == nullptr) {
    result.outcome = Outcome::kMethodNotAllowed;
    result.allowed.assign(allowed.begin(), allowed.end());
    return result;
  }
  const std::vector<absl::string_view>& used =
      best->path.verb.empty() ? segments : without_verb;
  for (const auto& var : best->path.variables) {
    const size_t end = var.end < 0 ? used.size() : static_cast<size_t>(var.end);
    std::string raw =
        absl::StrJoin(used.begin() + var.begin, used.begin() + end, "/");
    auto decoded = PercentDecode(raw);
    // A malformed escape is kept verbatim; the service rejects the value.
    result.bindings.emplace_back(var.field_path,
                                 decoded.ok() ? *std::move(decoded) : raw);
  }
  result.outcome = Outcome::kFound;
  result.route = best;
  return result;
}

}  // namespace guestlist::gateway
