// gRPC handlers of guestlist.notification.v1.NotificationService: request
// validation, who may call what, proto <-> storage conversion. Delivery
// happens in the background (delivery/dispatcher.h).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/auth.h"
#include "common/clock.h"
#include "common/random.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"
#include "guestlist/membership/v1/membership.grpc.pb.h"
#include "guestlist/notification/v1/notification.grpc.pb.h"
#include "services/notification/storage/message_store.h"

namespace guestlist::notification {

namespace pb = ::guestlist::notification::v1;

struct ServiceOptions {
  std::string internal_token;
  std::string unsubscribe_secret;
  std::string public_url = "http://127.0.0.1:8080";
  absl::Duration peer_timeout = absl::Seconds(10);
  // Called after messages were queued (wakes the delivery workers).
  std::function<void()> on_queued;
};

class NotificationService final : public pb::NotificationService::Service {
 public:
  NotificationService(
      MessageStore* store, Authenticator* authenticator, const Clock* clock,
      RandomSource* random,
      std::shared_ptr<identity::v1::IdentityService::StubInterface> identity,
      std::shared_ptr<membership::v1::MembershipService::StubInterface>
          membership,
      ServiceOptions options);

  grpc::Status SendEmail(grpc::ServerContext* context,
                         const pb::SendEmailRequest* request,
                         pb::Message* response) override;
  grpc::Status BatchSendEmail(grpc::ServerContext* context,
                              const pb::BatchSendEmailRequest* request,
                              pb::BatchSendEmailResponse* response) override;
  grpc::Status GetMessage(grpc::ServerContext* context,
                          const pb::GetMessageRequest* request,
                          pb::Message* response) override;
  grpc::Status ListMessages(grpc::ServerContext* context,
                            const pb::ListMessagesRequest* request,
                            pb::ListMessagesResponse* response) override;
  grpc::Status Unsubscribe(grpc::ServerContext* context,
                           const pb::UnsubscribeRequest* request,
                           pb::UnsubscribeResponse* response) override;
  grpc::Status GetPreferences(grpc::ServerContext* context,
                              const pb::GetPreferencesRequest* request,
                              pb::NotificationPreferences* response) override;
  grpc::Status UpdatePreferences(
      grpc::ServerContext* context, const pb::UpdatePreferencesRequest* request,
      pb::NotificationPreferences* response) override;
  grpc::Status PublishReport(grpc::ServerContext* context,
                             const pb::PublishReportRequest* request,
                             pb::PublishReportResponse* response) override;

 private:
  absl::StatusOr<NewMessage> BuildMessage(const pb::SendEmailRequest& request,
                                          size_t index);
  absl::StatusOr<std::vector<StoredMessage>> Queue(
      const std::vector<NewMessage>& messages,
      const std::vector<NewAttachment>& attachments);
  absl::Status RequireInternal(const grpc::ServerContext& context,
                               const char* method);
  // The user as identity knows it, for the preferences methods: NotFound,
  // PermissionDenied (neither the user nor an admin of its workspace).
  absl::StatusOr<identity::v1::User> PreferencesUser(
      const grpc::ServerContext& context, const std::string& user_id);
  absl::StatusOr<pb::NotificationPreferences> LoadPreferences(
      const identity::v1::User& user);
  std::string UnsubscribeLink(const std::string& workspace_id,
                              const std::string& recipient,
                              const std::string& category) const;

  MessageStore* store_;
  Authenticator* authenticator_;
  const Clock* clock_;
  RandomSource* random_;
  std::shared_ptr<identity::v1::IdentityService::StubInterface> identity_;
  std::shared_ptr<membership::v1::MembershipService::StubInterface> membership_;
  const ServiceOptions options_;
};

// Converts a stored message to its API form.
void ToProto(const StoredMessage& message, pb::Message* out);

}  // namespace guestlist::notification
