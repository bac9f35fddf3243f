#include "services/identity/api/convert.h"

#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace guestlist::identity {

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t micros = absl::ToUnixMicros(t);
  ts.set_seconds(micros / 1000000 - (micros % 1000000 < 0 ? 1 : 0));
  int64_t rem = micros % 1000000;
  if (rem < 0) rem += 1000000;
  ts.set_nanos(static_cast<int32_t>(rem * 1000));
  return ts;
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string FormatRfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

v1::User ToProto(const UserRecord& u) {
  v1::User p;
  p.set_id(u.id);
  p.set_workspace_id(u.workspace_id);
  p.set_username(u.username);
  p.set_email(u.email);
  p.set_first_name(u.first_name);
  p.set_last_name(u.last_name);
  p.set_kind(u.kind);
  p.set_status(u.status);
  if (!u.metadata_json.empty()) {
    // Stored by us from a Struct, so it parses back.
    (void)google::protobuf::util::JsonStringToMessage(u.metadata_json,
                                                      p.mutable_metadata());
  }
  if (u.access_expire_time.has_value()) {
    *p.mutable_access_expire_time() = ToTimestamp(*u.access_expire_time);
  }
  *p.mutable_create_time() = ToTimestamp(u.create_time);
  *p.mutable_update_time() = ToTimestamp(u.update_time);
  return p;
}

v1::Workspace ToProto(const WorkspaceRecord& w) {
  v1::Workspace p;
  p.set_id(w.id);
  p.set_name(w.name);
  p.set_display_name(w.display_name);
  p.set_license_count(w.license_count);
  v1::WorkspaceSettings* s = p.mutable_settings();
  s->set_members_can_invite_guests(w.members_can_invite_guests);
  s->mutable_invitation_ttl()->set_seconds(
      absl::ToInt64Seconds(w.invitation_ttl));
  for (const auto& d : w.allowed_email_domains) s->add_allowed_email_domains(d);
  for (const auto& d : w.blocked_email_domains) s->add_blocked_email_domains(d);
  s->set_request_access_enabled(w.request_access_enabled);
  s->set_license_count(w.license_count);
  *p.mutable_create_time() = ToTimestamp(w.create_time);
  *p.mutable_update_time() = ToTimestamp(w.update_time);
  return p;
}

v1::ApiKey ToProto(const ApiKeyRecord& k) {
  v1::ApiKey p;
  p.set_id(k.id);
  p.set_workspace_id(k.workspace_id);
  p.set_display_name(k.display_name);
  for (const auto& s : k.scopes) p.add_scopes(s);
  p.set_prefix(k.prefix);
  *p.mutable_create_time() = ToTimestamp(k.create_time);
  if (k.last_use_time.has_value()) {
    *p.mutable_last_use_time() = ToTimestamp(*k.last_use_time);
  }
  return p;
}

v1::AccessRequest ToProto(const AccessRequestRecord& a, const UserRecord& u) {
  v1::AccessRequest p;
  p.set_id(a.id);
  p.set_workspace_id(a.workspace_id);
  *p.mutable_user() = ToProto(u);
  p.set_email(a.email);
  p.set_first_name(a.first_name);
  p.set_last_name(a.last_name);
  p.set_message(a.message);
  p.set_state(a.state);
  *p.mutable_create_time() = ToTimestamp(a.create_time);
  return p;
}

v1::Invitation ToProto(const InvitationRecord& inv, const UserRecord& user,
                       absl::Time now) {
  v1::Invitation p;
  p.set_id(inv.id);
  *p.mutable_user() = ToProto(user);
  *p.mutable_expire_time() = ToTimestamp(inv.expire_time);
  p.set_state(inv.state == v1::Invitation::PENDING && inv.expire_time <= now
                  ? v1::Invitation::EXPIRED
                  : inv.state);
  *p.mutable_create_time() = ToTimestamp(inv.create_time);
  p.set_inviter_id(inv.inviter_id);
  p.set_workspace_id(inv.workspace_id);
  return p;
}

absl::StatusOr<std::string> MetadataToJson(
    const google::protobuf::Struct& metadata) {
  if (metadata.fields_size() == 0) return std::string();
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(metadata, &json);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        "metadata: cannot be written as JSON; give a JSON object");
  }
  return json;
}

membership::v1::UserRecord ToMembershipRecord(const UserRecord& u) {
  membership::v1::UserRecord r;
  r.set_id(u.id);
  r.set_workspace_id(u.workspace_id);
  r.set_username(u.username);
  r.set_email(u.email);
  r.set_first_name(u.first_name);
  r.set_last_name(u.last_name);
  // Same numbering in both enums (see membership.proto).
  r.set_kind(static_cast<membership::v1::DirectoryUser::Kind>(u.kind));
  r.set_status(static_cast<membership::v1::DirectoryUser::Status>(u.status));
  if (u.access_expire_time.has_value()) {
    *r.mutable_access_expire_time() = ToTimestamp(*u.access_expire_time);
  }
  *r.mutable_create_time() = ToTimestamp(u.create_time);
  r.set_version(u.version);
  return r;
}

membership::v1::WorkspaceRecord ToMembershipRecord(const WorkspaceRecord& w) {
  membership::v1::WorkspaceRecord r;
  r.set_workspace_id(w.id);
  r.set_license_count(w.license_count);
  r.set_members_can_invite_guests(w.members_can_invite_guests);
  r.set_version(w.version);
  return r;
}

}  // namespace guestlist::identity
