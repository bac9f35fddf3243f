// Bulk CSV import / export of users: the gRPC handlers, which authenticate
// the caller and delegate to import::ImportService
// (services/identity/import). Without a service bound, every method answers
// UNIMPLEMENTED.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/auth.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"
#include "services/identity/import/import_service.h"

namespace guestlist::identity {

class ImportHandlers {
 public:
  // Resolves a bearer token to its principal (IdentityServiceImpl's
  // AuthenticateToken).
  using TokenAuthenticator =
      std::function<absl::StatusOr<Principal>(const std::string& token)>;

  ImportHandlers() = default;
  explicit ImportHandlers(import::ImportService* service) : service_(service) {}
  virtual ~ImportHandlers() = default;

  // Set once before serving (the service that authenticates is built after
  // this object). The internal credential maps to the internal principal.
  void SetAuthenticator(std::string internal_token,
                        TokenAuthenticator authenticate) {
    internal_token_ = std::move(internal_token);
    authenticate_ = std::move(authenticate);
  }

  virtual grpc::Status ImportUsers(
      grpc::ServerContext* context,
      grpc::ServerReader<v1::ImportUsersRequest>* reader,
      v1::ImportReport* response);
  virtual grpc::Status GetImport(grpc::ServerContext* context,
                                 const v1::GetImportRequest* request,
                                 v1::ImportReport* response);
  virtual grpc::Status GetImportTemplate(
      grpc::ServerContext* context, const v1::GetImportTemplateRequest* request,
      google::api::HttpBody* response);
  virtual grpc::Status GetImportErrors(
      grpc::ServerContext* context, const v1::GetImportErrorsRequest* request,
      google::api::HttpBody* response);
  virtual grpc::Status ExportUsers(grpc::ServerContext* context,
                                   const v1::ExportUsersRequest* request,
                                   google::api::HttpBody* response);

 private:
  absl::StatusOr<Principal> Caller(const grpc::ServerContext& context) const;

  import::ImportService* service_ = nullptr;
  std::string internal_token_;
  TokenAuthenticator authenticate_;
};

}  // namespace guestlist::identity
