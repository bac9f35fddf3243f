// Authorizer on the in-memory repository (no database, no network): Check
// decisions on a secret group for admin, members, group admin, guests and
// inactive users; who may ask about whom; group visibility (NOT_FOUND, not
// PERMISSION_DENIED); Resolve trusting membership's copy of the user over
// identity's cached principal.
#include "services/membership/api/authorizer.h"

#include <string>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "services/membership/storage/in_memory_repository.h"

namespace guestlist::membership {
namespace {

std::string Id(int n) {
  return absl::StrFormat("00000000-0000-4000-8000-%012d", n);
}

const std::string kWs = Id(1);
const std::string kOtherWs = Id(2);
const std::string kSecret = Id(10);
const std::string kPrivate = Id(11);
const std::string kOpen = Id(12);
const std::string kApp = Id(20);
// Users.
const std::string kAdmin = Id(100);
const std::string kMemberIn = Id(101);
const std::string kMemberOut = Id(102);
const std::string kGroupAdmin = Id(103);
const std::string kGuestIn = Id(104);
const std::string kGuestOut = Id(105);
const std::string kSuspendedGuest = Id(106);
const std::string kTemporaryGuest = Id(107);
const std::string kOtherAdmin = Id(108);

class AuthorizerTest : public ::testing::Test {
 protected:
  AuthorizerTest() {
    repo_.PutWorkspace({kWs, 10, /*members_can_invite_guests=*/true});
    repo_.PutWorkspace({kOtherWs, 10, true});
    repo_.PutGroup({kSecret, kWs, Visibility::kSecret,
                    /*members_can_invite=*/false,
                    /*members_can_publish=*/true});
    repo_.PutGroup({kPrivate, kWs, Visibility::kPrivate, false, true});
    repo_.PutGroup({kOpen, kWs, Visibility::kOpen, false, true});
    repo_.PutApp(kApp, kWs);
    AddUser(kAdmin, Kind::kAdmin);
    AddUser(kMemberIn, Kind::kMember);
    AddUser(kMemberOut, Kind::kMember);
    AddUser(kGroupAdmin, Kind::kMember);
    AddUser(kGuestIn, Kind::kGuest);
    AddUser(kGuestOut, Kind::kGuest);
    AddUser(kSuspendedGuest, Kind::kGuest, Status::kSuspended);
    AddUser(kTemporaryGuest, Kind::kGuest, Status::kActive,
            clock_.Now() + absl::Hours(1));
    AddUser(kOtherAdmin, Kind::kAdmin, Status::kActive, absl::InfiniteFuture(),
            kOtherWs);
    repo_.PutMember(kSecret, kMemberIn, Role::kMember);
    repo_.PutMember(kSecret, kGroupAdmin, Role::kGroupAdmin);
    repo_.PutMember(kSecret, kGuestIn, Role::kMember);
    repo_.PutMember(kSecret, kSuspendedGuest, Role::kMember);
    repo_.PutMember(kSecret, kTemporaryGuest, Role::kMember);
    repo_.PutAppPrivilege(kApp, kGuestIn);
  }

  void AddUser(const std::string& id, Kind kind,
               Status status = Status::kActive,
               absl::Time expire = absl::InfiniteFuture(),
               const std::string& ws = kWs) {
    repo_.PutUser({id, ws, kind, status, expire});
  }

  // The caller a user's own session resolves to: identity's principal
  // (which says ACTIVE even for an inactive user: its cache may be stale)
  // for the user as the repository knows it.
  Caller Self(const std::string& id) {
    absl::StatusOr<std::optional<User>> u = repo_.GetUser(id);
    EXPECT_TRUE(u.ok() && u->has_value()) << id;
    Principal p;
    p.set_user_id(id);
    p.set_workspace_id((*u)->workspace_id);
    p.set_kind(static_cast<identity::v1::UserKind>((*u)->kind));
    p.set_status(identity::v1::ACTIVE);
    absl::StatusOr<Caller> c = authz_.Resolve(p, /*load_copy=*/false);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : Caller{};
  }

  Caller Internal() {
    absl::StatusOr<Caller> c = authz_.Resolve(InternalPrincipal(), true);
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  }

  absl::StatusOr<v1::CheckResponse> Check(const Caller& caller,
                                          const std::string& user,
                                          const std::string& permission,
                                          const std::string& resource) {
    v1::CheckRequest req;
    req.set_user_id(user);
    req.set_permission(permission);
    req.set_resource(resource);
    return authz_.Check(caller, req);
  }

  // The decision of the internal caller (no "may ask" rules) for `user`.
  bool Allowed(const std::string& user, const std::string& permission,
               const std::string& resource) {
    absl::StatusOr<v1::CheckResponse> r =
        Check(Internal(), user, permission, resource);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->allowed();
  }

  FakeClock clock_{absl::FromUnixSeconds(1800000000)};
  InMemoryMembershipRepository repo_;
  Authorizer authz_{&repo_, &clock_};
};

TEST_F(AuthorizerTest, SecretGroupDecisions) {
  const std::string g = "groups/" + kSecret;
  struct Row {
    const std::string& user;
    bool view, publish, invite_guest, admin;
  };
  const Row rows[] = {
      {kAdmin, true, true, true, true},
      {kMemberIn, true, true, false, false},
      {kMemberOut, false, false, false, false},
      {kGroupAdmin, true, true, true, true},
      {kGuestIn, true, true, false, false},
      {kGuestOut, false, false, false, false},
      {kSuspendedGuest, false, false, false, false},
      {kTemporaryGuest, true, true, false, false},
      {kOtherAdmin, false, false, false, false},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.user);
    EXPECT_EQ(Allowed(r.user, "group.view", g), r.view);
    EXPECT_EQ(Allowed(r.user, "group.publish", g), r.publish);
    EXPECT_EQ(Allowed(r.user, "group.invite_guest", g), r.invite_guest);
    EXPECT_EQ(Allowed(r.user, "group.admin", g), r.admin);
  }
}

TEST_F(AuthorizerTest, ReasonsNameTheRule) {
  const std::string g = "groups/" + kSecret;
  auto reason = [&](const std::string& user, const std::string& permission) {
    absl::StatusOr<v1::CheckResponse> r =
        Check(Internal(), user, permission, g);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->reason() : "";
  };
  EXPECT_EQ(reason(kMemberOut, "group.view"),
            "secret group: only its members see it");
  EXPECT_EQ(reason(kGuestOut, "group.view"),
            "guests see only groups they belong to");
  EXPECT_EQ(reason(kGuestIn, "group.invite_guest"), "guests cannot invite");
  EXPECT_EQ(reason(kSuspendedGuest, "group.view"), "user is suspended");
  EXPECT_EQ(reason(kOtherAdmin, "group.view"),
            "the resource belongs to another workspace");
  EXPECT_EQ(reason(Id(999), "group.view"), "unknown user");
  absl::StatusOr<v1::CheckResponse> missing =
      Check(Internal(), kAdmin, "group.view", "groups/" + Id(998));
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->allowed());
  EXPECT_EQ(missing->reason(), "group not found");
}

TEST_F(AuthorizerTest, TemporaryAccessEndsWithTheClock) {
  const std::string g = "groups/" + kSecret;
  EXPECT_TRUE(Allowed(kTemporaryGuest, "group.view", g));
  clock_.Advance(absl::Hours(1));
  absl::StatusOr<v1::CheckResponse> r =
      Check(Internal(), kTemporaryGuest, "group.view", g);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->allowed());
  EXPECT_EQ(r->reason(), "user's access expired");
  // Asking for itself, the expired guest is refused outright.
  absl::StatusOr<v1::CheckResponse> self =
      Check(Self(kTemporaryGuest), "", "group.view", g);
  EXPECT_EQ(self.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(self.status().message(), "user's access expired");
}

TEST_F(AuthorizerTest, WhoMayAskAboutWhom) {
  const std::string g = "groups/" + kSecret;
  // Anyone about itself; the subject defaults to the caller.
  absl::StatusOr<v1::CheckResponse> own =
      Check(Self(kGuestIn), "", "group.publish", g);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_TRUE(own->allowed());
  // A suspended user is refused, not answered.
  absl::StatusOr<v1::CheckResponse> suspended =
      Check(Self(kSuspendedGuest), kSuspendedGuest, "group.view", g);
  EXPECT_EQ(suspended.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(suspended.status().message(), "user is suspended");
  // Only admins ask about others, and only in their workspace.
  absl::StatusOr<v1::CheckResponse> member =
      Check(Self(kMemberIn), kGuestIn, "group.view", g);
  EXPECT_EQ(member.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(member.status().message(),
            "only admins may check another user's permissions");
  absl::StatusOr<v1::CheckResponse> admin =
      Check(Self(kAdmin), kGuestOut, "group.view", g);
  ASSERT_TRUE(admin.ok()) << admin.status();
  EXPECT_FALSE(admin->allowed());
  absl::StatusOr<v1::CheckResponse> other =
      Check(Self(kAdmin), kOtherAdmin, "group.view", g);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(other.status().message(), "user_id belongs to another workspace");
  // Malformed requests.
  EXPECT_EQ(Check(Internal(), kAdmin, "group.fly", g).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Check(Internal(), kAdmin, "group.view", "apps/" + kApp).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Check(Internal(), "", "group.view", g).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AuthorizerTest, AppReportFollowsPrivileges) {
  const std::string app = "apps/" + kApp;
  EXPECT_TRUE(Allowed(kGuestIn, "app.report", app));
  EXPECT_FALSE(Allowed(kGuestOut, "app.report", app));
  EXPECT_TRUE(Allowed(kAdmin, "app.report", app));
}

TEST_F(AuthorizerTest, HiddenGroupsAreNotFound) {
  Role role = Role::kNone;
  // A member outside the secret group does not learn it exists.
  EXPECT_EQ(
      authz_.VisibleGroup(Self(kMemberOut), kSecret, &role).status().code(),
      absl::StatusCode::kNotFound);
  // Private groups are visible to members; open ones not to guests outside.
  EXPECT_TRUE(authz_.VisibleGroup(Self(kMemberOut), kPrivate, &role).ok());
  EXPECT_EQ(authz_.VisibleGroup(Self(kGuestOut), kOpen, &role).status().code(),
            absl::StatusCode::kNotFound);
  // A group admin sees it with its role.
  absl::StatusOr<v1::Group> seen =
      authz_.VisibleGroup(Self(kGroupAdmin), kSecret, &role);
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(role, Role::kGroupAdmin);
  EXPECT_EQ(seen->member_count(), 5);
  // Another workspace's admin: NOT_FOUND too.
  EXPECT_EQ(
      authz_.VisibleGroup(Self(kOtherAdmin), kSecret, &role).status().code(),
      absl::StatusCode::kNotFound);
}

TEST_F(AuthorizerTest, ResolveTrustsMembershipsCopy) {
  Principal p;
  p.set_user_id(kSuspendedGuest);
  p.set_workspace_id(kWs);
  p.set_kind(identity::v1::GUEST);
  p.set_status(identity::v1::ACTIVE);  // identity's cache is stale
  absl::StatusOr<Caller> c = authz_.Resolve(p, /*load_copy=*/true);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(c.status().message(), "user is suspended");
  // A guest converted to a member: the copy's kind wins.
  AddUser(kGuestOut, Kind::kMember);
  p.set_user_id(kGuestOut);
  c = authz_.Resolve(p, /*load_copy=*/true);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->kind, Kind::kMember);
  EXPECT_FALSE(c->privileged);
}

TEST_F(AuthorizerTest, AdminOnlyAndWorkspaceGuards) {
  EXPECT_TRUE(authz_.RequireAdmin(Self(kAdmin), kWs).ok());
  absl::Status member = authz_.RequireAdmin(Self(kMemberIn), kWs);
  EXPECT_EQ(member.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(member.message(), "only workspace admins may do this");
  EXPECT_EQ(authz_.RequireWorkspace(Self(kAdmin), kOtherWs).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(authz_.RequireWorkspace(Internal(), Id(3)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(authz_.RequireWorkspace(Internal(), "not-a-uuid").code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace guestlist::membership
