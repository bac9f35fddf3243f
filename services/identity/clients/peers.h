// Identity's view of its peers: the few membership and notification calls
// it makes, behind small interfaces so tests can fake them. The gRPC
// implementations attach the internal credential (or forward the caller's
// token for permission checks) and a deadline.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "guestlist/membership/v1/membership.grpc.pb.h"
#include "guestlist/notification/v1/notification.grpc.pb.h"

namespace guestlist::identity {

namespace mv1 = ::guestlist::membership::v1;
namespace nv1 = ::guestlist::notification::v1;

class MembershipClient {
 public:
  virtual ~MembershipClient() = default;
  virtual absl::Status SyncUsers(const mv1::SyncUsersRequest& request) = 0;
  virtual absl::Status SyncWorkspace(
      const mv1::SyncWorkspaceRequest& request) = 0;
  // Asked with the caller's own token (forwarded from `caller`).
  virtual absl::StatusOr<mv1::BatchCheckResponse> BatchCheck(
      const grpc::ServerContext& caller,
      const mv1::BatchCheckRequest& request) = 0;
  virtual absl::StatusOr<mv1::ApplyGrantsResponse> ApplyGrants(
      const mv1::ApplyGrantsRequest& request) = 0;
  virtual absl::Status DeleteUsers(const mv1::DeleteUsersRequest& request) = 0;
};

class NotificationClient {
 public:
  virtual ~NotificationClient() = default;
  virtual absl::Status SendEmail(const nv1::SendEmailRequest& request) = 0;
  // Queues several emails in one call, all or none (notification refuses
  // the whole batch when one message is malformed). By default one by one.
  virtual absl::Status BatchSendEmail(
      const nv1::BatchSendEmailRequest& request) {
    for (const auto& m : request.messages()) {
      if (absl::Status s = SendEmail(m); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
};

class GrpcMembershipClient final : public MembershipClient {
 public:
  GrpcMembershipClient(
      std::shared_ptr<mv1::MembershipService::StubInterface> stub,
      std::string internal_token, absl::Duration timeout)
      : stub_(std::move(stub)),
        internal_token_(std::move(internal_token)),
        timeout_(timeout) {}

  absl::Status SyncUsers(const mv1::SyncUsersRequest& request) override;
  absl::Status SyncWorkspace(const mv1::SyncWorkspaceRequest& request) override;
  absl::StatusOr<mv1::BatchCheckResponse> BatchCheck(
      const grpc::ServerContext& caller,
      const mv1::BatchCheckRequest& request) override;
  absl::StatusOr<mv1::ApplyGrantsResponse> ApplyGrants(
      const mv1::ApplyGrantsRequest& request) override;
  absl::Status DeleteUsers(const mv1::DeleteUsersRequest& request) override;

 private:
  std::shared_ptr<mv1::MembershipService::StubInterface> stub_;
  const std::string internal_token_;
  const absl::Duration timeout_;
};

class GrpcNotificationClient final : public NotificationClient {
 public:
  GrpcNotificationClient(
      std::shared_ptr<nv1::NotificationService::StubInterface> stub,
      std::string internal_token, absl::Duration timeout)
      : stub_(std::move(stub)),
        internal_token_(std::move(internal_token)),
        timeout_(timeout) {}

  absl::Status SendEmail(const nv1::SendEmailRequest& request) override;
  absl::Status BatchSendEmail(
      const nv1::BatchSendEmailRequest& request) override;

 private:
  std::shared_ptr<nv1::NotificationService::StubInterface> stub_;
  const std::string internal_token_;
  const absl::Duration timeout_;
};

}  // namespace guestlist::identity
