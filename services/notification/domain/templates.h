// The email templates (invitation, access_request, access_expiry, report):
// each renders a subject, a plain-text part and an HTML part from string
// variables. Variables are HTML-escaped in the HTML part. Pure, no I/O.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace guestlist::notification {

inline constexpr char kInvitation[] = "invitation";
inline constexpr char kAccessRequest[] = "access_request";
inline constexpr char kAccessExpiry[] = "access_expiry";
inline constexpr char kReport[] = "report";

// Whether `category` is one of the four email categories.
bool IsKnownCategory(absl::string_view category);

// Whether a recipient may unsubscribe from `category` (all but invitations:
// an invitation is the only way to join).
bool IsUnsubscribableCategory(absl::string_view category);

struct RenderedEmail {
  std::string subject;
  std::string text;
  std::string html;
};

using TemplateVariables = std::map<std::string, std::string>;

// Renders `template_name`. `unsubscribe_url` (may be empty) is linked in
// the footer. Errors: InvalidArgument for an unknown template or a missing
// required variable (naming it).
absl::StatusOr<RenderedEmail> RenderTemplate(absl::string_view template_name,
                                             const TemplateVariables& variables,
                                             absl::string_view unsubscribe_url);

}  // namespace guestlist::notification
