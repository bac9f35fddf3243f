// Unit tests of identity's pure rules: validation, listing tokens, state
// transitions, rate-limit decisions and password hashing.
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "services/identity/domain/listing.h"
#include "services/identity/domain/password.h"
#include "services/identity/domain/rules.h"
#include "services/identity/domain/validation.h"

namespace guestlist::identity {
namespace {

using absl::StatusCode;

TEST(ValidationTest, EmailAcceptsPracticalAddresses) {
  EXPECT_TRUE(ValidateEmail("email", "ann@example.com").ok());
  EXPECT_TRUE(ValidateEmail("email", "a.b+tag@sub.example.technology").ok());
  EXPECT_TRUE(ValidateEmail("email", "o'neil@x-y.co").ok());
}

TEST(ValidationTest, EmailRejectsBadSyntaxNamingTheField) {
  for (const char* bad :
       {"", "plain", "@example.com", "a@", "a@b", "a..b@example.com",
        ".a@example.com", "a@-example.com", "a@example.c0m", "a b@example.com",
        "a@exa_mple.com", "a@example.c"}) {
    absl::Status s = ValidateEmail("email", bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.message().rfind("email:", 0), 0u) << s.message();
  }
  EXPECT_EQ(ValidateEmail("email", std::string(250, 'a') + "@b.com").code(),
            StatusCode::kInvalidArgument);
}

TEST(ValidationTest, DomainPolicy) {
  EXPECT_TRUE(CheckEmailDomain("a@Partner.com", {"partner.com"}, {}).ok());
  EXPECT_EQ(CheckEmailDomain("a@other.com", {"partner.com"}, {}).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(CheckEmailDomain("a@spam.io", {}, {"spam.io"}).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_TRUE(CheckEmailDomain("a@ok.io", {}, {"spam.io"}).ok());
}

TEST(ValidationTest, Utf8AndNul) {
  EXPECT_TRUE(IsCleanUtf8("héllo ✓ 𝄞"));
  EXPECT_FALSE(IsCleanUtf8(std::string("a\0b", 3)));
  EXPECT_FALSE(IsCleanUtf8("\xC3"));
  EXPECT_FALSE(IsCleanUtf8("\xC0\xAF"));      // overlong
  EXPECT_FALSE(IsCleanUtf8("\xED\xA0\x80"));  // surrogate
  EXPECT_FALSE(IsCleanUtf8("\xFF"));
  absl::Status s = ValidateText("message", std::string("x\0y", 3), 10);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("message"), std::string::npos);
  EXPECT_EQ(ValidateText("message", std::string(11, 'a'), 10).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateText("message", "ééééé", 5).ok());
}

TEST(ValidationTest, NamesNeedFirstOrLast) {
  EXPECT_TRUE(
      ValidatePersonNames("first_name", "Ann", "last_name", "", true).ok());
  EXPECT_TRUE(
      ValidatePersonNames("first_name", "", "last_name", "Lee", true).ok());
  absl::Status s =
      ValidatePersonNames("first_name", " ", "last_name", "", true);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("first_name"), std::string::npos);
  EXPECT_TRUE(
      ValidatePersonNames("first_name", "", "last_name", "", false).ok());
  EXPECT_EQ(ValidatePersonNames("first_name", std::string(101, 'a'),
                                "last_name", "", true)
                .code(),
            StatusCode::kInvalidArgument);
}

TEST(ValidationTest, Metadata) {
  EXPECT_TRUE(ValidateMetadataJson("metadata", R"({"team":"sales"})").ok());
  EXPECT_EQ(ValidateMetadataJson("metadata", "[1,2]").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateMetadataJson("metadata", "{").code(),
            StatusCode::kInvalidArgument);
  std::string big = R"({"a":")" + std::string(16 * 1024, 'x') + R"("})";
  absl::Status s = ValidateMetadataJson("metadata", big);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("16 KiB"), std::string::npos);
}

TEST(ValidationTest, PasswordPolicy) {
  EXPECT_TRUE(ValidatePassword("password", "correct horse", "ann").ok());
  EXPECT_EQ(ValidatePassword("password", "short", "ann").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidatePassword("password", "aaaaaaaaaaaa", "ann").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ValidatePassword("password", "Ann@Example.com", "ann@example.com").code(),
      StatusCode::kInvalidArgument);
}

TEST(ValidationTest, WorkspaceNameScopesIdsKeys) {
  EXPECT_TRUE(ValidateWorkspaceName("workspace.name", "acme-corp").ok());
  EXPECT_FALSE(ValidateWorkspaceName("workspace.name", "Acme").ok());
  EXPECT_FALSE(ValidateWorkspaceName("workspace.name", "-acme").ok());
  EXPECT_TRUE(
      ValidateScopes("scopes", {"users.read", "invitations.write"}).ok());
  EXPECT_FALSE(ValidateScopes("scopes", {"admin"}).ok());
  EXPECT_TRUE(IsUuid("123e4567-e89b-12d3-a456-426614174000"));
  EXPECT_FALSE(IsUuid("123e4567e89b12d3a456426614174000"));
  EXPECT_TRUE(ValidateIdempotencyKey("k-1").ok());
  EXPECT_FALSE(ValidateIdempotencyKey("has space").ok());
}

TEST(ListingTest, OrderBy) {
  auto o = ParseOrderBy("");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->field, UserOrder::kEmail);
  EXPECT_FALSE(o->descending);
  o = ParseOrderBy("createTime desc");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->field, UserOrder::kCreateTime);
  EXPECT_TRUE(o->descending);
  o = ParseOrderBy("name");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->field, UserOrder::kName);
  EXPECT_EQ(ParseOrderBy("password").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseOrderBy("email sideways").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ListingTest, PageTokenRoundTripsAndIsBoundToQuery) {
  const std::string token = EncodePageToken({"ann@x.com", "id-1"}, "q1");
  auto c = DecodePageToken(token, "q1");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->key, "ann@x.com");
  EXPECT_EQ(c->id, "id-1");
  EXPECT_EQ(c->total, -1);
  auto with_total = DecodePageToken(
      EncodePageToken({"k\x1fwith sep", "id-2", 1234}, "q1"), "q1");
  ASSERT_TRUE(with_total.ok());
  EXPECT_EQ(with_total->total, 1234);
  EXPECT_EQ(with_total->key, "k\x1fwith sep");
  EXPECT_EQ(DecodePageToken(token, "q2").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodePageToken("garbage!", "q1").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(*NormalizePageSize(0), 50);
  EXPECT_EQ(*NormalizePageSize(5000), 1000);
  EXPECT_FALSE(NormalizePageSize(-1).ok());
}

UserRecord User(UserStatus status, UserKind kind = v1::GUEST) {
  UserRecord u;
  u.status = status;
  u.kind = kind;
  return u;
}

TEST(RulesTest, EffectiveStatusHonoursTemporaryAccess) {
  const absl::Time now = absl::FromUnixSeconds(1000000);
  UserRecord u = User(v1::ACTIVE);
  EXPECT_EQ(EffectiveStatus(u, now), v1::ACTIVE);
  u.access_expire_time = now;
  EXPECT_EQ(EffectiveStatus(u, now), v1::EXPIRED);
  u.access_expire_time = now + absl::Seconds(1);
  EXPECT_EQ(EffectiveStatus(u, now), v1::ACTIVE);
  u.status = v1::SUSPENDED;
  u.access_expire_time = now - absl::Seconds(1);
  EXPECT_EQ(EffectiveStatus(u, now), v1::SUSPENDED);
}

TEST(RulesTest, CanActOnlyWhenActive) {
  EXPECT_TRUE(CheckCanAct(v1::ACTIVE).ok());
  for (UserStatus s : {v1::SUSPENDED, v1::EXPIRED, v1::ARCHIVED}) {
    absl::Status st = CheckCanAct(s);
    EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
    EXPECT_NE(st.message().find(StatusName(s)), std::string::npos);
  }
}

TEST(RulesTest, Transitions) {
  EXPECT_EQ(**SuspendTransition(User(v1::ACTIVE)), v1::SUSPENDED);
  EXPECT_FALSE(SuspendTransition(User(v1::SUSPENDED))->has_value());
  EXPECT_EQ(SuspendTransition(User(v1::ARCHIVED)).status().code(),
            StatusCode::kFailedPrecondition);
  UserRecord with_password = User(v1::SUSPENDED);
  with_password.password_hash = "x";
  EXPECT_EQ(**ReactivateTransition(with_password), v1::ACTIVE);
  EXPECT_EQ(**ReactivateTransition(User(v1::EXPIRED)), v1::INVITED);
  EXPECT_EQ(ReactivateTransition(User(v1::ARCHIVED)).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReactivateTransition(User(v1::REQUESTED)).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_FALSE(ArchiveTransition(User(v1::ARCHIVED))->has_value());
  EXPECT_TRUE(CheckConvertible(User(v1::ACTIVE)).ok());
  EXPECT_EQ(CheckConvertible(User(v1::ACTIVE, v1::MEMBER)).code(),
            StatusCode::kFailedPrecondition);
}

TEST(RulesTest, InvitationExpires) {
  InvitationRecord inv;
  inv.state = v1::Invitation::PENDING;
  inv.expire_time = absl::FromUnixSeconds(100);
  EXPECT_EQ(EffectiveState(inv, absl::FromUnixSeconds(99)),
            v1::Invitation::PENDING);
  EXPECT_EQ(EffectiveState(inv, absl::FromUnixSeconds(100)),
            v1::Invitation::EXPIRED);
}

TEST(RulesTest, RateLimitSaysWhenToRetry) {
  const RateLimit limit{3, absl::Minutes(10)};
  const absl::Time start = absl::FromUnixSeconds(0);
  EXPECT_TRUE(RateLimitDecision(limit, 3, start, start, "tries").ok());
  absl::Status s =
      RateLimitDecision(limit, 4, start, start + absl::Minutes(4), "tries");
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("retry in 360 seconds"), std::string::npos)
      << s.message();
}

TEST(PasswordTest, HashVerifyAndBoundedConcurrency) {
  // Small memory so the test is fast; production uses 19 MiB.
  PasswordHasher hasher(2, 1 << 20, 1);
  auto hash = hasher.Hash("correct horse battery");
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(hash->rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(hasher.Verify("correct horse battery", *hash));
  EXPECT_FALSE(hasher.Verify("wrong horse battery", *hash));
  EXPECT_FALSE(hasher.Verify("x", ""));
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] { (void)hasher.Hash("another passphrase"); });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(hasher.peak_concurrency(), 2);
}

TEST(PasswordTest, ProductionParametersAreOwasp) {
  PasswordHasher hasher;
  auto hash = hasher.Hash("correct horse battery");
  ASSERT_TRUE(hash.ok());
  EXPECT_NE(hash->find("m=19456,t=2,p=1"), std::string::npos) << *hash;
}

}  // namespace
}  // namespace guestlist::identity
