// Unit tests of the pure email domain: MIME assembly, header encoding,
// quoted-printable, templates and unsubscribe token signing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "services/notification/domain/mime.h"
#include "services/notification/domain/templates.h"
#include "services/notification/domain/unsubscribe_token.h"

namespace guestlist::notification {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(HtmlEscapeTest, EscapesMarkup) {
  EXPECT_EQ(HtmlEscape("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
}

TEST(EncodeHeaderTextTest, AsciiUnchanged) {
  EXPECT_EQ(EncodeHeaderText("Hello world"), "Hello world");
}

TEST(EncodeHeaderTextTest, NonAsciiBecomesEncodedWords) {
  EXPECT_EQ(EncodeHeaderText("Grüße"), "=?UTF-8?B?R3LDvMOfZQ==?=");
}

TEST(EncodeHeaderTextTest, LongTextSplitsOnCharacterBoundaries) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "é";  // 80 bytes
  const std::string encoded = EncodeHeaderText(text);
  std::vector<std::string> words = absl::StrSplit(encoded, "\r\n ");
  ASSERT_EQ(words.size(), 2u);
  std::string decoded;
  for (const std::string& w : words) {
    EXPECT_LE(w.size(), 75u);
    ASSERT_TRUE(absl::StartsWith(w, "=?UTF-8?B?"));
    std::string part;
    ASSERT_TRUE(absl::Base64Unescape(w.substr(10, w.size() - 12), &part));
    EXPECT_EQ(part.size() % 2, 0u) << "split inside a UTF-8 sequence";
    decoded += part;
  }
  EXPECT_EQ(decoded, text);
}

TEST(FormatMailboxTest, QuotesAndEncodes) {
  EXPECT_EQ(FormatMailbox("", "a@b.io"), "a@b.io");
  EXPECT_EQ(FormatMailbox("Doe, \"J\"", "a@b.io"),
            "\"Doe, \\\"J\\\"\" <a@b.io>");
  EXPECT_EQ(FormatMailbox("Zoë", "a@b.io"), "=?UTF-8?B?Wm/Dqw==?= <a@b.io>");
}

TEST(QuotedPrintableTest, EncodesSpecialsAndWrapsLines) {
  EXPECT_EQ(QuotedPrintable("a=b\n.dot\nend "), "a=3Db\r\n=2Edot\r\nend=20");
  EXPECT_EQ(QuotedPrintable("é"), "=C3=A9");
  const std::string long_line(200, 'x');
  const std::string qp = QuotedPrintable(long_line);
  for (absl::string_view line : absl::StrSplit(qp, "\r\n")) {
    EXPECT_LE(line.size(), 76u);
  }
  EXPECT_EQ(absl::StrReplaceAll(qp, {{"=\r\n", ""}}), long_line);
}

TEST(EmailAddressTest, Validates) {
  EXPECT_TRUE(IsValidEmailAddress("guest@example.com"));
  EXPECT_FALSE(IsValidEmailAddress("guest@localhost"));
  EXPECT_FALSE(IsValidEmailAddress("a b@example.com"));
  EXPECT_FALSE(IsValidEmailAddress("<a@example.com>"));
  EXPECT_FALSE(IsValidEmailAddress("a@@example.com"));
  EXPECT_FALSE(IsValidEmailAddress("a@example.com\r\nBcc: x@y.z"));
  EXPECT_EQ(EmailDomain("A@Example.COM"), "example.com");
}

TEST(Rfc5322DateTest, Formats) {
  EXPECT_EQ(Rfc5322Date(absl::FromUnixSeconds(1795381121)),
            "Sun, 22 Nov 2026 20:58:41 +0000");
}

MimeMessage SampleMessage() {
  MimeMessage m;
  m.from_name = "guestlist";
  m.from_address = "no-reply@guestlist.test";
  m.to_name = "Zoë Müller";
  m.to_address = "zoe@example.com";
  m.subject = "Bericht für Zoë";
  m.text_body = "Hello\n";
  m.html_body = "<p>Hello</p>\n";
  m.message_id = "<1b4e28ba-2fa1-11d2-883f-0016d3cca427@guestlist>";
  m.date = absl::FromUnixSeconds(1795381121);
  m.unsubscribe_url = "https://gl.test/v1/unsubscribe?token=abc.def";
  return m;
}

TEST(BuildMimeTest, AlternativeWithHeaders) {
  const std::string mime = BuildMime(SampleMessage());
  EXPECT_THAT(mime,
              HasSubstr("From: \"guestlist\" <no-reply@guestlist.test>\r\n"));
  EXPECT_THAT(
      mime,
      HasSubstr("To: =?UTF-8?B?Wm/DqyBNw7xsbGVy?= <zoe@example.com>\r\n"));
  EXPECT_THAT(mime,
              HasSubstr("Subject: =?UTF-8?B?QmVyaWNodCBmw7xyIFpvw6s=?=\r\n"));
  EXPECT_THAT(mime, HasSubstr("Date: Sun, 22 Nov 2026 20:58:41 +0000\r\n"));
  EXPECT_THAT(
      mime,
      HasSubstr(
          "Message-ID: <1b4e28ba-2fa1-11d2-883f-0016d3cca427@guestlist>\r\n"));
  EXPECT_THAT(mime, HasSubstr("MIME-Version: 1.0\r\n"));
  EXPECT_THAT(mime,
              HasSubstr("List-Unsubscribe: "
                        "<https://gl.test/v1/unsubscribe?token=abc.def>\r\n"));
  EXPECT_THAT(
      mime, HasSubstr("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
  EXPECT_THAT(mime,
              HasSubstr("Content-Type: multipart/alternative; boundary="));
  EXPECT_THAT(mime, HasSubstr("Content-Type: text/plain; charset=UTF-8\r\n"));
  EXPECT_THAT(mime, HasSubstr("Content-Type: text/html; charset=UTF-8\r\n"));
  EXPECT_THAT(mime, Not(HasSubstr("multipart/mixed")));
  // No bare LF anywhere.
  for (size_t i = 0; i < mime.size(); ++i) {
    if (mime[i] == '\n') {
      ASSERT_TRUE(i > 0 && mime[i - 1] == '\r') << i;
    }
  }
  // Deterministic: a re-send is byte-identical.
  EXPECT_EQ(mime, BuildMime(SampleMessage()));
}

TEST(BuildMimeTest, AsciiBodiesStayReadableInTheRawMessage) {
  MimeMessage m = SampleMessage();
  const std::string url =
      "https://guestlist.example.com/invite#token=gli_"
      "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdEfGh";
  m.text_body = "Accept the invitation: " + url + "\n";
  m.html_body = "<p><a href=\"" + url + "\">Accept</a></p>\n";
  const std::string mime = BuildMime(m);
  EXPECT_THAT(mime, HasSubstr("Content-Transfer-Encoding: 7bit\r\n\r\n"
                              "Accept the invitation: " +
                              url + "\r\n"));
  EXPECT_THAT(mime, HasSubstr("<a href=\"" + url + "\">"));
  EXPECT_THAT(mime, Not(HasSubstr("quoted-printable")));
}

TEST(BuildMimeTest, NonAsciiBodiesAreQuotedPrintable) {
  MimeMessage m = SampleMessage();
  m.text_body = "Grüße\n";
  const std::string mime = BuildMime(m);
  EXPECT_THAT(mime, HasSubstr("Content-Transfer-Encoding: quoted-printable"
                              "\r\n\r\nGr=C3=BC=C3=9Fe\r\n"));
  m.text_body = std::string(1200, 'a');  // longer than RFC 5322 allows
  EXPECT_THAT(BuildMime(m),
              HasSubstr("Content-Transfer-Encoding: quoted-printable"));
}

TEST(BuildMimeTest, NoUnsubscribeHeadersWithoutUrl) {
  MimeMessage m = SampleMessage();
  m.unsubscribe_url.clear();
  EXPECT_THAT(BuildMime(m), Not(HasSubstr("List-Unsubscribe")));
}

TEST(BuildMimeTest, MixedWithBase64Attachment) {
  MimeMessage m = SampleMessage();
  const std::string pdf = "%PDF-1.4\n" + std::string(100, '\x01');
  m.attachments.push_back({"report.pdf", "application/pdf", pdf});
  const std::string mime = BuildMime(m);
  EXPECT_THAT(mime, HasSubstr("Content-Type: multipart/mixed; boundary="));
  EXPECT_THAT(
      mime,
      HasSubstr("Content-Type: application/pdf; name=\"report.pdf\"\r\n"
                "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n"));
  const size_t start = mime.find("base64\r\n\r\n") + 10;
  const size_t end = mime.find("\r\n--", start);
  std::string b64 =
      absl::StrReplaceAll(mime.substr(start, end - start), {{"\r\n", ""}});
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(b64, &decoded));
  EXPECT_EQ(decoded, pdf);
}

TEST(TemplatesTest, InvitationEscapesHtmlAndHasNoUnsubscribe) {
  auto email =
      RenderTemplate(kInvitation,
                     {{"workspace_name", "Acme <Corp>"},
                      {"inviter_name", "Ann"},
                      {"invitation_url", "https://gl.test/invite#token=gli_x"},
                      {"first_name", "Bob"},
                      {"expire_time", "2026-12-01"}},
                     "");
  ASSERT_TRUE(email.ok()) << email.status();
  EXPECT_EQ(email->subject, "Ann invited you to Acme <Corp>");
  EXPECT_THAT(email->text, HasSubstr("Hello Bob,"));
  EXPECT_THAT(email->text, HasSubstr("https://gl.test/invite#token=gli_x"));
  EXPECT_THAT(email->html, HasSubstr("Acme &lt;Corp&gt;"));
  EXPECT_THAT(email->html, Not(HasSubstr("<Corp>")));
  EXPECT_THAT(email->text, Not(HasSubstr("unsubscribe")));
}

TEST(TemplatesTest, MissingVariableIsInvalidArgument) {
  auto email = RenderTemplate(kAccessRequest, {{"workspace_name", "Acme"}}, "");
  EXPECT_EQ(email.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(email.status().message()),
              HasSubstr("requester_email"));
  EXPECT_EQ(RenderTemplate("nope", {}, "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TemplatesTest, EveryTemplateRendersWithUnsubscribeLink) {
  const std::string url = "https://gl.test/v1/unsubscribe?token=t";
  auto request = RenderTemplate(kAccessRequest,
                                {{"requester_email", "r@x.io"},
                                 {"requester_name", "Rita"},
                                 {"message", "please"},
                                 {"workspace_name", "Acme"},
                                 {"review_url", "https://gl.test/review"}},
                                url);
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->subject, "Access request from Rita for Acme");
  EXPECT_THAT(request->text, HasSubstr(url));
  auto expiry = RenderTemplate(
      kAccessExpiry, {{"workspace_name", "Acme"}, {"expire_time", "soon"}},
      url);
  ASSERT_TRUE(expiry.ok());
  EXPECT_THAT(expiry->html, HasSubstr("Unsubscribe"));
  auto report =
      RenderTemplate(kReport, {{"app_name", "Sales"}, {"title", "May"}}, url);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->subject, "Sales: May");
}

TEST(CategoriesTest, InvitationsCannotBeLeft) {
  EXPECT_FALSE(IsUnsubscribableCategory(kInvitation));
  EXPECT_TRUE(IsUnsubscribableCategory(kReport));
  EXPECT_FALSE(IsUnsubscribableCategory("spam"));
}

TEST(UnsubscribeTokenTest, RoundTripAndTamper) {
  const std::string token =
      SignUnsubscribeToken("secret", {"ws1", "Guest@Example.com", "report"});
  auto target = VerifyUnsubscribeToken("secret", token);
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(target->workspace_id, "ws1");
  EXPECT_EQ(target->recipient, "guest@example.com");
  EXPECT_EQ(target->category, "report");

  EXPECT_EQ(VerifyUnsubscribeToken("other", token).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string tampered = token;
  tampered[3] = tampered[3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(VerifyUnsubscribeToken("secret", tampered).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyUnsubscribeToken("secret", "garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
  for (char c : token) {
    EXPECT_TRUE(absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                c == '-' || c == '_' || c == '.')
        << token;
  }
}

TEST(UnsubscribeTokenTest, Url) {
  EXPECT_EQ(UnsubscribeUrl("http://h:8080/", "t.s"),
            "http://h:8080/v1/unsubscribe?token=t.s");
}

}  // namespace
}  // namespace guestlist::notification
