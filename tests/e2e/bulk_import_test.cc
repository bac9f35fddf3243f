// Bulk CSV through the gateway (DESIGN.md "Bulk CSV"): template download,
// dry run, import, idempotent re-import, export round trip.
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/stack.h"

namespace guestlist {
namespace {

using ::guestlist::testing::HttpRequest;
using ::guestlist::testing::HttpResponse;
using ::guestlist::testing::Stack;
using json = nlohmann::json;

json Body(const HttpResponse& r) {
  return json::parse(r.body, nullptr, /*allow_exceptions=*/false);
}

// The shape of ../shared/testdata/csv/template-basic.csv (CRLF, escaped
// quotes in metadata, a last-name-only row), without its delete row.
constexpr char kCsv[] =
    "username,first_name,last_name,role,user-group-1,user-group-2,"
    "user-group-3,sales-dashboard,churn-report,delete,metadata\r\n"
    "alice@partner.example,Alice,Martin,guest,Partners,,,guest,,,\r\n"
    "bob@agency.example,Bob,,guest,Partners,Agencies,,guest,viewer,,"
    "\"{\"\"contract\"\": \"\"2026-Q4\"\"}\"\r\n"
    "carol@freelance.example,,Durand,guest,Freelancers,,,,,,\r\n";

class BulkImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r =
        stack_.Http("POST", "/v1/workspaces",
                    R"({"workspace": {"name": "bulk", "displayName": "Bulk",
            "licenseCount": 10}, "adminEmail": "admin@bulk.example",
            "adminPassword": "a long enough password"})",
                    stack_.operator_token());
    ASSERT_EQ(r.status, 200) << r.body;
    ws_ = Body(r)["id"];
    auto login = stack_.Http("POST", "/v1/workspaces/" + ws_ + "/sessions",
                             R"({"username": "admin@bulk.example",
                                 "password": "a long enough password"})");
    ASSERT_EQ(login.status, 200) << login.body;
    admin_ = Body(login)["token"];
    for (const char* g : {"Partners", "Agencies", "Freelancers"}) {
      auto group = stack_.Http(
          "POST", "/v1/workspaces/" + ws_ + "/groups",
          json{{"name", g}, {"visibility", "PRIVATE"}}.dump(), admin_);
      ASSERT_EQ(group.status, 200) << group.body;
    }
    for (const char* slug : {"sales-dashboard", "churn-report"}) {
      auto app =
          stack_.Http("POST", "/v1/workspaces/" + ws_ + "/apps",
                      json{{"slug", slug}, {"name", slug}}.dump(), admin_);
      ASSERT_EQ(app.status, 200) << app.body;
    }
  }

  HttpResponse Import(const std::string& csv, const std::string& query) {
    return HttpRequest(
        "POST",
        stack_.gateway_url() + "/v1/workspaces/" + ws_ + "/users:import?" +
            query,
        csv, {"Content-Type: text/csv", "Authorization: Bearer " + admin_});
  }

  int64_t TotalUsers() {
    auto r = stack_.Http("GET", "/v1/workspaces/" + ws_ + "/users", "", admin_);
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r).value("totalSize", 0);
  }

  static int Count(const json& report, const char* field) {
    return report.value(field, 0);
  }

  Stack stack_;
  std::string ws_;
  std::string admin_;
};

TEST_F(BulkImportTest, TemplateDryRunImportReimportAndExport) {
  auto tmpl = HttpRequest(
      "GET", stack_.gateway_url() + "/v1/workspaces/" + ws_ + "/users:template",
      "", {"Authorization: Bearer " + admin_});
  ASSERT_EQ(tmpl.status, 200) << tmpl.body;
  EXPECT_TRUE(absl::StartsWith(tmpl.headers["content-type"], "text/csv"));
  EXPECT_TRUE(absl::StartsWith(
      tmpl.body,
      "username,first_name,last_name,role,user-group-1,user-group-2,"
      "user-group-3,"))
      << tmpl.body;
  EXPECT_TRUE(absl::StrContains(tmpl.body, "sales-dashboard"));
  EXPECT_TRUE(absl::StrContains(tmpl.body, "churn-report"));
  EXPECT_TRUE(absl::StrContains(tmpl.body, "delete,metadata"));

  auto dry = Import(kCsv, "dryRun=true&mode=ALL_OR_NOTHING&sendEmails=false");
  ASSERT_EQ(dry.status, 200) << dry.body;
  json dry_report = Body(dry);
  EXPECT_EQ(dry_report["dryRun"], true);
  EXPECT_EQ(Count(dry_report, "rowsTotal"), 3) << dry.body;
  EXPECT_EQ(Count(dry_report, "created"), 3) << dry.body;
  EXPECT_EQ(Count(dry_report, "failed"), 0) << dry.body;
  EXPECT_EQ(TotalUsers(), 1);  // only the admin: a dry run writes nothing

  auto real = Import(kCsv, "mode=BEST_EFFORT&sendEmails=false");
  ASSERT_EQ(real.status, 200) << real.body;
  EXPECT_EQ(Count(Body(real), "created"), 3) << real.body;
  EXPECT_EQ(TotalUsers(), 4);
  auto license =
      stack_.Http("GET", "/v1/workspaces/" + ws_ + "/license", "", admin_);
  ASSERT_EQ(license.status, 200);
  // bob is in two groups: a paid licence; alice and carol are free.
  EXPECT_EQ(Body(license)["usedByMultiGroupGuests"], 1) << license.body;
  EXPECT_EQ(Body(license)["singleGroupGuests"], 2) << license.body;

  auto again = Import(kCsv, "mode=BEST_EFFORT&sendEmails=false");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(Count(Body(again), "unchanged"), 3) << again.body;
  EXPECT_EQ(Count(Body(again), "created"), 0);
  EXPECT_EQ(Count(Body(again), "updated"), 0);

  auto exported = HttpRequest(
      "GET", stack_.gateway_url() + "/v1/workspaces/" + ws_ + "/users:export",
      "", {"Authorization: Bearer " + admin_});
  ASSERT_EQ(exported.status, 200) << exported.body;
  EXPECT_TRUE(absl::StrContains(exported.body, "bob@agency.example"));
  auto round_trip = Import(exported.body, "mode=BEST_EFFORT&sendEmails=false");
  ASSERT_EQ(round_trip.status, 200) << round_trip.body;
  EXPECT_EQ(Count(Body(round_trip), "created"), 0) << round_trip.body;
  EXPECT_EQ(Count(Body(round_trip), "updated"), 0) << round_trip.body;
  EXPECT_EQ(Count(Body(round_trip), "failed"), 0) << round_trip.body << "\n"
                                                  << exported.body;
}

TEST_F(BulkImportTest, BadRowsAreReportedWithLineAndColumnAndErrorsCsv) {
  const std::string csv =
      "username,first_name,last_name,role,user-group-1,sales-dashboard\n"
      "ok@partner.example,Ok,,guest,Partners,viewer\n"
      "two@@ats.example,Bad,,guest,Partners,\n"
      "nameless@partner.example,,,guest,,\n"
      "badapp@partner.example,App,,guest,,owner\n"
      "ok@partner.example,Dup,,guest,,\n";
  auto r = Import(csv, "mode=BEST_EFFORT&sendEmails=false");
  ASSERT_EQ(r.status, 200) << r.body;
  json report = Body(r);
  EXPECT_EQ(Count(report, "created"), 1) << r.body;
  EXPECT_EQ(Count(report, "failed"), 4) << r.body;
  bool saw_line_3 = false;
  for (const auto& row : report["rows"]) {
    if (row.value("line", 0) == 3) {
      saw_line_3 = true;
      EXPECT_EQ(row["action"], "ERROR");
      ASSERT_FALSE(row["errors"].empty());
    }
  }
  EXPECT_TRUE(saw_line_3) << r.body;
  const std::string import_id = report["importId"];
  auto errors = HttpRequest(
      "GET", stack_.gateway_url() + "/v1/imports/" + import_id + "/errors", "",
      {"Authorization: Bearer " + admin_});
  ASSERT_EQ(errors.status, 200) << errors.body;
  EXPECT_TRUE(absl::StrContains(errors.body, "two@@ats.example"))
      << errors.body;
  EXPECT_TRUE(absl::StrContains(errors.body, "error")) << errors.body;
  EXPECT_FALSE(absl::StrContains(errors.body, "ok@partner.example,Ok"))
      << errors.body;
}

}  // namespace
}  // namespace guestlist
