#include "common/random.h"

#include <set>

#include "gtest/gtest.h"

namespace guestlist {
namespace {

TEST(RandomTest, UuidsAreVersion4AndDistinct) {
  SecureRandom random;
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewUuid(random);
    ASSERT_EQ(id.size(), 36u);
    EXPECT_EQ(id[14], '4');
    EXPECT_TRUE(seen.insert(id).second);
  }
}

TEST(RandomTest, TokensCarryAtLeast128BitsAndThePrefix) {
  SecureRandom random;
  std::string token = NewToken(random, 32, "gli_");
  EXPECT_EQ(token.rfind("gli_", 0), 0u);
  EXPECT_EQ(token.size(), 4u + 43u);  // 32 bytes in unpadded base64url
  EXPECT_NE(token, NewToken(random, 32, "gli_"));
}

TEST(RandomTest, Sha256MatchesKnownVector) {
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(RandomTest, HmacDependsOnKey) {
  EXPECT_NE(HmacSha256Hex("k1", "data"), HmacSha256Hex("k2", "data"));
  EXPECT_EQ(HmacSha256Hex("k1", "data"), HmacSha256Hex("k1", "data"));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
}

}  // namespace
}  // namespace guestlist
