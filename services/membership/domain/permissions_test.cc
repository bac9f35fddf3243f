// Unit tests of the permission rules (the full matrix runs through gRPC in
// api/service_test.cc; these pin edge cases without a database).
#include "services/membership/domain/permissions.h"

#include "gtest/gtest.h"

namespace guestlist::membership {
namespace {

constexpr char kWs[] = "00000000-0000-4000-8000-000000000001";
const absl::Time kNow = absl::FromUnixSeconds(1800000000);

CheckFacts GroupFacts(Kind kind, Visibility v, Role role) {
  CheckFacts f;
  f.subject = User{"u", kWs, kind, Status::kActive, absl::InfiniteFuture()};
  f.resource_workspace_id = kWs;
  f.workspace = Workspace{kWs, 10, true};
  f.group = Group{"g", kWs, v, false, true};
  f.subject_role = role;
  return f;
}

TEST(ParseTest, PermissionsAndResources) {
  EXPECT_EQ(*ParsePermission("group.invite_guest"),
            Permission::kGroupInviteGuest);
  EXPECT_EQ(ParsePermission("group.fly").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto r = ParseResource("groups/00000000-0000-4000-8000-0000000000AB");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->type, ResourceType::kGroup);
  EXPECT_EQ(r->id, "00000000-0000-4000-8000-0000000000ab");
  EXPECT_FALSE(ParseResource("groups/abc").ok());
  EXPECT_FALSE(
      ParseResource("teams/00000000-0000-4000-8000-000000000001").ok());
}

TEST(DecideTest, GuestNeverSeesGroupsItIsNotIn) {
  for (Visibility v :
       {Visibility::kOpen, Visibility::kPrivate, Visibility::kSecret}) {
    Decision d = Decide(Permission::kGroupView,
                        GroupFacts(Kind::kGuest, v, Role::kNone), kNow);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.reason, "guests see only groups they belong to");
  }
}

TEST(DecideTest, GuestIsNeverGroupAdminEvenWithTheRole) {
  Decision d = Decide(
      Permission::kGroupAdmin,
      GroupFacts(Kind::kGuest, Visibility::kOpen, Role::kGroupAdmin), kNow);
  EXPECT_FALSE(d.allowed);
}

TEST(DecideTest, MembersInviteToOpenGroupsOnlyIfTheWorkspaceAllows) {
  CheckFacts f = GroupFacts(Kind::kMember, Visibility::kOpen, Role::kNone);
  EXPECT_TRUE(Decide(Permission::kGroupInviteGuest, f, kNow).allowed);
  f.workspace.members_can_invite_guests = false;
  Decision d = Decide(Permission::kGroupInviteGuest, f, kNow);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "the workspace does not let members invite guests");
}

TEST(DecideTest, ExpiryByTimeDeniesEvenWhileStatusIsActive) {
  CheckFacts f = GroupFacts(Kind::kGuest, Visibility::kOpen, Role::kMember);
  f.subject->access_expire_time = kNow - absl::Seconds(1);
  Decision d = Decide(Permission::kGroupView, f, kNow);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "user's access expired");
}

TEST(DecideTest, OtherWorkspaceIsDenied) {
  CheckFacts f = GroupFacts(Kind::kAdmin, Visibility::kOpen, Role::kNone);
  f.resource_workspace_id = "other";
  EXPECT_EQ(Decide(Permission::kGroupView, f, kNow).reason,
            "the resource belongs to another workspace");
}

TEST(DecideTest, GuestProfilesOnlyOfCoMembers) {
  CheckFacts f;
  f.subject =
      User{"u", kWs, Kind::kGuest, Status::kActive, absl::InfiniteFuture()};
  f.resource_workspace_id = kWs;
  f.target =
      User{"t", kWs, Kind::kMember, Status::kActive, absl::InfiniteFuture()};
  EXPECT_FALSE(Decide(Permission::kUserViewProfile, f, kNow).allowed);
  f.shares_group = true;
  EXPECT_TRUE(Decide(Permission::kUserViewProfile, f, kNow).allowed);
  f.target->status = Status::kSuspended;
  EXPECT_FALSE(Decide(Permission::kUserChat, f, kNow).allowed);
}

}  // namespace
}  // namespace guestlist::membership
