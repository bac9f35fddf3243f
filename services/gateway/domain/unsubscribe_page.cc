#include "services/gateway/domain/unsubscribe_page.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace guestlist::gateway {
namespace {

constexpr char kHead[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width\">"
    "<title>Unsubscribe</title></head><body style=\"font-family:sans-serif;"
    "max-width:32em;margin:3em auto\">";
constexpr char kTail[] = "</body></html>\n";

}  // namespace

bool IsPlausibleUnsubscribeToken(absl::string_view token) {
  if (token.empty() || token.size() > kMaxUnsubscribeTokenBytes) return false;
  for (char c : token) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-' && c != '~') {
      return false;
    }
  }
  return true;
}

std::string UnsubscribeConfirmationPage(absl::string_view token) {
  // The token holds only URL- and HTML-safe characters (checked by the
  // caller), so it needs no escaping here.
  return absl::StrCat(
      kHead,
      "<h1>Unsubscribe</h1><p>Stop receiving this kind of email from "
      "guestlist?</p><form method=\"post\" action=\"/v1/unsubscribe?token=",
      token,
      "\"><input type=\"hidden\" name=\"List-Unsubscribe\" "
      "value=\"One-Click\"><button type=\"submit\">Unsubscribe</button>"
      "</form>",
      kTail);
}

std::string UnsubscribeBadLinkPage() {
  return absl::StrCat(kHead,
                      "<h1>Unsubscribe</h1><p>This unsubscribe link is "
                      "incomplete. Open the link from the email again, or "
                      "copy the whole address into the browser.</p>",
                      kTail);
}

}  // namespace guestlist::gateway
