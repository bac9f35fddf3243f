#include "services/identity/domain/validation.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace guestlist::identity {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

bool IsAtext(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::StrContains("!#$%&'*+/=?^_`{|}~-", c);
}

bool IsLdhLabel(absl::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  return std::all_of(label.begin(), label.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-';
  });
}

bool IsDomainName(absl::string_view domain) {
  if (domain.empty() || domain.size() > 253) return false;
  std::vector<absl::string_view> labels = absl::StrSplit(domain, '.');
  if (labels.size() < 2) return false;
  for (absl::string_view label : labels) {
    if (!IsLdhLabel(label)) return false;
  }
  absl::string_view tld = labels.back();
  return tld.size() >= 2 && std::all_of(tld.begin(), tld.end(), [](char c) {
           return absl::ascii_isalpha(static_cast<unsigned char>(c));
         });
}

}  // namespace

bool IsCleanUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    if (c == 0) return false;
    int extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
        (extra == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

size_t Utf8Length(absl::string_view s) {
  return std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  });
}

absl::Status ValidateText(absl::string_view field, absl::string_view value,
                          size_t max_chars) {
  if (!IsCleanUtf8(value)) {
    return Invalid(field,
                   "must be valid UTF-8 text without NUL bytes; re-encode it "
                   "as UTF-8");
  }
  if (Utf8Length(value) > max_chars) {
    return Invalid(
        field, absl::StrCat("is too long (", Utf8Length(value),
                            " characters); shorten it to at most ", max_chars));
  }
  return absl::OkStatus();
}

absl::Status ValidateEmail(absl::string_view field, absl::string_view email) {
  if (email.empty()) {
    return Invalid(field, "is required; give an address like name@example.com");
  }
  if (!IsCleanUtf8(email)) {
    return Invalid(field, "must be valid UTF-8 without NUL bytes");
  }
  if (email.size() > kMaxEmailBytes) {
    return Invalid(field, absl::StrCat("is longer than ", kMaxEmailBytes,
                                       " bytes; give a shorter address"));
  }
  const size_t at = email.rfind('@');
  if (at == absl::string_view::npos) {
    return Invalid(field, absl::StrCat("\"", email,
                                       "\" has no @; give an address like "
                                       "name@example.com"));
  }
  absl::string_view local = email.substr(0, at);
  absl::string_view domain = email.substr(at + 1);
  bool local_ok = !local.empty() && local.size() <= 64 &&
                  local.front() != '.' && local.back() != '.' &&
                  !absl::StrContains(local, "..") &&
                  std::all_of(local.begin(), local.end(),
                              [](char c) { return IsAtext(c) || c == '.'; });
  if (!local_ok) {
    return Invalid(field, absl::StrCat("\"", email,
                                       "\" has an invalid part before the @ "
                                       "(letters, digits, dots and "
                                       "!#$%&'*+/=?^_`{|}~- only, at most 64, "
                                       "no leading, trailing or double dots)"));
  }
  if (!IsDomainName(domain)) {
    return Invalid(field, absl::StrCat("\"", email,
                                       "\" has an invalid domain; give a "
                                       "domain like example.com"));
  }
  return absl::OkStatus();
}

std::string EmailDomain(absl::string_view email) {
  const size_t at = email.rfind('@');
  if (at == absl::string_view::npos) return "";
  return absl::AsciiStrToLower(email.substr(at + 1));
}

absl::Status CheckEmailDomain(absl::string_view email,
                              const std::vector<std::string>& allowed,
                              const std::vector<std::string>& blocked) {
  const std::string domain = EmailDomain(email);
  auto contains = [&domain](const std::vector<std::string>& list) {
    return std::any_of(list.begin(), list.end(), [&](const std::string& d) {
      return absl::EqualsIgnoreCase(d, domain);
    });
  };
  if (!allowed.empty() && !contains(allowed)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "email: the domain ", domain,
        " is not in this workspace's allowed email domains (",
        absl::StrJoin(allowed, ", "),
        "); use an address in an allowed domain or ask an admin to allow it"));
  }
  if (contains(blocked)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "email: the domain ", domain,
        " is blocked in this workspace; use an address in another domain"));
  }
  return absl::OkStatus();
}

absl::Status ValidateDomain(absl::string_view field, absl::string_view domain) {
  if (!IsDomainName(domain)) {
    return Invalid(field, absl::StrCat("\"", domain,
                                       "\" is not a domain; give one like "
                                       "example.com (no @, no scheme)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateUsername(absl::string_view field,
                              absl::string_view username) {
  if (username.empty()) {
    return Invalid(field, "is required; give a username or an email");
  }
  if (!IsCleanUtf8(username)) {
    return Invalid(field, "must be valid UTF-8 without NUL bytes");
  }
  if (username.size() > kMaxUsernameBytes) {
    return Invalid(field, absl::StrCat("is longer than ", kMaxUsernameBytes,
                                       " bytes; shorten it"));
  }
  for (char c : username) {
    const unsigned char u = c;
    if (u < 0x21 || u == 0x7F) {
      return Invalid(field,
                     "must not contain spaces or control characters; remove "
                     "them");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePersonNames(absl::string_view first_field,
                                 absl::string_view first,
                                 absl::string_view last_field,
                                 absl::string_view last, bool required) {
  if (absl::Status s = ValidateText(first_field, first, kMaxNameChars);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateText(last_field, last, kMaxNameChars); !s.ok()) {
    return s;
  }
  if (required && absl::StripAsciiWhitespace(first).empty() &&
      absl::StripAsciiWhitespace(last).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(first_field, " / ", last_field,
                     ": give a first name or a last name (one is required)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateWorkspaceName(absl::string_view field,
                                   absl::string_view name) {
  bool ok =
      name.size() >= 2 && name.size() <= 63 && name.front() != '-' &&
      name.back() != '-' && std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_islower(static_cast<unsigned char>(c)) ||
               absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-';
      });
  if (!ok) {
    return Invalid(field, absl::StrCat("\"", name,
                                       "\" is not a valid handle; use 2 to 63 "
                                       "lowercase letters, digits and inner "
                                       "hyphens, e.g. acme-corp"));
  }
  return absl::OkStatus();
}

absl::Status ValidatePassword(absl::string_view field,
                              absl::string_view password,
                              absl::string_view username) {
  if (!IsCleanUtf8(password)) {
    return Invalid(field, "must be valid UTF-8 without NUL bytes");
  }
  if (password.size() > kMaxPasswordBytes) {
    return Invalid(field, absl::StrCat("is longer than ", kMaxPasswordBytes,
                                       " bytes; use a shorter passphrase"));
  }
  if (Utf8Length(password) < kMinPasswordChars) {
    return Invalid(field, absl::StrCat("is too short; use at least ",
                                       kMinPasswordChars, " characters"));
  }
  if (!username.empty() && absl::EqualsIgnoreCase(password, username)) {
    return Invalid(field, "must not be the username; choose another one");
  }
  if (std::all_of(password.begin(), password.end(),
                  [&](char c) { return c == password.front(); })) {
    return Invalid(field,
                   "is one repeated character; choose a real passphrase");
  }
  return absl::OkStatus();
}

absl::Status ValidateMetadataJson(absl::string_view field,
                                  absl::string_view json) {
  if (json.size() > kMaxMetadataBytes) {
    return Invalid(field, absl::StrCat("is ", json.size(),
                                       " bytes as JSON; keep it at most ",
                                       kMaxMetadataBytes, " bytes (16 KiB)"));
  }
  if (!IsCleanUtf8(json)) {
    return Invalid(field, "must be valid UTF-8 without NUL characters");
  }
  nlohmann::json parsed = nlohmann::json::parse(json, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Invalid(field, "must be a JSON object, e.g. {\"team\": \"sales\"}");
  }
  return absl::OkStatus();
}

bool IsUuid(absl::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return Invalid(field, "is required");
  if (!IsUuid(id)) {
    return Invalid(field,
                   "must be a UUID like "
                   "123e4567-e89b-12d3-a456-426614174000");
  }
  return absl::OkStatus();
}

absl::Status ValidateScopes(absl::string_view field,
                            const std::vector<std::string>& scopes) {
  for (const std::string& scope : scopes) {
    if (scope != kScopeUsersRead && scope != kScopeInvitationsWrite &&
        scope != kScopeReportsPublish) {
      return Invalid(field, absl::StrCat("unknown scope \"", scope,
                                         "\"; use users.read, "
                                         "invitations.write or "
                                         "reports.publish"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateIdempotencyKey(absl::string_view key) {
  if (key.size() > 128 || !std::all_of(key.begin(), key.end(), [](char c) {
        return c > 0x20 && c < 0x7F;
      })) {
    return Invalid("idempotency_key",
                   "must be at most 128 printable ASCII characters without "
                   "spaces, e.g. a UUID");
  }
  return absl::OkStatus();
}

}  // namespace guestlist::identity
