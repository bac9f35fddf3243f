#include "services/identity/clients/peers.h"

#include "absl/strings/str_cat.h"
#include "common/auth.h"
#include "common/grpc_status.h"

namespace guestlist::identity {
namespace {

absl::Status PeerStatus(const grpc::Status& status, const char* peer) {
  if (status.ok()) return absl::OkStatus();
  absl::Status s = FromGrpcStatus(status);
  if (s.code() == absl::StatusCode::kUnavailable ||
      s.code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::UnavailableError(
        absl::StrCat("the ", peer, " service is unavailable (", s.message(),
                     "); retry shortly"));
  }
  return s;
}

}  // namespace

absl::Status GrpcMembershipClient::SyncUsers(
    const mv1::SyncUsersRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  mv1::SyncUsersResponse response;
  return PeerStatus(stub_->SyncUsers(&ctx, request, &response), "membership");
}

absl::Status GrpcMembershipClient::SyncWorkspace(
    const mv1::SyncWorkspaceRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  mv1::SyncWorkspaceResponse response;
  return PeerStatus(stub_->SyncWorkspace(&ctx, request, &response),
                    "membership");
}

absl::StatusOr<mv1::BatchCheckResponse> GrpcMembershipClient::BatchCheck(
    const grpc::ServerContext& caller, const mv1::BatchCheckRequest& request) {
  grpc::ClientContext ctx;
  ForwardCaller(caller, &ctx, timeout_);
  mv1::BatchCheckResponse response;
  grpc::Status status = stub_->BatchCheck(&ctx, request, &response);
  if (!status.ok()) return PeerStatus(status, "membership");
  return response;
}

absl::StatusOr<mv1::ApplyGrantsResponse> GrpcMembershipClient::ApplyGrants(
    const mv1::ApplyGrantsRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  mv1::ApplyGrantsResponse response;
  grpc::Status status = stub_->ApplyGrants(&ctx, request, &response);
  if (!status.ok()) return PeerStatus(status, "membership");
  return response;
}

absl::Status GrpcMembershipClient::DeleteUsers(
    const mv1::DeleteUsersRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  mv1::DeleteUsersResponse response;
  return PeerStatus(stub_->DeleteUsers(&ctx, request, &response), "membership");
}

absl::Status GrpcNotificationClient::SendEmail(
    const nv1::SendEmailRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  nv1::Message response;
  return PeerStatus(stub_->SendEmail(&ctx, request, &response), "notification");
}

absl::Status GrpcNotificationClient::BatchSendEmail(
    const nv1::BatchSendEmailRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  nv1::BatchSendEmailResponse response;
  return PeerStatus(stub_->BatchSendEmail(&ctx, request, &response),
                    "notification");
}

}  // namespace guestlist::identity
