// The security matrix (issue 9): every RPC of the three gRPC services
// called as anonymous, guest, member, group admin, admin of another
// workspace, suspended user, operator and (as the control) the workspace's
// own admin, from one table with the expected result of each cell. Public
// methods go through the gateway's HTTP routes; gRPC-only methods
// (Authenticate, SendEmail, the internal ones) go straight to their
// service. A second test walks the proto descriptors so a method added to
// a .proto without a row here fails the build's tests instead of silently
// escaping the matrix. Calls that change something get a fresh target per
// cell, so cells do not depend on each other. Afterwards no token or
// password may appear in any service's log.
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "google/api/annotations.pb.h"
#include "gtest/gtest.h"
#include "guestlist/identity/v1/identity.pb.h"
#include "guestlist/notification/v1/notification.pb.h"
#include "tests/security/dynamic_grpc.h"
#include "tests/testing/stack.h"

namespace guestlist {
namespace {

using ::guestlist::security::AllMethods;
using ::guestlist::security::CallMethod;
using ::guestlist::security::HttpStatusOf;
using ::guestlist::security::NewMessage;
using ::guestlist::testing::HttpResponse;
using ::guestlist::testing::Stack;
using json = nlohmann::json;
namespace pb = ::google::protobuf;

constexpr char kPassword[] = "a long enough password";
constexpr char kUserPassword[] = "guest password 123";

// The response's JSON object; an empty object when it is not one (a dead
// gateway, an HTML error page), so lookups fail the test without throwing.
json Body(const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

// Columns of the table, in order.
enum Role {
  kAnonymous = 0,
  kGuest,
  kMember,
  kGroupAdmin,
  kOtherAdmin,  // admin of another workspace
  kSuspended,
  kOperator,
  kAdmin,  // the workspace's own admin: the control column
  kRoles
};
constexpr const char* kRoleNames[kRoles] = {
    "anonymous",      "guest",     "member",   "group admin",
    "other-ws admin", "suspended", "operator", "admin"};

// Expected result of one cell (gRPC codes are first mapped to HTTP as
// API.md does, so one alphabet serves both transports):
//   Y  200
//   U  401 (no credentials)
//   D  refused: 401, 403 or 404 (404 when existence must not leak); in
//      the suspended column exactly 403 (API.md: a suspended user gets
//      PERMISSION_DENIED naming the status, not "invalid token")
//   B  400: the FAILED_PRECONDITION / INVALID_ARGUMENT the contract names
//   P  public route: executed, so neither 401/403 nor 5xx
//   *  the contract does not say; anything but a 5xx
bool Matches(char expected, long status) {
  if (status == 0 || status >= 500) return false;
  switch (expected) {
    case 'Y':
      return status == 200;
    case 'U':
      return status == 401;
    case 'D':
      return status == 401 || status == 403 || status == 404;
    case 'S':
      return status == 403;
    case 'B':
      return status == 400;
    case 'P':
      return status != 401 && status != 403;
    default:
      return true;
  }
}

// Methods API.md does not list: gRPC only, for our own services holding
// the internal credential ("every other caller gets PERMISSION_DENIED").
// The descriptor test checks this list against the protos (no HTTP route).
constexpr const char* kInternalMethods[] = {
    "ListAdmins",    "BatchGetUsers",     "SyncUsers",
    "SyncWorkspace", "ApplyGrants",       "DeleteUsers",
    "GetUserAccess", "ListAppRecipients", "BatchSendEmail"};
// Methods without an HTTP route that API.md does list as gRPC-only.
constexpr const char* kGrpcOnlyPublic[] = {"Authenticate", "SendEmail"};

struct Request {
  std::string method;
  std::string path;
  std::string body;
  std::string content_type = "application/json";
  // Replaces the role's token (Logout needs a session it may end).
  std::optional<std::string> token;
  // Set: a gRPC call of this method straight to its service.
  const pb::MethodDescriptor* grpc = nullptr;
  std::shared_ptr<pb::Message> grpc_request;
};

struct Row {
  // Starts with the method's name (the descriptor test keys on it), then
  // optionally a note on the target.
  const char* rpc;
  // One character per Role, in the enum's order.
  const char* expected;
  std::function<Request(Role)> make;
};

std::string MethodOf(const Row& row) {
  const std::string rpc = row.rpc;
  return rpc.substr(0, rpc.find(' '));
}

const pb::MethodDescriptor* FindMethod(const std::string& name) {
  for (const pb::MethodDescriptor* m : AllMethods()) {
    if (m->name() == name) return m;
  }
  return nullptr;
}

// A cell where the implementation disagrees with the contract: the row
// keeps the contract's expectation, and this pins what the code does today
// so the table stays readable and the deviation cannot change unnoticed.
// Each one is a bug reported for routing (see docs/RELIABILITY.md).
struct Deviation {
  const char* rpc;
  Role role;
  long observed;
};
const std::vector<Deviation>& KnownDeviations() {
  // None today (Logout by a suspended user, the last one, was fixed).
  static const auto* const kList = new std::vector<Deviation>{};
  return *kList;
}

class SecurityMatrixTest : public ::testing::Test {
 public:
  // The table. Building it calls nothing; each cell's `make` does.
  static std::vector<Row> Rows();

 protected:
  static void SetUpTestSuite() {
    stack_ = new Stack();
    f_ = new Fixture();
    secrets_ = new std::vector<std::string>{kPassword, kUserPassword,
                                            stack_->operator_token()};
    f_->ws = CreateWorkspace("matrix", &f_->admin);
    f_->other_ws = CreateWorkspace("elsewhere", &f_->other_admin);
    f_->group = MustId(Call("POST", Ws("/groups"),
                            R"({"name": "Partners", "visibility": "OPEN"})"));
    f_->other_group = MustId(Call(
        "POST", Ws("/groups"), R"({"name": "Staff", "visibility": "OPEN"})"));
    f_->app = MustId(
        Call("POST", Ws("/apps"), R"({"slug": "sales", "name": "Sales"})"));
    f_->user_ids[kAdmin] =
        Body(Call("GET", Ws("/users"), ""))["users"][0]["id"];
    f_->user_ids[kOtherAdmin] =
        Body(stack_->Http("GET", "/v1/workspaces/" + f_->other_ws + "/users",
                          "", f_->other_admin))["users"][0]["id"];
    f_->user_ids[kAnonymous] = f_->user_ids[kOperator] = f_->user_ids[kAdmin];
    f_->usernames[kAdmin] = "admin@matrix.example";
    f_->usernames[kOtherAdmin] = "admin@elsewhere.example";

    f_->tokens[kAnonymous] = "";
    f_->tokens[kAdmin] = f_->admin;
    f_->tokens[kOtherAdmin] = f_->other_admin;
    f_->tokens[kOperator] = stack_->operator_token();
    f_->tokens[kMember] = Join("MEMBER", {}, kMember);
    f_->tokens[kGroupAdmin] = Join("MEMBER", {}, kGroupAdmin);
    HttpResponse promote = Call(
        "POST", "/v1/groups/" + f_->group + "/members",
        json{{"userId", f_->user_ids[kGroupAdmin]}, {"role", "GROUP_ADMIN"}}
            .dump());
    ASSERT_EQ(promote.status, 200) << promote.body;
    f_->tokens[kGuest] = Join("GUEST", {f_->group}, kGuest);
    // Two suspended users: Logout's cell must not end the session the
    // other rows use.
    f_->suspended_for_logout = Join("MEMBER", {}, kSuspended);
    HttpResponse suspend = Call(
        "POST", "/v1/users/" + f_->user_ids[kSuspended] + ":suspend", "{}");
    ASSERT_EQ(suspend.status, 200) << suspend.body;
    f_->tokens[kSuspended] = Join("MEMBER", {}, kSuspended);
    suspend = Call("POST", "/v1/users/" + f_->user_ids[kSuspended] + ":suspend",
                   "{}");
    ASSERT_EQ(suspend.status, 200) << suspend.body;
    HttpResponse enable =
        Call("PATCH",
             "/v1/workspaces/" + f_->ws +
                 "?updateMask=settings.requestAccessEnabled",
             R"({"settings": {"requestAccessEnabled": true}})");
    ASSERT_EQ(enable.status, 200) << enable.body;
    f_->request = FreshAccessRequest();
    // One finished import with a failed row, for GetImport and
    // GetImportErrors ("wizard" is no role).
    HttpResponse import = Send(
        Request{"POST", Ws("/users:import?mode=BEST_EFFORT&sendEmails=false"),
                "username,first_name,last_name,role\n"
                "imported@matrix-people.example,Imp,Orted,guest\n"
                "badrole@matrix-people.example,Bad,Role,wizard\n",
                "text/csv"},
        f_->admin);
    ASSERT_EQ(import.status, 200) << import.body;
    f_->import_id = Body(import).value("importId", "");
    ASSERT_FALSE(f_->import_id.empty()) << import.body;
    // One message for GetMessage.
    Invite("GUEST", {}, true);
    for (int i = 0; i < 50 && f_->message.empty(); ++i) {
      json list = Body(Call("GET", Ws("/messages"), ""));
      if (list.contains("messages") && !list["messages"].empty()) {
        f_->message = list["messages"][0].value("id", "");
      }
      if (f_->message.empty()) absl::SleepFor(absl::Milliseconds(100));
    }
    // Suspension bites within a second (cached authentication).
    absl::SleepFor(absl::Milliseconds(1200));
  }
  static void TearDownTestSuite() {
    // No bearer token, password or invitation token may reach any
    // service's log (log_hygiene_test covers a fuller flow).
    const std::string logs = stack_->Logs();
    for (const std::string& token : f_->tokens) {
      if (token.size() < 16) continue;
      EXPECT_EQ(logs.find(token), std::string::npos) << "token in logs";
    }
    for (const std::string& secret : *secrets_) {
      EXPECT_EQ(logs.find(secret), std::string::npos)
          << "secret in logs: " << secret.substr(0, 6) << "...";
    }
    delete secrets_;
    delete f_;
    delete stack_;
  }

  struct Fixture {
    std::string ws, other_ws, admin, other_admin;
    std::string group, other_group, app, message, request, import_id;
    std::string suspended_for_logout;
    std::string tokens[kRoles];
    // The user each role acts as (the admin's for roles without one).
    std::string user_ids[kRoles];
    std::string usernames[kRoles];
  };

  // Admin-A calls used to build fixtures and fresh targets.
  static HttpResponse Call(const std::string& method, const std::string& path,
                           const std::string& body) {
    return stack_->Http(method, path, body, f_->admin);
  }
  static std::string Ws(const std::string& suffix) {
    return "/v1/workspaces/" + f_->ws + suffix;
  }
  static std::string MustId(const HttpResponse& r) {
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r).value("id", "");
  }
  static std::string Unique(const std::string& prefix) {
    return absl::StrCat(prefix, ++counter_);
  }

  // Runs one cell: HTTP through the gateway, or gRPC straight to the
  // method's service with the gRPC code mapped to its HTTP status.
  static HttpResponse Send(const Request& req, const std::string& role_token) {
    const std::string token = req.token.value_or(role_token);
    if (req.grpc != nullptr) {
      const std::string& service = req.grpc->service()->name();
      const std::string addr =
          service == "IdentityService"     ? stack_->identity_addr()
          : service == "MembershipService" ? stack_->membership_addr()
                                           : stack_->notification_addr();
      grpc::Status s = CallMethod(stack_->Channel(addr), req.grpc,
                                  {req.grpc_request.get()}, token);
      HttpResponse r;
      r.status = HttpStatusOf(s.error_code());
      r.body = absl::StrCat("gRPC ", s.error_code(), " ", s.error_message());
      return r;
    }
    std::vector<std::string> headers = {"Content-Type: " + req.content_type};
    if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
    return ::guestlist::testing::HttpRequest(
        req.method, stack_->gateway_url() + req.path, req.body, headers);
  }
  static Request Grpc(const std::string& method,
                      std::shared_ptr<pb::Message> message) {
    Request r;
    r.grpc = FindMethod(method);
    r.method = "gRPC";
    r.path = method;
    r.grpc_request = std::move(message);
    return r;
  }

  static std::string CreateWorkspace(const std::string& name,
                                     std::string* admin) {
    HttpResponse r = stack_->Http(
        "POST", "/v1/workspaces",
        json{{"workspace",
              {{"name", name}, {"displayName", name}, {"licenseCount", 5000}}},
             {"adminEmail", "admin@" + name + ".example"},
             {"adminPassword", kPassword}}
            .dump(),
        stack_->operator_token());
    EXPECT_EQ(r.status, 200) << r.body;
    const std::string id = Body(r).value("id", "");
    *admin = Login(id, "admin@" + name + ".example", kPassword);
    // Membership learns of a new workspace through identity's outbox.
    for (int i = 0; i < 50; ++i) {
      if (stack_->Http("GET", "/v1/workspaces/" + id + "/groups", "", *admin)
              .status == 200) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    return id;
  }
  static std::string Login(const std::string& ws, const std::string& username,
                           const std::string& password) {
    HttpResponse login = stack_->Http(
        "POST", "/v1/workspaces/" + ws + "/sessions",
        json{{"username", username}, {"password", password}}.dump());
    EXPECT_EQ(login.status, 200) << login.body;
    return Body(login).value("token", "");
  }
  // A new session of the role's user, so Logout can end it without
  // breaking the role's token for the other rows.
  static std::string FreshSession(Role role) {
    return Login(
        role == kOtherAdmin ? f_->other_ws : f_->ws, f_->usernames[role],
        role == kAdmin || role == kOtherAdmin ? kPassword : kUserPassword);
  }

  struct Invited {
    std::string invitation_id, user_id, token, email;
  };
  static Invited Invite(const std::string& kind,
                        const std::vector<std::string>& groups,
                        bool send_email = false) {
    Invited out;
    out.email = Unique("user") + "@matrix-people.example";
    HttpResponse r = Call("POST", Ws("/invitations"),
                          json{{"email", out.email},
                               {"firstName", "Test"},
                               {"kind", kind},
                               {"groupIds", groups},
                               {"sendEmail", send_email}}
                              .dump());
    EXPECT_EQ(r.status, 200) << r.body;
    json b = Body(r);
    out.invitation_id = b.value("id", "");
    if (b.contains("user")) out.user_id = b["user"].value("id", "");
    const std::string url = b.value("invitationUrl", "");
    const auto pos = url.find("#token=");
    if (pos != std::string::npos) out.token = url.substr(pos + 7);
    if (!out.token.empty()) secrets_->push_back(out.token);
    return out;
  }
  // Invites and accepts as `role`'s user; returns its session token.
  static std::string Join(const std::string& kind,
                          const std::vector<std::string>& groups, Role role) {
    Invited inv = Invite(kind, groups);
    f_->user_ids[role] = inv.user_id;
    f_->usernames[role] = inv.email;
    HttpResponse accept = stack_->Http(
        "POST", "/v1/invitations:accept",
        json{{"token", inv.token}, {"password", kUserPassword}}.dump());
    EXPECT_EQ(accept.status, 200) << accept.body;
    return Body(accept).value("token", "");
  }
  static std::string FreshGroup() {
    return MustId(
        Call("POST", Ws("/groups"),
             json{{"name", Unique("Group ")}, {"visibility", "OPEN"}}.dump()));
  }
  static std::string FreshApp() {
    return MustId(Call("POST", Ws("/apps"),
                       json{{"slug", Unique("app")}, {"name", "App"}}.dump()));
  }
  static std::string FreshAccessRequest() {
    const std::string email = Unique("asker") + "@outside.example";
    HttpResponse r = stack_->Http(
        "POST", Ws("/accessRequests"),
        json{{"email", email}, {"firstName", "Asker"}, {"message", "hi"}}
            .dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r).value("id", "");
  }

  static Stack* stack_;
  static Fixture* f_;
  static std::vector<std::string>* secrets_;
  static int counter_;
};
Stack* SecurityMatrixTest::stack_ = nullptr;
SecurityMatrixTest::Fixture* SecurityMatrixTest::f_ = nullptr;
int SecurityMatrixTest::counter_ = 0;
std::vector<std::string>* SecurityMatrixTest::secrets_ = nullptr;

std::vector<Row> SecurityMatrixTest::Rows() {
  using F = SecurityMatrixTest;
  // Columns: anonymous guest member group-admin other-ws-admin suspended
  //          operator admin
  std::vector<Row> rows = {
      // identity: workspaces and sessions
      {"CreateWorkspace", "UDDDDDYD",
       [](Role) {
         const std::string n = F::Unique("ws");
         return Request{"POST", "/v1/workspaces",
                        json{{"workspace", {{"name", n}, {"displayName", n}}},
                             {"adminEmail", "admin@" + n + ".example"},
                             {"adminPassword", kPassword}}
                            .dump()};
       }},
      {"GetWorkspace", "UYYYDDYY",
       [&](Role) {
         return Request{"GET", "/v1/workspaces/" + f_->ws, ""};
       }},
      {"UpdateWorkspace", "UDDDDDYY",
       [&](Role) {
         return Request{"PATCH",
                        "/v1/workspaces/" + f_->ws +
                            "?updateMask=settings.requestAccessEnabled",
                        R"({"settings": {"requestAccessEnabled": true}})"};
       }},
      {"Login", "Y*******",
       [&](Role) {
         return Request{
             "POST", "/v1/workspaces/" + f_->ws + "/sessions",
             json{{"username", "admin@matrix.example"}, {"password", kPassword}}
                 .dump()};
       }},
      // Each role ends a session of its own (fresh, so its token stays good
      // for the other rows); the operator token is no session.
      {"Logout", "UYYYYDBY",
       [&](Role role) {
         Request r{"DELETE", "/v1/sessions/current", ""};
         if (role == kSuspended) {
           r.token = f_->suspended_for_logout;
         } else if (role != kAnonymous && role != kOperator) {
           r.token = F::FreshSession(role);
         }
         return r;
       }},
      {"Authenticate (the caller's own token)", "UYYYYDYY",
       [&](Role role) {
         auto m = std::make_shared<identity::v1::AuthenticateRequest>();
         m->set_token(f_->tokens[role]);
         return F::Grpc("Authenticate", m);
       }},
      // identity: invitations
      {"InviteUser (guest)", "UD**DD*Y",
       [&](Role) {
         return Request{"POST", F::Ws("/invitations"),
                        json{{"email", F::Unique("inv") + "@guests.example"},
                             {"firstName", "New"},
                             {"kind", "GUEST"},
                             {"sendEmail", false}}
                            .dump()};
       }},
      {"InviteUser (admin)", "UDDDDD*Y",
       [&](Role) {
         return Request{"POST", F::Ws("/invitations"),
                        json{{"email", F::Unique("adm") + "@staff.example"},
                             {"firstName", "New"},
                             {"kind", "ADMIN"},
                             {"sendEmail", false}}
                            .dump()};
       }},
      {"ListInvitations", "UDYYDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/invitations"), ""};
       }},
      {"ResendInvitation", "UDDDDD*Y",
       [&](Role) {
         return Request{"POST",
                        "/v1/invitations/" +
                            F::Invite("GUEST", {}).invitation_id + ":resend",
                        "{}"};
       }},
      {"RevokeInvitation", "UDDDDD*Y",
       [&](Role) {
         return Request{"POST",
                        "/v1/invitations/" +
                            F::Invite("GUEST", {}).invitation_id + ":revoke",
                        "{}"};
       }},
      {"GetInvitation", "Y*******",
       [&](Role) {
         return Request{"POST", "/v1/invitations:lookup",
                        json{{"token", F::Invite("GUEST", {}).token}}.dump()};
       }},
      {"AcceptInvitation", "Y*******",
       [&](Role) {
         return Request{"POST", "/v1/invitations:accept",
                        json{{"token", F::Invite("GUEST", {}).token},
                             {"password", "guest password 123"}}
                            .dump()};
       }},
      // identity: users
      {"GetUser (admin's profile)", "UD**DD*Y",
       [&](Role) {
         return Request{"GET", "/v1/users/" + f_->user_ids[kAdmin], ""};
       }},
      {"GetUser (own)", "UYYYYD*Y",
       [&](Role role) {
         return Request{"GET", "/v1/users/" + f_->user_ids[role], ""};
       }},
      {"UpdateUser (another user)", "UDDDDD*Y",
       [&](Role) {
         return Request{"PATCH",
                        "/v1/users/" + F::Invite("GUEST", {}).user_id +
                            "?updateMask=firstName",
                        R"({"firstName": "Renamed"})"};
       }},
      {"ListUsers", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/users"), ""};
       }},
      {"SuspendUser", "UDDDDD*Y",
       [&](Role) {
         return Request{
             "POST", "/v1/users/" + F::Invite("GUEST", {}).user_id + ":suspend",
             "{}"};
       }},
      {"ReactivateUser", "UDDDDD*Y",
       [&](Role) {
         const std::string id = F::Invite("GUEST", {}).user_id;
         F::Call("POST", "/v1/users/" + id + ":suspend", "{}");
         return Request{"POST", "/v1/users/" + id + ":reactivate", "{}"};
       }},
      {"ArchiveUser", "UDDDDD*Y",
       [&](Role) {
         return Request{
             "POST", "/v1/users/" + F::Invite("GUEST", {}).user_id + ":archive",
             "{}"};
       }},
      {"ConvertGuestToMember", "UDDDDD*Y",
       [&](Role) {
         return Request{
             "POST",
             "/v1/users/" + F::Invite("GUEST", {}).user_id + ":convertToMember",
             "{}"};
       }},
      {"ExportUsers", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/users:export"), ""};
       }},
      {"GetImportTemplate", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/users:template"), ""};
       }},
      {"ImportUsers (dry run)", "UDDDDD*Y",
       [&](Role) {
         return Request{"POST", F::Ws("/users:import?dryRun=true"),
                        "username,first_name,last_name,role\n" +
                            F::Unique("dry") + "@matrix-people.example,A,B," +
                            "guest\n",
                        "text/csv"};
       }},
      {"GetImport", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", "/v1/imports/" + f_->import_id, ""};
       }},
      {"GetImportErrors", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", "/v1/imports/" + f_->import_id + "/errors", ""};
       }},
      // identity: API keys
      {"CreateApiKey", "UDDDDD*Y",
       [&](Role) {
         return Request{"POST", F::Ws("/apiKeys"),
                        R"({"displayName": "ci", "scopes": ["users.read"]})"};
       }},
      {"ListApiKeys", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/apiKeys"), ""};
       }},
      {"DeleteApiKey", "UDDDDD*Y",
       [&](Role) {
         const std::string id = F::MustId(
             F::Call("POST", F::Ws("/apiKeys"),
                     R"({"displayName": "tmp", "scopes": ["users.read"]})"));
         return Request{"DELETE", "/v1/apiKeys/" + id, ""};
       }},
      // identity: access requests
      {"RequestAccess", "Y*******",
       [&](Role) {
         return Request{"POST", F::Ws("/accessRequests"),
                        json{{"email", F::Unique("req") + "@outside.example"},
                             {"firstName", "Req"},
                             {"message", "please"}}
                            .dump()};
       }},
      {"ListAccessRequests", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/accessRequests"), ""};
       }},
      // RequestAccess is rate limited per address (20/h): refused roles
      // aim at the setup's pending request, the others at fresh ones.
      {"ApproveAccessRequest", "UDDDDD*Y",
       [&](Role role) {
         const bool fresh = role == kAdmin || role == kOperator;
         return Request{"POST",
                        "/v1/accessRequests/" +
                            (fresh ? F::FreshAccessRequest() : f_->request) +
                            ":approve",
                        "{}"};
       }},
      {"DenyAccessRequest", "UDDDDD*Y",
       [&](Role role) {
         const bool fresh = role == kAdmin || role == kOperator;
         return Request{"POST",
                        "/v1/accessRequests/" +
                            (fresh ? F::FreshAccessRequest() : f_->request) +
                            ":deny",
                        "{}"};
       }},
      // membership: apps
      {"CreateApp", "UDDDDD*Y",
       [&](Role) {
         return Request{
             "POST", F::Ws("/apps"),
             json{{"slug", F::Unique("newapp")}, {"name", "N"}}.dump()};
       }},
      {"ListApps", "UYYYDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/apps"), ""};
       }},
      {"DeleteApp", "UDDDDD*Y",
       [&](Role) {
         return Request{"DELETE", "/v1/apps/" + F::FreshApp(), ""};
       }},
      {"SetAppPrivilege", "UDDDDD*Y",
       [&](Role) {
         return Request{"PUT",
                        "/v1/apps/" + f_->app + "/privileges/" +
                            F::Invite("GUEST", {f_->group}).user_id,
                        R"({"privilege": "VIEWER"})"};
       }},
      {"RemoveAppPrivilege", "UDDDDD*Y",
       [&](Role) {
         const std::string user = F::Invite("GUEST", {f_->group}).user_id;
         F::Call("PUT", "/v1/apps/" + f_->app + "/privileges/" + user,
                 R"({"privilege": "VIEWER"})");
         return Request{"DELETE", "/v1/apps/" + f_->app + "/privileges/" + user,
                        ""};
       }},
      {"ListAppAccess", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/appAccess"), ""};
       }},
      {"GetLicenseUsage", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/license"), ""};
       }},
      // membership: groups
      {"CreateGroup", "UDYYDD*Y",
       [&](Role) {
         return Request{
             "POST", F::Ws("/groups"),
             json{{"name", F::Unique("Made ")}, {"visibility", "OPEN"}}.dump()};
       }},
      {"ListGroups", "UYYYDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/groups"), ""};
       }},
      {"GetGroup (guest's group)", "UYYYDD*Y",
       [&](Role) {
         return Request{"GET", "/v1/groups/" + f_->group, ""};
       }},
      {"GetGroup (open group, guest not in it)", "UDYYDD*Y",
       [&](Role) {
         return Request{"GET", "/v1/groups/" + f_->other_group, ""};
       }},
      {"UpdateGroup (group admin's group)", "UDDYDD*Y",
       [&](Role) {
         return Request{"PATCH", "/v1/groups/" + f_->group + "?updateMask=name",
                        R"({"name": "Partners"})"};
       }},
      {"DeleteGroup", "UDDDDD*Y",
       [&](Role) {
         return Request{"DELETE", "/v1/groups/" + F::FreshGroup(), ""};
       }},
      // "members may add members"; making someone GROUP_ADMIN they may not.
      {"AddGroupMember (group admin's group)", "UDYYDD*Y",
       [&](Role) {
         return Request{"POST", "/v1/groups/" + f_->group + "/members",
                        json{{"userId", F::Invite("MEMBER", {}).user_id},
                             {"role", "MEMBER"}}
                            .dump()};
       }},
      {"AddGroupMember as GROUP_ADMIN", "UDDYDD*Y",
       [&](Role) {
         return Request{"POST", "/v1/groups/" + f_->group + "/members",
                        json{{"userId", F::Invite("MEMBER", {}).user_id},
                             {"role", "GROUP_ADMIN"}}
                            .dump()};
       }},
      {"ListGroupMembers (guest's group)", "UYYYDD*Y",
       [&](Role) {
         return Request{"GET", "/v1/groups/" + f_->group + "/members", ""};
       }},
      {"RemoveGroupMember (group admin's group)", "UDDYDD*Y",
       [&](Role) {
         const std::string user = F::Invite("MEMBER", {}).user_id;
         F::Call("POST", "/v1/groups/" + f_->group + "/members",
                 json{{"userId", user}, {"role", "MEMBER"}}.dump());
         return Request{"DELETE",
                        "/v1/groups/" + f_->group + "/members/" + user, ""};
       }},
      // membership: checks and directory
      {"Check (about the guest)", "UYDDDD*Y",
       [&](Role) {
         return Request{"POST", "/v1/check",
                        json{{"userId", f_->user_ids[kGuest]},
                             {"permission", "group.view"},
                             {"resource", "groups/" + f_->group}}
                            .dump()};
       }},
      {"BatchCheck (about the guest)", "UYDDDD*Y",
       [&](Role) {
         return Request{"POST", "/v1/check:batch",
                        json{{"checks",
                              {{{"userId", f_->user_ids[kGuest]},
                                {"permission", "group.view"},
                                {"resource", "groups/" + f_->group}}}}}
                            .dump()};
       }},
      {"ListDirectory", "UYYYDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/directory"), ""};
       }},
      // notification
      {"GetMessage", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", "/v1/messages/" + f_->message, ""};
       }},
      {"ListMessages", "UDDDDD*Y",
       [&](Role) {
         return Request{"GET", F::Ws("/messages"), ""};
       }},
      {"Unsubscribe (bogus token)", "P*******",
       [&](Role) {
         return Request{"POST", "/v1/unsubscribe",
                        R"({"token": "not-a-real-unsubscribe-token"})"};
       }},
      {"GetPreferences (admin's)", "UDDDDD*Y",
       [&](Role) {
         return Request{
             "GET",
             "/v1/users/" + f_->user_ids[kAdmin] + "/notificationPreferences",
             ""};
       }},
      {"GetPreferences (own)", "UYYYYD*Y",
       [&](Role role) {
         return Request{
             "GET",
             "/v1/users/" + f_->user_ids[role] + "/notificationPreferences",
             ""};
       }},
      {"UpdatePreferences (admin's)", "UDDDDD*Y",
       [&](Role) {
         return Request{"PATCH",
                        "/v1/users/" + f_->user_ids[kAdmin] +
                            "/notificationPreferences"
                            "?updateMask=unsubscribedCategories",
                        R"({"unsubscribedCategories": []})"};
       }},
      {"UpdatePreferences (own)", "UYYYYD*Y",
       [&](Role role) {
         return Request{"PATCH",
                        "/v1/users/" + f_->user_ids[role] +
                            "/notificationPreferences"
                            "?updateMask=unsubscribedCategories",
                        R"({"unsubscribedCategories": ["report"]})"};
       }},
      {"PublishReport", "UDDDDD**",
       [&](Role) {
         return Request{"POST", "/v1/apps/" + f_->app + "/reports",
                        R"({"title": "Q3", "filename": "q3.pdf",
                            "content": "JVBERi0xLjQK"})"};
       }},
      // API.md: "gRPC, services only". (The proto's comment also admits an
      // admin's forwarded token; API.md is the contract.)
      {"SendEmail", "DDDDDDDD",
       [&](Role) {
         auto m = std::make_shared<notification::v1::SendEmailRequest>();
         m->set_workspace_id(f_->ws);
         m->set_template_("access_expiry");
         m->set_to("victim@outside.example");
         m->set_category("access_expiry");
         (*m->mutable_variables())["workspace_name"] = "matrix";
         (*m->mutable_variables())["first_name"] = "Victim";
         (*m->mutable_variables())["expire_time"] = "tomorrow";
         return F::Grpc("SendEmail", m);
       }},
  };
  // Internal methods: nobody from outside, not even the operator or the
  // workspace's admin. The request names the workspace so a refusal cannot
  // be an argument check in disguise.
  for (const char* name : kInternalMethods) {
    rows.push_back(Row{
        name, "DDDDDDDD", [name](Role) {
          const pb::MethodDescriptor* m = FindMethod(name);
          std::shared_ptr<pb::Message> msg = NewMessage(m->input_type());
          const pb::FieldDescriptor* ws =
              m->input_type()->FindFieldByName("workspace_id");
          if (ws != nullptr && ws->type() == pb::FieldDescriptor::TYPE_STRING &&
              !ws->is_repeated()) {
            msg->GetReflection()->SetString(msg.get(), ws, f_->ws);
          }
          return Grpc(name, msg);
        }});
  }
  return rows;
}

// Every method of the three services has a row, and every row names a real
// method: the list comes from the descriptors linked into this binary, so
// a method added to a .proto without a row fails here.
// Needs no running suite, so it is a plain test.
TEST(SecurityMatrixCoverage, EveryMethodOfTheProtosHasARow) {
  std::set<std::string> known, covered;
  for (const pb::MethodDescriptor* m : AllMethods()) {
    // Rows name methods without their service: names must stay unique.
    EXPECT_TRUE(known.insert(m->name()).second)
        << m->full_name() << ": method name used by two services";
  }
  for (const Row& row : SecurityMatrixTest::Rows()) {
    covered.insert(MethodOf(row));
    EXPECT_EQ(known.count(MethodOf(row)), 1u)
        << "row \"" << row.rpc << "\" names no method of the protos";
  }
  std::vector<std::string> missing;
  for (const pb::MethodDescriptor* m : AllMethods()) {
    if (covered.count(m->name()) == 0) missing.push_back(m->full_name());
  }
  EXPECT_TRUE(missing.empty()) << "methods with no row in the security "
                                  "matrix: "
                               << absl::StrJoin(missing, ", ");

  // The internal list must match the protos: a method without an HTTP
  // route is internal unless API.md lists it as gRPC-only, and an internal
  // method must never get an HTTP route (the gateway would expose it).
  const std::set<std::string> internal(std::begin(kInternalMethods),
                                       std::end(kInternalMethods));
  const std::set<std::string> grpc_only(std::begin(kGrpcOnlyPublic),
                                        std::end(kGrpcOnlyPublic));
  for (const pb::MethodDescriptor* m : AllMethods()) {
    const bool routed = m->options().HasExtension(google::api::http);
    if (routed) {
      EXPECT_EQ(internal.count(m->name()) + grpc_only.count(m->name()), 0u)
          << m->full_name() << " has an HTTP route but is listed as gRPC-only";
    } else {
      EXPECT_EQ(internal.count(m->name()) + grpc_only.count(m->name()), 1u)
          << m->full_name()
          << " has no HTTP route: add it to kInternalMethods (refused to "
             "every outside caller) or kGrpcOnlyPublic (API.md lists it)";
    }
  }
}

TEST_F(SecurityMatrixTest, EveryRpcForEveryRole) {
  const std::vector<Row> rows = Rows();
  int cells = 0, failures = 0, deviations = 0;
  std::vector<std::string> table;
  for (const Row& row : rows) {
    ASSERT_EQ(std::string(row.expected).size(), static_cast<size_t>(kRoles))
        << row.rpc;
    std::string line = absl::StrCat(row.rpc, ":");
    for (int role = 0; role < kRoles; ++role) {
      const Request req = row.make(static_cast<Role>(role));
      ASSERT_TRUE(req.grpc != nullptr || req.method != "gRPC") << row.rpc;
      HttpResponse r = Send(req, f_->tokens[role]);
      ++cells;
      const char expected = row.expected[role];
      absl::StrAppend(&line, " ", r.status);
      const Deviation* known = nullptr;
      for (const Deviation& d : KnownDeviations()) {
        if (std::string(d.rpc) == row.rpc && d.role == role) known = &d;
      }
      if (known != nullptr) {
        // Pinned: the code still does what the routed bug report says.
        ++deviations;
        absl::StrAppend(&line, "(!)");
        EXPECT_EQ(r.status, known->observed)
            << row.rpc << " as " << kRoleNames[role]
            << ": a known deviation changed; if it now follows the contract "
               "('"
            << expected
            << "'), delete it from KnownDeviations: " << r.body.substr(0, 300);
        continue;
      }
      const char wanted =
          role == kSuspended && expected == 'D' ? 'S' : expected;
      if (!Matches(wanted, r.status)) {
        ++failures;
        ADD_FAILURE() << row.rpc << " as " << kRoleNames[role] << ": "
                      << req.method << " " << req.path << " -> " << r.status
                      << " (expected " << expected << ") "
                      << r.body.substr(0, 300);
      }
    }
    table.push_back(line);
  }
  std::fprintf(stderr, "SECURITY MATRIX (%s)\n%s\n",
               absl::StrJoin(kRoleNames, kRoleNames + kRoles, ", ").c_str(),
               absl::StrJoin(table, "\n").c_str());
  std::fprintf(stderr,
               "SECURITY MATRIX: %d rows, %d cells, %d mismatches, %d known "
               "deviations from the contract (marked (!))\n",
               static_cast<int>(rows.size()), cells, failures, deviations);
}

// Logout really ends the session: the same token is refused afterwards.
TEST_F(SecurityMatrixTest, LogoutEndsTheSession) {
  const std::string token = FreshSession(kMember);
  ASSERT_EQ(stack_->Http("GET", "/v1/users/" + f_->user_ids[kMember], "", token)
                .status,
            200);
  HttpResponse out = stack_->Http("DELETE", "/v1/sessions/current", "", token);
  ASSERT_EQ(out.status, 200) << out.body;
  // Authentication is cached for at most a second.
  absl::SleepFor(absl::Milliseconds(1200));
  EXPECT_EQ(stack_->Http("GET", "/v1/users/" + f_->user_ids[kMember], "", token)
                .status,
            401);
  EXPECT_EQ(stack_->Http("DELETE", "/v1/sessions/current", "", token).status,
            401);
}

// Nothing of one workspace leaks into another's lists.
TEST_F(SecurityMatrixTest, ListsOfAnotherWorkspaceShowNothing) {
  for (const char* suffix :
       {"/users", "/groups", "/apps", "/invitations", "/appAccess",
        "/directory", "/messages", "/accessRequests", "/apiKeys", "/license",
        "/users:export", "/users:template"}) {
    HttpResponse r = stack_->Http("GET", "/v1/workspaces/" + f_->ws + suffix,
                                  "", f_->other_admin);
    EXPECT_TRUE(r.status == 403 || r.status == 404)
        << suffix << " -> " << r.status << " " << r.body.substr(0, 200);
    EXPECT_EQ(r.body.find(f_->user_ids[kGuest]), std::string::npos) << suffix;
    EXPECT_EQ(r.body.find(f_->group), std::string::npos) << suffix;
  }
}

}  // namespace
}  // namespace guestlist
