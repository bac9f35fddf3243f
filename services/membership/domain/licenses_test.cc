// Unit tests of licence accounting.
#include "services/membership/domain/licenses.h"

#include "gtest/gtest.h"

namespace guestlist::membership {
namespace {

TEST(ClassifyTest, MembersAndMultiGroupGuestsTakeLicences) {
  EXPECT_EQ(Classify(Kind::kAdmin, Status::kActive, 0), LicenseClass::kMember);
  EXPECT_EQ(Classify(Kind::kMember, Status::kInvited, 5),
            LicenseClass::kMember);
  EXPECT_EQ(Classify(Kind::kGuest, Status::kActive, 0),
            LicenseClass::kSingleGroupGuest);
  EXPECT_EQ(Classify(Kind::kGuest, Status::kActive, 1),
            LicenseClass::kSingleGroupGuest);
  EXPECT_EQ(Classify(Kind::kGuest, Status::kSuspended, 2),
            LicenseClass::kMultiGroupGuest);
  EXPECT_EQ(Classify(Kind::kGuest, Status::kArchived, 3), LicenseClass::kNone);
  EXPECT_EQ(Classify(Kind::kMember, Status::kRequested, 0),
            LicenseClass::kNone);
}

TEST(CheckLicenseChangeTest, SecondGroupForGuestNamesShortfall) {
  LicenseUsage before{.license_count = 10,
                      .used_by_members = 10,
                      .used_by_multi_group_guests = 0,
                      .single_group_guests = 3};
  LicenseUsage after = before;
  Apply(LicenseClass::kSingleGroupGuest, -1, &after);
  Apply(LicenseClass::kMultiGroupGuest, +1, &after);
  absl::Status s =
      CheckLicenseChange(before, after, "adding a second group to guest x");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "workspace has 10 licences, all used; adding a second group to "
            "guest x needs 1 more");
}

TEST(CheckLicenseChangeTest, FreeLicenceIsTaken) {
  LicenseUsage before{.license_count = 10, .used_by_members = 9};
  LicenseUsage after = before;
  Apply(LicenseClass::kMember, +1, &after);
  EXPECT_TRUE(CheckLicenseChange(before, after, "adding member y").ok());
  EXPECT_EQ(after.available(), 0);
}

TEST(CheckLicenseChangeTest, SingleGroupGuestsAreCappedAtLicenceCount) {
  LicenseUsage before{.license_count = 2, .single_group_guests = 2};
  LicenseUsage after = before;
  Apply(LicenseClass::kSingleGroupGuest, +1, &after);
  absl::Status s = CheckLicenseChange(before, after, "adding guest z");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("caps single-group guests at 2"),
            std::string::npos);
}

TEST(CheckLicenseChangeTest, ShrinkingAnOverusedWorkspaceIsAllowed) {
  LicenseUsage before{.license_count = 1, .used_by_members = 3};
  LicenseUsage after = before;
  Apply(LicenseClass::kMember, -1, &after);
  EXPECT_TRUE(CheckLicenseChange(before, after, "removing").ok());
}

}  // namespace
}  // namespace guestlist::membership
