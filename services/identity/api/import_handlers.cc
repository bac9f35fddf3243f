#include "services/identity/api/import_handlers.h"

#include "common/server.h"
#include "common/status_macros.h"

namespace guestlist::identity {
namespace {

grpc::Status NotYet(RequestScope& scope, const char* method) {
  return scope.Done(
      grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                   std::string(method) + " is not available in this build"));
}

}  // namespace

absl::StatusOr<Principal> ImportHandlers::Caller(
    const grpc::ServerContext& context) const {
  if (!internal_token_.empty() &&
      HasInternalCredential(context, internal_token_)) {
    return InternalPrincipal();
  }
  ASSIGN_OR_RETURN(std::optional<std::string> token, BearerToken(context));
  if (!token.has_value()) {
    return absl::UnauthenticatedError(
        "this call needs `authorization: Bearer <token>`; sign in with Login");
  }
  if (!authenticate_) return absl::UnavailableError("not ready");
  return authenticate_(*token);
}

grpc::Status ImportHandlers::ImportUsers(
    grpc::ServerContext* context,
    grpc::ServerReader<v1::ImportUsersRequest>* reader,
    v1::ImportReport* response) {
  RequestScope scope(context, "ImportUsers");
  if (service_ == nullptr) return NotYet(scope, "ImportUsers");
  absl::StatusOr<Principal> caller = Caller(*context);
  if (!caller.ok()) return scope.Done(caller.status());
  absl::StatusOr<v1::ImportReport> report = service_->Import(
      *caller,
      [reader](v1::ImportUsersRequest* message) {
        return reader->Read(message);
      },
      [context] { return context->IsCancelled(); });
  if (report.ok()) *response = *std::move(report);
  return scope.Done(report.status());
}

grpc::Status ImportHandlers::GetImport(grpc::ServerContext* context,
                                       const v1::GetImportRequest* request,
                                       v1::ImportReport* response) {
  RequestScope scope(context, "GetImport");
  if (service_ == nullptr) return NotYet(scope, "GetImport");
  absl::StatusOr<Principal> caller = Caller(*context);
  if (!caller.ok()) return scope.Done(caller.status());
  absl::StatusOr<v1::ImportReport> report =
      service_->GetImport(*caller, *request);
  if (report.ok()) *response = *std::move(report);
  return scope.Done(report.status());
}

grpc::Status ImportHandlers::GetImportTemplate(
    grpc::ServerContext* context, const v1::GetImportTemplateRequest* request,
    google::api::HttpBody* response) {
  RequestScope scope(context, "GetImportTemplate");
  if (service_ == nullptr) return NotYet(scope, "GetImportTemplate");
  absl::StatusOr<Principal> caller = Caller(*context);
  if (!caller.ok()) return scope.Done(caller.status());
  absl::StatusOr<google::api::HttpBody> body =
      service_->GetImportTemplate(*caller, *request);
  if (body.ok()) *response = *std::move(body);
  return scope.Done(body.status());
}

grpc::Status ImportHandlers::GetImportErrors(
    grpc::ServerContext* context, const v1::GetImportErrorsRequest* request,
    google::api::HttpBody* response) {
  RequestScope scope(context, "GetImportErrors");
  if (service_ == nullptr) return NotYet(scope, "GetImportErrors");
  absl::StatusOr<Principal> caller = Caller(*context);
  if (!caller.ok()) return scope.Done(caller.status());
  absl::StatusOr<google::api::HttpBody> body =
      service_->GetImportErrors(*caller, *request);
  if (body.ok()) *response = *std::move(body);
  return scope.Done(body.status());
}

grpc::Status ImportHandlers::ExportUsers(grpc::ServerContext* context,
                                         const v1::ExportUsersRequest* request,
                                         google::api::HttpBody* response) {
  RequestScope scope(context, "ExportUsers");
  if (service_ == nullptr) return NotYet(scope, "ExportUsers");
  absl::StatusOr<Principal> caller = Caller(*context);
  if (!caller.ok()) return scope.Done(caller.status());
  absl::StatusOr<google::api::HttpBody> body =
      service_->ExportUsers(*caller, *request);
  if (body.ok()) *response = *std::move(body);
  return scope.Done(body.status());
}

}  // namespace guestlist::identity
