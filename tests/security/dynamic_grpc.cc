#include "tests/security/dynamic_grpc.h"

#include <grpcpp/impl/client_unary_call.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/sync_stream.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "guestlist/identity/v1/identity.pb.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "guestlist/notification/v1/notification.pb.h"

namespace guestlist::security {

using google::protobuf::Message;
using google::protobuf::MethodDescriptor;
using google::protobuf::ServiceDescriptor;

std::vector<const ServiceDescriptor*> GuestlistServices() {
  // Going through a message's descriptor() forces the generated .pb.cc
  // (and so the file's descriptors) to be linked in.
  return {
      identity::v1::AuthenticateRequest::descriptor()
          ->file()
          ->FindServiceByName("IdentityService"),
      membership::v1::CheckRequest::descriptor()->file()->FindServiceByName(
          "MembershipService"),
      notification::v1::SendEmailRequest::descriptor()
          ->file()
          ->FindServiceByName("NotificationService"),
  };
}

std::vector<const MethodDescriptor*> AllMethods() {
  std::vector<const MethodDescriptor*> out;
  for (const ServiceDescriptor* s : GuestlistServices()) {
    for (int i = 0; i < s->method_count(); ++i) out.push_back(s->method(i));
  }
  return out;
}

const std::string& ServiceName(const MethodDescriptor* m) {
  return m->service()->name();
}

std::unique_ptr<Message> NewMessage(const google::protobuf::Descriptor* type) {
  const Message* prototype =
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(type);
  return std::unique_ptr<Message>(prototype->New());
}

grpc::Status CallMethod(const std::shared_ptr<grpc::Channel>& channel,
                        const MethodDescriptor* method,
                        const std::vector<const Message*>& requests,
                        const std::string& token, int timeout_ms,
                        std::unique_ptr<Message>* response) {
  const std::string path =
      absl::StrCat("/", method->service()->full_name(), "/", method->name());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(timeout_ms));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  std::unique_ptr<Message> out = NewMessage(method->output_type());
  grpc::Status status;
  if (method->client_streaming()) {
    grpc::internal::RpcMethod rpc(path.c_str(),
                                  grpc::internal::RpcMethod::CLIENT_STREAMING);
    std::unique_ptr<grpc::ClientWriter<Message>> writer(
        grpc::internal::ClientWriterFactory<Message>::Create(channel.get(), rpc,
                                                             &ctx, out.get()));
    for (const Message* m : requests) {
      // A refused stream stops taking messages; Finish has the status.
      if (!writer->Write(*m)) break;
    }
    writer->WritesDone();
    status = writer->Finish();
  } else {
    grpc::internal::RpcMethod rpc(path.c_str(),
                                  grpc::internal::RpcMethod::NORMAL_RPC);
    std::unique_ptr<Message> empty = NewMessage(method->input_type());
    const Message& request = requests.empty() ? *empty : *requests[0];
    status = grpc::internal::BlockingUnaryCall<Message, Message>(
        channel.get(), rpc, &ctx, request, out.get());
  }
  if (response != nullptr) *response = std::move(out);
  return status;
}

long HttpStatusOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

}  // namespace guestlist::security
