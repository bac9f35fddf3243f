// proto <-> domain conversion for identity's API.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "guestlist/identity/v1/identity.pb.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "services/identity/domain/model.h"

namespace guestlist::identity {

google::protobuf::Timestamp ToTimestamp(absl::Time t);
absl::Time FromTimestamp(const google::protobuf::Timestamp& ts);
// RFC 3339 UTC.
std::string FormatRfc3339(absl::Time t);

v1::User ToProto(const UserRecord& user);
v1::Workspace ToProto(const WorkspaceRecord& ws);
v1::ApiKey ToProto(const ApiKeyRecord& key);
v1::AccessRequest ToProto(const AccessRequestRecord& ar,
                          const UserRecord& user);
v1::Invitation ToProto(const InvitationRecord& inv, const UserRecord& user,
                       absl::Time now);

// Metadata Struct -> compact JSON ("" when unset / empty).
absl::StatusOr<std::string> MetadataToJson(
    const google::protobuf::Struct& metadata);

// Membership's copy of a user / workspace.
membership::v1::UserRecord ToMembershipRecord(const UserRecord& user);
membership::v1::WorkspaceRecord ToMembershipRecord(const WorkspaceRecord& ws);

}  // namespace guestlist::identity
