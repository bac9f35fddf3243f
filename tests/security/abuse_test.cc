// Abuse cases against the real suite (issue 9): racing accepts, request
// floods, token replay, password guessing, hostile strings, secrets in logs.
#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

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

class AbuseTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new Stack();
    auto r = stack_->Http(
        "POST", "/v1/workspaces",
        R"({"workspace": {"name": "abuse", "displayName": "Abuse Inc",
            "licenseCount": 50}, "adminEmail": "admin@abuse.example",
            "adminPassword": "a long enough password"})",
        stack_->operator_token());
    ASSERT_EQ(r.status, 200) << r.body;
    ws_ = new std::string(Body(r)["id"]);
    auto login = stack_->Http("POST", "/v1/workspaces/" + *ws_ + "/sessions",
                              R"({"username": "admin@abuse.example",
                                  "password": "a long enough password"})");
    ASSERT_EQ(login.status, 200) << login.body;
    admin_ = new std::string(Body(login)["token"]);
    secrets_ = new std::vector<std::string>{stack_->operator_token(), *admin_,
                                            "a long enough password"};
  }
  static void TearDownTestSuite() {
    // No token, password or invitation link may ever reach the logs.
    const std::string logs = stack_->Logs();
    for (const std::string& s : *secrets_) {
      EXPECT_FALSE(absl::StrContains(logs, s)) << "secret in logs: " << s;
    }
    delete stack_;
  }

  static std::string Invite(const std::string& email) {
    auto r = stack_->Http("POST", "/v1/workspaces/" + *ws_ + "/invitations",
                          json{{"email", email},
                               {"firstName", "Test"},
                               {"kind", "GUEST"},
                               {"sendEmail", false}}
                              .dump(),
                          *admin_);
    EXPECT_EQ(r.status, 200) << r.body;
    std::string url = Body(r)["invitationUrl"];
    std::string token = url.substr(url.find("#token=") + 7);
    secrets_->push_back(token);
    return token;
  }

  static Stack* stack_;
  static std::string* ws_;
  static std::string* admin_;
  static std::vector<std::string>* secrets_;
};
Stack* AbuseTest::stack_ = nullptr;
std::string* AbuseTest::ws_ = nullptr;
std::string* AbuseTest::admin_ = nullptr;
std::vector<std::string>* AbuseTest::secrets_ = nullptr;

TEST_F(AbuseTest, HundredConcurrentAcceptsExactlyOneWins) {
  const std::string token = Invite("race@guest.example");
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&] {
      auto r = stack_->Http(
          "POST", "/v1/invitations:accept",
          json{{"token", token}, {"password", "guest password 123"}}.dump());
      if (r.status == 200) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
}

TEST_F(AbuseTest, UsedRevokedAndUnknownTokensAreRefusedAlike) {
  const std::string used = Invite("used@guest.example");
  ASSERT_EQ(
      stack_
          ->Http("POST", "/v1/invitations:accept",
                 json{{"token", used}, {"password", "guest pass 12345"}}.dump())
          .status,
      200);
  const std::string revoked_token = Invite("revoked@guest.example");
  auto list = stack_->Http(
      "GET", "/v1/workspaces/" + *ws_ + "/invitations?state=PENDING", "",
      *admin_);
  ASSERT_EQ(list.status, 200) << list.body;
  std::string revoked_id;
  const json listed = Body(list);
  for (const auto& inv : listed["invitations"]) {
    if (inv["user"]["email"] == "revoked@guest.example") revoked_id = inv["id"];
  }
  ASSERT_FALSE(revoked_id.empty()) << list.body;
  ASSERT_EQ(stack_
                ->Http("POST", "/v1/invitations/" + revoked_id + ":revoke",
                       "{}", *admin_)
                .status,
            200);

  auto refuse = [&](const std::string& token) {
    return stack_->Http(
        "POST", "/v1/invitations:accept",
        json{{"token", token}, {"password", "guest pass 12345"}}.dump());
  };
  HttpResponse a = refuse(used);
  HttpResponse b = refuse("gli_" + std::string(43, 'A'));
  HttpResponse c = refuse(revoked_token);
  HttpResponse d = refuse("not a token at all");
  for (const auto* r : {&a, &b, &c, &d}) {
    EXPECT_TRUE(r->status >= 400 && r->status < 500) << r->body;
  }
  // A used token must not be distinguishable from an unknown one.
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(Body(a)["message"], Body(b)["message"]);
}

TEST_F(AbuseTest, RequestFloodSendsOneEmailPerAdmin) {
  auto enable = stack_->Http(
      "PATCH",
      "/v1/workspaces/" + *ws_ + "?updateMask=settings.requestAccessEnabled",
      R"({"settings": {"requestAccessEnabled": true}})", *admin_);
  ASSERT_EQ(enable.status, 200) << enable.body;
  std::atomic<int> accepted{0};
  std::atomic<int> server_errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 50; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto r = stack_->Http(
            "POST", "/v1/workspaces/" + *ws_ + "/accessRequests",
            R"({"email": "flood@outside.example", "firstName": "Flo",
                "message": "let me in"})");
        if (r.status == 200) ++accepted;
        if (r.status >= 500) ++server_errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(accepted.load(), 1);
  EXPECT_EQ(server_errors.load(), 0);
  // Exactly one access_request email for the (only) admin, not deduplicated.
  int sent_like = 0;
  std::string last_body;
  for (int attempt = 0; attempt < 50; ++attempt) {
    auto msgs =
        stack_->Http("GET",
                     "/v1/workspaces/" + *ws_ +
                         "/messages?category=access_request&pageSize=1000",
                     "", *admin_);
    ASSERT_EQ(msgs.status, 200) << msgs.body;
    sent_like = 0;
    last_body = msgs.body;
    const json page = Body(msgs);
    for (const auto& m : page["messages"]) {
      if (m["state"] == "QUEUED" || m["state"] == "SENT") ++sent_like;
    }
    if (sent_like > 0) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(sent_like, 1) << last_body;
}

TEST_F(AbuseTest, PasswordGuessingIsRateLimited) {
  bool limited = false;
  for (int i = 0; i < 30 && !limited; ++i) {
    auto r = stack_->Http("POST", "/v1/workspaces/" + *ws_ + "/sessions",
                          json{{"username", "admin@abuse.example"},
                               {"password", absl::StrCat("guess", i)}}
                              .dump());
    ASSERT_NE(r.status, 200);
    ASSERT_LT(r.status, 500) << r.body;
    limited = r.status == 429;
  }
  EXPECT_TRUE(limited);
}

TEST_F(AbuseTest, HostileStringsGetACleanClientError) {
  const std::vector<std::string> names = {std::string("nul\0byte", 8),
                                          std::string(100000, 'x'),
                                          "\xff\xfe invalid utf8"};
  for (const std::string& name : names) {
    // Built by hand: nlohmann would refuse to serialise invalid UTF-8.
    std::string body = R"({"email": "hostile@guest.example", "firstName": ")";
    for (char ch : name) {
      if (ch == '\0') {
        body += "\\u0000";
      } else {
        body += ch;
      }
    }
    body += R"(", "kind": "GUEST", "sendEmail": false})";
    auto r = stack_->Http("POST", "/v1/workspaces/" + *ws_ + "/invitations",
                          body, *admin_);
    EXPECT_TRUE(r.status == 400 || r.status == 413)
        << r.status << " " << r.body.substr(0, 200);
  }
  // SQL metacharacters are data, not code.
  auto sql = stack_->Http("POST", "/v1/workspaces/" + *ws_ + "/invitations",
                          json{{"email", "sql@guest.example"},
                               {"firstName", "Robert'); DROP TABLE users;--"},
                               {"kind", "GUEST"},
                               {"sendEmail", false}}
                              .dump(),
                          *admin_);
  ASSERT_EQ(sql.status, 200) << sql.body;
  EXPECT_EQ(Body(sql)["user"]["firstName"], "Robert'); DROP TABLE users;--");
  auto search = stack_->Http(
      "GET", "/v1/workspaces/" + *ws_ + "/users?query=%27%20OR%201%3D1--", "",
      *admin_);
  ASSERT_EQ(search.status, 200) << search.body;
  EXPECT_EQ(Body(search).value("totalSize", 0), 0) << search.body;
}

}  // namespace
}  // namespace guestlist
