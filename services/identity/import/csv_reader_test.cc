// Tests of the streaming CSV reader: RFC 4180 quoting, line ends, BOM,
// delimiter detection, per-record errors, limits, and chunk boundaries.
#include "services/identity/import/csv_reader.h"

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace guestlist::identity::import {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<CsvRecord> ReadAll(absl::string_view data, size_t chunk = 0,
                               CsvLimits limits = CsvLimits()) {
  CsvReader reader(limits);
  std::vector<CsvRecord> out;
  if (chunk == 0) chunk = data.size() + 1;
  for (size_t i = 0; i < data.size(); i += chunk) {
    reader.Feed(data.substr(i, chunk), &out);
  }
  reader.Finish(&out);
  return out;
}

std::string ReadFile(const std::string& name) {
  std::ifstream in("services/identity/import/testdata/" + name,
                   std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(CsvReaderTest, QuotedFieldsWithDelimitersQuotesAndLineBreaks) {
  auto rows =
      ReadAll("a,b,c\r\n\"x,y\",\"say \"\"hi\"\"\",\"two\r\nlines\"\r\n");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_THAT(rows[0].fields, ElementsAre("a", "b", "c"));
  EXPECT_THAT(rows[1].fields, ElementsAre("x,y", "say \"hi\"", "two\r\nlines"));
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_TRUE(rows[1].error.empty());
}

TEST(CsvReaderTest, LineNumbersCountQuotedLineBreaks) {
  auto rows = ReadAll("h\n\"a\nb\nc\"\nnext\n");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_EQ(rows[2].line, 5);
  EXPECT_THAT(rows[2].fields, ElementsAre("next"));
}

TEST(CsvReaderTest, AllLineEndsAndBlankLines) {
  for (const char* data : {"h1,h2\r\na,b\r\n\r\nc,d\r\n", "h1,h2\na,b\n\nc,d",
                           "h1,h2\ra,b\r\rc,d\r"}) {
    auto rows = ReadAll(data);
    ASSERT_EQ(rows.size(), 3u) << data;
    EXPECT_THAT(rows[1].fields, ElementsAre("a", "b"));
    EXPECT_THAT(rows[2].fields, ElementsAre("c", "d"));
    EXPECT_EQ(rows[2].line, 4) << data;
  }
}

TEST(CsvReaderTest, EmptyFieldsAndTrailingDelimiter) {
  auto rows = ReadAll("a,,c,\n\"\",x,,\n");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_THAT(rows[0].fields, ElementsAre("a", "", "c", ""));
  EXPECT_THAT(rows[1].fields, ElementsAre("", "x", "", ""));
}

TEST(CsvReaderTest, BomStrippedAndSemicolonDetected) {
  auto rows = ReadAll("\xEF\xBB\xBFname;city\nx;\"a;b\"\n", /*chunk=*/1);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_THAT(rows[0].fields, ElementsAre("name", "city"));
  EXPECT_THAT(rows[1].fields, ElementsAre("x", "a;b"));
}

TEST(CsvReaderTest, CommaStaysWhenHeaderHasMoreCommas) {
  CsvReader reader;
  std::vector<CsvRecord> out;
  reader.Feed("a,b;c,d\n1,2;3,4\n", &out);
  reader.Finish(&out);
  EXPECT_EQ(reader.delimiter(), ',');
  EXPECT_THAT(out[1].fields, ElementsAre("1", "2;3", "4"));
}

TEST(CsvReaderTest, EveryChunkSizeGivesTheSameRecords) {
  const std::string data =
      "\xEF\xBB\xBFu;n\r\n\"a\"\"b\";\"x\r\ny\"\r\nc;d\r\n\"e;f\";g";
  const auto whole = ReadAll(data);
  ASSERT_EQ(whole.size(), 4u);
  for (size_t chunk = 1; chunk <= data.size(); ++chunk) {
    auto rows = ReadAll(data, chunk);
    ASSERT_EQ(rows.size(), whole.size()) << chunk;
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(rows[i].fields, whole[i].fields) << chunk;
      EXPECT_EQ(rows[i].line, whole[i].line) << chunk;
    }
  }
}

TEST(CsvReaderTest, InvalidUtf8ReportedOnItsRecordOnly) {
  auto rows = ReadAll("a,b\nok,\xC3\x28\nfine,\xC3\xA9\n");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].invalid_utf8_field, 1);
  EXPECT_THAT(rows[1].error, HasSubstr("not valid UTF-8"));
  EXPECT_TRUE(rows[2].error.empty());
  EXPECT_EQ(rows[2].invalid_utf8_field, -1);
}

TEST(CsvReaderTest, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8("Fran\xC3\xA7ois \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // truncated
}

TEST(CsvReaderTest, StrayQuotesAndUnterminatedQuote) {
  auto rows = ReadAll("a,b\nx\"y,z\n\"q\"r,s\n\"open,t\n");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_THAT(rows[1].error, HasSubstr("does not start with one"));
  EXPECT_THAT(rows[2].error, HasSubstr("after its closing quote"));
  EXPECT_THAT(rows[3].error, HasSubstr("not closed"));
  EXPECT_EQ(rows[3].line, 4);
}

TEST(CsvReaderTest, LimitsReportedAndParsingResumes) {
  CsvLimits limits;
  limits.max_field_bytes = 4;
  limits.max_fields = 3;
  auto rows = ReadAll("a,b\n12345,x\n1,2,3,4\nok,1\n", 0, limits);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_THAT(rows[1].error, HasSubstr("longer than 4 bytes"));
  EXPECT_THAT(rows[2].error, HasSubstr("more than 3 fields"));
  EXPECT_TRUE(rows[3].error.empty());
  EXPECT_THAT(rows[3].fields, ElementsAre("ok", "1"));
}

TEST(CsvReaderTest, EncodeRoundTrips) {
  std::vector<std::string> fields = {"plain", "with,comma", "q\"uote",
                                     "line\nbreak", ""};
  const std::string line = EncodeCsvLine(fields);
  EXPECT_EQ(line, "plain,\"with,comma\",\"q\"\"uote\",\"line\nbreak\",\r\n");
  auto rows = ReadAll(line);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].fields, fields);
}

TEST(CsvReaderTest, SharedTemplateFile) {
  auto rows = ReadAll(ReadFile("template-basic.csv"), 7);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].fields.size(), 11u);
  EXPECT_EQ(rows[2].fields[10], "{\"contract\": \"2026-Q4\"}");
  EXPECT_EQ(rows[4].fields[9], "true");
  for (const auto& r : rows) EXPECT_TRUE(r.error.empty()) << r.error;
}

TEST(CsvReaderTest, SharedExcelFile) {
  CsvReader reader;
  std::vector<CsvRecord> rows;
  reader.Feed(ReadFile("excel-semicolon-bom.csv"), &rows);
  reader.Finish(&rows);
  EXPECT_EQ(reader.delimiter(), ';');
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].fields[0], "username");
  EXPECT_EQ(rows[1].fields[1], "\xC3\x89lise");
  EXPECT_EQ(rows[2].fields[2], "Dupont; fils");
  EXPECT_EQ(rows[2].fields[5], "");
}

TEST(CsvReaderTest, SharedLowCodeFile) {
  auto rows = ReadAll(ReadFile("lowcode-platform.csv"));
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[1].fields[4], "Manager|Sales");
  EXPECT_EQ(rows[1].fields[5], "{\"apiKey\": \"abc123\"}");
  EXPECT_EQ(rows[3].line, 4);
}

}  // namespace
}  // namespace guestlist::identity::import
