// MIME building blocks for outgoing email (pure, no I/O): RFC 2047 encoded
// words for non-ASCII headers, 7bit / quoted-printable / base64 bodies, HTML
// escaping, RFC 5322 dates, and the assembly of a complete message
// (multipart/alternative text + HTML, wrapped in multipart/mixed when there
// are attachments). Output is deterministic for a given input, so a message
// re-sent after a crash is byte-identical (same Message-ID, same boundary).
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace guestlist::notification {

// Escapes &, <, >, " and ' for HTML text and attribute values.
std::string HtmlEscape(absl::string_view text);

// Returns `text` unchanged when it is printable ASCII, else RFC 2047
// encoded words (=?UTF-8?B?...?=, each at most 75 characters, never
// splitting a UTF-8 sequence) joined by folding whitespace.
std::string EncodeHeaderText(absl::string_view text);

// Returns a mailbox for From/To: `addr` alone, `"Name" <addr>` for ASCII
// names (quoted, with \ and " escaped), or `=?UTF-8?B?..?= <addr>`.
std::string FormatMailbox(absl::string_view name, absl::string_view addr);

// Quoted-printable (RFC 2045) of UTF-8 text with CRLF line breaks, lines of
// at most 76 characters; a leading '.' is encoded so SMTP dot-stuffing never
// matters.
std::string QuotedPrintable(absl::string_view text);

// Base64 in lines of 76 characters separated by CRLF.
std::string Base64Lines(absl::string_view data);

// RFC 5322 date in UTC, e.g. "Sun, 22 Nov 2026 20:58:41 +0000".
std::string Rfc5322Date(absl::Time t);

// Whether `addr` looks like a deliverable address: one '@', non-empty local
// part and a dotted domain, no spaces, control characters or angle brackets.
bool IsValidEmailAddress(absl::string_view addr);

// Returns the lowercase domain of an address ("" when there is none).
std::string EmailDomain(absl::string_view addr);

struct MimeAttachment {
  std::string filename;
  std::string content_type;
  std::string content;
};

struct MimeMessage {
  std::string from_name;
  std::string from_address;
  std::string to_name;
  std::string to_address;
  std::string subject;
  std::string text_body;
  std::string html_body;
  // With angle brackets: "<uuid@guestlist>". Also seeds the boundaries.
  std::string message_id;
  absl::Time date;
  // Empty: no List-Unsubscribe headers (e.g. invitations).
  std::string unsubscribe_url;
  std::vector<MimeAttachment> attachments;
};

// Returns the complete message (headers + body) with CRLF line endings.
std::string BuildMime(const MimeMessage& message);

}  // namespace guestlist::notification
