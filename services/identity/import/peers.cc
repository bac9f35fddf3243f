#include "services/identity/import/peers.h"

#include "common/auth.h"
#include "common/grpc_status.h"

namespace guestlist::identity::import {

absl::StatusOr<std::vector<mv1::Group>> GrpcMembershipPeer::ListGroups(
    const std::string& workspace_id) {
  std::vector<mv1::Group> groups;
  mv1::ListGroupsRequest request;
  request.set_workspace_id(workspace_id);
  request.set_page_size(1000);
  for (int page = 0; page < 10000; ++page) {
    grpc::ClientContext ctx;
    AttachInternalCredential(&ctx, internal_token_, timeout_);
    mv1::ListGroupsResponse response;
    grpc::Status s = stub_->ListGroups(&ctx, request, &response);
    if (!s.ok()) return FromGrpcStatus(s);
    for (auto& g : *response.mutable_groups()) groups.push_back(std::move(g));
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  return groups;
}

absl::StatusOr<std::vector<mv1::App>> GrpcMembershipPeer::ListApps(
    const std::string& workspace_id) {
  std::vector<mv1::App> apps;
  mv1::ListAppsRequest request;
  request.set_workspace_id(workspace_id);
  request.set_page_size(1000);
  for (int page = 0; page < 10000; ++page) {
    grpc::ClientContext ctx;
    AttachInternalCredential(&ctx, internal_token_, timeout_);
    mv1::ListAppsResponse response;
    grpc::Status s = stub_->ListApps(&ctx, request, &response);
    if (!s.ok()) return FromGrpcStatus(s);
    for (auto& a : *response.mutable_apps()) apps.push_back(std::move(a));
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  return apps;
}

absl::StatusOr<mv1::GetUserAccessResponse> GrpcMembershipPeer::GetUserAccess(
    const mv1::GetUserAccessRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  mv1::GetUserAccessResponse response;
  grpc::Status s = stub_->GetUserAccess(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<mv1::ApplyGrantsResponse> GrpcMembershipPeer::ApplyGrants(
    const mv1::ApplyGrantsRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  mv1::ApplyGrantsResponse response;
  grpc::Status s = stub_->ApplyGrants(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::Status GrpcMembershipPeer::DeleteUsers(
    const mv1::DeleteUsersRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  mv1::DeleteUsersResponse response;
  return FromGrpcStatus(stub_->DeleteUsers(&ctx, request, &response));
}

absl::StatusOr<nv1::BatchSendEmailResponse> GrpcMailPeer::BatchSendEmail(
    const nv1::BatchSendEmailRequest& request) {
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, internal_token_, timeout_);
  nv1::BatchSendEmailResponse response;
  grpc::Status s = stub_->BatchSendEmail(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

}  // namespace guestlist::identity::import
