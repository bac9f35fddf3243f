#include "common/config.h"

#include <cstdlib>

#include "absl/flags/flag.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, test_port, 1, "a port for the test");
ABSL_FLAG(std::string, test_database_url, "", "a url for the test");

namespace guestlist {
namespace {

TEST(ConfigTest, ServiceSpecificVariableWins) {
  EXPECT_EQ(EnvNamesForFlag("identity", "database_url"),
            (std::vector<std::string>{"GUESTLIST_IDENTITY_DATABASE_URL",
                                      "GUESTLIST_DATABASE_URL"}));
  setenv("GUESTLIST_TEST_DATABASE_URL", "generic", 1);
  setenv("GUESTLIST_CFG_TEST_DATABASE_URL", "specific", 1);
  ASSERT_TRUE(ApplyEnvironment("cfg").ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_database_url), "specific");
  unsetenv("GUESTLIST_CFG_TEST_DATABASE_URL");
  ASSERT_TRUE(ApplyEnvironment("cfg").ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_database_url), "generic");
}

TEST(ConfigTest, BadValueNamesTheVariable) {
  setenv("GUESTLIST_TEST_PORT", "eighty", 1);
  absl::Status s = ApplyEnvironment("cfg");
  unsetenv("GUESTLIST_TEST_PORT");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("GUESTLIST_TEST_PORT"), std::string::npos);
  EXPECT_NE(s.message().find("--test_port"), std::string::npos);
}

}  // namespace
}  // namespace guestlist
