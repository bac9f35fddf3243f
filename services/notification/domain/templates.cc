#include "services/notification/domain/templates.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "services/notification/domain/mime.h"

namespace guestlist::notification {
namespace {

// Builds the text and HTML parts side by side so they always say the same.
class Builder final {
 public:
  explicit Builder(const TemplateVariables& vars) : vars_(vars) {}

  std::string Var(const std::string& name) const {
    auto it = vars_.find(name);
    return it == vars_.end() ? "" : it->second;
  }

  void Paragraph(const std::string& text, const std::string& html) {
    absl::StrAppend(&text_, text, "\n\n");
    absl::StrAppend(&html_, "<p>", html, "</p>\n");
  }
  // A paragraph of plain text (escaped for HTML, line breaks kept).
  void Plain(const std::string& text) {
    Paragraph(text, absl::StrReplaceAll(HtmlEscape(text), {{"\n", "<br>\n"}}));
  }
  void Link(const std::string& label, const std::string& url) {
    Paragraph(absl::StrCat(label, ": ", url),
              absl::StrCat("<a href=\"", HtmlEscape(url), "\">",
                           HtmlEscape(label), "</a>"));
  }
  void Heading(const std::string& text) {
    absl::StrAppend(&text_, text, "\n\n");
    absl::StrAppend(&html_, "<h1>", HtmlEscape(text), "</h1>\n");
  }

  RenderedEmail Finish(std::string subject, absl::string_view unsubscribe_url) {
    std::string text = text_;
    std::string body = html_;
    if (!unsubscribe_url.empty()) {
      absl::StrAppend(
          &text, "--\nTo stop receiving these emails: ", unsubscribe_url, "\n");
      absl::StrAppend(&body, "<hr>\n<p style=\"font-size:small\"><a href=\"",
                      HtmlEscape(unsubscribe_url),
                      "\">Unsubscribe</a> from these emails.</p>\n");
    }
    std::string html = absl::StrCat(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>",
        HtmlEscape(subject), "</title></head>\n<body>\n", body,
        "</body></html>\n");
    return RenderedEmail{std::move(subject), std::move(text), std::move(html)};
  }

 private:
  const TemplateVariables& vars_;
  std::string text_;
  std::string html_;
};

absl::Status Require(const TemplateVariables& vars, absl::string_view tmpl,
                     const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    auto it = vars.find(name);
    if (it == vars.end() || it->second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("template ", tmpl, " needs the variable ", name));
    }
  }
  return absl::OkStatus();
}

std::string Greeting(const std::string& first_name) {
  return first_name.empty() ? "Hello,"
                            : absl::StrCat("Hello ", first_name, ",");
}

}  // namespace

bool IsKnownCategory(absl::string_view category) {
  return category == kInvitation || category == kAccessRequest ||
         category == kAccessExpiry || category == kReport;
}

bool IsUnsubscribableCategory(absl::string_view category) {
  return IsKnownCategory(category) && category != kInvitation;
}

absl::StatusOr<RenderedEmail> RenderTemplate(
    absl::string_view template_name, const TemplateVariables& vars,
    absl::string_view unsubscribe_url) {
  Builder b(vars);
  if (template_name == kInvitation) {
    absl::Status s =
        Require(vars, template_name, {"workspace_name", "invitation_url"});
    if (!s.ok()) return s;
    const std::string workspace = b.Var("workspace_name");
    const std::string inviter = b.Var("inviter_name");
    b.Plain(Greeting(b.Var("first_name")));
    b.Plain(inviter.empty() ? absl::StrCat("You are invited to join ",
                                           workspace, " on guestlist.")
                            : absl::StrCat(inviter, " invited you to join ",
                                           workspace, " on guestlist."));
    b.Link("Accept the invitation", b.Var("invitation_url"));
    if (!b.Var("expire_time").empty()) {
      b.Plain(absl::StrCat("The invitation expires on ", b.Var("expire_time"),
                           "."));
    }
    return b.Finish(inviter.empty()
                        ? absl::StrCat("You are invited to ", workspace)
                        : absl::StrCat(inviter, " invited you to ", workspace),
                    unsubscribe_url);
  }
  if (template_name == kAccessRequest) {
    absl::Status s =
        Require(vars, template_name,
                {"requester_email", "workspace_name", "review_url"});
    if (!s.ok()) return s;
    const std::string email = b.Var("requester_email");
    const std::string name = b.Var("requester_name");
    const std::string who =
        name.empty() ? email : absl::StrCat(name, " (", email, ")");
    b.Plain(absl::StrCat(who, " asked for access to ", b.Var("workspace_name"),
                         "."));
    if (!b.Var("message").empty()) {
      b.Plain(absl::StrCat("Their message:\n", b.Var("message")));
    }
    b.Link("Review the request", b.Var("review_url"));
    return b.Finish(
        absl::StrCat("Access request from ", name.empty() ? email : name,
                     " for ", b.Var("workspace_name")),
        unsubscribe_url);
  }
  if (template_name == kAccessExpiry) {
    absl::Status s =
        Require(vars, template_name, {"workspace_name", "expire_time"});
    if (!s.ok()) return s;
    b.Plain(Greeting(b.Var("first_name")));
    b.Plain(absl::StrCat("Your access to ", b.Var("workspace_name"),
                         " expires on ", b.Var("expire_time"), "."));
    b.Plain("Ask an administrator of the workspace if you need it longer.");
    return b.Finish(absl::StrCat("Your access to ", b.Var("workspace_name"),
                                 " expires soon"),
                    unsubscribe_url);
  }
  if (template_name == kReport) {
    absl::Status s = Require(vars, template_name, {"app_name", "title"});
    if (!s.ok()) return s;
    b.Heading(b.Var("title"));
    b.Plain(
        absl::StrCat("A new report from ", b.Var("app_name"), " is attached."));
    return b.Finish(absl::StrCat(b.Var("app_name"), ": ", b.Var("title")),
                    unsubscribe_url);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown template \"", template_name,
                   "\"; use invitation, access_request, access_expiry or "
                   "report"));
}

}  // namespace guestlist::notification
