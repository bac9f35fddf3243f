// The membership and notification calls the bulk import makes, behind small
// interfaces so the executor is tested with fakes; the gRPC versions attach
// the internal service credential and a deadline to every call.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "guestlist/membership/v1/membership.grpc.pb.h"
#include "guestlist/notification/v1/notification.grpc.pb.h"

namespace guestlist::identity::import {

namespace mv1 = ::guestlist::membership::v1;
namespace nv1 = ::guestlist::notification::v1;

class MembershipPeer {
 public:
  virtual ~MembershipPeer() = default;
  // Every group / app of the workspace (all pages).
  virtual absl::StatusOr<std::vector<mv1::Group>> ListGroups(
      const std::string& workspace_id) = 0;
  virtual absl::StatusOr<std::vector<mv1::App>> ListApps(
      const std::string& workspace_id) = 0;
  // At most 1000 ids per call.
  virtual absl::StatusOr<mv1::GetUserAccessResponse> GetUserAccess(
      const mv1::GetUserAccessRequest& request) = 0;
  // At most 1000 users per call.
  virtual absl::StatusOr<mv1::ApplyGrantsResponse> ApplyGrants(
      const mv1::ApplyGrantsRequest& request) = 0;
  virtual absl::Status DeleteUsers(const mv1::DeleteUsersRequest& request) = 0;
};

class MailPeer {
 public:
  virtual ~MailPeer() = default;
  // At most 500 messages per call.
  virtual absl::StatusOr<nv1::BatchSendEmailResponse> BatchSendEmail(
      const nv1::BatchSendEmailRequest& request) = 0;
};

class GrpcMembershipPeer final : public MembershipPeer {
 public:
  GrpcMembershipPeer(
      std::shared_ptr<mv1::MembershipService::StubInterface> stub,
      std::string internal_token, absl::Duration timeout)
      : stub_(std::move(stub)),
        internal_token_(std::move(internal_token)),
        timeout_(timeout) {}

  absl::StatusOr<std::vector<mv1::Group>> ListGroups(
      const std::string& workspace_id) override;
  absl::StatusOr<std::vector<mv1::App>> ListApps(
      const std::string& workspace_id) override;
  absl::StatusOr<mv1::GetUserAccessResponse> GetUserAccess(
      const mv1::GetUserAccessRequest& request) override;
  absl::StatusOr<mv1::ApplyGrantsResponse> ApplyGrants(
      const mv1::ApplyGrantsRequest& request) override;
  absl::Status DeleteUsers(const mv1::DeleteUsersRequest& request) override;

 private:
  std::shared_ptr<mv1::MembershipService::StubInterface> stub_;
  const std::string internal_token_;
  const absl::Duration timeout_;
};

class GrpcMailPeer final : public MailPeer {
 public:
  GrpcMailPeer(std::shared_ptr<nv1::NotificationService::StubInterface> stub,
               std::string internal_token, absl::Duration timeout)
      : stub_(std::move(stub)),
        internal_token_(std::move(internal_token)),
        timeout_(timeout) {}

  absl::StatusOr<nv1::BatchSendEmailResponse> BatchSendEmail(
      const nv1::BatchSendEmailRequest& request) override;

 private:
  std::shared_ptr<nv1::NotificationService::StubInterface> stub_;
  const std::string internal_token_;
  const absl::Duration timeout_;
};

}  // namespace guestlist::identity::import
