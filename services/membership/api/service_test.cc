// MembershipService through its real gRPC API (server on port 0) against a
// throwaway PostgreSQL: the permission matrix (one table), NOT_FOUND for
// hidden groups, licences (including a race for the last licence),
// ApplyGrants batches, and ListAppAccess paging.
#include "services/membership/api/service.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/migrations.h"
#include "common/outbox.h"
#include "gtest/gtest.h"
#include "services/membership/migrations.h"
#include "tests/testing/postgres.h"

namespace guestlist::membership {
namespace {

using Stub = v1::MembershipService::Stub;

constexpr char kInternalSecret[] = "internal-secret-for-tests";
constexpr char kInternal[] = "<internal>";

std::string Id(int n) {
  return absl::StrFormat("00000000-0000-4000-8000-%012d", n);
}

// Tokens -> principals, like identity's Authenticate; the internal
// credential is checked locally as RemoteAuthenticator does.
class FakeAuthenticator final : public Authenticator {
 public:
  void Add(const std::string& token, Principal p) {
    absl::MutexLock lock(&mu_);
    principals_[token] = std::move(p);
  }
  absl::StatusOr<Principal> Authenticate(
      const grpc::ServerContextBase& context) override {
    if (HasInternalCredential(context, kInternalSecret)) {
      return InternalPrincipal();
    }
    auto token = BearerToken(context);
    if (!token.ok()) return token.status();
    if (!token->has_value()) return absl::UnauthenticatedError("no token");
    absl::MutexLock lock(&mu_);
    auto it = principals_.find(**token);
    if (it == principals_.end()) {
      return absl::UnauthenticatedError("invalid or expired token");
    }
    return it->second;
  }
  // Everything is in memory, so cached Checks take the inline path.
  bool AnswersFromMemory(const grpc::ServerContextBase&) override {
    return true;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Principal> principals_ ABSL_GUARDED_BY(mu_);
};

class MembershipApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new guestlist::testing::TestPostgres();
    pool_ = new pg::Pool({.conninfo = db_->ConnInfo(), .max_size = 16});
    std::vector<Migration> m = Migrations();
    m.push_back(CommonTablesMigration("membership"));
    absl::Status s = RunMigrations(*pool_, "membership", m);
    ASSERT_TRUE(s.ok()) << s;
    auth_ = new FakeAuthenticator();
    cache_ = new CheckCache(pool_, {});
    service_ = new MembershipServiceImpl(auth_, pool_, &clock_, cache_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_);
    server_ = builder.BuildAndStart().release();
    ASSERT_GT(port, 0);
    stub_ = v1::MembershipService::NewStub(
                grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                    grpc::InsecureChannelCredentials()))
                .release();
  }
  static void TearDownTestSuite() {
    server_->Shutdown();
    delete server_;
    delete stub_;
    delete service_;
    delete cache_;
    delete auth_;
    delete pool_;
    delete db_;
  }

  template <typename Req, typename Resp>
  static grpc::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                        const Req&, Resp*),
                           const std::string& token, const Req& req,
                           Resp* resp) {
    grpc::ClientContext ctx;
    if (token == kInternal) {
      ctx.AddMetadata(kInternalTokenKey, kInternalSecret);
    } else if (!token.empty()) {
      ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    }
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    return (stub_->*method)(&ctx, req, resp);
  }

  static void SyncWorkspace(const std::string& ws, int licences,
                            bool members_can_invite, int version = 1) {
    v1::SyncWorkspaceRequest req;
    req.mutable_workspace()->set_workspace_id(ws);
    req.mutable_workspace()->set_license_count(licences);
    req.mutable_workspace()->set_members_can_invite_guests(members_can_invite);
    req.mutable_workspace()->set_version(version);
    v1::SyncWorkspaceResponse resp;
    grpc::Status s = Call(&Stub::SyncWorkspace, kInternal, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  static v1::UserRecord Record(
      const std::string& id, const std::string& ws, const std::string& username,
      v1::DirectoryUser::Kind kind,
      v1::DirectoryUser::Status status = v1::DirectoryUser::ACTIVE,
      int64_t version = 1) {
    v1::UserRecord r;
    r.set_id(id);
    r.set_workspace_id(ws);
    r.set_username(username);
    r.set_email(username);
    r.set_kind(kind);
    r.set_status(status);
    r.set_version(version);
    return r;
  }

  // Suspends `user_id` straight in the shared database, as another replica
  // would: this replica's own invalidation does not run.
  static void SuspendFromAnotherReplica(const std::string& user_id) {
    ASSERT_TRUE(pool_
                    ->Exec("UPDATE membership.users SET status = 4, version = "
                           "version + 1 WHERE id = $1",
                           {user_id})
                    .ok());
  }

  // Creates a user (and its token) with the given groups, via ApplyGrants.
  static void AddUser(const v1::UserRecord& r,
                      const std::vector<std::string>& groups = {},
                      const std::vector<std::string>& apps = {}) {
    v1::ApplyGrantsRequest req;
    req.set_workspace_id(r.workspace_id());
    v1::UserGrants* g = req.add_users();
    *g->mutable_user() = r;
    for (const auto& id : groups) g->add_group_ids(id);
    for (const auto& id : apps) {
      auto* p = g->add_app_privileges();
      p->set_app_id(id);
      p->set_privilege(v1::AppPrivilegeGrant::GUEST);
    }
    v1::ApplyGrantsResponse resp;
    grpc::Status s = Call(&Stub::ApplyGrants, kInternal, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_TRUE(resp.applied()) << resp.DebugString();
    Principal p;
    p.set_user_id(r.id());
    p.set_workspace_id(r.workspace_id());
    p.set_kind(static_cast<identity::v1::UserKind>(r.kind()));
    // Stale on purpose: identity's cached answer says ACTIVE; membership's
    // own copy must still deny suspended and expired users.
    p.set_status(identity::v1::ACTIVE);
    p.set_username(r.username());
    auth_->Add(TokenOf(r.id()), p);
  }

  static std::string TokenOf(const std::string& user_id) {
    return absl::StrCat("token-", user_id);
  }

  static std::string CreateGroup(const std::string& admin_token,
                                 const std::string& ws, const std::string& name,
                                 v1::Group::Visibility v,
                                 bool members_can_invite = false) {
    v1::CreateGroupRequest req;
    req.set_workspace_id(ws);
    req.mutable_group()->set_name(name);
    req.mutable_group()->set_visibility(v);
    req.mutable_group()->set_members_can_invite(members_can_invite);
    v1::Group g;
    grpc::Status s = Call(&Stub::CreateGroup, admin_token, req, &g);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return g.id();
  }

  static std::string CreateApp(const std::string& admin_token,
                               const std::string& ws, const std::string& slug) {
    v1::CreateAppRequest req;
    req.set_workspace_id(ws);
    req.mutable_app()->set_slug(slug);
    req.mutable_app()->set_name(slug);
    v1::App a;
    grpc::Status s = Call(&Stub::CreateApp, admin_token, req, &a);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return a.id();
  }

  static grpc::Status AddMember(
      const std::string& token, const std::string& group,
      const std::string& user,
      v1::GroupMember::Role role = v1::GroupMember::MEMBER) {
    v1::AddGroupMemberRequest req;
    req.set_group_id(group);
    req.set_user_id(user);
    req.set_role(role);
    v1::GroupMember m;
    return Call(&Stub::AddGroupMember, token, req, &m);
  }

  static v1::LicenseUsage Usage(const std::string& ws) {
    v1::GetLicenseUsageRequest req;
    req.set_workspace_id(ws);
    v1::LicenseUsage u;
    grpc::Status s = Call(&Stub::GetLicenseUsage, kInternal, req, &u);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return u;
  }

  static guestlist::testing::TestPostgres* db_;
  static pg::Pool* pool_;
  static FakeAuthenticator* auth_;
  static SystemClock clock_;
  static CheckCache* cache_;
  static MembershipServiceImpl* service_;
  static grpc::Server* server_;
  static Stub* stub_;
};

guestlist::testing::TestPostgres* MembershipApiTest::db_ = nullptr;
pg::Pool* MembershipApiTest::pool_ = nullptr;
FakeAuthenticator* MembershipApiTest::auth_ = nullptr;
SystemClock MembershipApiTest::clock_;
CheckCache* MembershipApiTest::cache_ = nullptr;
MembershipServiceImpl* MembershipApiTest::service_ = nullptr;
grpc::Server* MembershipApiTest::server_ = nullptr;
Stub* MembershipApiTest::stub_ = nullptr;

// ---------------------------------------------------------------------------
// The permission matrix: caller x permission x group visibility, with the
// caller's membership in the group part of the caller (member in / out,
// guest in / out). Columns: OPEN, PRIVATE, PRIVATE with members_can_invite,
// SECRET. 'Y' allowed, 'N' denied. Every caller except "guest_out" and
// "member_out" belongs to all four groups; "group_admin" as GROUP_ADMIN.
// user.* permissions target a member of all four groups; app.report an app
// on which member_in and the in-group guests hold a privilege.
// ---------------------------------------------------------------------------
struct MatrixRow {
  const char* caller;
  const char* permission;
  const char* expected;  // OPEN, PRIVATE, PRIVATE+members_can_invite, SECRET
};

constexpr MatrixRow kMatrix[] = {
    // admin: everything in its workspace.
    {"admin", "group.view", "YYYY"},
    {"admin", "group.publish", "YYYY"},
    {"admin", "group.drive", "YYYY"},
    {"admin", "group.directory", "YYYY"},
    {"admin", "group.invite_guest", "YYYY"},
    {"admin", "group.admin", "YYYY"},
    {"admin", "group.create", "YYYY"},
    {"admin", "user.view_profile", "YYYY"},
    {"admin", "user.chat", "YYYY"},
    {"admin", "org.chart", "YYYY"},
    {"admin", "app.report", "YYYY"},
    // member in the group.
    {"member_in", "group.view", "YYYY"},
    {"member_in", "group.publish", "YYYY"},
    {"member_in", "group.drive", "YYYY"},
    {"member_in", "group.directory", "YYYY"},
    {"member_in", "group.invite_guest", "YNYN"},
    {"member_in", "group.admin", "NNNN"},
    {"member_in", "group.create", "YYYY"},
    {"member_in", "user.view_profile", "YYYY"},
    {"member_in", "user.chat", "YYYY"},
    {"member_in", "org.chart", "YYYY"},
    {"member_in", "app.report", "YYYY"},
    // member not in the group: secret is invisible, private is closed.
    {"member_out", "group.view", "YYYN"},
    {"member_out", "group.publish", "NNNN"},
    {"member_out", "group.drive", "YNNN"},
    {"member_out", "group.directory", "YNNN"},
    {"member_out", "group.invite_guest", "YNNN"},
    {"member_out", "group.admin", "NNNN"},
    {"member_out", "group.create", "YYYY"},
    {"member_out", "user.view_profile", "YYYY"},
    {"member_out", "user.chat", "YYYY"},
    {"member_out", "org.chart", "YYYY"},
    {"member_out", "app.report", "NNNN"},
    // group admin of the group.
    {"group_admin", "group.view", "YYYY"},
    {"group_admin", "group.publish", "YYYY"},
    {"group_admin", "group.drive", "YYYY"},
    {"group_admin", "group.directory", "YYYY"},
    {"group_admin", "group.invite_guest", "YYYY"},
    {"group_admin", "group.admin", "YYYY"},
    {"group_admin", "group.create", "YYYY"},
    {"group_admin", "user.view_profile", "YYYY"},
    {"group_admin", "user.chat", "YYYY"},
    {"group_admin", "org.chart", "YYYY"},
    {"group_admin", "app.report", "NNNN"},
    // guest in the group: acts there, never invites, creates or administers.
    {"guest_in", "group.view", "YYYY"},
    {"guest_in", "group.publish", "YYYY"},
    {"guest_in", "group.drive", "YYYY"},
    {"guest_in", "group.directory", "YYYY"},
    {"guest_in", "group.invite_guest", "NNNN"},
    {"guest_in", "group.admin", "NNNN"},
    {"guest_in", "group.create", "NNNN"},
    {"guest_in", "user.view_profile", "YYYY"},
    {"guest_in", "user.chat", "YYYY"},
    {"guest_in", "org.chart", "YYYY"},
    {"guest_in", "app.report", "YYYY"},
    // guest not in the group: sees nothing of it, not even open groups.
    {"guest_out", "group.view", "NNNN"},
    {"guest_out", "group.publish", "NNNN"},
    {"guest_out", "group.drive", "NNNN"},
    {"guest_out", "group.directory", "NNNN"},
    {"guest_out", "group.invite_guest", "NNNN"},
    {"guest_out", "group.admin", "NNNN"},
    {"guest_out", "group.create", "NNNN"},
    {"guest_out", "user.view_profile", "NNNN"},
    {"guest_out", "user.chat", "NNNN"},
    {"guest_out", "org.chart", "YYYY"},
    {"guest_out", "app.report", "NNNN"},
    // suspended / expired guests (in the group, with a privilege): nothing.
    {"suspended_guest", "group.view", "NNNN"},
    {"suspended_guest", "group.publish", "NNNN"},
    {"suspended_guest", "group.drive", "NNNN"},
    {"suspended_guest", "group.directory", "NNNN"},
    {"suspended_guest", "group.invite_guest", "NNNN"},
    {"suspended_guest", "group.admin", "NNNN"},
    {"suspended_guest", "group.create", "NNNN"},
    {"suspended_guest", "user.view_profile", "NNNN"},
    {"suspended_guest", "user.chat", "NNNN"},
    {"suspended_guest", "org.chart", "NNNN"},
    {"suspended_guest", "app.report", "NNNN"},
    {"expired_guest", "group.view", "NNNN"},
    {"expired_guest", "group.publish", "NNNN"},
    {"expired_guest", "group.drive", "NNNN"},
    {"expired_guest", "group.directory", "NNNN"},
    {"expired_guest", "group.invite_guest", "NNNN"},
    {"expired_guest", "group.admin", "NNNN"},
    {"expired_guest", "group.create", "NNNN"},
    {"expired_guest", "user.view_profile", "NNNN"},
    {"expired_guest", "user.chat", "NNNN"},
    {"expired_guest", "org.chart", "NNNN"},
    {"expired_guest", "app.report", "NNNN"},
    // an admin of another workspace: nothing here.
    {"other_workspace", "group.view", "NNNN"},
    {"other_workspace", "group.publish", "NNNN"},
    {"other_workspace", "group.drive", "NNNN"},
    {"other_workspace", "group.directory", "NNNN"},
    {"other_workspace", "group.invite_guest", "NNNN"},
    {"other_workspace", "group.admin", "NNNN"},
    {"other_workspace", "group.create", "NNNN"},
    {"other_workspace", "user.view_profile", "NNNN"},
    {"other_workspace", "user.chat", "NNNN"},
    {"other_workspace", "org.chart", "NNNN"},
    {"other_workspace", "app.report", "NNNN"},
};

TEST_F(MembershipApiTest, PermissionMatrix) {
  const std::string ws = Id(100), ws2 = Id(200);
  SyncWorkspace(ws, 100, /*members_can_invite=*/true);
  SyncWorkspace(ws2, 100, true);
  std::map<std::string, std::string> users = {
      {"admin", Id(101)},           {"member_in", Id(102)},
      {"member_out", Id(103)},      {"group_admin", Id(104)},
      {"guest_in", Id(105)},        {"guest_out", Id(106)},
      {"suspended_guest", Id(107)}, {"expired_guest", Id(108)},
      {"other_workspace", Id(201)}, {"target", Id(109)},
  };
  AddUser(Record(users["admin"], ws, "admin@a.test", v1::DirectoryUser::ADMIN));
  AddUser(Record(users["other_workspace"], ws2, "admin@b.test",
                 v1::DirectoryUser::ADMIN));
  const std::string admin = TokenOf(users["admin"]);
  const std::vector<std::string> groups = {
      CreateGroup(admin, ws, "Open", v1::Group::OPEN),
      CreateGroup(admin, ws, "Private", v1::Group::PRIVATE),
      CreateGroup(admin, ws, "Private Invite", v1::Group::PRIVATE, true),
      CreateGroup(admin, ws, "Secret", v1::Group::SECRET),
  };
  const std::string elsewhere =
      CreateGroup(admin, ws, "Elsewhere", v1::Group::OPEN);
  const std::string app = CreateApp(admin, ws, "sales-report");

  AddUser(
      Record(users["member_in"], ws, "mi@a.test", v1::DirectoryUser::MEMBER),
      groups, {app});
  AddUser(
      Record(users["member_out"], ws, "mo@a.test", v1::DirectoryUser::MEMBER));
  AddUser(
      Record(users["group_admin"], ws, "ga@a.test", v1::DirectoryUser::MEMBER));
  for (const auto& g : groups) {
    ASSERT_TRUE(
        AddMember(admin, g, users["group_admin"], v1::GroupMember::GROUP_ADMIN)
            .ok());
  }
  AddUser(Record(users["guest_in"], ws, "gi@x.test", v1::DirectoryUser::GUEST),
          groups, {app});
  AddUser(Record(users["guest_out"], ws, "go@x.test", v1::DirectoryUser::GUEST),
          {elsewhere});
  AddUser(Record(users["suspended_guest"], ws, "gs@x.test",
                 v1::DirectoryUser::GUEST, v1::DirectoryUser::SUSPENDED),
          groups, {app});
  v1::UserRecord expired =
      Record(users["expired_guest"], ws, "ge@x.test", v1::DirectoryUser::GUEST);
  // Still ACTIVE in identity's last sync, but past its access expiry.
  expired.mutable_access_expire_time()->set_seconds(
      absl::ToUnixSeconds(absl::Now() - absl::Hours(1)));
  AddUser(expired, groups, {app});
  AddUser(Record(users["target"], ws, "t@a.test", v1::DirectoryUser::MEMBER),
          groups);

  int checked = 0;
  for (const MatrixRow& row : kMatrix) {
    const std::string subject = users.at(row.caller);
    const bool inactive = std::string(row.caller) == "suspended_guest" ||
                          std::string(row.caller) == "expired_guest";
    for (int col = 0; col < 4; ++col) {
      v1::CheckRequest req;
      req.set_permission(row.permission);
      const std::string perm = row.permission;
      if (perm == "group.create" || perm == "org.chart") {
        req.set_resource(absl::StrCat("workspaces/", ws));
      } else if (perm == "user.view_profile" || perm == "user.chat") {
        req.set_resource(absl::StrCat("users/", users["target"]));
      } else if (perm == "app.report") {
        req.set_resource(absl::StrCat("apps/", app));
      } else {
        req.set_resource(absl::StrCat("groups/", groups[col]));
      }
      const bool want = row.expected[col] == 'Y';
      const std::string where =
          absl::StrCat(row.caller, " ", row.permission, " column ", col);
      // 1. As our services ask: the internal credential naming the user.
      req.set_user_id(subject);
      v1::CheckResponse resp;
      grpc::Status s = Call(&Stub::Check, kInternal, req, &resp);
      ASSERT_TRUE(s.ok()) << where << ": " << s.error_message();
      EXPECT_EQ(resp.allowed(), want) << where << ": " << resp.reason();
      EXPECT_FALSE(resp.reason().empty()) << where;
      // 2. As the user asks about itself with its own token.
      req.clear_user_id();
      v1::CheckResponse own;
      s = Call(&Stub::Check, TokenOf(subject), req, &own);
      if (inactive) {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << where;
      } else {
        ASSERT_TRUE(s.ok()) << where << ": " << s.error_message();
        EXPECT_EQ(own.allowed(), want) << where << ": " << own.reason();
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 8 * 11 * 4 + 1 * 11 * 4);

  // Secret groups do not exist for non-members; private ones are visible.
  v1::GetGroupRequest get;
  v1::Group g;
  get.set_group_id(groups[3]);
  EXPECT_EQ(
      Call(&Stub::GetGroup, TokenOf(users["member_out"]), get, &g).error_code(),
      grpc::StatusCode::NOT_FOUND);
  get.set_group_id(groups[1]);
  EXPECT_TRUE(
      Call(&Stub::GetGroup, TokenOf(users["member_out"]), get, &g).ok());
  get.set_group_id(groups[0]);
  EXPECT_EQ(
      Call(&Stub::GetGroup, TokenOf(users["guest_out"]), get, &g).error_code(),
      grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Call(&Stub::GetGroup, TokenOf(users["other_workspace"]), get, &g)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Call(&Stub::GetGroup, TokenOf(users["suspended_guest"]), get, &g)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // ListGroups shows each caller only what it may see.
  auto list_names = [&](const std::string& who) {
    v1::ListGroupsRequest req;
    req.set_workspace_id(ws);
    v1::ListGroupsResponse resp;
    EXPECT_TRUE(Call(&Stub::ListGroups, TokenOf(users[who]), req, &resp).ok());
    std::vector<std::string> names;
    for (const auto& gr : resp.groups()) names.push_back(gr.name());
    return names;
  };
  EXPECT_EQ(list_names("member_out"),
            (std::vector<std::string>{"Elsewhere", "Open", "Private",
                                      "Private Invite"}));
  EXPECT_EQ(list_names("guest_in"),
            (std::vector<std::string>{"Open", "Private", "Private Invite",
                                      "Secret"}));
  EXPECT_EQ(list_names("guest_out"), (std::vector<std::string>{"Elsewhere"}));

  // The directory of a guest holds only co-members; entries carry kind.
  v1::ListDirectoryRequest dir;
  dir.set_workspace_id(ws);
  v1::ListDirectoryResponse seen;
  ASSERT_TRUE(
      Call(&Stub::ListDirectory, TokenOf(users["guest_out"]), dir, &seen).ok());
  ASSERT_EQ(seen.users_size(), 1);
  EXPECT_EQ(seen.users(0).id(), users["guest_out"]);
  EXPECT_EQ(seen.users(0).kind(), v1::DirectoryUser::GUEST);
  ASSERT_TRUE(
      Call(&Stub::ListDirectory, TokenOf(users["guest_in"]), dir, &seen).ok());
  std::vector<std::string> names;
  for (const auto& u : seen.users()) names.push_back(u.username());
  // Active co-members only (the suspended guest is not listed; the
  // expired one still is ACTIVE in the copy).
  EXPECT_EQ(names,
            (std::vector<std::string>{"ga@a.test", "ge@x.test", "gi@x.test",
                                      "mi@a.test", "t@a.test"}));

  // Guests cannot invite: AddGroupMember by a guest is denied.
  EXPECT_EQ(AddMember(TokenOf(users["guest_in"]), groups[0], users["guest_out"])
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A guest is never GROUP_ADMIN.
  EXPECT_EQ(AddMember(admin, groups[0], users["guest_out"],
                      v1::GroupMember::GROUP_ADMIN)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A member invites a guest into an open group (workspace allows it)...
  EXPECT_TRUE(
      AddMember(TokenOf(users["member_out"]), groups[0], users["guest_out"])
          .ok());
  // ...but not into a private group without members_can_invite.
  EXPECT_EQ(
      AddMember(TokenOf(users["member_in"]), groups[1], users["guest_out"])
          .error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(MembershipApiTest, WorkspaceSettingStopsMembersInviting) {
  const std::string ws = Id(300);
  SyncWorkspace(ws, 10, true);
  AddUser(Record(Id(301), ws, "a@c.test", v1::DirectoryUser::ADMIN));
  AddUser(Record(Id(302), ws, "m@c.test", v1::DirectoryUser::MEMBER));
  const std::string g =
      CreateGroup(TokenOf(Id(301)), ws, "Open", v1::Group::OPEN);
  v1::CheckRequest req;
  req.set_user_id(Id(302));
  req.set_permission("group.invite_guest");
  req.set_resource(absl::StrCat("groups/", g));
  v1::CheckResponse resp;
  ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());
  EXPECT_TRUE(resp.allowed());
  SyncWorkspace(ws, 10, false, /*version=*/2);
  ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());
  EXPECT_FALSE(resp.allowed());
  EXPECT_EQ(resp.reason(), "the workspace does not let members invite guests");
  // An older version is ignored.
  SyncWorkspace(ws, 10, true, /*version=*/1);
  ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());
  EXPECT_FALSE(resp.allowed());
}

TEST_F(MembershipApiTest, SuspensionSyncedBitesOnTheNextCheck) {
  const std::string ws = Id(400);
  SyncWorkspace(ws, 10, true);
  AddUser(Record(Id(401), ws, "a@d.test", v1::DirectoryUser::ADMIN));
  const std::string g =
      CreateGroup(TokenOf(Id(401)), ws, "Open", v1::Group::OPEN);
  AddUser(Record(Id(402), ws, "g@d.test", v1::DirectoryUser::GUEST), {g});
  v1::CheckRequest req;
  req.set_permission("group.view");
  req.set_resource(absl::StrCat("groups/", g));
  v1::CheckResponse resp;
  ASSERT_TRUE(Call(&Stub::Check, TokenOf(Id(402)), req, &resp).ok());
  EXPECT_TRUE(resp.allowed());
  v1::SyncUsersRequest sync;
  *sync.add_users() = Record(Id(402), ws, "g@d.test", v1::DirectoryUser::GUEST,
                             v1::DirectoryUser::SUSPENDED, 2);
  v1::SyncUsersResponse sr;
  ASSERT_TRUE(Call(&Stub::SyncUsers, kInternal, sync, &sr).ok());
  EXPECT_EQ(Call(&Stub::Check, TokenOf(Id(402)), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A stale replay (older version) does not resurrect the user.
  *sync.mutable_users(0) =
      Record(Id(402), ws, "g@d.test", v1::DirectoryUser::GUEST,
             v1::DirectoryUser::ACTIVE, 1);
  ASSERT_TRUE(Call(&Stub::SyncUsers, kInternal, sync, &sr).ok());
  EXPECT_EQ(Call(&Stub::Check, TokenOf(Id(402)), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(MembershipApiTest, ChangeByAnotherReplicaBitesWithinOneSecond) {
  const std::string ws = Id(450);
  SyncWorkspace(ws, 10, true);
  AddUser(Record(Id(451), ws, "a@dd.test", v1::DirectoryUser::ADMIN));
  const std::string g =
      CreateGroup(TokenOf(Id(451)), ws, "Open", v1::Group::OPEN);
  AddUser(Record(Id(452), ws, "g@dd.test", v1::DirectoryUser::GUEST), {g});
  v1::CheckRequest req;
  req.set_user_id(Id(452));
  req.set_permission("group.view");
  req.set_resource(absl::StrCat("groups/", g));
  v1::CheckResponse resp;
  ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());
  ASSERT_TRUE(resp.allowed());  // now cached
  const absl::Time written = absl::Now();
  SuspendFromAnotherReplica(Id(452));
  absl::Duration took = absl::InfiniteDuration();
  while (absl::Now() - written < absl::Seconds(2)) {
    ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());
    if (!resp.allowed()) {
      took = absl::Now() - written;
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_LT(took, absl::Seconds(1));
  EXPECT_EQ(resp.reason(), "user is suspended");

  // A group made secret by another replica disappears for non-members.
  AddUser(Record(Id(453), ws, "m@dd.test", v1::DirectoryUser::MEMBER));
  req.set_user_id(Id(453));
  ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());
  ASSERT_TRUE(resp.allowed());
  const absl::Time changed = absl::Now();
  ASSERT_TRUE(pool_
                  ->Exec("UPDATE membership.groups SET visibility = 3 "
                         "WHERE id = $1",
                         {g})
                  .ok());
  took = absl::InfiniteDuration();
  while (absl::Now() - changed < absl::Seconds(2)) {
    ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());
    if (!resp.allowed()) {
      took = absl::Now() - changed;
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_LT(took, absl::Seconds(1));
  EXPECT_EQ(resp.reason(), "secret group: only its members see it");
}

TEST_F(MembershipApiTest, CacheDropsOnlyWhatChanged) {
  const std::string ws = Id(460);
  SyncWorkspace(ws, 10, true);
  AddUser(Record(Id(461), ws, "a@ee.test", v1::DirectoryUser::ADMIN));
  const std::string g =
      CreateGroup(TokenOf(Id(461)), ws, "Open", v1::Group::OPEN);
  AddUser(Record(Id(462), ws, "m@ee.test", v1::DirectoryUser::MEMBER));
  v1::CheckRequest req;
  req.set_user_id(Id(462));
  req.set_permission("group.view");
  req.set_resource(absl::StrCat("groups/", g));
  v1::CheckResponse resp;
  ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());  // loads
  // Another user's change (through this replica) leaves these entries.
  AddUser(Record(Id(463), ws, "x@ee.test", v1::DirectoryUser::GUEST));
  const int64_t misses = cache_->misses();
  ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());
  EXPECT_TRUE(resp.allowed());
  EXPECT_EQ(cache_->misses(), misses);
  // This user's own change is visible on the very next call.
  AddUser(Record(Id(462), ws, "m@ee.test", v1::DirectoryUser::MEMBER,
                 v1::DirectoryUser::ARCHIVED, 2));
  ASSERT_TRUE(Call(&Stub::Check, kInternal, req, &resp).ok());
  EXPECT_FALSE(resp.allowed());
  EXPECT_EQ(resp.reason(), "user is archived");
}

TEST_F(MembershipApiTest, WarmUpServesFirstLookupsFromMemory) {
  const std::string ws = Id(470);
  SyncWorkspace(ws, 10, true);
  AddUser(Record(Id(471), ws, "a@warm.test", v1::DirectoryUser::ADMIN));
  const std::string g =
      CreateGroup(TokenOf(Id(471)), ws, "Warm", v1::Group::PRIVATE);
  AddUser(Record(Id(472), ws, "m@warm.test", v1::DirectoryUser::MEMBER), {g});
  // A new replica's cache, loading two entries per chunk so warm-up pages.
  CheckCache::Options options;
  options.warm_chunk = 2;
  CheckCache fresh(pool_, options);
  ASSERT_TRUE(fresh.AwaitWarm(absl::Seconds(10)));
  absl::StatusOr<CheckFacts> f =
      fresh.LoadFacts(Id(472), {ResourceType::kGroup, g});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(fresh.misses(), 0);
  EXPECT_EQ(fresh.hits(), 2);  // the user and the group
  ASSERT_TRUE(f->subject.has_value());
  EXPECT_EQ(f->subject->status, Status::kActive);
  EXPECT_EQ(f->subject_role, Role::kMember);
  EXPECT_EQ(f->group.visibility, Visibility::kPrivate);
  // A change after warm-up is seen like any other.
  SuspendFromAnotherReplica(Id(472));
  fresh.AwaitChanges();
  f = fresh.LoadFacts(Id(472), {ResourceType::kGroup, g});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->subject->status, Status::kSuspended);
  EXPECT_EQ(fresh.misses(), 1);
}

TEST_F(MembershipApiTest, InternalMethodsNeedTheInternalCredential) {
  const std::string ws = Id(500);
  SyncWorkspace(ws, 10, true);
  AddUser(Record(Id(501), ws, "a@e.test", v1::DirectoryUser::ADMIN));
  v1::SyncUsersRequest sync;
  v1::SyncUsersResponse sr;
  EXPECT_EQ(Call(&Stub::SyncUsers, TokenOf(Id(501)), sync, &sr).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Call(&Stub::SyncUsers, "", sync, &sr).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

// ---------------------------------------------------------------------------
// Licences
// ---------------------------------------------------------------------------

TEST_F(MembershipApiTest, SecondGroupForGuestNeedsAFreeLicence) {
  const std::string ws = Id(600);
  SyncWorkspace(ws, 2, true);
  AddUser(Record(Id(601), ws, "a@f.test", v1::DirectoryUser::ADMIN));
  const std::string admin = TokenOf(Id(601));
  const std::string g1 = CreateGroup(admin, ws, "One", v1::Group::OPEN);
  const std::string g2 = CreateGroup(admin, ws, "Two", v1::Group::OPEN);
  AddUser(Record(Id(602), ws, "m@f.test", v1::DirectoryUser::MEMBER));
  AddUser(Record(Id(603), ws, "x", v1::DirectoryUser::GUEST), {g1});
  v1::LicenseUsage u = Usage(ws);
  EXPECT_EQ(u.license_count(), 2);
  EXPECT_EQ(u.used_by_members(), 2);
  EXPECT_EQ(u.single_group_guests(), 1);
  EXPECT_EQ(u.available(), 0);

  v1::AddGroupMemberRequest req;
  req.set_group_id(g2);
  req.set_user_id(Id(603));
  v1::GroupMember m;
  grpc::Status s = Call(&Stub::AddGroupMember, admin, req, &m);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(),
            "workspace has 2 licences, all used; adding a second group to "
            "guest x needs 1 more");

  // Raising the licence count makes room.
  SyncWorkspace(ws, 3, true, 2);
  ASSERT_TRUE(Call(&Stub::AddGroupMember, admin, req, &m).ok());
  u = Usage(ws);
  EXPECT_EQ(u.used_by_multi_group_guests(), 1);
  EXPECT_EQ(u.single_group_guests(), 0);
  EXPECT_EQ(u.available(), 0);
  // Lowering below usage is refused, naming the shortfall.
  v1::SyncWorkspaceRequest lower;
  lower.mutable_workspace()->set_workspace_id(ws);
  lower.mutable_workspace()->set_license_count(2);
  lower.mutable_workspace()->set_version(3);
  v1::SyncWorkspaceResponse lr;
  s = Call(&Stub::SyncWorkspace, kInternal, lower, &lr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // Removing the guest from a group frees the licence.
  v1::RemoveGroupMemberRequest rm;
  rm.set_group_id(g2);
  rm.set_user_id(Id(603));
  google::protobuf::Empty e;
  ASSERT_TRUE(Call(&Stub::RemoveGroupMember, admin, rm, &e).ok());
  EXPECT_EQ(Usage(ws).available(), 1);
}

TEST_F(MembershipApiTest, ConcurrentGrantsNeverBothTakeTheLastLicence) {
  for (int round = 0; round < 5; ++round) {
    const std::string ws = Id(700 + round * 10);
    SyncWorkspace(ws, 2, true);
    AddUser(
        Record(Id(701 + round * 10), ws, "a@g.test", v1::DirectoryUser::ADMIN));
    std::atomic<int> ok{0}, refused{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        v1::ApplyGrantsRequest req;
        req.set_workspace_id(ws);
        *req.add_users()->mutable_user() =
            Record(Id(702 + round * 10 + t), ws, absl::StrCat("m", t),
                   v1::DirectoryUser::MEMBER);
        v1::ApplyGrantsResponse resp;
        grpc::Status s = Call(&Stub::ApplyGrants, kInternal, req, &resp);
        ASSERT_TRUE(s.ok()) << s.error_message();
        if (resp.applied()) {
          ++ok;
        } else {
          EXPECT_EQ(resp.results(0).error_code(), 9);
          EXPECT_EQ(resp.results(0).error_message(),
                    absl::StrCat("workspace has 2 licences, all used; adding "
                                 "member m",
                                 t, " needs 1 more"));
          ++refused;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(ok.load(), 1) << "round " << round;
    EXPECT_EQ(refused.load(), 1) << "round " << round;
    EXPECT_EQ(Usage(ws).used_by_members(), 2);
  }
}

// Many writers at once near the limit: the write-first path (which checks
// the counters just before commit) and the lock-first fallback together
// hand out exactly the free licences, single-group guest cap included.
TEST_F(MembershipApiTest, ManyConcurrentGrantsTakeExactlyTheFreeLicences) {
  const std::string ws = Id(3900);
  SyncWorkspace(ws, 6, true);
  AddUser(Record(Id(3901), ws, "a@g.test", v1::DirectoryUser::ADMIN));
  constexpr int kWriters = 16;
  std::atomic<int> ok{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      v1::ApplyGrantsRequest req;
      req.set_workspace_id(ws);
      // Half members (licence each), half guests (capped at the count).
      *req.add_users()->mutable_user() = Record(
          Id(3910 + t), ws, absl::StrCat("u", t),
          t % 2 == 0 ? v1::DirectoryUser::MEMBER : v1::DirectoryUser::GUEST);
      v1::ApplyGrantsResponse resp;
      grpc::Status s = Call(&Stub::ApplyGrants, kInternal, req, &resp);
      ASSERT_TRUE(s.ok()) << s.error_message();
      if (resp.applied()) {
        ++ok;
      } else {
        EXPECT_EQ(resp.results(0).error_code(), 9);
        ++refused;
      }
    });
  }
  for (auto& th : threads) th.join();
  // 6 licences: the admin + 5 members; 6 single-group guests.
  EXPECT_EQ(ok.load(), 5 + 6);
  EXPECT_EQ(refused.load(), kWriters - 11);
  EXPECT_EQ(Usage(ws).used_by_members(), 6);
  EXPECT_EQ(Usage(ws).single_group_guests(), 6);
}

TEST_F(MembershipApiTest, ApplyGrantsBatchIsOneTransaction) {
  const std::string ws = Id(800);
  SyncWorkspace(ws, 2000, true);
  AddUser(Record(Id(801), ws, "a@h.test", v1::DirectoryUser::ADMIN));
  const std::string admin = TokenOf(Id(801));
  const std::string g1 = CreateGroup(admin, ws, "One", v1::Group::OPEN);
  const std::string g2 = CreateGroup(admin, ws, "Two", v1::Group::SECRET);
  const std::string app = CreateApp(admin, ws, "bi");

  v1::ApplyGrantsRequest req;
  req.set_workspace_id(ws);
  for (int i = 0; i < 1000; ++i) {
    v1::UserGrants* g = req.add_users();
    *g->mutable_user() =
        Record(Id(10000 + i), ws, absl::StrCat("u", i, "@h"),
               v1::DirectoryUser::GUEST, v1::DirectoryUser::INVITED);
    g->add_group_ids(g1);
    if (i % 2 == 0) g->add_group_ids(g2);
    auto* p = g->add_app_privileges();
    p->set_app_id(app);
    p->set_privilege(v1::AppPrivilegeGrant::GUEST);
  }
  // One bad row: an unknown group.
  req.mutable_users(999)->add_group_ids(Id(99999));

  v1::ApplyGrantsResponse resp;
  ASSERT_TRUE(Call(&Stub::ApplyGrants, kInternal, req, &resp).ok());
  EXPECT_FALSE(resp.applied());
  EXPECT_EQ(resp.results(999).error_code(), 5);
  EXPECT_TRUE(resp.results(0).ok());
  EXPECT_EQ(Usage(ws).single_group_guests(), 0);  // nothing applied

  req.set_best_effort(true);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(Call(&Stub::ApplyGrants, kInternal, req, &resp).ok());
  const absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(resp.applied());
  EXPECT_LT(took, absl::Seconds(10));
  v1::LicenseUsage u = Usage(ws);
  EXPECT_EQ(u.used_by_multi_group_guests(), 500);
  EXPECT_EQ(u.single_group_guests(), 499);
  EXPECT_EQ(resp.usage_after().used_by_multi_group_guests(), 500);
  EXPECT_FALSE(resp.results(999).ok());

  // Replaying changes nothing; replace narrows to the given set.
  v1::ApplyGrantsRequest again = req;
  again.mutable_users()->DeleteSubrange(999, 1);
  ASSERT_TRUE(Call(&Stub::ApplyGrants, kInternal, again, &resp).ok());
  EXPECT_FALSE(resp.results(0).changed());
  v1::ApplyGrantsRequest replace;
  replace.set_workspace_id(ws);
  v1::UserGrants* r = replace.add_users();
  *r->mutable_user() = Record(Id(10000), ws, "u0@h", v1::DirectoryUser::GUEST,
                              v1::DirectoryUser::INVITED);
  r->set_replace(true);
  r->add_group_ids(g2);
  ASSERT_TRUE(Call(&Stub::ApplyGrants, kInternal, replace, &resp).ok());
  EXPECT_TRUE(resp.results(0).changed());
  v1::GetUserAccessRequest access;
  access.set_workspace_id(ws);
  access.add_user_ids(Id(10000));
  access.add_user_ids(Id(10001));
  v1::GetUserAccessResponse ar;
  ASSERT_TRUE(Call(&Stub::GetUserAccess, kInternal, access, &ar).ok());
  ASSERT_EQ(ar.users_size(), 2);
  ASSERT_EQ(ar.users(0).groups_size(), 1);
  EXPECT_EQ(ar.users(0).groups(0).group_name(), "Two");
  EXPECT_EQ(ar.users(0).app_privileges_size(), 0);
  ASSERT_EQ(ar.users(1).groups_size(), 1);
  EXPECT_EQ(ar.users(1).groups(0).group_name(), "One");
  EXPECT_EQ(ar.users(1).app_privileges_size(), 1);
  ASSERT_EQ(ar.apps_size(), 1);
  EXPECT_EQ(ar.apps(0).slug(), "bi");

  // Idempotency: same key + same request -> same response, no re-run.
  replace.set_idempotency_key("k1");
  v1::ApplyGrantsResponse first, second;
  ASSERT_TRUE(Call(&Stub::ApplyGrants, kInternal, replace, &first).ok());
  ASSERT_TRUE(Call(&Stub::ApplyGrants, kInternal, replace, &second).ok());
  EXPECT_EQ(first.SerializeAsString(), second.SerializeAsString());
  replace.mutable_users(0)->add_group_ids(g1);
  EXPECT_EQ(Call(&Stub::ApplyGrants, kInternal, replace, &second).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Report recipients: ACTIVE guests holding a privilege (all are INVITED).
  v1::ListAppRecipientsRequest rr;
  rr.set_app_id(app);
  v1::ListAppRecipientsResponse rresp;
  ASSERT_TRUE(Call(&Stub::ListAppRecipients, kInternal, rr, &rresp).ok());
  EXPECT_EQ(rresp.users_size(), 0);
  EXPECT_EQ(rresp.app_slug(), "bi");
  v1::SyncUsersRequest act;
  *act.add_users() = Record(Id(10001), ws, "u1@h", v1::DirectoryUser::GUEST,
                            v1::DirectoryUser::ACTIVE, 2);
  v1::SyncUsersResponse sr;
  ASSERT_TRUE(Call(&Stub::SyncUsers, kInternal, act, &sr).ok());
  ASSERT_TRUE(Call(&Stub::ListAppRecipients, kInternal, rr, &rresp).ok());
  ASSERT_EQ(rresp.users_size(), 1);
  EXPECT_EQ(rresp.users(0).id(), Id(10001));

  // Compensation: DeleteUsers removes users with their access.
  v1::DeleteUsersRequest del;
  del.set_workspace_id(ws);
  del.add_user_ids(Id(10001));
  v1::DeleteUsersResponse dr;
  ASSERT_TRUE(Call(&Stub::DeleteUsers, kInternal, del, &dr).ok());
  ASSERT_TRUE(Call(&Stub::ListAppRecipients, kInternal, rr, &rresp).ok());
  EXPECT_EQ(rresp.users_size(), 0);
}

TEST_F(MembershipApiTest, ListAppAccessPagesLikeListUsers) {
  const std::string ws = Id(900);
  SyncWorkspace(ws, 100, true);
  AddUser(Record(Id(901), ws, "admin@i.test", v1::DirectoryUser::ADMIN));
  const std::string admin = TokenOf(Id(901));
  const std::string app = CreateApp(admin, ws, "dash");
  v1::ApplyGrantsRequest req;
  req.set_workspace_id(ws);
  for (int i = 0; i < 25; ++i) {
    v1::UserGrants* g = req.add_users();
    *g->mutable_user() =
        Record(Id(20000 + i), ws, absl::StrFormat("guest%02d@i.test", i),
               v1::DirectoryUser::GUEST);
    if (i % 5 == 0) {
      auto* p = g->add_app_privileges();
      p->set_app_id(app);
      p->set_privilege(v1::AppPrivilegeGrant::VIEWER);
    }
  }
  v1::ApplyGrantsResponse ar;
  ASSERT_TRUE(Call(&Stub::ApplyGrants, kInternal, req, &ar).ok());
  ASSERT_TRUE(ar.applied());

  auto collect = [&](const std::string& order, const std::string& query,
                     v1::DirectoryUser::Kind kind, int expected_total) {
    std::vector<std::string> out;
    v1::ListAppAccessRequest r;
    r.set_workspace_id(ws);
    r.set_order_by(order);
    r.set_query(query);
    r.set_kind(kind);
    r.set_page_size(10);
    int pages = 0;
    do {
      v1::ListAppAccessResponse resp;
      grpc::Status s = Call(&Stub::ListAppAccess, admin, r, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) break;
      for (const auto& row : resp.rows()) {
        out.push_back(row.user().username());
        if (row.user().username() == "guest05@i.test") {
          EXPECT_EQ(row.privileges_size(), 1);
          EXPECT_EQ(row.privileges(0).privilege(),
                    v1::AppPrivilegeGrant::VIEWER);
        }
      }
      EXPECT_EQ(resp.apps_size(), 1);
      if (pages == 0) {
        EXPECT_EQ(resp.total_size(), expected_total);
      }
      r.set_page_token(resp.next_page_token());
      ++pages;
    } while (!r.page_token().empty() && pages < 10);
    return out;
  };
  std::vector<std::string> guests =
      collect("email", "", v1::DirectoryUser::GUEST, 25);
  ASSERT_EQ(guests.size(), 25u);
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(guests[i], absl::StrFormat("guest%02d@i.test", i));
  }
  std::vector<std::string> desc =
      collect("email desc", "", v1::DirectoryUser::GUEST, 25);
  ASSERT_EQ(desc.size(), 25u);
  EXPECT_EQ(desc.front(), "guest24@i.test");
  EXPECT_EQ(desc.back(), "guest00@i.test");
  std::vector<std::string> all =
      collect("createTime", "", v1::DirectoryUser::KIND_UNSPECIFIED, 26);
  EXPECT_EQ(all.size(), 26u);
  std::vector<std::string> q =
      collect("email", "GUEST1", v1::DirectoryUser::KIND_UNSPECIFIED, 10);
  EXPECT_EQ(q.size(), 10u);  // guest10..guest19

  v1::ListAppAccessRequest bad;
  bad.set_workspace_id(ws);
  bad.set_order_by("shoe size");
  v1::ListAppAccessResponse br;
  EXPECT_EQ(Call(&Stub::ListAppAccess, admin, bad, &br).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Only admins see the grid.
  AddUser(Record(Id(902), ws, "m@i.test", v1::DirectoryUser::MEMBER));
  bad.set_order_by("");
  EXPECT_EQ(Call(&Stub::ListAppAccess, TokenOf(Id(902)), bad, &br).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(MembershipApiTest, AppsAndPrivileges) {
  const std::string ws = Id(1000);
  SyncWorkspace(ws, 10, true);
  AddUser(Record(Id(1001), ws, "a@j.test", v1::DirectoryUser::ADMIN));
  AddUser(Record(Id(1002), ws, "m@j.test", v1::DirectoryUser::MEMBER));
  AddUser(Record(Id(1003), ws, "g@j.test", v1::DirectoryUser::GUEST));
  const std::string admin = TokenOf(Id(1001));
  v1::CreateAppRequest req;
  req.set_workspace_id(ws);
  req.mutable_app()->set_slug("Bad_Slug");
  req.mutable_app()->set_name("x");
  v1::App app;
  EXPECT_EQ(Call(&Stub::CreateApp, admin, req, &app).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  req.mutable_app()->set_slug("sales-2026");
  EXPECT_EQ(Call(&Stub::CreateApp, TokenOf(Id(1002)), req, &app).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  req.set_idempotency_key("create-sales");
  ASSERT_TRUE(Call(&Stub::CreateApp, admin, req, &app).ok());
  v1::App again;
  ASSERT_TRUE(Call(&Stub::CreateApp, admin, req, &again).ok());
  EXPECT_EQ(again.id(), app.id());  // idempotent repeat
  req.clear_idempotency_key();
  EXPECT_EQ(Call(&Stub::CreateApp, admin, req, &again).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  const std::string other = CreateApp(admin, ws, "other");

  v1::SetAppPrivilegeRequest set;
  set.set_app_id(app.id());
  set.set_user_id(Id(1003));
  v1::UserAppPrivilege up;
  EXPECT_EQ(Call(&Stub::SetAppPrivilege, admin, set, &up).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // unspecified privilege
  set.set_privilege(v1::AppPrivilegeGrant::GUEST);
  ASSERT_TRUE(Call(&Stub::SetAppPrivilege, admin, set, &up).ok());
  EXPECT_EQ(up.privilege(), v1::AppPrivilegeGrant::GUEST);

  // Guests list only the apps they hold a privilege on.
  v1::ListAppsRequest list;
  list.set_workspace_id(ws);
  v1::ListAppsResponse apps;
  ASSERT_TRUE(Call(&Stub::ListApps, TokenOf(Id(1003)), list, &apps).ok());
  ASSERT_EQ(apps.apps_size(), 1);
  EXPECT_EQ(apps.apps(0).slug(), "sales-2026");
  ASSERT_TRUE(Call(&Stub::ListApps, TokenOf(Id(1002)), list, &apps).ok());
  EXPECT_EQ(apps.apps_size(), 2);
  list.set_page_size(1);
  ASSERT_TRUE(Call(&Stub::ListApps, admin, list, &apps).ok());
  ASSERT_EQ(apps.apps_size(), 1);
  EXPECT_EQ(apps.apps(0).slug(), "other");
  list.set_page_token(apps.next_page_token());
  ASSERT_TRUE(Call(&Stub::ListApps, admin, list, &apps).ok());
  ASSERT_EQ(apps.apps_size(), 1);
  EXPECT_EQ(apps.apps(0).slug(), "sales-2026");
  EXPECT_TRUE(apps.next_page_token().empty());

  v1::CheckRequest check;
  check.set_user_id(Id(1003));
  check.set_permission("app.report");
  check.set_resource(absl::StrCat("apps/", app.id()));
  v1::CheckResponse cr;
  ASSERT_TRUE(Call(&Stub::Check, kInternal, check, &cr).ok());
  EXPECT_TRUE(cr.allowed());
  // Resource of the wrong type / unknown permission: INVALID_ARGUMENT.
  check.set_resource(absl::StrCat("groups/", app.id()));
  EXPECT_EQ(Call(&Stub::Check, kInternal, check, &cr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  check.set_permission("app.fly");
  EXPECT_EQ(Call(&Stub::Check, kInternal, check, &cr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A member may not ask about another user.
  check.set_permission("app.report");
  check.set_resource(absl::StrCat("apps/", app.id()));
  EXPECT_EQ(Call(&Stub::Check, TokenOf(Id(1002)), check, &cr).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(Call(&Stub::Check, admin, check, &cr).ok());
  EXPECT_TRUE(cr.allowed());

  // BatchCheck: results in order; more than 100 checks is refused.
  v1::BatchCheckRequest batch;
  *batch.add_checks() = check;
  v1::CheckRequest* org = batch.add_checks();
  org->set_user_id(Id(1003));
  org->set_permission("group.create");
  org->set_resource(absl::StrCat("workspaces/", ws));
  v1::BatchCheckResponse br;
  ASSERT_TRUE(Call(&Stub::BatchCheck, kInternal, batch, &br).ok());
  ASSERT_EQ(br.results_size(), 2);
  EXPECT_TRUE(br.results(0).allowed());
  EXPECT_FALSE(br.results(1).allowed());
  EXPECT_EQ(br.results(1).reason(), "guests cannot create groups");
  for (int i = 0; i < 100; ++i) *batch.add_checks() = check;
  EXPECT_EQ(Call(&Stub::BatchCheck, kInternal, batch, &br).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // The directory pages by username; members see everyone active.
  v1::ListDirectoryRequest dir;
  dir.set_workspace_id(ws);
  dir.set_page_size(2);
  v1::ListDirectoryResponse page;
  ASSERT_TRUE(Call(&Stub::ListDirectory, TokenOf(Id(1002)), dir, &page).ok());
  ASSERT_EQ(page.users_size(), 2);
  EXPECT_EQ(page.users(0).username(), "a@j.test");
  EXPECT_EQ(page.users(1).username(), "g@j.test");
  EXPECT_EQ(page.users(1).kind(), v1::DirectoryUser::GUEST);
  dir.set_page_token(page.next_page_token());
  ASSERT_TRUE(Call(&Stub::ListDirectory, TokenOf(Id(1002)), dir, &page).ok());
  ASSERT_EQ(page.users_size(), 1);
  EXPECT_EQ(page.users(0).username(), "m@j.test");
  EXPECT_TRUE(page.next_page_token().empty());
  dir.set_page_token("garbage!");
  EXPECT_EQ(
      Call(&Stub::ListDirectory, TokenOf(Id(1002)), dir, &page).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  // Another workspace's directory is not the caller's business.
  dir.clear_page_token();
  dir.set_workspace_id(Id(100));
  EXPECT_EQ(
      Call(&Stub::ListDirectory, TokenOf(Id(1002)), dir, &page).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);

  v1::RemoveAppPrivilegeRequest rm;
  rm.set_app_id(app.id());
  rm.set_user_id(Id(1003));
  google::protobuf::Empty e;
  ASSERT_TRUE(Call(&Stub::RemoveAppPrivilege, admin, rm, &e).ok());
  EXPECT_EQ(Call(&Stub::RemoveAppPrivilege, admin, rm, &e).error_code(),
            grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Call(&Stub::Check, kInternal, check, &cr).ok());
  EXPECT_FALSE(cr.allowed());

  v1::DeleteAppRequest del;
  del.set_app_id(other);
  EXPECT_EQ(Call(&Stub::DeleteApp, TokenOf(Id(1002)), del, &e).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(Call(&Stub::DeleteApp, admin, del, &e).ok());
  EXPECT_EQ(Call(&Stub::DeleteApp, admin, del, &e).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(MembershipApiTest, GroupLifecycle) {
  const std::string ws = Id(1100);
  SyncWorkspace(ws, 10, true);
  AddUser(Record(Id(1101), ws, "a@k.test", v1::DirectoryUser::ADMIN));
  AddUser(Record(Id(1102), ws, "m@k.test", v1::DirectoryUser::MEMBER));
  AddUser(Record(Id(1103), ws, "m2@k.test", v1::DirectoryUser::MEMBER));
  AddUser(Record(Id(1104), ws, "g@k.test", v1::DirectoryUser::GUEST));
  const std::string admin = TokenOf(Id(1101));
  const std::string member = TokenOf(Id(1102));

  v1::CreateGroupRequest create;
  create.set_workspace_id(ws);
  create.mutable_group()->set_name("Team");
  v1::Group g;
  EXPECT_EQ(Call(&Stub::CreateGroup, member, create, &g).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no visibility
  create.mutable_group()->set_visibility(v1::Group::PRIVATE);
  EXPECT_EQ(
      Call(&Stub::CreateGroup, TokenOf(Id(1104)), create, &g).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);  // guests cannot create
  ASSERT_TRUE(Call(&Stub::CreateGroup, member, create, &g).ok());
  EXPECT_EQ(g.member_count(), 1);  // the member creator, as GROUP_ADMIN
  EXPECT_TRUE(g.members_can_publish());
  EXPECT_FALSE(g.members_can_invite());
  create.mutable_group()->set_name("TEAM");
  v1::Group dup;
  EXPECT_EQ(Call(&Stub::CreateGroup, admin, create, &dup).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  // The creator manages it; another member does not.
  v1::UpdateGroupRequest update;
  update.set_group_id(g.id());
  update.mutable_group()->set_description("the team");
  update.mutable_group()->set_members_can_invite(true);
  v1::Group updated;
  EXPECT_EQ(Call(&Stub::UpdateGroup, TokenOf(Id(1103)), update, &updated)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(Call(&Stub::UpdateGroup, member, update, &updated).ok());
  EXPECT_EQ(updated.description(), "the team");
  EXPECT_TRUE(updated.members_can_invite());
  update.mutable_update_mask()->add_paths("owner");
  EXPECT_EQ(Call(&Stub::UpdateGroup, member, update, &updated).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(AddMember(member, g.id(), Id(1103)).ok());
  ASSERT_TRUE(AddMember(member, g.id(), Id(1104)).ok());
  v1::ListGroupMembersRequest lm;
  lm.set_group_id(g.id());
  lm.set_page_size(2);
  v1::ListGroupMembersResponse members;
  ASSERT_TRUE(
      Call(&Stub::ListGroupMembers, TokenOf(Id(1104)), lm, &members).ok());
  ASSERT_EQ(members.members_size(), 2);
  EXPECT_EQ(members.members(0).user().username(), "g@k.test");
  EXPECT_EQ(members.members(0).user().kind(), v1::DirectoryUser::GUEST);
  EXPECT_EQ(members.members(1).user().username(), "m2@k.test");
  lm.set_page_token(members.next_page_token());
  ASSERT_TRUE(
      Call(&Stub::ListGroupMembers, TokenOf(Id(1104)), lm, &members).ok());
  ASSERT_EQ(members.members_size(), 1);
  EXPECT_EQ(members.members(0).role(), v1::GroupMember::GROUP_ADMIN);
  EXPECT_TRUE(members.next_page_token().empty());

  // The last group admin of a group with members cannot leave.
  v1::RemoveGroupMemberRequest rm;
  rm.set_group_id(g.id());
  rm.set_user_id(Id(1102));
  google::protobuf::Empty e;
  EXPECT_EQ(Call(&Stub::RemoveGroupMember, member, rm, &e).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // A guest may leave by itself, not remove others.
  rm.set_user_id(Id(1103));
  EXPECT_EQ(
      Call(&Stub::RemoveGroupMember, TokenOf(Id(1104)), rm, &e).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  rm.set_user_id(Id(1104));
  ASSERT_TRUE(Call(&Stub::RemoveGroupMember, TokenOf(Id(1104)), rm, &e).ok());
  // Now the guest cannot see the private group at all.
  v1::GetGroupRequest get;
  get.set_group_id(g.id());
  v1::Group got;
  EXPECT_EQ(Call(&Stub::GetGroup, TokenOf(Id(1104)), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::DeleteGroupRequest del;
  del.set_group_id(g.id());
  EXPECT_EQ(Call(&Stub::DeleteGroup, TokenOf(Id(1103)), del, &e).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(Call(&Stub::DeleteGroup, admin, del, &e).ok());
  EXPECT_EQ(Call(&Stub::GetGroup, admin, get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(MembershipApiTest,
       SingleGroupGuestsAreCappedAndConversionNeedsALicence) {
  const std::string ws = Id(1200);
  SyncWorkspace(ws, 1, true);
  AddUser(Record(Id(1201), ws, "a@l.test", v1::DirectoryUser::ADMIN));
  const std::string g =
      CreateGroup(TokenOf(Id(1201)), ws, "One", v1::Group::OPEN);
  AddUser(Record(Id(1202), ws, "g1", v1::DirectoryUser::GUEST), {g});
  v1::ApplyGrantsRequest req;
  req.set_workspace_id(ws);
  v1::UserGrants* u = req.add_users();
  *u->mutable_user() = Record(Id(1203), ws, "g2", v1::DirectoryUser::GUEST);
  u->add_group_ids(g);
  req.set_dry_run(true);
  v1::ApplyGrantsResponse resp;
  ASSERT_TRUE(Call(&Stub::ApplyGrants, kInternal, req, &resp).ok());
  EXPECT_FALSE(resp.applied());
  EXPECT_EQ(resp.results(0).error_code(), 9);
  EXPECT_EQ(resp.results(0).error_message(),
            "workspace has 1 licence, which caps single-group guests at 1 "
            "and 1 exist; adding guest g2 needs 1 more");
  EXPECT_EQ(resp.usage_after().single_group_guests(), 1);

  // Converting the guest to a member needs a licence too (SyncUsers).
  v1::SyncUsersRequest sync;
  *sync.add_users() = Record(Id(1202), ws, "g1", v1::DirectoryUser::MEMBER,
                             v1::DirectoryUser::ACTIVE, 2);
  v1::SyncUsersResponse sr;
  grpc::Status s = Call(&Stub::SyncUsers, kInternal, sync, &sr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(),
            "workspace has 1 licence, all used; adding member g1 needs 1 more");
  SyncWorkspace(ws, 2, true, 2);
  ASSERT_TRUE(Call(&Stub::SyncUsers, kInternal, sync, &sr).ok());
  v1::LicenseUsage usage = Usage(ws);
  EXPECT_EQ(usage.used_by_members(), 2);
  EXPECT_EQ(usage.single_group_guests(), 0);
  EXPECT_EQ(usage.available(), 0);
  // Unknown workspace: FAILED_PRECONDITION naming it.
  *sync.mutable_users(0) =
      Record(Id(1299), Id(1298), "x", v1::DirectoryUser::GUEST);
  EXPECT_EQ(Call(&Stub::SyncUsers, kInternal, sync, &sr).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace guestlist::membership
