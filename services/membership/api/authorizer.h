// Who is calling and what they may do: resolves a caller from identity's
// principal and membership's own copy of the user, guards workspaces,
// admin-only methods and group visibility, and answers Check. Separate from
// the gRPC handlers and reading storage only through MembershipRepository,
// so these rules are unit-tested on the in-memory repository
// (authorizer_test.cc) as well as end to end (service_test.cc).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/auth.h"
#include "common/clock.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "services/membership/domain/model.h"
#include "services/membership/storage/check_cache.h"
#include "services/membership/storage/repository.h"

namespace guestlist::membership {

// Who is calling, as membership sees it.
struct Caller {
  bool privileged = false;  // operator or internal credential
  bool internal = false;
  bool api_key = false;
  std::string user_id;
  std::string workspace_id;
  Kind kind = Kind::kUnspecified;
};

// InvalidArgument naming `field` unless `value` is a UUID.
absl::Status RequireUuid(const std::string& value, const char* field);

class Authorizer final {
 public:
  // `repo` and `clock` must outlive the authorizer. With a `cache`, Check
  // reads its facts from it instead of `repo`.
  Authorizer(MembershipRepository* repo, const Clock* clock,
             CheckCache* cache = nullptr)
      : repo_(repo), clock_(clock), cache_(cache) {}

  // The caller behind `principal`. With `load_copy`, membership's copy of
  // the user decides kind and workspace, and a suspended, expired or
  // archived copy is PermissionDenied even while identity's token cache
  // still says active.
  absl::StatusOr<Caller> Resolve(const Principal& principal, bool load_copy);

  // PermissionDenied outside the caller's workspace; NotFound for a
  // workspace membership never synced.
  absl::Status RequireWorkspace(const Caller& c, const std::string& ws);
  // As RequireWorkspace, and only admins (or operator / internal).
  absl::Status RequireAdmin(const Caller& c, const std::string& ws);
  // The group if the caller may see it, NotFound otherwise (so hidden
  // groups do not leak). Sets `role` to the caller's role in it.
  absl::StatusOr<v1::Group> VisibleGroup(const Caller& c,
                                         const std::string& group_id,
                                         Role* role);
  // Check: InvalidArgument for a malformed request, PermissionDenied when
  // the caller may not ask (an inactive caller, a non-admin asking about
  // someone else, another workspace's user); otherwise the decision.
  absl::StatusOr<v1::CheckResponse> Check(const Caller& c,
                                          const v1::CheckRequest& req);

 private:
  absl::StatusOr<CheckFacts> LoadFacts(const std::string& subject,
                                       const Resource& resource);
  absl::StatusOr<std::optional<User>> LookupUser(const std::string& id);

  MembershipRepository* repo_;
  const Clock* clock_;
  CheckCache* cache_;
};

}  // namespace guestlist::membership
