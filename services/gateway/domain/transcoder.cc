#include "services/gateway/domain/transcoder.h"

#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/util/json_util.h"

namespace guestlist::gateway {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

// Finds a field by its proto name or its JSON (lowerCamelCase) name.
const FieldDescriptor* FindField(const Descriptor* message,
                                 absl::string_view name) {
  const FieldDescriptor* field = message->FindFieldByName(std::string(name));
  if (field != nullptr) return field;
  for (int i = 0; i < message->field_count(); ++i) {
    if (message->field(i)->json_name() == name) return message->field(i);
  }
  return nullptr;
}

std::string CamelToSnake(absl::string_view text) {
  std::string out;
  for (char c : text) {
    if (absl::ascii_isupper(static_cast<unsigned char>(c))) {
      out.push_back('_');
      out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Cleans a protobuf JSON parser message (which may quote the input over
// several lines with a caret) into one line.
std::string OneLine(absl::string_view text) {
  const size_t newline = text.find('\n');
  return std::string(absl::StripAsciiWhitespace(text.substr(0, newline)));
}

absl::Status BadValue(absl::string_view path, absl::string_view value,
                      absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value ", JsonQuote(value), " for \"", path,
                   "\": expected ", expected));
}

absl::Status SetLeaf(Message* message, const FieldDescriptor* field,
                     absl::string_view path, absl::string_view value) {
  const Reflection* r = message->GetReflection();
  const bool rep = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string text;
      if (field->type() == FieldDescriptor::TYPE_BYTES) {
        if (!absl::Base64Unescape(value, &text) &&
            !absl::WebSafeBase64Unescape(value, &text)) {
          return BadValue(path, value, "base64");
        }
      } else {
        if (!IsValidUtf8(value)) return BadValue(path, "", "UTF-8 text");
        text = std::string(value);
      }
      rep ? r->AddString(message, field, std::move(text))
          : r->SetString(message, field, std::move(text));
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(value, &v)) return BadValue(path, value, "int32");
      rep ? r->AddInt32(message, field, v) : r->SetInt32(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(value, &v)) return BadValue(path, value, "int64");
      rep ? r->AddInt64(message, field, v) : r->SetInt64(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(value, &v)) return BadValue(path, value, "uint32");
      rep ? r->AddUInt32(message, field, v) : r->SetUInt32(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(value, &v)) return BadValue(path, value, "uint64");
      rep ? r->AddUInt64(message, field, v) : r->SetUInt64(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(value, &v)) return BadValue(path, value, "number");
      rep ? r->AddDouble(message, field, v) : r->SetDouble(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(value, &v)) return BadValue(path, value, "number");
      rep ? r->AddFloat(message, field, v) : r->SetFloat(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (value == "true" || value == "1" || value.empty()) {
        v = true;
      } else if (value == "false" || value == "0") {
        v = false;
      } else {
        return BadValue(path, value, "true or false");
      }
      rep ? r->AddBool(message, field, v) : r->SetBool(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* e = field->enum_type();
      const auto* ev = e->FindValueByName(std::string(value));
      int number;
      if (ev == nullptr && absl::SimpleAtoi(value, &number)) {
        ev = e->FindValueByNumber(number);
      }
      if (ev == nullptr) {
        std::string names;
        for (int i = 0; i < e->value_count(); ++i) {
          absl::StrAppend(&names, i == 0 ? "" : ", ", e->value(i)->name());
        }
        return BadValue(path, value, absl::StrCat("one of ", names));
      }
      rep ? r->AddEnumValue(message, field, ev->number())
          : r->SetEnumValue(message, field, ev->number());
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      const std::string& type = field->message_type()->full_name();
      Message* sub = rep ? r->AddMessage(message, field)
                         : r->MutableMessage(message, field);
      if (absl::StartsWith(type, "google.protobuf.") &&
          absl::EndsWith(type, "Value") && type != "google.protobuf.Value" &&
          type != "google.protobuf.ListValue") {
        const FieldDescriptor* inner =
            sub->GetDescriptor()->FindFieldByName("value");
        if (inner != nullptr) return SetLeaf(sub, inner, path, value);
      }
      if (type == "google.protobuf.FieldMask") {
        auto* mask = static_cast<google::protobuf::FieldMask*>(sub);
        std::vector<std::string> paths;
        for (absl::string_view p :
             absl::StrSplit(value, ',', absl::SkipWhitespace())) {
          p = absl::StripAsciiWhitespace(p);
          for (char c : p) {
            if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
                c != '_' && c != '.') {
              return BadValue(path, value,
                              "comma-separated field paths such as "
                              "\"firstName,lastName\"");
            }
          }
          paths.push_back(CamelToSnake(p));
        }
        for (auto& p : paths) mask->add_paths(std::move(p));
        return absl::OkStatus();
      }
      if (type == "google.protobuf.Timestamp" ||
          type == "google.protobuf.Duration") {
        auto s =
            google::protobuf::util::JsonStringToMessage(JsonQuote(value), sub);
        if (!s.ok()) {
          return BadValue(path, value,
                          type == "google.protobuf.Timestamp"
                              ? "an RFC 3339 time (2024-05-01T12:00:00Z)"
                              : "a duration in seconds (\"3600s\")");
        }
        return absl::OkStatus();
      }
      return absl::InvalidArgumentError(
          absl::StrCat("\"", path,
                       "\" is a message: it cannot be set from the URL; "
                       "send it in the JSON body"));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported field ", path));
}

// Like SetFieldFromString, but reports an unknown field through `unknown`
// rather than as an error, so the caller can try another prefix.
absl::Status SetField(Message* message, absl::string_view path,
                      absl::string_view value, bool* unknown) {
  *unknown = false;
  std::vector<absl::string_view> parts = absl::StrSplit(path, '.');
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const FieldDescriptor* field =
        FindField(message->GetDescriptor(), parts[i]);
    if (field == nullptr || field->is_repeated() ||
        field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      *unknown = true;
      return absl::OkStatus();
    }
    message = message->GetReflection()->MutableMessage(message, field);
  }
  const FieldDescriptor* leaf =
      FindField(message->GetDescriptor(), parts.back());
  if (leaf == nullptr || leaf->is_map()) {
    *unknown = true;
    return absl::OkStatus();
  }
  return SetLeaf(message, leaf, path, value);
}

// protobuf 3.21's util::Status carries its own StringPiece.
absl::string_view ToView(google::protobuf::StringPiece text) {
  return absl::string_view(text.data(), text.size());
}

std::string MediaType(absl::string_view content_type) {
  const size_t semi = content_type.find(';');
  return absl::AsciiStrToLower(
      absl::StripAsciiWhitespace(content_type.substr(0, semi)));
}

}  // namespace

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", u);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

absl::StatusOr<QueryParams> ParseQuery(absl::string_view query) {
  QueryParams out;
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    std::string key(pair.substr(0, eq));
    std::string value(eq == absl::string_view::npos ? "" : pair.substr(eq + 1));
    absl::StrReplaceAll({{"+", " "}}, &key);
    absl::StrReplaceAll({{"+", " "}}, &value);
    auto k = PercentDecode(key);
    auto v = PercentDecode(value);
    if (!k.ok() || !v.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed percent escape in query parameter \"", key, "\""));
    }
    out.emplace_back(*std::move(k), *std::move(v));
  }
  return out;
}

absl::StatusOr<BodyKind> ClassifyBody(const Route& route,
                                      absl::string_view content_type) {
  if (route.body.empty()) return BodyKind::kNone;
  const std::string media = MediaType(content_type);
  if (route.raw_body) {
    if (media.empty() || media == "text/csv" || media == "text/plain" ||
        media == "application/octet-stream" ||
        media == "application/vnd.ms-excel" || media == "application/pdf") {
      return BodyKind::kRaw;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "content type \"", media,
        "\" is not accepted here: send the file as text/csv, text/plain or "
        "application/octet-stream"));
  }
  if (media.empty() || media == "application/json" ||
      absl::EndsWith(media, "+json")) {
    return BodyKind::kJson;
  }
  // curl -d sends JSON labelled as a form; the body decides (see
  // BuildRequest). Only body "*" routes take real form fields.
  if (media == "application/x-www-form-urlencoded") return BodyKind::kForm;
  return absl::InvalidArgumentError(
      absl::StrCat("content type \"", media,
                   "\" is not accepted here: send application/json"));
}

absl::Status SetFieldFromString(Message* message, absl::string_view path,
                                absl::string_view value) {
  bool unknown = false;
  absl::Status s = SetField(message, path, value, &unknown);
  if (unknown) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown field \"", path, "\" in ",
                     message->GetDescriptor()->full_name()));
  }
  return s;
}

absl::Status BuildRequest(
    const Route& route,
    const std::vector<std::pair<std::string, std::string>>& bindings,
    const QueryParams& query, BodyKind kind, absl::string_view body,
    Message* request) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const absl::string_view trimmed = absl::StripAsciiWhitespace(body);
  const bool empty_body = trimmed.empty();
  // A "form" that is a JSON object is JSON sent with curl's default type.
  if (kind == BodyKind::kForm && absl::StartsWith(trimmed, "{")) {
    kind = BodyKind::kJson;
  }
  if (kind == BodyKind::kForm && route.body != "*" && !empty_body) {
    return absl::InvalidArgumentError(
        "content type \"application/x-www-form-urlencoded\" is not accepted "
        "here: send application/json");
  }
  if (kind == BodyKind::kJson && !empty_body) {
    std::string wrapped;
    absl::string_view text = body;
    if (route.body != "*") {
      const FieldDescriptor* field =
          request->GetDescriptor()->FindFieldByName(route.body);
      wrapped =
          absl::StrCat("{", JsonQuote(field->json_name()), ":", body, "}");
      text = wrapped;
    }
    auto s = google::protobuf::util::JsonStringToMessage(
        google::protobuf::StringPiece(text.data(), text.size()), request,
        options);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid JSON body: ", OneLine(ToView(s.message()))));
    }
  } else if (kind == BodyKind::kForm) {
    auto form = ParseQuery(body);
    if (!form.ok()) return form.status();
    // Forms may carry keys of their own (RFC 8058's List-Unsubscribe).
    for (const auto& [key, value] : *form) {
      bool unknown = false;
      absl::Status s = SetField(request, key, value, &unknown);
      if (!s.ok()) return s;
    }
  } else if (kind == BodyKind::kRaw && !route.method->client_streaming()) {
    const FieldDescriptor* field =
        request->GetDescriptor()->FindFieldByName(route.body);
    request->GetReflection()->SetString(request, field, std::string(body));
  }
  for (const auto& [key, value] : query) {
    if (key == route.body && route.body != "*") {
      return absl::InvalidArgumentError(absl::StrCat(
          "query parameter \"", key, "\" is the request body; send it there"));
    }
    bool unknown = false;
    absl::Status s = SetField(request, key, value, &unknown);
    if (unknown && !route.query_prefix.empty()) {
      s = SetField(request, absl::StrCat(route.query_prefix, ".", key), value,
                   &unknown);
    }
    if (unknown) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown query parameter \"", key, "\" for ",
                       route.http_method, " ", route.pattern));
    }
    if (!s.ok()) return s;
  }
  for (const auto& [path, value] : bindings) {
    absl::Status s = SetFieldFromString(request, path, value);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

HttpReply RenderResponse(const Route& route, const Message& response) {
  HttpReply reply;
  const Descriptor* type = response.GetDescriptor();
  const Reflection* r = response.GetReflection();
  if (route.http_body_response) {
    const FieldDescriptor* ct = type->FindFieldByName("content_type");
    const FieldDescriptor* data = type->FindFieldByName("data");
    reply.content_type = r->GetString(response, ct);
    if (reply.content_type.empty()) {
      reply.content_type = "application/octet-stream";
    }
    reply.body = r->GetString(response, data);
    return reply;
  }
  const Message* shown = &response;
  if (!route.response_body.empty()) {
    const FieldDescriptor* field = type->FindFieldByName(route.response_body);
    if (field != nullptr && !field->is_repeated() &&
        field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      shown = &r->GetMessage(response, field);
    }
  }
  google::protobuf::util::JsonPrintOptions options;
  // Clients read `"allowed": false` and `"users": []` more easily than an
  // absent key.
  options.always_print_primitive_fields = true;
  auto s =
      google::protobuf::util::MessageToJsonString(*shown, &reply.body, options);
  if (!s.ok()) {
    return ErrorReply(absl::StatusCode::kInternal,
                      absl::StrCat("cannot render the response as JSON: ",
                                   OneLine(ToView(s.message()))));
  }
  return reply;
}

int HttpStatusForCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

HttpReply ErrorReplyWithStatus(int http_status, absl::StatusCode code,
                               absl::string_view message) {
  HttpReply reply;
  reply.status = http_status;
  reply.body =
      absl::StrCat("{\"code\":", static_cast<int>(code),
                   ",\"message\":", JsonQuote(message), ",\"details\":[]}");
  return reply;
}

HttpReply ErrorReply(absl::StatusCode code, absl::string_view message) {
  return ErrorReplyWithStatus(HttpStatusForCode(code), code, message);
}

}  // namespace guestlist::gateway
