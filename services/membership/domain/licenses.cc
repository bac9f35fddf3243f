#include "services/membership/domain/licenses.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace guestlist::membership {
namespace {

std::string Licences(int n) {
  return absl::StrCat(n, n == 1 ? " licence" : " licences");
}

}  // namespace

LicenseClass Classify(Kind kind, Status status, int group_count) {
  if (status == Status::kRequested || status == Status::kArchived ||
      status == Status::kUnspecified) {
    return LicenseClass::kNone;
  }
  switch (kind) {
    case Kind::kAdmin:
    case Kind::kMember:
      return LicenseClass::kMember;
    case Kind::kGuest:
      return group_count >= 2 ? LicenseClass::kMultiGroupGuest
                              : LicenseClass::kSingleGroupGuest;
    default:
      return LicenseClass::kNone;
  }
}

void Apply(LicenseClass c, int delta, LicenseUsage* usage) {
  switch (c) {
    case LicenseClass::kMember:
      usage->used_by_members += delta;
      break;
    case LicenseClass::kMultiGroupGuest:
      usage->used_by_multi_group_guests += delta;
      break;
    case LicenseClass::kSingleGroupGuest:
      usage->single_group_guests += delta;
      break;
    case LicenseClass::kNone:
      break;
  }
}

absl::Status CheckLicenseChange(const LicenseUsage& before,
                                const LicenseUsage& after,
                                const std::string& what) {
  const int count = after.license_count;
  if (after.used() > count && after.used() > before.used()) {
    const std::string in_use = before.used() >= count
                                   ? "all used"
                                   : absl::StrCat(before.used(), " used");
    return absl::FailedPreconditionError(
        absl::StrCat("workspace has ", Licences(count), ", ", in_use, "; ",
                     what, " needs ", after.used() - count, " more"));
  }
  if (after.single_group_guests > count &&
      after.single_group_guests > before.single_group_guests) {
    return absl::FailedPreconditionError(
        absl::StrCat("workspace has ", Licences(count),
                     ", which caps single-group guests at ", count, " and ",
                     before.single_group_guests, " exist; ", what, " needs ",
                     after.single_group_guests - count, " more"));
  }
  return absl::OkStatus();
}

}  // namespace guestlist::membership
