#include "services/notification/domain/mime.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace guestlist::notification {
namespace {

constexpr char kCrlf[] = "\r\n";

bool IsPrintableAscii(absl::string_view text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// Length of the UTF-8 sequence starting with `lead` (1 for stray bytes, so
// malformed input still makes progress).
size_t Utf8SequenceLength(unsigned char lead) {
  if (lead >= 0xf0 && lead <= 0xf7) return 4;
  if (lead >= 0xe0) return 3;
  if (lead >= 0xc0) return 2;
  return 1;
}

// Normalises any line ending to "\n" so callers may pass either style.
std::string NormaliseNewlines(absl::string_view text) {
  return absl::StrReplaceAll(absl::StrReplaceAll(text, {{"\r\n", "\n"}}),
                             {{"\r", "\n"}});
}

// A boundary that cannot occur in base64 or quoted-printable output (it
// contains "=_" which QP always escapes and base64 never produces), nor in
// 7bit text: it embeds the message's random id, which no sender can know
// when choosing the variables.
std::string Boundary(absl::string_view message_id, absl::string_view kind) {
  std::string id;
  for (char c : message_id) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) id.push_back(c);
  }
  return absl::StrCat("=_", kind, "_", id);
}

struct EncodedBody {
  const char* transfer_encoding;
  std::string content;
};

// Plain ASCII with lines of at most 998 characters (RFC 5322) goes as is
// ("7bit"), so links stay greppable in the raw message; anything else is
// quoted-printable.
EncodedBody EncodeBody(absl::string_view text) {
  const std::string normalised = NormaliseNewlines(text);
  bool plain = true;
  size_t line = 0;
  for (unsigned char c : normalised) {
    if (c == '\n') {
      line = 0;
      continue;
    }
    if ((c < 0x20 && c != '\t') || c > 0x7e || ++line > 998) {
      plain = false;
      break;
    }
  }
  if (!plain) return {"quoted-printable", QuotedPrintable(text)};
  return {"7bit", absl::StrReplaceAll(normalised, {{"\n", "\r\n"}})};
}

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string EncodeHeaderText(absl::string_view text) {
  if (IsPrintableAscii(text)) return std::string(text);
  // "=?UTF-8?B?" + "?=" is 12 characters; 45 input bytes -> 60 base64
  // characters keeps each word within 75.
  constexpr size_t kMaxChunk = 45;
  std::vector<std::string> words;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = pos;
    while (end < text.size()) {
      size_t len = Utf8SequenceLength(static_cast<unsigned char>(text[end]));
      if (end + len - pos > kMaxChunk) break;
      end += len;
    }
    if (end == pos) end = std::min(text.size(), pos + kMaxChunk);
    words.push_back(absl::StrCat(
        "=?UTF-8?B?", absl::Base64Escape(text.substr(pos, end - pos)), "?="));
    pos = end;
  }
  return absl::StrJoin(words, "\r\n ");
}

std::string FormatMailbox(absl::string_view name, absl::string_view addr) {
  if (name.empty()) return std::string(addr);
  std::string display;
  if (IsPrintableAscii(name)) {
    display = absl::StrCat(
        "\"", absl::StrReplaceAll(name, {{"\\", "\\\\"}, {"\"", "\\\""}}),
        "\"");
  } else {
    display = EncodeHeaderText(name);
  }
  return absl::StrCat(display, " <", addr, ">");
}

std::string QuotedPrintable(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  const std::string normalised = NormaliseNewlines(text);
  std::string out;
  out.reserve(normalised.size() + normalised.size() / 8);
  bool first = true;
  for (absl::string_view line : absl::StrSplit(normalised, '\n')) {
    if (!first) out += kCrlf;
    first = false;
    size_t column = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(line[i]);
      const bool last = i + 1 == line.size();
      std::string piece;
      const bool literal =
          (c >= 33 && c <= 126 && c != '=' && !(c == '.' && column == 0)) ||
          ((c == ' ' || c == '\t') && !last);
      if (literal) {
        piece.push_back(static_cast<char>(c));
      } else {
        piece = {'=', kHex[c >> 4], kHex[c & 15]};
      }
      // Leave room for the soft break's '='.
      if (column + piece.size() > 75) {
        out += "=\r\n";
        column = 0;
        if (piece == ".") piece = "=2E";
      }
      out += piece;
      column += piece.size();
    }
  }
  return out;
}

std::string Base64Lines(absl::string_view data) {
  const std::string encoded = absl::Base64Escape(data);
  std::string out;
  out.reserve(encoded.size() + encoded.size() / 76 * 2 + 2);
  for (size_t pos = 0; pos < encoded.size(); pos += 76) {
    if (pos > 0) out += kCrlf;
    out.append(encoded, pos, 76);
  }
  return out;
}

std::string Rfc5322Date(absl::Time t) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", t,
                          absl::UTCTimeZone());
}

bool IsValidEmailAddress(absl::string_view addr) {
  if (addr.size() > 254) return false;
  const size_t at = addr.find('@');
  if (at == absl::string_view::npos || at == 0 ||
      addr.find('@', at + 1) != absl::string_view::npos) {
    return false;
  }
  const absl::string_view domain = addr.substr(at + 1);
  if (domain.empty() || domain.find('.') == absl::string_view::npos ||
      domain.front() == '.' || domain.back() == '.') {
    return false;
  }
  for (unsigned char c : addr) {
    if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' ||
        c == ';' || c == '"' || c == '\\' || c == '(' || c == ')') {
      return false;
    }
  }
  return true;
}

std::string EmailDomain(absl::string_view addr) {
  const size_t at = addr.rfind('@');
  if (at == absl::string_view::npos) return "";
  return absl::AsciiStrToLower(addr.substr(at + 1));
}

std::string BuildMime(const MimeMessage& m) {
  std::string out;
  auto header = [&out](absl::string_view name, absl::string_view value) {
    absl::StrAppend(&out, name, ": ", value, kCrlf);
  };
  header("From", FormatMailbox(m.from_name, m.from_address));
  header("To", FormatMailbox(m.to_name, m.to_address));
  header("Subject", EncodeHeaderText(m.subject));
  header("Date", Rfc5322Date(m.date));
  header("Message-ID", m.message_id);
  header("MIME-Version", "1.0");
  header("Auto-Submitted", "auto-generated");
  if (!m.unsubscribe_url.empty()) {
    header("List-Unsubscribe", absl::StrCat("<", m.unsubscribe_url, ">"));
    header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
  }

  const std::string alt = Boundary(m.message_id, "alt");
  std::string alternative;
  const EncodedBody text = EncodeBody(m.text_body);
  const EncodedBody html = EncodeBody(m.html_body);
  absl::StrAppend(&alternative, "--", alt, kCrlf,
                  "Content-Type: text/plain; charset=UTF-8", kCrlf,
                  "Content-Transfer-Encoding: ", text.transfer_encoding, kCrlf,
                  kCrlf, text.content, kCrlf);
  absl::StrAppend(&alternative, "--", alt, kCrlf,
                  "Content-Type: text/html; charset=UTF-8", kCrlf,
                  "Content-Transfer-Encoding: ", html.transfer_encoding, kCrlf,
                  kCrlf, html.content, kCrlf);
  absl::StrAppend(&alternative, "--", alt, "--", kCrlf);
  const std::string alt_type =
      absl::StrCat("multipart/alternative; boundary=\"", alt, "\"");

  if (m.attachments.empty()) {
    header("Content-Type", alt_type);
    absl::StrAppend(&out, kCrlf, alternative);
    return out;
  }
  const std::string mixed = Boundary(m.message_id, "mixed");
  header("Content-Type",
         absl::StrCat("multipart/mixed; boundary=\"", mixed, "\""));
  absl::StrAppend(&out, kCrlf, "--", mixed, kCrlf, "Content-Type: ", alt_type,
                  kCrlf, kCrlf, alternative);
  for (const MimeAttachment& a : m.attachments) {
    // Filenames go through RFC 2047 too: mail clients accept it in
    // parameters and it keeps the header ASCII.
    std::string filename = absl::StrReplaceAll(
        EncodeHeaderText(a.filename), {{"\"", ""}, {"\\", ""}, {"\r\n ", ""}});
    absl::StrAppend(
        &out, "--", mixed, kCrlf, "Content-Type: ",
        a.content_type.empty() ? "application/octet-stream" : a.content_type,
        "; name=\"", filename, "\"", kCrlf,
        "Content-Disposition: attachment; filename=\"", filename, "\"", kCrlf,
        "Content-Transfer-Encoding: base64", kCrlf, kCrlf,
        Base64Lines(a.content), kCrlf);
  }
  absl::StrAppend(&out, "--", mixed, "--", kCrlf);
  return out;
}

}  // namespace guestlist::notification
