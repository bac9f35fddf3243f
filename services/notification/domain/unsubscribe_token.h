// Signed unsubscribe tokens: the link in every email (except invitations)
// names the workspace, the recipient and the category, signed with
// HMAC-SHA-256 so nobody can unsubscribe someone else. Pure, no I/O.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace guestlist::notification {

struct UnsubscribeTarget {
  std::string workspace_id;
  std::string recipient;  // lowercase address
  std::string category;
};

// Returns a URL-safe token for `target` (recipient is lowercased).
std::string SignUnsubscribeToken(absl::string_view secret,
                                 const UnsubscribeTarget& target);

// Returns the target of a token signed with `secret`. Errors:
// InvalidArgument when malformed or tampered with.
absl::StatusOr<UnsubscribeTarget> VerifyUnsubscribeToken(
    absl::string_view secret, absl::string_view token);

// PUBLIC_URL/v1/unsubscribe?token=<token> (no doubled slash).
std::string UnsubscribeUrl(absl::string_view public_url,
                           absl::string_view token);

}  // namespace guestlist::notification
