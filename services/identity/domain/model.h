// Identity's domain records: what the repository stores and the rules work
// on. Kinds and statuses reuse the proto enums (stored as their names).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "guestlist/identity/v1/identity.pb.h"

namespace guestlist::identity {

using UserKind = ::guestlist::identity::v1::UserKind;
using UserStatus = ::guestlist::identity::v1::UserStatus;
using InvitationState = ::guestlist::identity::v1::Invitation::State;
using AccessRequestState = ::guestlist::identity::v1::AccessRequest::State;

inline constexpr absl::Duration kDefaultInvitationTtl = absl::Hours(24 * 7);
inline constexpr absl::Duration kMaxInvitationTtl = absl::Hours(24 * 30);

struct WorkspaceRecord {
  std::string id;
  std::string name;
  std::string display_name;
  int license_count = 0;
  bool members_can_invite_guests = true;
  absl::Duration invitation_ttl = kDefaultInvitationTtl;
  std::vector<std::string> allowed_email_domains;
  std::vector<std::string> blocked_email_domains;
  bool request_access_enabled = false;
  int64_t version = 1;
  absl::Time create_time;
  absl::Time update_time;
};

struct UserRecord {
  std::string id;
  std::string workspace_id;
  std::string username;
  std::string email;
  std::string first_name;
  std::string last_name;
  UserKind kind = v1::GUEST;
  UserStatus status = v1::INVITED;
  std::string metadata_json;  // "" = none
  std::optional<absl::Time> access_expire_time;
  std::string password_hash;  // "" = none
  int64_t version = 1;
  absl::Time create_time;
  absl::Time update_time;
};

struct InvitationRecord {
  std::string id;
  std::string workspace_id;
  std::string user_id;
  std::string inviter_id;  // "" = operator / API key
  std::string token_hash;
  int token_generation = 1;
  InvitationState state = v1::Invitation::PENDING;
  absl::Time expire_time;
  absl::Time create_time;
};

struct SessionRecord {
  std::string id;
  std::string token_hash;
  std::string user_id;
  std::string workspace_id;
  absl::Time create_time;
  absl::Time expire_time;
};

struct ApiKeyRecord {
  std::string id;
  std::string workspace_id;
  std::string display_name;
  std::vector<std::string> scopes;
  std::string key_hash;
  std::string prefix;
  std::string creator_id;
  absl::Time create_time;
  std::optional<absl::Time> last_use_time;
};

struct AccessRequestRecord {
  std::string id;
  std::string workspace_id;
  std::string user_id;
  std::string email;
  std::string first_name;
  std::string last_name;
  std::string message;
  AccessRequestState state = v1::AccessRequest::PENDING;
  absl::Time create_time;
};

// A side effect to send after commit (and retried until it succeeds).
struct OutboxMessage {
  std::string topic;    // kTopic* below
  std::string payload;  // serialized request proto
  std::string idempotency_key;
};

inline constexpr char kTopicSendEmail[] = "notification.SendEmail";
inline constexpr char kTopicSyncUsers[] = "membership.SyncUsers";
inline constexpr char kTopicSyncWorkspace[] = "membership.SyncWorkspace";
// An invite in progress (payload: membership DeleteUsersRequest of the new
// user). Locked while the invite runs; if the invite never committed, the
// relay finds no such user in identity and removes membership's grants.
inline constexpr char kTopicReconcileInvite[] = "identity.ReconcileInvite";

}  // namespace guestlist::identity
