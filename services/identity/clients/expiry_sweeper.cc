#include "services/identity/clients/expiry_sweeper.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "services/identity/api/convert.h"
#include "services/identity/clients/peers.h"
#include "services/identity/domain/rules.h"

namespace guestlist::identity {

absl::StatusOr<ExpirySweeper::Result> ExpirySweeper::RunOnce() {
  const absl::Time now = clock_->Now();
  Result result;
  bool more = true;
  while (more) {
    more = false;
    RETURN_IF_ERROR(repository_->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(std::vector<UserRecord> expired,
                       tx.ExpireUsers(now, 500));
      for (const UserRecord& u : expired) {
        membership::v1::SyncUsersRequest sync;
        *sync.add_users() = ToMembershipRecord(u);
        RETURN_IF_ERROR(
            tx.Enqueue({kTopicSyncUsers, sync.SerializeAsString(),
                        absl::StrCat("user:", u.id, ":", u.version)}));
      }
      result.expired += expired.size();
      more = expired.size() == 500;
      return absl::OkStatus();
    }));
  }
  more = true;
  absl::flat_hash_map<std::string, std::string> workspace_names;
  while (more) {
    more = false;
    RETURN_IF_ERROR(repository_->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(std::vector<UserRecord> due,
                       tx.TakeDueReminders(now, reminder_lead_, 500));
      for (const UserRecord& u : due) {
        auto it = workspace_names.find(u.workspace_id);
        if (it == workspace_names.end()) {
          ASSIGN_OR_RETURN(WorkspaceRecord ws,
                           tx.GetWorkspace(u.workspace_id, false));
          it = workspace_names.emplace(ws.id, ws.display_name).first;
        }
        notification::v1::SendEmailRequest email;
        email.set_workspace_id(u.workspace_id);
        email.set_template_("access_expiry");
        email.set_to(u.email);
        email.set_to_name(DisplayName(u));
        auto& vars = *email.mutable_variables();
        vars["workspace_name"] = it->second;
        vars["first_name"] = u.first_name;
        vars["expire_time"] = FormatRfc3339(*u.access_expire_time);
        email.set_category("access_expiry");
        const std::string key =
            absl::StrCat("access_expiry:", u.id, ":",
                         absl::ToUnixSeconds(*u.access_expire_time));
        email.set_idempotency_key(key);
        email.set_recipient_user_id(u.id);
        RETURN_IF_ERROR(
            tx.Enqueue({kTopicSendEmail, email.SerializeAsString(), key}));
      }
      result.reminded += due.size();
      more = due.size() == 500;
      return absl::OkStatus();
    }));
  }
  RETURN_IF_ERROR(repository_->Transact([&](IdentityTx& tx) {
    // Rate-limit windows are at most a day long.
    return tx.DeleteStale(now, absl::Hours(24)).status();
  }));
  if ((result.expired > 0 || result.reminded > 0) && kick_outbox_) {
    kick_outbox_();
  }
  return result;
}

void ExpirySweeper::Start(absl::Duration interval) {
  thread_ = std::thread([this, interval] {
    while (true) {
      absl::StatusOr<Result> r = RunOnce();
      if (!r.ok()) {
        LogWarning("expiry sweep failed",
                   {{"error", std::string(r.status().message())}});
      } else if (r->expired > 0 || r->reminded > 0) {
        LogInfo("expiry sweep", {{"expired", absl::StrCat(r->expired)},
                                 {"reminded", absl::StrCat(r->reminded)}});
      }
      if (housekeeping_) housekeeping_();
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), interval);
      if (stop_) return;
    }
  });
}

void ExpirySweeper::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace guestlist::identity
