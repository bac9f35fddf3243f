#include "services/notification/domain/unsubscribe_token.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/random.h"

namespace guestlist::notification {
namespace {

constexpr char kVersion[] = "u1";

std::string Signature(absl::string_view secret, absl::string_view payload) {
  // Domain-separated so the key cannot sign anything else by accident.
  return HmacSha256Hex(std::string(secret),
                       absl::StrCat("guestlist.unsubscribe.", payload));
}

}  // namespace

std::string SignUnsubscribeToken(absl::string_view secret,
                                 const UnsubscribeTarget& target) {
  // '\n' cannot occur in any field (ids, addresses, category names).
  const std::string payload = absl::StrCat(
      kVersion, "\n", target.workspace_id, "\n",
      absl::AsciiStrToLower(target.recipient), "\n", target.category);
  return absl::StrCat(absl::WebSafeBase64Escape(payload), ".",
                      Signature(secret, payload));
}

absl::StatusOr<UnsubscribeTarget> VerifyUnsubscribeToken(
    absl::string_view secret, absl::string_view token) {
  const absl::Status bad = absl::InvalidArgumentError(
      "the unsubscribe token is malformed or was altered; use the link from "
      "the email as it is");
  if (token.size() > 2048) return bad;
  const size_t dot = token.rfind('.');
  if (dot == absl::string_view::npos) return bad;
  std::string payload;
  if (!absl::WebSafeBase64Unescape(token.substr(0, dot), &payload)) return bad;
  if (!ConstantTimeEquals(std::string(token.substr(dot + 1)),
                          Signature(secret, payload))) {
    return bad;
  }
  std::vector<std::string> parts = absl::StrSplit(payload, '\n');
  if (parts.size() != 4 || parts[0] != kVersion) return bad;
  return UnsubscribeTarget{parts[1], parts[2], parts[3]};
}

std::string UnsubscribeUrl(absl::string_view public_url,
                           absl::string_view token) {
  absl::string_view base = public_url;
  while (absl::ConsumeSuffix(&base, "/")) {
  }
  return absl::StrCat(base, "/v1/unsubscribe?token=", token);
}

}  // namespace guestlist::notification
