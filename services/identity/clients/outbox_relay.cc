#include "services/identity/clients/outbox_relay.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "common/logging.h"
#include "services/identity/domain/model.h"

namespace guestlist::identity {
namespace {

// Same value as services/identity/import/import_tx.h kTopicBatchSendEmail
// (the clients library does not depend on the import's).
constexpr char kTopicBatchSendEmail[] = "notification.BatchSendEmail";

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

// One BatchSendEmail per 500 payloads; when notification refuses a batch
// as malformed, its messages go one by one so only the bad one is dropped.
std::vector<absl::Status> SendEmailsInBatches(
    NotificationClient* notification,
    const std::vector<std::string>& payloads) {
  constexpr size_t kMaxBatch = 500;  // notification's limit
  const OutboxRelay::Handler one_by_one = Handler<nv1::SendEmailRequest>(
      kTopicSendEmail,
      [notification](const auto& r) { return notification->SendEmail(r); });
  std::vector<absl::Status> out(payloads.size());
  for (size_t begin = 0; begin < payloads.size(); begin += kMaxBatch) {
    const size_t end = std::min(payloads.size(), begin + kMaxBatch);
    nv1::BatchSendEmailRequest batch;
    bool parsed = true;
    for (size_t i = begin; i < end && parsed; ++i) {
      parsed = batch.add_messages()->ParseFromString(payloads[i]);
    }
    absl::Status s = parsed ? notification->BatchSendEmail(batch)
                            : absl::InvalidArgumentError("unparsable row");
    for (size_t i = begin; i < end; ++i) {
      out[i] = s.code() == absl::StatusCode::kInvalidArgument
                   ? one_by_one(payloads[i])
                   : s;
    }
  }
  return out;
}

}  // namespace

void RegisterOutboxHandlers(OutboxRelay* relay, MembershipClient* membership,
                            NotificationClient* notification,
                            Repository* repository) {
  // An interrupted invite or import: remove from membership exactly the
  // users identity does not have (an import's row names up to 1000, some
  // of which may have been committed by an earlier attempt).
  relay->Register(kTopicReconcileInvite,
                  Handler<mv1::DeleteUsersRequest>(
                      kTopicReconcileInvite,
                      [membership, repository](const auto& r) -> absl::Status {
                        const std::vector<std::string> ids(r.user_ids().begin(),
                                                           r.user_ids().end());
                        absl::flat_hash_set<std::string> present;
                        absl::Status s =
                            repository->Transact([&](IdentityTx& tx) {
                              absl::StatusOr<std::vector<UserRecord>> users =
                                  tx.GetUsers(r.workspace_id(), ids);
                              if (!users.ok()) return users.status();
                              for (const UserRecord& u : *users)
                                present.insert(u.id);
                              return absl::OkStatus();
                            });
                        if (!s.ok()) return s;
                        mv1::DeleteUsersRequest missing;
                        missing.set_workspace_id(r.workspace_id());
                        for (const std::string& id : ids) {
                          if (!present.contains(id)) missing.add_user_ids(id);
                        }
                        // Everything committed: nothing to undo.
                        if (missing.user_ids_size() == 0)
                          return absl::OkStatus();
                        return membership->DeleteUsers(missing);
                      }));
  // Invitation emails of a bulk import, up to 500 per row
  // (services/identity/import/import_tx.h kTopicBatchSendEmail), in one
  // BatchSendEmail. Each message has its own idempotency key, so a retry of
  // the row queues each email once. A batch refused as malformed goes one
  // by one, so only the bad message is dropped.
  relay->Register(
      kTopicBatchSendEmail,
      Handler<nv1::BatchSendEmailRequest>(
          kTopicBatchSendEmail, [notification](const auto& r) -> absl::Status {
            absl::Status batch = notification->BatchSendEmail(r);
            if (batch.code() != absl::StatusCode::kInvalidArgument) {
              return batch;
            }
            for (const auto& m : r.messages()) {
              absl::Status s = notification->SendEmail(m);
              if (s.code() == absl::StatusCode::kInvalidArgument) {
                LogError("dropping an invitation email the peer refuses",
                         {{"to_user", m.recipient_user_id()},
                          {"error", std::string(s.message())}});
                continue;
              }
              if (!s.ok()) return s;
            }
            return absl::OkStatus();
          }));
  // Emails due together (a burst of invites) go in one BatchSendEmail.
  relay->RegisterBatch(
      kTopicSendEmail,
      [notification](const std::vector<std::string>& payloads) {
        return SendEmailsInBatches(notification, payloads);
      });
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
