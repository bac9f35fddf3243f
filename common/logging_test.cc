#include "common/logging.h"

#include <nlohmann/json.hpp>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace guestlist {
namespace {

nlohmann::json Parse(const std::string& line) {
  return nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
}

TEST(LogLineTest, CarriesFixedKeysAndFields) {
  SetLogService("membership");
  const absl::Time t = absl::FromUnixMillis(1795385527609);
  ScopedRequestId id("req-1");
  const nlohmann::json j = Parse(FormatLogLine(
      LogLevel::kWarning, "rpc", {{"method", "Check"}, {"code", "OK"}}, t));
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["ts"],
            absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone()));
  EXPECT_EQ(j["ts"], "2026-11-22T22:12:07.609Z");
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["service"], "membership");
  EXPECT_EQ(j["request_id"], "req-1");
  EXPECT_EQ(j["msg"], "rpc");
  EXPECT_EQ(j["method"], "Check");
  EXPECT_EQ(j["code"], "OK");
  EXPECT_EQ(j.size(), 7u);
}

TEST(LogLineTest, TimestampsAcrossSecondsAndBeforeTheEpoch) {
  for (int64_t ms : {int64_t{0}, int64_t{999}, int64_t{1000}, int64_t{-1},
                     int64_t{1795385527000}, int64_t{1795385528001}}) {
    const absl::Time t = absl::FromUnixMillis(ms);
    const nlohmann::json j = Parse(FormatLogLine(LogLevel::kInfo, "x", {}, t));
    EXPECT_EQ(j["ts"],
              absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone()))
        << ms;
  }
}

TEST(LogLineTest, EscapesEverythingJsonNeeds) {
  const std::string nasty = std::string("q\"b\\n\nr\rt\tz\x01\x1f", 13) +
                            std::string(1, '\0') + "\x7f/é€😀";
  const nlohmann::json j = Parse(FormatLogLine(
      LogLevel::kInfo, nasty, {{"k\"", nasty}}, absl::UnixEpoch()));
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["msg"], nasty);
  EXPECT_EQ(j["k\""], nasty);
}

TEST(LogLineTest, InvalidUtf8BecomesReplacementCharacters) {
  // A lone continuation byte, an overlong '/', a surrogate, a truncated
  // sequence at the end, a byte above F4.
  const std::string bad =
      "a\x80"
      "b\xc0\xaf"
      "c\xed\xa0\x80"
      "d\xf5"
      "e\xe2\x82";
  const std::string line =
      FormatLogLine(LogLevel::kInfo, "m", {{"v", bad}}, absl::UnixEpoch());
  const nlohmann::json j = Parse(line);
  ASSERT_TRUE(j.is_object()) << line;
  const std::string v = j["v"];
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(v, "a" + fffd + "b" + fffd + fffd + "c" + fffd + fffd + fffd + "d" +
                   fffd + "e" + fffd + fffd);
}

TEST(LogLineTest, AFieldReplacesAFixedKey) {
  const nlohmann::json j = Parse(FormatLogLine(
      LogLevel::kInfo, "fixed", {{"msg", "from field"}}, absl::UnixEpoch()));
  EXPECT_EQ(j["msg"], "from field");
}

}  // namespace
}  // namespace guestlist
