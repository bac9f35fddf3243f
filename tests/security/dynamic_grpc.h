// Descriptor-driven gRPC calls for the security tests: every method of the
// three guestlist services, found through the generated descriptors linked
// into the test, can be called with a message built by reflection. Tests
// that walk the descriptors cannot go stale when a method or field is added.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

namespace guestlist::security {

// The three public services, in a fixed order.
std::vector<const google::protobuf::ServiceDescriptor*> GuestlistServices();

// Every method of GuestlistServices().
std::vector<const google::protobuf::MethodDescriptor*> AllMethods();

// "IdentityService", ... for a method: which service's address to dial.
const std::string& ServiceName(const google::protobuf::MethodDescriptor* m);

// An empty message of the given type (a DynamicMessage-free prototype copy
// from the generated factory, so it serialises like the real thing).
std::unique_ptr<google::protobuf::Message> NewMessage(
    const google::protobuf::Descriptor* type);

// One unary call or a client-streaming call made of `requests`, with
// `authorization: Bearer <token>` unless `token` is empty. The answer is
// parsed into a new message of the method's output type when OK.
grpc::Status CallMethod(
    const std::shared_ptr<grpc::Channel>& channel,
    const google::protobuf::MethodDescriptor* method,
    const std::vector<const google::protobuf::Message*>& requests,
    const std::string& token, int timeout_ms = 20000,
    std::unique_ptr<google::protobuf::Message>* response = nullptr);

// gRPC code -> HTTP status, as API.md maps them (so one expectation table
// serves both transports).
long HttpStatusOf(grpc::StatusCode code);

}  // namespace guestlist::security
