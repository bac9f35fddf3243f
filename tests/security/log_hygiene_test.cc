// Log hygiene (issue 9): after a full flow that makes every kind of secret
// the suite handles (passwords, session tokens, invitation tokens, API
// keys, the operator token, unsubscribe tokens, invitation links sent by
// bulk import), none of them may appear in the log of any of the four
// services. Secrets that only travel by email are read back from the
// file:// mail sink, so the test knows them without any log.
#include <dirent.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/stack.h"

namespace guestlist {
namespace {

using ::guestlist::testing::HttpResponse;
using ::guestlist::testing::Stack;
using json = nlohmann::json;

constexpr char kAdminPassword[] = "admin secret passphrase 42";
constexpr char kGuestPassword[] = "guest secret passphrase 77";

json Body(const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every .eml in the sink, soft line breaks of quoted-printable undone so
// links can be matched whatever the transfer encoding.
std::vector<std::string> Mails(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() < 4 || name.substr(name.size() - 4) != ".eml") continue;
    out.push_back(absl::StrReplaceAll(ReadFile(dir + "/" + name),
                                      {{"=\r\n", ""}, {"=3D", "="}}));
  }
  closedir(d);
  return out;
}

std::string PercentEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += absl::StrCat("%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

std::string TokenAfter(const std::string& url, const std::string& key) {
  const auto pos = url.find(key);
  return pos == std::string::npos ? "" : url.substr(pos + key.size());
}

TEST(LogHygieneTest, NoSecretInAnyServiceLogAfterAFullFlow) {
  Stack stack;
  std::set<std::string> secrets = {stack.operator_token(), kAdminPassword,
                                   kGuestPassword};
  auto keep = [&](const std::string& s, const std::string& what) {
    EXPECT_GE(s.size(), 16u) << what << " missing or too short: " << s;
    if (s.size() >= 16) secrets.insert(s);
  };

  // Workspace, admin session.
  HttpResponse ws = stack.Http("POST", "/v1/workspaces",
                               json{{"workspace",
                                     {{"name", "hygiene"},
                                      {"displayName", "Hygiene"},
                                      {"licenseCount", 100}}},
                                    {"adminEmail", "admin@hygiene.example"},
                                    {"adminPassword", kAdminPassword}}
                                   .dump(),
                               stack.operator_token());
  ASSERT_EQ(ws.status, 200) << ws.body;
  const std::string wsid = Body(ws).value("id", "");
  const std::string base = "/v1/workspaces/" + wsid;
  HttpResponse login = stack.Http(
      "POST", base + "/sessions",
      json{{"username", "admin@hygiene.example"}, {"password", kAdminPassword}}
          .dump());
  ASSERT_EQ(login.status, 200) << login.body;
  const std::string admin = Body(login).value("token", "");
  keep(admin, "admin session");
  // A failed login carries a password too.
  stack.Http("POST", base + "/sessions",
             json{{"username", "admin@hygiene.example"},
                  {"password", "wrong secret passphrase 99"}}
                 .dump());
  secrets.insert("wrong secret passphrase 99");
  HttpResponse group;
  for (int i = 0; i < 50; ++i) {  // membership learns of it via the outbox
    group = stack.Http("POST", base + "/groups",
                       R"({"name": "Clients", "visibility": "OPEN"})", admin);
    if (group.status == 200) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(group.status, 200) << group.body;
  const std::string group_id = Body(group).value("id", "");

  // Invite (with email), look up, accept, log in, log out.
  HttpResponse inv = stack.Http("POST", base + "/invitations",
                                json{{"email", "guest@hygiene-guests.example"},
                                     {"firstName", "Gus"},
                                     {"kind", "GUEST"},
                                     {"groupIds", {group_id}},
                                     {"sendEmail", true}}
                                    .dump(),
                                admin);
  ASSERT_EQ(inv.status, 200) << inv.body;
  const std::string invite_url = Body(inv).value("invitationUrl", "");
  const std::string invite_token = TokenAfter(invite_url, "#token=");
  keep(invite_token, "invitation token");
  secrets.insert(invite_url);
  EXPECT_EQ(stack
                .Http("POST", "/v1/invitations:lookup",
                      json{{"token", invite_token}}.dump())
                .status,
            200);
  HttpResponse accept = stack.Http(
      "POST", "/v1/invitations:accept",
      json{{"token", invite_token}, {"password", kGuestPassword}}.dump());
  ASSERT_EQ(accept.status, 200) << accept.body;
  keep(Body(accept).value("token", ""), "session from accept");
  HttpResponse guest_login =
      stack.Http("POST", base + "/sessions",
                 json{{"username", "guest@hygiene-guests.example"},
                      {"password", kGuestPassword}}
                     .dump());
  ASSERT_EQ(guest_login.status, 200) << guest_login.body;
  const std::string guest = Body(guest_login).value("token", "");
  keep(guest, "guest session");
  EXPECT_EQ(stack.Http("DELETE", "/v1/sessions/current", "", guest).status,
            200);
  // The refused (logged-out) token passes through the logs' error paths.
  EXPECT_EQ(stack.Http("GET", base + "/groups", "", guest).status, 401);

  // Resend: a second token for one invitation; both are secrets.
  HttpResponse inv2 = stack.Http("POST", base + "/invitations",
                                 json{{"email", "late@hygiene-guests.example"},
                                      {"firstName", "Lat"},
                                      {"kind", "GUEST"},
                                      {"sendEmail", true}}
                                     .dump(),
                                 admin);
  ASSERT_EQ(inv2.status, 200) << inv2.body;
  keep(TokenAfter(Body(inv2).value("invitationUrl", ""), "#token="),
       "invitation token");
  HttpResponse resent = stack.Http(
      "POST", "/v1/invitations/" + Body(inv2).value("id", "") + ":resend", "{}",
      admin);
  ASSERT_EQ(resent.status, 200) << resent.body;
  keep(TokenAfter(Body(resent).value("invitationUrl", ""), "#token="),
       "resent invitation token");

  // API key: created, used, deleted, used again (refused).
  HttpResponse key = stack.Http(
      "POST", base + "/apiKeys",
      R"({"displayName": "reports", "scopes": ["users.read"]})", admin);
  ASSERT_EQ(key.status, 200) << key.body;
  const std::string api_key = Body(key).value("key", "");
  keep(api_key, "API key");
  EXPECT_EQ(stack.Http("GET", base + "/users", "", api_key).status, 200);
  EXPECT_EQ(
      stack
          .Http("DELETE", "/v1/apiKeys/" + Body(key).value("id", ""), "", admin)
          .status,
      200);
  absl::SleepFor(absl::Milliseconds(1100));  // auth cache
  EXPECT_EQ(stack.Http("GET", base + "/users", "", api_key).status, 401);

  // Bulk import with invitation emails: those tokens exist only in mail.
  HttpResponse import = ::guestlist::testing::HttpRequest(
      "POST", stack.gateway_url() + base + "/users:import?sendEmails=true",
      "username,first_name,last_name,role\n"
      "bulk1@hygiene-guests.example,Bulk,One,guest\n"
      "bulk2@hygiene-guests.example,Bulk,Two,guest\n"
      "bulk3@hygiene-guests.example,Bulk,Three,guest\n",
      {"Content-Type: text/csv", "Authorization: Bearer " + admin});
  ASSERT_EQ(import.status, 200) << import.body;
  EXPECT_EQ(Body(import).value("created", 0), 3) << import.body;

  // Request access: the admin's email carries an unsubscribe token.
  HttpResponse enable =
      stack.Http("PATCH", base + "?updateMask=settings.requestAccessEnabled",
                 R"({"settings": {"requestAccessEnabled": true}})", admin);
  ASSERT_EQ(enable.status, 200) << enable.body;
  HttpResponse ask = stack.Http("POST", base + "/accessRequests",
                                json{{"email", "asker@outside.example"},
                                     {"firstName", "Ask"},
                                     {"message", "may I"}}
                                    .dump());
  ASSERT_EQ(ask.status, 200) << ask.body;

  // Wait for the mail: 2 invites + 1 resend + 3 imported + 1 request.
  const std::regex invite_re("#token=([A-Za-z0-9_\\-]+)");
  const std::regex unsub_re("unsubscribe\\?token=([A-Za-z0-9_\\-.%]+)");
  std::set<std::string> mailed_invites, unsubscribe_tokens;
  for (int i = 0; i < 150; ++i) {
    mailed_invites.clear();
    unsubscribe_tokens.clear();
    for (const std::string& mail : Mails(stack.mail_dir())) {
      for (auto it = std::sregex_iterator(mail.begin(), mail.end(), invite_re);
           it != std::sregex_iterator(); ++it) {
        mailed_invites.insert((*it)[1]);
      }
      for (auto it = std::sregex_iterator(mail.begin(), mail.end(), unsub_re);
           it != std::sregex_iterator(); ++it) {
        unsubscribe_tokens.insert((*it)[1]);
      }
    }
    if (mailed_invites.size() >= 6 && !unsubscribe_tokens.empty()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_GE(mailed_invites.size(), 6u) << "invitation emails missing";
  ASSERT_FALSE(unsubscribe_tokens.empty()) << "no List-Unsubscribe token";
  for (const std::string& t : mailed_invites) keep(t, "mailed invitation");
  for (const std::string& t : unsubscribe_tokens) {
    keep(t, "unsubscribe token");
  }
  // Both unsubscribe forms: JSON body and RFC 8058 one-click.
  const std::string unsub = *unsubscribe_tokens.begin();
  EXPECT_EQ(stack.Http("POST", "/v1/unsubscribe", json{{"token", unsub}}.dump())
                .status,
            200);
  HttpResponse one_click = ::guestlist::testing::HttpRequest(
      "POST", stack.gateway_url() + "/v1/unsubscribe?token=" + unsub,
      "List-Unsubscribe=One-Click",
      {"Content-Type: application/x-www-form-urlencoded"});
  EXPECT_EQ(one_click.status, 200) << one_click.body;
  absl::SleepFor(absl::Milliseconds(300));  // let the last lines flush
  for (const char* svc :
       {"identity", "membership", "notification", "gateway"}) {
    const std::string log =
        ReadFile(absl::StrCat(stack.dir(), "/", svc, ".log"));
    // The grep means something only if the log saw the traffic.
    EXPECT_GT(log.size(), 1000u) << svc << " log is (almost) empty";
    for (const std::string& s : secrets) {
      EXPECT_EQ(log.find(s), std::string::npos)
          << svc << " log contains a secret starting " << s.substr(0, 8);
      const std::string encoded = PercentEncode(s);
      if (encoded != s) {
        EXPECT_EQ(log.find(encoded), std::string::npos)
            << svc << " log contains a URL-encoded secret starting "
            << s.substr(0, 8);
      }
    }
  }
  std::fprintf(stderr,
               "LOG HYGIENE: %zu secrets (%zu mailed invitation tokens, %zu "
               "unsubscribe tokens) checked against 4 service logs\n",
               secrets.size(), mailed_invites.size(),
               unsubscribe_tokens.size());
}

}  // namespace
}  // namespace guestlist
