#include "services/identity/clients/outbox_relay.h"

#include "common/logging.h"
#include "services/identity/domain/model.h"

namespace guestlist::identity {
namespace {

template <typename Request>
OutboxRelay::Handler Handler(const char* topic,
                             std::function<absl::Status(const Request&)> send) {
  return [topic, send](const std::string& payload) -> absl::Status {
    Request request;
    absl::Status s =
        request.ParseFromString(payload)
            ? send(request)
            : absl::InvalidArgumentError("the stored payload does not parse");
    if (s.code() == absl::StatusCode::kInvalidArgument) {
      LogError("dropping an outbox message the peer refuses",
               {{"topic", topic}, {"error", std::string(s.message())}});
      return absl::OkStatus();
    }
    return s;
  };
}

}  // namespace

void RegisterOutboxHandlers(OutboxRelay* relay, MembershipClient* membership,
                            NotificationClient* notification,
                            Repository* repository) {
  relay->Register(kTopicReconcileInvite,
                  Handler<mv1::DeleteUsersRequest>(
                      kTopicReconcileInvite,
                      [membership, repository](const auto& r) -> absl::Status {
                        bool exists = false;
                        absl::Status s =
                            repository->Transact([&](IdentityTx& tx) {
                              for (const std::string& id : r.user_ids()) {
                                absl::StatusOr<bool> one = tx.UserExists(id);
                                if (!one.ok()) return one.status();
                                exists = exists || *one;
                              }
                              return absl::OkStatus();
                            });
                        if (!s.ok()) return s;
                        // The invite committed: nothing to undo.
                        if (exists) return absl::OkStatus();
                        return membership->DeleteUsers(r);
                      }));
  relay->Register(kTopicSendEmail,
                  Handler<nv1::SendEmailRequest>(
                      kTopicSendEmail, [notification](const auto& r) {
                        return notification->SendEmail(r);
                      }));
  relay->Register(kTopicSyncUsers,
                  Handler<mv1::SyncUsersRequest>(
                      kTopicSyncUsers, [membership](const auto& r) {
                        return membership->SyncUsers(r);
                      }));
  relay->Register(kTopicSyncWorkspace,
                  Handler<mv1::SyncWorkspaceRequest>(
                      kTopicSyncWorkspace, [membership](const auto& r) {
                        return membership->SyncWorkspace(r);
                      }));
}

}  // namespace guestlist::identity
