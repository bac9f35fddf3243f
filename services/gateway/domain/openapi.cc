#include "services/gateway/domain/openapi.h"

#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace guestlist::gateway {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

std::string SchemaName(const Descriptor* message) {
  return message->full_name();
}

class SchemaBuilder {
 public:
  json Ref(const Descriptor* message) {
    Add(message);
    return {{"$ref", "#/components/schemas/" + SchemaName(message)}};
  }

  json FieldSchema(const FieldDescriptor* field) {
    if (field->is_map()) {
      return {{"type", "object"},
              {"additionalProperties",
               ValueSchema(field->message_type()->map_value())}};
    }
    json value = ValueSchema(field);
    if (field->is_repeated()) return {{"type", "array"}, {"items", value}};
    return value;
  }

  json ValueSchema(const FieldDescriptor* field) {
    switch (field->type()) {
      case FieldDescriptor::TYPE_STRING:
        return {{"type", "string"}};
      case FieldDescriptor::TYPE_BYTES:
        return {{"type", "string"}, {"format", "byte"}};
      case FieldDescriptor::TYPE_BOOL:
        return {{"type", "boolean"}};
      case FieldDescriptor::TYPE_DOUBLE:
        return {{"type", "number"}, {"format", "double"}};
      case FieldDescriptor::TYPE_FLOAT:
        return {{"type", "number"}, {"format", "float"}};
      case FieldDescriptor::TYPE_INT32:
      case FieldDescriptor::TYPE_SINT32:
      case FieldDescriptor::TYPE_SFIXED32:
        return {{"type", "integer"}, {"format", "int32"}};
      case FieldDescriptor::TYPE_UINT32:
      case FieldDescriptor::TYPE_FIXED32:
        return {{"type", "integer"}, {"format", "int64"}, {"minimum", 0}};
      case FieldDescriptor::TYPE_INT64:
      case FieldDescriptor::TYPE_SINT64:
      case FieldDescriptor::TYPE_SFIXED64:
      case FieldDescriptor::TYPE_UINT64:
      case FieldDescriptor::TYPE_FIXED64:
        // proto3 JSON writes 64-bit integers as strings.
        return {{"type", "string"}, {"format", "int64"}};
      case FieldDescriptor::TYPE_ENUM: {
        json values = json::array();
        for (int i = 0; i < field->enum_type()->value_count(); ++i) {
          values.push_back(field->enum_type()->value(i)->name());
        }
        return {{"type", "string"}, {"enum", values}};
      }
      case FieldDescriptor::TYPE_MESSAGE:
      case FieldDescriptor::TYPE_GROUP:
        return MessageSchema(field->message_type());
    }
    return json::object();
  }

  json MessageSchema(const Descriptor* message) {
    const std::string& name = message->full_name();
    if (name == "google.protobuf.Timestamp") {
      return {{"type", "string"}, {"format", "date-time"}};
    }
    if (name == "google.protobuf.Duration") {
      return {{"type", "string"}, {"example", "3600s"}};
    }
    if (name == "google.protobuf.FieldMask") {
      return {{"type", "string"}, {"example", "firstName,lastName"}};
    }
    if (name == "google.protobuf.Struct") return {{"type", "object"}};
    if (name == "google.protobuf.Value") return json::object();
    if (name == "google.protobuf.ListValue") {
      return {{"type", "array"}, {"items", json::object()}};
    }
    if (name == "google.protobuf.Empty") return {{"type", "object"}};
    if (name == "google.protobuf.Any") {
      return {{"type", "object"},
              {"properties", {{"@type", {{"type", "string"}}}}}};
    }
    if (name.rfind("google.protobuf.", 0) == 0 &&
        message->FindFieldByName("value") != nullptr &&
        message->field_count() == 1) {
      return ValueSchema(message->FindFieldByName("value"));
    }
    return Ref(message);
  }

  void Add(const Descriptor* message) {
    const std::string name = SchemaName(message);
    if (schemas_.contains(name) || in_progress_.count(name)) return;
    in_progress_.insert(name);
    json properties = json::object();
    for (int i = 0; i < message->field_count(); ++i) {
      const FieldDescriptor* field = message->field(i);
      properties[field->json_name()] = FieldSchema(field);
    }
    schemas_[name] = {{"type", "object"}, {"properties", properties}};
  }

  json schemas() const { return schemas_; }

 private:
  json schemas_ = json::object();
  std::set<std::string> in_progress_;
};

// Query parameters of a body-less route: the scalar fields (recursively
// through singular messages, dotted) not bound by the path.
void QueryParameters(SchemaBuilder& builder, const Descriptor* message,
                     const std::string& prefix,
                     const std::set<std::string>& bound, int depth, json* out) {
  if (depth > 3) return;
  for (int i = 0; i < message->field_count(); ++i) {
    const FieldDescriptor* field = message->field(i);
    const std::string proto_path = prefix + field->name();
    if (bound.count(proto_path)) continue;
    if (field->is_map()) continue;
    if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
      const std::string& type = field->message_type()->full_name();
      const bool scalar_like = type == "google.protobuf.Timestamp" ||
                               type == "google.protobuf.Duration" ||
                               type == "google.protobuf.FieldMask";
      if (!scalar_like) {
        if (!field->is_repeated() && type.rfind("google.", 0) != 0) {
          QueryParameters(builder, field->message_type(), proto_path + ".",
                          bound, depth + 1, out);
        }
        continue;
      }
    }
    std::string name = prefix.empty() ? field->json_name() : proto_path;
    out->push_back({{"name", name},
                    {"in", "query"},
                    {"required", false},
                    {"schema", builder.FieldSchema(field)}});
  }
}

}  // namespace

std::string BuildOpenApi(const RouteTable& routes, const std::string& title) {
  SchemaBuilder builder;
  json paths = json::object();
  json error_schema = {
      {"type", "object"},
      {"properties",
       {{"code", {{"type", "integer"}, {"description", "gRPC status code"}}},
        {"message", {{"type", "string"}}},
        {"details", {{"type", "array"}, {"items", {{"type", "object"}}}}}}}};
  for (const Route& route : routes.routes()) {
    const auto* method = route.method;
    const Descriptor* input = method->input_type();
    json op;
    op["operationId"] =
        absl::StrCat(method->service()->name(), "_", method->name());
    op["tags"] = json::array({method->service()->name()});
    json params = json::array();
    std::set<std::string> bound;
    for (const auto& var : route.path.variables) {
      bound.insert(var.field_path);
      params.push_back({{"name", var.field_path},
                        {"in", "path"},
                        {"required", true},
                        {"schema", {{"type", "string"}}}});
    }
    if (route.body != "*") {
      if (!route.body.empty()) bound.insert(route.body);
      QueryParameters(builder, input, "", bound, 0, &params);
      if (!route.query_prefix.empty()) {
        const FieldDescriptor* prefix =
            input->FindFieldByName(route.query_prefix);
        if (prefix != nullptr && prefix->message_type() != nullptr) {
          std::set<std::string> inner;
          for (const auto& b : bound) {
            if (b.rfind(route.query_prefix + ".", 0) == 0) {
              inner.insert(b.substr(route.query_prefix.size() + 1));
            }
          }
          // Drop the prefix message itself, list its fields by JSON name.
          json kept = json::array();
          for (auto& p : params) {
            if (p["in"] != "query" || p["name"].get<std::string>().rfind(
                                          route.query_prefix + ".", 0) != 0) {
              kept.push_back(p);
            }
          }
          params = kept;
          QueryParameters(builder, prefix->message_type(), "", inner, 0,
                          &params);
        }
      }
    }
    if (!params.empty()) op["parameters"] = params;
    if (route.raw_body) {
      op["requestBody"] = {
          {"required", true},
          {"content",
           {{"text/csv",
             {{"schema", {{"type", "string"}, {"format", "binary"}}}}}}}};
    } else if (route.body == "*") {
      op["requestBody"] = {
          {"required", true},
          {"content",
           {{"application/json", {{"schema", builder.Ref(input)}}}}}};
    } else if (!route.body.empty()) {
      const FieldDescriptor* field = input->FindFieldByName(route.body);
      op["requestBody"] = {
          {"required", true},
          {"content",
           {{"application/json", {{"schema", builder.FieldSchema(field)}}}}}};
    }
    json ok;
    ok["description"] = "OK";
    if (route.http_body_response) {
      ok["content"] = {
          {"text/csv",
           {{"schema", {{"type", "string"}, {"format", "binary"}}}}}};
    } else {
      ok["content"] = {
          {"application/json",
           {{"schema", builder.MessageSchema(method->output_type())}}}};
    }
    op["responses"] = {
        {"200", ok},
        {"default",
         {{"description", "An error (API.md: gRPC code, message, details)"},
          {"content",
           {{"application/json",
             {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}}}};
    std::string lower = route.http_method;
    for (char& c : lower) c = static_cast<char>(std::tolower(c));
    paths[route.pattern][lower] = op;
  }
  json schemas = builder.schemas();
  schemas["Error"] = error_schema;
  json doc = {
      {"openapi", "3.0.3"},
      {"info",
       {{"title", title},
        {"version", "v1"},
        {"description",
         "Generated by the gateway from the google.api.http annotations of "
         "the services it serves. Authentication: `authorization: Bearer "
         "<token>`."}}},
      {"paths", paths},
      {"components",
       {{"schemas", schemas},
        {"securitySchemes",
         {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}},
      {"security", json::array({{{"bearer", json::array()}}})}};
  return doc.dump();
}

}  // namespace guestlist::gateway
