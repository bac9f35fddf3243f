// Tests of the header mapping and row validation, including the shared
// sample files (template, low-code platform, French Excel).
#include "services/identity/import/rows.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace guestlist::identity::import {
namespace {

namespace v1 = ::guestlist::identity::v1;
using Grant = ::guestlist::membership::v1::AppPrivilegeGrant;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<CsvRecord> ReadFile(const std::string& name) {
  std::ifstream in("services/identity/import/testdata/" + name,
                   std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  CsvReader reader;
  std::vector<CsvRecord> out;
  reader.Feed(ss.str(), &out);
  reader.Finish(&out);
  return out;
}

RowContext Groups(std::vector<std::pair<std::string, std::string>> groups) {
  RowContext c;
  for (auto& [id, name] : groups) {
    c.groups_by_name[absl::AsciiStrToLower(name)] = GroupRef{id, name};
  }
  return c;
}

CsvRecord Record(int line, std::vector<std::string> fields) {
  CsvRecord r;
  r.line = line;
  r.fields = std::move(fields);
  return r;
}

std::string Errors(const RowIntent& row) {
  std::string s;
  for (const auto& e : row.errors) {
    absl::StrAppend(&s, "[", e.column(), "] ", e.reason(), "\n");
  }
  return s;
}

const std::vector<std::string> kApps = {"sales-dashboard", "churn-report"};

TEST(MapHeaderTest, TemplateColumns) {
  auto map = MapHeader(TemplateHeader(kApps), kApps);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_TRUE(map->has_username && map->has_groups && map->has_delete &&
              map->has_metadata && map->has_role);
  EXPECT_THAT(map->app_slugs, ElementsAre("sales-dashboard", "churn-report"));
  EXPECT_EQ(map->columns[6].kind, ColumnKind::kGroup);
}

TEST(MapHeaderTest, CaseAndSpacingInsensitive) {
  auto map = MapHeader({" USERNAME ", "First Name", "last-name", "User Role",
                        "User Group 7", "Sales Dashboard", "Email Address"},
                       kApps);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(map->columns[1].kind, ColumnKind::kFirstName);
  EXPECT_EQ(map->columns[2].kind, ColumnKind::kLastName);
  EXPECT_EQ(map->columns[3].kind, ColumnKind::kRole);
  EXPECT_EQ(map->columns[4].kind, ColumnKind::kGroup);
  EXPECT_EQ(map->columns[5].kind, ColumnKind::kApp);
  EXPECT_EQ(map->columns[5].app_slug, "sales-dashboard");
  EXPECT_EQ(map->columns[6].kind, ColumnKind::kEmail);
}

TEST(MapHeaderTest, Errors) {
  EXPECT_THAT(MapHeader({"username", "colour"}, kApps).status().message(),
              HasSubstr("unknown column \"colour\""));
  EXPECT_THAT(MapHeader({"username", "First Name", "first_name"}, kApps)
                  .status()
                  .message(),
              HasSubstr("appears twice"));
  auto missing = MapHeader({"first_name", "last_name"}, kApps);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("no username column"));
}

TEST(ParseCellsTest, RolesPrivilegesDelete) {
  EXPECT_EQ(ParseRole(""), std::nullopt);
  EXPECT_EQ(ParseRole("GUEST"), v1::GUEST);
  EXPECT_EQ(ParseRole("Member"), v1::MEMBER);
  EXPECT_EQ(ParseRole("admin"), v1::ADMIN);
  EXPECT_EQ(ParseRole("End User"), v1::MEMBER);
  EXPECT_EQ(ParseRole("Builder"), v1::MEMBER);
  EXPECT_EQ(ParseRole("owner"), v1::USER_KIND_UNSPECIFIED);
  EXPECT_EQ(ParsePrivilege(""), Grant::PRIVILEGE_UNSPECIFIED);
  EXPECT_EQ(ParsePrivilege("Viewer"), Grant::VIEWER);
  EXPECT_EQ(ParsePrivilege("owner"), std::nullopt);
  for (const char* yes : {"true", "YES", "1"})
    EXPECT_EQ(ParseDelete(yes), true);
  for (const char* no : {"", "False", "no", "0"})
    EXPECT_EQ(ParseDelete(no), false);
  EXPECT_EQ(ParseDelete("maybe"), std::nullopt);
}

TEST(ParseCellsTest, EmailAndMetadata) {
  EXPECT_EQ(CheckEmail("alice@partner.example"), "");
  EXPECT_THAT(CheckEmail("alice"), HasSubstr("no @"));
  EXPECT_THAT(CheckEmail("a..b@x.com"), HasSubstr("before the @"));
  EXPECT_THAT(CheckEmail("a@localhost"), HasSubstr("invalid domain"));
  EXPECT_THAT(CheckEmail("fran\xC3\xA7ois@exemple.fr"),
              HasSubstr("internationalised addresses are not supported"));
  EXPECT_EQ(*CanonicalMetadata("{ \"b\": 1, \"a\": \"x\" }"),
            "{\"a\":\"x\",\"b\":1}");
  EXPECT_THAT(CanonicalMetadata("[1]").status().message(),
              HasSubstr("JSON object"));
  EXPECT_THAT(CanonicalMetadata("{").status().message(),
              HasSubstr("not valid JSON"));
  EXPECT_THAT(CanonicalMetadata("{\"a\":\"" + std::string(17000, 'x') + "\"}")
                  .status()
                  .message(),
              HasSubstr("longer than 16384"));
}

TEST(ValidateRowTest, SharedTemplateFile) {
  auto records = ReadFile("template-basic.csv");
  auto map = MapHeader(records[0].fields, kApps);
  ASSERT_TRUE(map.ok()) << map.status();
  RowContext ctx = Groups(
      {{"g-p", "Partners"}, {"g-a", "Agencies"}, {"g-f", "Freelancers"}});
  std::vector<RowIntent> rows;
  for (size_t i = 1; i < records.size(); ++i) {
    rows.push_back(ValidateRow(*map, records[i], ctx));
    EXPECT_THAT(rows.back().errors, IsEmpty()) << Errors(rows.back());
  }
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].line, 2);
  EXPECT_EQ(rows[0].email, "alice@partner.example");
  EXPECT_EQ(rows[0].kind, v1::GUEST);
  EXPECT_THAT(rows[0].group_ids, ElementsAre("g-p"));
  EXPECT_EQ(rows[0].apps.at("sales-dashboard"), Grant::GUEST);
  EXPECT_EQ(rows[0].apps.at("churn-report"), Grant::PRIVILEGE_UNSPECIFIED);
  EXPECT_THAT(rows[1].group_ids, ElementsAre("g-a", "g-p"));
  EXPECT_EQ(rows[1].apps.at("churn-report"), Grant::VIEWER);
  EXPECT_EQ(rows[1].metadata, "{\"contract\":\"2026-Q4\"}");
  EXPECT_EQ(rows[2].first_name, "");
  EXPECT_EQ(rows[2].last_name, "Durand");
  EXPECT_TRUE(rows[3].del);
  EXPECT_EQ(rows[3].line, 5);
}

TEST(ValidateRowTest, SharedLowCodeFile) {
  auto records = ReadFile("lowcode-platform.csv");
  auto map = MapHeader(records[0].fields, kApps);
  ASSERT_TRUE(map.ok()) << map.status();
  RowContext ctx = Groups({{"g-m", "Manager"}, {"g-s", "sales"}});
  RowIntent john = ValidateRow(*map, records[1], ctx);
  EXPECT_THAT(john.errors, IsEmpty()) << Errors(john);
  EXPECT_EQ(john.username, "john@corp.example");
  EXPECT_EQ(john.email, "john@corp.example");
  EXPECT_EQ(john.kind, v1::MEMBER);
  EXPECT_THAT(john.group_ids, ElementsAre("g-m", "g-s"));
  EXPECT_EQ(john.metadata, "{\"apiKey\":\"abc123\"}");
  RowIntent jane = ValidateRow(*map, records[2], ctx);
  EXPECT_THAT(jane.errors, IsEmpty()) << Errors(jane);
  EXPECT_EQ(jane.kind, v1::ADMIN);
  EXPECT_THAT(jane.group_ids, IsEmpty());
  RowIntent smith = ValidateRow(*map, records[3], ctx);
  EXPECT_THAT(smith.errors, IsEmpty()) << Errors(smith);
  EXPECT_EQ(smith.last_name, "Smith");
  EXPECT_EQ(smith.kind, v1::MEMBER);
}

TEST(ValidateRowTest, SharedExcelFileRejectsInternationalisedEmail) {
  auto records = ReadFile("excel-semicolon-bom.csv");
  auto map = MapHeader(records[0].fields, {"sales-dashboard"});
  ASSERT_TRUE(map.ok()) << map.status();
  RowContext ctx = Groups({{"g-p", "Partenaires"}});
  RowIntent elise = ValidateRow(*map, records[1], ctx);
  EXPECT_THAT(elise.errors, IsEmpty()) << Errors(elise);
  EXPECT_EQ(elise.first_name, "\xC3\x89lise");
  RowIntent francois = ValidateRow(*map, records[2], ctx);
  ASSERT_EQ(francois.errors.size(), 1u) << Errors(francois);
  EXPECT_EQ(francois.errors[0].column(), "username");
  EXPECT_THAT(francois.errors[0].reason(),
              HasSubstr("internationalised addresses are not supported"));
  EXPECT_EQ(francois.last_name, "Dupont; fils");
}

// Missing names are judged against the user (required to create, see
// import_service_pg_test), not per row: an existing nameless admin must
// re-import unchanged.
TEST(ValidateRowTest, EveryCellErrorNamesItsColumn) {
  auto map = MapHeader(TemplateHeader(kApps), kApps);
  ASSERT_TRUE(map.ok());
  RowIntent row =
      ValidateRow(*map,
                  Record(9, {"bad email@x", "", "", "boss", "Nope", "", "",
                             "owner", "", "perhaps", "[1]"}),
                  Groups({}));
  std::vector<std::string> columns;
  for (const auto& e : row.errors) columns.push_back(e.column());
  EXPECT_THAT(columns, ElementsAre("role", "user-group-1", "sales-dashboard",
                                   "delete", "metadata", "username"))
      << Errors(row);
  EXPECT_EQ(row.line, 9);
}

TEST(ValidateRowTest, FieldCountAndUtf8) {
  auto map = MapHeader({"username", "first_name"}, {});
  ASSERT_TRUE(map.ok());
  RowIntent short_row = ValidateRow(*map, Record(3, {"a@b.co"}), Groups({}));
  ASSERT_EQ(short_row.errors.size(), 1u);
  EXPECT_THAT(short_row.errors[0].reason(),
              HasSubstr("1 fields but the header has 2"));
  CsvRecord bad = Record(4, {"a@b.co", "\xFF"});
  bad.invalid_utf8_field = 1;
  bad.error = "field 2 is not valid UTF-8";
  RowIntent utf8 = ValidateRow(*map, bad, Groups({}));
  ASSERT_EQ(utf8.errors.size(), 1u);
  EXPECT_EQ(utf8.errors[0].column(), "first_name");
}

TEST(ValidateRowTest, DeleteRowNeedsNoName) {
  auto map = MapHeader({"username", "first_name", "delete"}, {});
  RowIntent row =
      ValidateRow(*map, Record(2, {"x@y.co", "", "yes"}), Groups({}));
  EXPECT_THAT(row.errors, IsEmpty()) << Errors(row);
  EXPECT_TRUE(row.del);
}

TEST(DuplicateTrackerTest, NamesTheFirstLine) {
  DuplicateTracker tracker;
  RowIntent a;
  a.line = 2;
  a.username = "Alice@X.co";
  RowIntent b;
  b.line = 7;
  b.username = "alice@x.co";
  tracker.Check(a);
  tracker.Check(b);
  EXPECT_THAT(a.errors, IsEmpty());
  ASSERT_EQ(b.errors.size(), 1u);
  EXPECT_THAT(b.errors[0].reason(), HasSubstr("already appears on line 2"));
}

}  // namespace
}  // namespace guestlist::identity::import
