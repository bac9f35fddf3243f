// Input rules of identity, pure functions: every failure is
// INVALID_ARGUMENT naming the field and how to fix it (or
// FAILED_PRECONDITION where the workspace's policy refuses a valid value).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace guestlist::identity {

inline constexpr size_t kMaxNameChars = 100;
inline constexpr size_t kMaxDisplayNameChars = 200;
inline constexpr size_t kMaxEmailBytes = 254;
inline constexpr size_t kMaxUsernameBytes = 254;
inline constexpr size_t kMaxMessageChars = 1000;
inline constexpr size_t kMaxMetadataBytes = 16 * 1024;
inline constexpr size_t kMinPasswordChars = 10;
inline constexpr size_t kMaxPasswordBytes = 1024;

// Whether `s` is valid UTF-8 without NUL bytes.
bool IsCleanUtf8(absl::string_view s);
// Number of code points of valid UTF-8 `s`.
size_t Utf8Length(absl::string_view s);

// Free text: valid UTF-8, no NUL, at most `max_chars` characters.
absl::Status ValidateText(absl::string_view field, absl::string_view value,
                          size_t max_chars);

// Practical email syntax (RFC 5321 subset): dot-atom local part up to 64
// bytes, a domain of at least two LDH labels whose TLD is alphabetic (any
// length up to 63, e.g. `.technology`). Empty is an error.
absl::Status ValidateEmail(absl::string_view field, absl::string_view email);

// Lower-cased domain of a valid email.
std::string EmailDomain(absl::string_view email);

// Allowed / blocked domain policy. FAILED_PRECONDITION naming the domain.
absl::Status CheckEmailDomain(absl::string_view email,
                              const std::vector<std::string>& allowed,
                              const std::vector<std::string>& blocked);

// A domain in a workspace allow/block list: LDH labels, lower-cased.
absl::Status ValidateDomain(absl::string_view field, absl::string_view domain);

// Usernames: 1..254 bytes of printable characters without spaces.
absl::Status ValidateUsername(absl::string_view field,
                              absl::string_view username);

// First or last name required; each at most kMaxNameChars.
absl::Status ValidatePersonNames(absl::string_view first_field,
                                 absl::string_view first,
                                 absl::string_view last_field,
                                 absl::string_view last, bool required);

// Workspace handle: 2..63 lowercase letters, digits and inner hyphens.
absl::Status ValidateWorkspaceName(absl::string_view field,
                                   absl::string_view name);

// Password policy: at least kMinPasswordChars characters, at most
// kMaxPasswordBytes bytes, not the username, not one repeated character.
absl::Status ValidatePassword(absl::string_view field,
                              absl::string_view password,
                              absl::string_view username);

// Metadata given as JSON text: an object of at most kMaxMetadataBytes.
absl::Status ValidateMetadataJson(absl::string_view field,
                                  absl::string_view json);

// UUID text (8-4-4-4-12 hex).
bool IsUuid(absl::string_view s);
absl::Status ValidateId(absl::string_view field, absl::string_view id);

// API key scopes known to guestlist.
absl::Status ValidateScopes(absl::string_view field,
                            const std::vector<std::string>& scopes);
inline constexpr char kScopeUsersRead[] = "users.read";
inline constexpr char kScopeInvitationsWrite[] = "invitations.write";
inline constexpr char kScopeReportsPublish[] = "reports.publish";

// Idempotency keys: at most 128 printable ASCII bytes.
absl::Status ValidateIdempotencyKey(absl::string_view key);

}  // namespace guestlist::identity
