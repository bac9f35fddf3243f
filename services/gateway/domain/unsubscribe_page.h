// The page behind the unsubscribe link in an email's body. A GET must not
// unsubscribe (mail scanners follow links; RFC 8058 section 3.2), so it
// shows a button that POSTs the token to POST /v1/unsubscribe, the same
// one-click request a mail client sends from List-Unsubscribe.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace guestlist::gateway {

// Unsubscribe tokens are URL-safe base64 parts joined by dots.
inline constexpr size_t kMaxUnsubscribeTokenBytes = 1024;

// True when `token` is non-empty, at most kMaxUnsubscribeTokenBytes and
// only [A-Za-z0-9._~-], so it can be placed in HTML and a URL as is.
bool IsPlausibleUnsubscribeToken(absl::string_view token);

// The confirmation page for a plausible `token`.
std::string UnsubscribeConfirmationPage(absl::string_view token);

// The page for a missing or malformed token.
std::string UnsubscribeBadLinkPage();

}  // namespace guestlist::gateway
