// The product's main path end to end, through the HTTP gateway only, as a
// client written from API.md would drive it: workspace, admin login, group,
// app, invite a guest, accept, guest limits, licence usage, suspension,
// invitation email, workspace isolation.
#include <dirent.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/stack.h"

namespace guestlist {
namespace {

using ::guestlist::testing::HttpResponse;
using ::guestlist::testing::Stack;
using json = nlohmann::json;

json Body(const HttpResponse& r) {
  return json::parse(r.body, nullptr, /*allow_exceptions=*/false);
}

class GuestFlowTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { stack_ = new Stack(); }
  static void TearDownTestSuite() { delete stack_; }

  // Creates a workspace and returns {workspace id, admin session token}.
  static std::pair<std::string, std::string> NewWorkspace(
      const std::string& name, int licenses) {
    auto r = stack_->Http("POST", "/v1/workspaces",
                          json{{"workspace",
                                {{"name", name},
                                 {"displayName", name + " Inc"},
                                 {"licenseCount", licenses}}},
                               {"adminEmail", "admin@" + name + ".example"},
                               {"adminPassword", "a long enough password"}}
                              .dump(),
                          stack_->operator_token());
    EXPECT_EQ(r.status, 200) << r.body;
    const std::string id = Body(r)["id"].get<std::string>();
    auto login = stack_->Http("POST", "/v1/workspaces/" + id + "/sessions",
                              json{{"username", "admin@" + name + ".example"},
                                   {"password", "a long enough password"}}
                                  .dump());
    EXPECT_EQ(login.status, 200) << login.body;
    return {id, Body(login)["token"].get<std::string>()};
  }

  static std::string TokenFromUrl(const std::string& url) {
    const auto pos = url.find("#token=");
    return pos == std::string::npos ? "" : url.substr(pos + 7);
  }

  static Stack* stack_;
};
Stack* GuestFlowTest::stack_ = nullptr;

TEST_F(GuestFlowTest, CreateWorkspaceNeedsTheOperatorToken) {
  auto anonymous = stack_->Http(
      "POST", "/v1/workspaces",
      R"({"workspace": {"name": "nope"}, "adminEmail": "a@nope.example",
          "adminPassword": "a long enough password"})");
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
  EXPECT_EQ(Body(anonymous)["code"], 16);
  EXPECT_TRUE(Body(anonymous)["message"].is_string());
}

TEST_F(GuestFlowTest, InviteAcceptAndGuestLimits) {
  auto [ws, admin] = NewWorkspace("acme", 5);

  auto group =
      stack_->Http("POST", "/v1/workspaces/" + ws + "/groups",
                   R"({"name": "Partners", "visibility": "OPEN"})", admin);
  ASSERT_EQ(group.status, 200) << group.body;
  const std::string partners = Body(group)["id"];
  auto other =
      stack_->Http("POST", "/v1/workspaces/" + ws + "/groups",
                   R"({"name": "Staff only", "visibility": "OPEN"})", admin);
  ASSERT_EQ(other.status, 200) << other.body;
  const std::string staff = Body(other)["id"];
  auto app = stack_->Http("POST", "/v1/workspaces/" + ws + "/apps",
                          R"({"slug": "sales", "name": "Sales"})", admin);
  ASSERT_EQ(app.status, 200) << app.body;
  const std::string sales = Body(app)["id"];

  auto invite = stack_->Http(
      "POST", "/v1/workspaces/" + ws + "/invitations",
      json{{"email", "Gia@Partner.example"},
           {"firstName", "Gia"},
           {"kind", "GUEST"},
           {"groupIds", {partners}},
           {"appPrivileges", {{{"appId", sales}, {"privilege", "VIEWER"}}}}}
          .dump(),
      admin);
  ASSERT_EQ(invite.status, 200) << invite.body;
  json inv = Body(invite);
  const std::string url = inv["invitationUrl"];
  EXPECT_TRUE(absl::StartsWith(url, stack_->gateway_url() + "/invite#token="))
      << url;
  EXPECT_EQ(inv["state"], "PENDING");
  EXPECT_EQ(inv["user"]["username"], "gia@partner.example");
  EXPECT_EQ(inv["user"]["status"], "INVITED");
  EXPECT_EQ(inv["user"]["kind"], "GUEST");
  const std::string guest_id = inv["user"]["id"];
  const std::string token = TokenFromUrl(url);
  ASSERT_GE(token.size(), 22u);  // >= 128 bits

  auto again = stack_->Http("POST", "/v1/workspaces/" + ws + "/invitations",
                            R"({"email": "gia@partner.example",
                                "firstName": "Gia", "kind": "GUEST"})",
                            admin);
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_TRUE(
      absl::StrContains(Body(again)["message"].get<std::string>(), "INVITED"))
      << again.body;

  auto lookup = stack_->Http("POST", "/v1/invitations:lookup",
                             json{{"token", token}}.dump());
  ASSERT_EQ(lookup.status, 200) << lookup.body;
  EXPECT_EQ(Body(lookup)["email"], "Gia@Partner.example");

  auto accept = stack_->Http(
      "POST", "/v1/invitations:accept",
      json{{"token", token}, {"password", "guest password 123"}}.dump());
  ASSERT_EQ(accept.status, 200) << accept.body;
  const std::string guest = Body(accept)["token"];
  EXPECT_EQ(Body(accept)["user"]["status"], "ACTIVE");
  auto replay = stack_->Http(
      "POST", "/v1/invitations:accept",
      json{{"token", token}, {"password", "guest password 123"}}.dump());
  EXPECT_NE(replay.status, 200) << replay.body;

  // A guest sees only its own groups, even open ones, and cannot create.
  auto groups =
      stack_->Http("GET", "/v1/workspaces/" + ws + "/groups", "", guest);
  ASSERT_EQ(groups.status, 200) << groups.body;
  ASSERT_EQ(Body(groups)["groups"].size(), 1u) << groups.body;
  EXPECT_EQ(Body(groups)["groups"][0]["id"], partners);
  auto create =
      stack_->Http("POST", "/v1/workspaces/" + ws + "/groups",
                   R"({"name": "Mine", "visibility": "OPEN"})", guest);
  EXPECT_EQ(create.status, 403) << create.body;

  auto check = stack_->Http("POST", "/v1/check:batch",
                            json{{"checks",
                                  {{{"userId", guest_id},
                                    {"permission", "group.view"},
                                    {"resource", "groups/" + partners}},
                                   {{"userId", guest_id},
                                    {"permission", "group.view"},
                                    {"resource", "groups/" + staff}},
                                   {{"userId", guest_id},
                                    {"permission", "app.report"},
                                    {"resource", "apps/" + sales}}}}}
                                .dump(),
                            admin);
  ASSERT_EQ(check.status, 200) << check.body;
  json results = Body(check)["results"];
  ASSERT_EQ(results.size(), 3u) << check.body;
  EXPECT_EQ(results[0]["allowed"], true);
  EXPECT_FALSE(results[1].value("allowed", false));
  EXPECT_EQ(results[2]["allowed"], true);

  auto license =
      stack_->Http("GET", "/v1/workspaces/" + ws + "/license", "", admin);
  ASSERT_EQ(license.status, 200) << license.body;
  EXPECT_EQ(Body(license)["licenseCount"], 5);
  EXPECT_EQ(Body(license)["singleGroupGuests"], 1);

  // Suspension bites on the guest's next call (within a second).
  auto suspend =
      stack_->Http("POST", "/v1/users/" + guest_id + ":suspend", "{}", admin);
  ASSERT_EQ(suspend.status, 200) << suspend.body;
  EXPECT_EQ(Body(suspend)["status"], "SUSPENDED");
  absl::SleepFor(absl::Seconds(1));
  auto after =
      stack_->Http("GET", "/v1/workspaces/" + ws + "/groups", "", guest);
  EXPECT_TRUE(after.status == 401 || after.status == 403) << after.body;
}

TEST_F(GuestFlowTest, InvitationEmailCarriesTheLink) {
  auto [ws, admin] = NewWorkspace("mailco", 3);
  auto invite = stack_->Http("POST", "/v1/workspaces/" + ws + "/invitations",
                             R"({"email": "pat@freelance.technology",
                                 "lastName": "Pat", "kind": "GUEST"})",
                             admin);
  ASSERT_EQ(invite.status, 200) << invite.body;
  const std::string token = TokenFromUrl(Body(invite)["invitationUrl"]);
  std::string found;
  for (int i = 0; i < 100 && found.empty(); ++i) {
    DIR* dir = opendir(stack_->mail_dir().c_str());
    while (dir != nullptr) {
      dirent* e = readdir(dir);
      if (e == nullptr) break;
      std::ifstream in(stack_->mail_dir() + "/" + e->d_name);
      std::stringstream ss;
      ss << in.rdbuf();
      if (absl::StrContains(ss.str(), "pat@freelance.technology")) {
        found = ss.str();
      }
    }
    if (dir != nullptr) closedir(dir);
    if (found.empty()) absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_FALSE(found.empty())
      << "no invitation email in " << stack_->mail_dir();
  EXPECT_TRUE(absl::StrContains(found, "/invite#token=" + token));
  EXPECT_TRUE(absl::StrContains(found, "Message-ID:") ||
              absl::StrContains(found, "Message-Id:"));
  // Invitations cannot be unsubscribed from.
  EXPECT_FALSE(absl::StrContains(found, "List-Unsubscribe:"));
}

TEST_F(GuestFlowTest, NothingOfOneWorkspaceIsVisibleFromAnother) {
  auto [ws_a, admin_a] = NewWorkspace("alpha", 3);
  auto [ws_b, admin_b] = NewWorkspace("beta", 3);
  auto users_a =
      stack_->Http("GET", "/v1/workspaces/" + ws_a + "/users", "", admin_a);
  ASSERT_EQ(users_a.status, 200) << users_a.body;
  ASSERT_GE(Body(users_a)["users"].size(), 1u);
  const std::string admin_a_id = Body(users_a)["users"][0]["id"];
  EXPECT_EQ(Body(users_a)["totalSize"], 1);

  auto list =
      stack_->Http("GET", "/v1/workspaces/" + ws_a + "/users", "", admin_b);
  EXPECT_TRUE(list.status == 403 || list.status == 404) << list.body;
  auto get = stack_->Http("GET", "/v1/users/" + admin_a_id, "", admin_b);
  EXPECT_TRUE(get.status == 403 || get.status == 404) << get.body;
  auto suspend = stack_->Http("POST", "/v1/users/" + admin_a_id + ":suspend",
                              "{}", admin_b);
  EXPECT_TRUE(suspend.status == 403 || suspend.status == 404) << suspend.body;
  auto group = stack_->Http("POST", "/v1/workspaces/" + ws_a + "/groups",
                            R"({"name": "x", "visibility": "OPEN"})", admin_b);
  EXPECT_TRUE(group.status == 403 || group.status == 404) << group.body;
}

}  // namespace
}  // namespace guestlist
