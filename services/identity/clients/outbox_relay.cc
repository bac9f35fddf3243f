#include "services/identity/clients/outbox_relay.h"

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

// Queues `batch` in one BatchSendEmail; when notification refuses it as
// malformed, the messages go one by one so only the bad one is dropped.
// Returns one status per message (OK for a dropped one).
std::vector<absl::Status> SendBatch(NotificationClient* notification,
                                    const nv1::BatchSendEmailRequest& batch) {
  const absl::Status all = notification->BatchSendEmail(batch);
  if (all.code() != absl::StatusCode::kInvalidArgument) {
    return std::vector<absl::Status>(batch.messages_size(), all);
  }
  std::vector<absl::Status> out;
  for (const auto& m : batch.messages()) {
    absl::Status s = notification->SendEmail(m);
    if (s.code() == absl::StatusCode::kInvalidArgument) {
      LogError("dropping an email the peer refuses",
               {{"to_user", m.recipient_user_id()},
                {"error", std::string(s.message())}});
      s = absl::OkStatus();
    }
    out.push_back(s);
  }
  return out;
}

// Rows of single emails (kTopicSendEmail), at most 500 per BatchSendEmail
// (notification's limit); one status per row.
std::vector<absl::Status> SendEmailRows(
    NotificationClient* notification,
    const std::vector<std::string>& payloads) {
  constexpr int kMaxBatch = 500;
  std::vector<absl::Status> out(payloads.size());
  nv1::BatchSendEmailRequest batch;
  std::vector<size_t> rows;  // payload index of each message in `batch`
  auto flush = [&] {
    std::vector<absl::Status> sent = SendBatch(notification, batch);
    for (size_t k = 0; k < rows.size(); ++k) out[rows[k]] = sent[k];
    batch.Clear();
    rows.clear();
  };
  for (size_t i = 0; i < payloads.size(); ++i) {
    if (!batch.add_messages()->ParseFromString(payloads[i])) {
      batch.mutable_messages()->RemoveLast();
      LogError("dropping an outbox message that does not parse",
               {{"topic", kTopicSendEmail}});
      continue;  // out[i] stays OK: the row is deleted
    }
    rows.push_back(i);
    if (batch.messages_size() == kMaxBatch) flush();
  }
  if (!rows.empty()) flush();
  return out;
}

}  // namespace

void RegisterOutboxHandlers(OutboxRelay* relay, MembershipClient* membership,
                            NotificationClient* notification,
                            Repository* repository) {
  // An interrupted invite or import: remove from membership exactly the
  // users identity does not have (an import's row names up to 5000, some
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
  // the row queues each email once.
  relay->Register(
      kTopicBatchSendEmail,
      Handler<nv1::BatchSendEmailRequest>(
          kTopicBatchSendEmail, [notification](const auto& r) -> absl::Status {
            for (const absl::Status& s : SendBatch(notification, r)) {
              if (!s.ok()) return s;
            }
            return absl::OkStatus();
          }));
  // Emails due together (a burst of invites) go in one BatchSendEmail.
  relay->RegisterBatch(
      kTopicSendEmail,
      [notification](const std::vector<std::string>& payloads) {
        return SendEmailRows(notification, payloads);
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
