// Licence accounting: members and admins take one licence each, so do
// guests in two or more groups; guests in at most one group are free but
// their number is capped at the licence count. Pure functions, no I/O.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "services/membership/domain/model.h"

namespace guestlist::membership {

struct LicenseUsage {
  int license_count = 0;
  int used_by_members = 0;
  int used_by_multi_group_guests = 0;
  int single_group_guests = 0;

  int used() const { return used_by_members + used_by_multi_group_guests; }
  int available() const { return license_count - used(); }
};

// How one user counts.
enum class LicenseClass { kNone, kMember, kMultiGroupGuest, kSingleGroupGuest };

// Returns how a user of `kind` and `status` in `group_count` groups counts.
// Requested and archived users count nowhere.
LicenseClass Classify(Kind kind, Status status, int group_count);

// Adds `delta` (+1 / -1) users of class `c` to `usage`.
void Apply(LicenseClass c, int delta, LicenseUsage* usage);

// Returns OK when going from `before` to `after` does not take licences
// that are not there. A change that lowers (or keeps) an over-used count is
// fine, so admins can always shrink. Otherwise FailedPrecondition naming
// the shortfall and `what` caused it, e.g. "workspace has 10 licences, all
// used; adding a second group to guest x needs 1 more".
absl::Status CheckLicenseChange(const LicenseUsage& before,
                                const LicenseUsage& after,
                                const std::string& what);

}  // namespace guestlist::membership
