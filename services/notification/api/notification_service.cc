#include "services/notification/api/notification_service.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/grpc_status.h"
#include "common/server.h"
#include "common/status_macros.h"
#include "services/notification/domain/mime.h"
#include "services/notification/domain/templates.h"
#include "services/notification/domain/unsubscribe_token.h"

namespace guestlist::notification {
namespace {

constexpr size_t kMaxAttachmentBytes = 10 << 20;
constexpr int kMaxBatch = 500;
constexpr int kEnqueueAttempts = 3;
constexpr char kReportsScope[] = "reports.publish";

std::string DeterministicHash(const google::protobuf::Message& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return Sha256Hex(bytes);
}

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t micros = absl::ToUnixMicros(t);
  int64_t seconds = micros / 1000000;
  int64_t rem = micros % 1000000;
  if (rem < 0) {
    rem += 1000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rem * 1000));
}

pb::Message::State ToProtoState(MessageState s) {
  switch (s) {
    case MessageState::kQueued:
      return pb::Message::QUEUED;
    case MessageState::kSent:
      return pb::Message::SENT;
    case MessageState::kFailed:
      return pb::Message::FAILED;
    case MessageState::kSuppressed:
      return pb::Message::SUPPRESSED;
    case MessageState::kDeduplicated:
      return pb::Message::DEDUPLICATED;
  }
  return pb::Message::STATE_UNSPECIFIED;
}

bool HasLineBreak(const std::string& s) {
  return s.find_first_of("\r\n") != std::string::npos;
}

bool IsAdminOf(const Principal& p, const std::string& workspace_id) {
  return p.kind() == identity::v1::ADMIN && !p.workspace_id().empty() &&
         p.workspace_id() == workspace_id;
}

std::string PageToken(const StoredMessage& m) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(absl::ToUnixMicros(m.create_time), "|", m.id));
}

absl::StatusOr<std::pair<absl::Time, std::string>> ParsePageToken(
    const std::string& token) {
  const absl::Status bad = absl::InvalidArgumentError(
      "page_token is not valid; pass next_page_token from the previous page");
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) return bad;
  std::vector<std::string> parts = absl::StrSplit(raw, '|');
  int64_t micros = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &micros) ||
      parts[1].size() != 36) {
    return bad;
  }
  return std::make_pair(absl::FromUnixMicros(micros), parts[1]);
}

bool LooksLikeUuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-'
             : !absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

void ToProto(const StoredMessage& m, pb::Message* out) {
  out->set_id(m.id);
  out->set_workspace_id(m.workspace_id);
  out->set_recipient(m.recipient);
  out->set_category(m.category);
  out->set_template_(m.template_name);
  out->set_state(ToProtoState(m.state));
  out->set_subject(m.subject);
  out->set_message_id_header(m.message_id_header);
  out->set_attempts(m.attempts);
  out->set_last_error(m.last_error);
  SetTime(m.create_time, out->mutable_create_time());
  SetTime(m.update_time, out->mutable_update_time());
  if (m.send_time) SetTime(*m.send_time, out->mutable_send_time());
  out->set_recipient_user_id(m.recipient_user_id);
}

NotificationService::NotificationService(
    MessageStore* store, Authenticator* authenticator, const Clock* clock,
    RandomSource* random,
    std::shared_ptr<identity::v1::IdentityService::StubInterface> identity,
    std::shared_ptr<membership::v1::MembershipService::StubInterface>
        membership,
    ServiceOptions options)
    : store_(store),
      authenticator_(authenticator),
      clock_(clock),
      random_(random),
      identity_(std::move(identity)),
      membership_(std::move(membership)),
      options_(std::move(options)) {}

absl::Status NotificationService::RequireInternal(
    const grpc::ServerContext& context, const char* method) {
  if (!options_.internal_token.empty() &&
      HasInternalCredential(context, options_.internal_token)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat(method,
                   " is only for guestlist services (internal "
                   "service credential)"));
}

std::string NotificationService::UnsubscribeLink(
    const std::string& workspace_id, const std::string& recipient,
    const std::string& category) const {
  if (!IsUnsubscribableCategory(category)) return "";
  return UnsubscribeUrl(
      options_.public_url,
      SignUnsubscribeToken(options_.unsubscribe_secret,
                           {workspace_id, recipient, category}));
}

absl::StatusOr<NewMessage> NotificationService::BuildMessage(
    const pb::SendEmailRequest& r, size_t index) {
  const std::string where =
      index == SIZE_MAX ? "" : absl::StrCat("messages[", index, "]: ");
  auto invalid = [&where](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(where, what));
  };
  if (!IsValidEmailAddress(r.to())) {
    return invalid(
        absl::StrCat("to \"", r.to(), "\" is not a valid email address"));
  }
  if (HasLineBreak(r.to_name()) || r.to_name().size() > 200) {
    return invalid("to_name must be one line of at most 200 characters");
  }
  const std::string category =
      r.category().empty() ? r.template_() : r.category();
  if (!IsKnownCategory(category)) {
    return invalid(absl::StrCat(
        "unknown category \"", category,
        "\"; use invitation, access_request, access_expiry or report"));
  }
  size_t attachment_bytes = 0;
  for (const pb::Attachment& a : r.attachments()) {
    attachment_bytes += a.content().size();
    if (a.filename().empty() || HasLineBreak(a.filename()) ||
        HasLineBreak(a.content_type())) {
      return invalid("every attachment needs a one-line filename");
    }
  }
  if (attachment_bytes > kMaxAttachmentBytes) {
    return invalid("attachments exceed 10 MiB in total");
  }
  if (r.dedupe_window().seconds() < 0) {
    return invalid("dedupe_window must not be negative");
  }
  NewMessage m;
  m.id = NewUuid(*random_);
  m.workspace_id = r.workspace_id();
  m.recipient = r.to();
  m.recipient_name = r.to_name();
  m.recipient_user_id = r.recipient_user_id();
  m.category = category;
  m.template_name = r.template_();
  m.message_id_header = absl::StrCat("<", m.id, "@guestlist>");
  m.unsubscribe_url = UnsubscribeLink(m.workspace_id, m.recipient, category);
  TemplateVariables vars(r.variables().begin(), r.variables().end());
  absl::StatusOr<RenderedEmail> email =
      RenderTemplate(r.template_(), vars, m.unsubscribe_url);
  if (!email.ok()) return invalid(std::string(email.status().message()));
  m.subject = email->subject;
  m.text_body = email->text;
  m.html_body = email->html;
  m.idempotency_key = r.idempotency_key();
  m.request_hash = DeterministicHash(r);
  m.dedupe_key = r.dedupe_key();
  m.dedupe_window = absl::Seconds(r.dedupe_window().seconds()) +
                    absl::Nanoseconds(r.dedupe_window().nanos());
  if (!m.dedupe_key.empty() && m.dedupe_window <= absl::ZeroDuration()) {
    // A key without a window would dedupe nothing; a day is what the
    // access-request emails use.
    m.dedupe_window = absl::Hours(24);
  }
  return m;
}

absl::StatusOr<std::vector<StoredMessage>> NotificationService::Queue(
    const std::vector<NewMessage>& messages,
    const std::vector<NewAttachment>& attachments) {
  absl::StatusOr<std::vector<StoredMessage>> stored;
  for (int attempt = 0; attempt < kEnqueueAttempts; ++attempt) {
    stored = store_->Enqueue(messages, attachments, clock_->Now());
    if (stored.status().code() != absl::StatusCode::kAborted) break;
  }
  if (stored.ok() && options_.on_queued) options_.on_queued();
  return stored;
}

grpc::Status NotificationService::SendEmail(grpc::ServerContext* context,
                                            const pb::SendEmailRequest* request,
                                            pb::Message* response) {
  RequestScope scope(context, "SendEmail");
  if (absl::Status s = RequireInternal(*context, "SendEmail"); !s.ok()) {
    return scope.Done(s);
  }
  absl::StatusOr<NewMessage> m = BuildMessage(*request, SIZE_MAX);
  if (!m.ok()) return scope.Done(m.status());
  std::vector<NewAttachment> attachments;
  for (const pb::Attachment& a : request->attachments()) {
    NewAttachment na{NewUuid(*random_),
                     {a.filename(), a.content_type(), a.content()}};
    m->attachment_ids.push_back(na.id);
    attachments.push_back(std::move(na));
  }
  absl::StatusOr<std::vector<StoredMessage>> stored = Queue({*m}, attachments);
  if (!stored.ok()) return scope.Done(stored.status());
  ToProto(stored->front(), response);
  return scope.Done(grpc::Status::OK);
}

grpc::Status NotificationService::BatchSendEmail(
    grpc::ServerContext* context, const pb::BatchSendEmailRequest* request,
    pb::BatchSendEmailResponse* response) {
  RequestScope scope(context, "BatchSendEmail");
  if (absl::Status s = RequireInternal(*context, "BatchSendEmail"); !s.ok()) {
    return scope.Done(s);
  }
  if (request->messages_size() > kMaxBatch) {
    return scope.Done(absl::InvalidArgumentError(
        "BatchSendEmail takes at most 500 messages; split the batch"));
  }
  std::vector<NewMessage> messages;
  std::vector<NewAttachment> attachments;
  for (int i = 0; i < request->messages_size(); ++i) {
    const pb::SendEmailRequest& r = request->messages(i);
    absl::StatusOr<NewMessage> m = BuildMessage(r, i);
    if (!m.ok()) return scope.Done(m.status());
    for (const pb::Attachment& a : r.attachments()) {
      NewAttachment na{NewUuid(*random_),
                       {a.filename(), a.content_type(), a.content()}};
      m->attachment_ids.push_back(na.id);
      attachments.push_back(std::move(na));
    }
    messages.push_back(*std::move(m));
  }
  absl::StatusOr<std::vector<StoredMessage>> stored =
      Queue(messages, attachments);
  if (!stored.ok()) return scope.Done(stored.status());
  for (const StoredMessage& s : *stored) ToProto(s, response->add_messages());
  return scope.Done(grpc::Status::OK);
}

grpc::Status NotificationService::GetMessage(
    grpc::ServerContext* context, const pb::GetMessageRequest* request,
    pb::Message* response) {
  RequestScope scope(context, "GetMessage");
  absl::StatusOr<Principal> caller = authenticator_->Authenticate(*context);
  if (!caller.ok()) return scope.Done(caller.status());
  if (!LooksLikeUuid(request->message_id())) {
    return scope.Done(absl::NotFoundError(
        absl::StrCat("message ", request->message_id(), " not found")));
  }
  absl::StatusOr<StoredMessage> m = store_->Get(request->message_id());
  if (!m.ok()) return scope.Done(m.status());
  const bool allowed = caller->is_operator() || caller->is_internal() ||
                       IsAdminOf(*caller, m->workspace_id);
  if (!allowed) {
    if (caller->kind() != identity::v1::ADMIN) {
      return scope.Done(absl::PermissionDeniedError(
          "only admins of the workspace may read its messages"));
    }
    // Another workspace's admin: do not reveal that the message exists.
    return scope.Done(absl::NotFoundError(
        absl::StrCat("message ", request->message_id(), " not found")));
  }
  ToProto(*m, response);
  return scope.Done(grpc::Status::OK);
}

grpc::Status NotificationService::ListMessages(
    grpc::ServerContext* context, const pb::ListMessagesRequest* request,
    pb::ListMessagesResponse* response) {
  RequestScope scope(context, "ListMessages");
  absl::StatusOr<Principal> caller = authenticator_->Authenticate(*context);
  if (!caller.ok()) return scope.Done(caller.status());
  if (request->workspace_id().empty()) {
    return scope.Done(absl::InvalidArgumentError("workspace_id is required"));
  }
  if (!caller->is_operator() && !caller->is_internal() &&
      !IsAdminOf(*caller, request->workspace_id())) {
    return scope.Done(absl::PermissionDeniedError(
        "only admins of the workspace may list its messages"));
  }
  if (request->page_size() < 0) {
    return scope.Done(
        absl::InvalidArgumentError("page_size must not be negative"));
  }
  ListFilter filter;
  filter.workspace_id = request->workspace_id();
  filter.recipient = request->recipient();
  filter.category = request->category();
  if (request->state() != pb::Message::STATE_UNSPECIFIED) {
    filter.state = ParseMessageState(pb::Message::State_Name(request->state()));
  }
  filter.page_size =
      request->page_size() == 0 ? 50 : std::min(request->page_size(), 1000);
  if (!request->page_token().empty()) {
    absl::StatusOr<std::pair<absl::Time, std::string>> after =
        ParsePageToken(request->page_token());
    if (!after.ok()) return scope.Done(after.status());
    filter.after = *after;
  }
  // One extra row tells whether there is a next page.
  const int page_size = filter.page_size;
  filter.page_size = page_size + 1;
  absl::StatusOr<std::vector<StoredMessage>> rows = store_->List(filter);
  if (!rows.ok()) return scope.Done(rows.status());
  const bool more = static_cast<int>(rows->size()) > page_size;
  if (more) rows->resize(page_size);
  for (const StoredMessage& m : *rows) ToProto(m, response->add_messages());
  if (more) response->set_next_page_token(PageToken(rows->back()));
  return scope.Done(grpc::Status::OK);
}

grpc::Status NotificationService::Unsubscribe(
    grpc::ServerContext* context, const pb::UnsubscribeRequest* request,
    pb::UnsubscribeResponse* response) {
  RequestScope scope(context, "Unsubscribe");
  absl::StatusOr<UnsubscribeTarget> target =
      VerifyUnsubscribeToken(options_.unsubscribe_secret, request->token());
  if (!target.ok()) return scope.Done(target.status());
  if (!IsUnsubscribableCategory(target->category)) {
    return scope.Done(absl::InvalidArgumentError(
        absl::StrCat("cannot unsubscribe from ", target->category)));
  }
  absl::Status s = store_->Unsubscribe(target->workspace_id, target->recipient,
                                       target->category, clock_->Now());
  if (!s.ok()) return scope.Done(s);
  response->set_recipient(target->recipient);
  response->set_category(target->category);
  return scope.Done(grpc::Status::OK);
}

absl::StatusOr<identity::v1::User> NotificationService::PreferencesUser(
    const grpc::ServerContext& context, const std::string& user_id) {
  ASSIGN_OR_RETURN(Principal caller, authenticator_->Authenticate(context));
  if (user_id.empty()) {
    return absl::InvalidArgumentError("user_id is required");
  }
  const bool self = !caller.user_id().empty() && caller.user_id() == user_id;
  const bool admin = caller.kind() == identity::v1::ADMIN;
  if (!self && !admin) {
    return absl::PermissionDeniedError(
        "only the user or an admin of its workspace may manage its "
        "notification preferences");
  }
  identity::v1::BatchGetUsersRequest req;
  req.set_workspace_id(caller.workspace_id());
  req.add_user_ids(user_id);
  identity::v1::BatchGetUsersResponse resp;
  grpc::ClientContext ctx;
  AttachInternalCredential(&ctx, options_.internal_token,
                           options_.peer_timeout);
  grpc::Status st = identity_->BatchGetUsers(&ctx, req, &resp);
  if (!st.ok()) {
    absl::Status s = FromGrpcStatus(st);
    if (s.code() == absl::StatusCode::kInvalidArgument ||
        s.code() == absl::StatusCode::kPermissionDenied) {
      return absl::InternalError(
          absl::StrCat("identity.BatchGetUsers: ", s.message()));
    }
    return s;
  }
  for (const identity::v1::User& u : resp.users()) {
    if (u.id() == user_id) return u;
  }
  return absl::NotFoundError(absl::StrCat("user ", user_id, " not found"));
}

absl::StatusOr<pb::NotificationPreferences>
NotificationService::LoadPreferences(const identity::v1::User& user) {
  pb::NotificationPreferences prefs;
  prefs.set_user_id(user.id());
  prefs.set_email(user.email());
  if (user.email().empty()) return prefs;
  ASSIGN_OR_RETURN(
      std::vector<std::string> categories,
      store_->UnsubscribedCategories(user.workspace_id(), user.email()));
  for (const std::string& c : categories) prefs.add_unsubscribed_categories(c);
  return prefs;
}

grpc::Status NotificationService::GetPreferences(
    grpc::ServerContext* context, const pb::GetPreferencesRequest* request,
    pb::NotificationPreferences* response) {
  RequestScope scope(context, "GetPreferences");
  absl::StatusOr<identity::v1::User> user =
      PreferencesUser(*context, request->user_id());
  if (!user.ok()) return scope.Done(user.status());
  absl::StatusOr<pb::NotificationPreferences> prefs = LoadPreferences(*user);
  if (!prefs.ok()) return scope.Done(prefs.status());
  *response = *std::move(prefs);
  return scope.Done(grpc::Status::OK);
}

grpc::Status NotificationService::UpdatePreferences(
    grpc::ServerContext* context, const pb::UpdatePreferencesRequest* request,
    pb::NotificationPreferences* response) {
  RequestScope scope(context, "UpdatePreferences");
  for (const std::string& path : request->update_mask().paths()) {
    if (path != "unsubscribed_categories" && path != "unsubscribedCategories") {
      return scope.Done(absl::InvalidArgumentError(
          absl::StrCat("update_mask path \"", path,
                       "\" is not updatable; use unsubscribed_categories")));
    }
  }
  std::set<std::string> categories;
  for (const std::string& c :
       request->preferences().unsubscribed_categories()) {
    if (c == kInvitation) {
      return scope.Done(absl::InvalidArgumentError(
          "invitations cannot be unsubscribed from"));
    }
    if (!IsUnsubscribableCategory(c)) {
      return scope.Done(absl::InvalidArgumentError(
          absl::StrCat("unknown category \"", c,
                       "\"; use access_request, access_expiry or report")));
    }
    categories.insert(c);
  }
  absl::StatusOr<identity::v1::User> user =
      PreferencesUser(*context, request->user_id());
  if (!user.ok()) return scope.Done(user.status());
  if (user->email().empty()) {
    return scope.Done(absl::FailedPreconditionError(
        "the user has no email address, so it receives no email"));
  }
  absl::Status s = store_->SetUnsubscribedCategories(
      user->workspace_id(), user->email(),
      std::vector<std::string>(categories.begin(), categories.end()),
      clock_->Now());
  if (!s.ok()) return scope.Done(s);
  absl::StatusOr<pb::NotificationPreferences> prefs = LoadPreferences(*user);
  if (!prefs.ok()) return scope.Done(prefs.status());
  *response = *std::move(prefs);
  return scope.Done(grpc::Status::OK);
}

grpc::Status NotificationService::PublishReport(
    grpc::ServerContext* context, const pb::PublishReportRequest* request,
    pb::PublishReportResponse* response) {
  RequestScope scope(context, "PublishReport");
  absl::StatusOr<Principal> caller = authenticator_->Authenticate(*context);
  if (!caller.ok()) return scope.Done(caller.status());
  if (request->app_id().empty()) {
    return scope.Done(absl::InvalidArgumentError("app_id is required"));
  }
  if (request->title().empty() || HasLineBreak(request->title()) ||
      request->filename().empty() || HasLineBreak(request->filename())) {
    return scope.Done(absl::InvalidArgumentError(
        "title and filename are required (one line each)"));
  }
  if (request->content().empty()) {
    return scope.Done(
        absl::InvalidArgumentError("content (the PDF) is required"));
  }
  if (request->content().size() > kMaxAttachmentBytes) {
    return scope.Done(
        absl::InvalidArgumentError("content is above the 10 MiB limit"));
  }
  if (!absl::StartsWith(request->content(), "%PDF-")) {
    return scope.Done(absl::InvalidArgumentError(
        "content is not a PDF (it must start with %PDF-)"));
  }
  const std::string request_hash = DeterministicHash(*request);
  auto respond = [&](const Report& r) {
    response->set_recipients(r.recipients);
    response->set_suppressed(r.suppressed);
    response->set_report_id(r.id);
  };

  // Recipients (and the app's workspace, which decides who may publish).
  std::vector<membership::v1::DirectoryUser> users;
  std::string workspace_id;
  std::string app_name;
  std::string page_token;
  do {
    membership::v1::ListAppRecipientsRequest req;
    req.set_app_id(request->app_id());
    req.set_page_size(1000);
    req.set_page_token(page_token);
    membership::v1::ListAppRecipientsResponse resp;
    grpc::ClientContext ctx;
    AttachInternalCredential(&ctx, options_.internal_token,
                             options_.peer_timeout);
    grpc::Status st = membership_->ListAppRecipients(&ctx, req, &resp);
    if (!st.ok()) return scope.Done(FromGrpcStatus(st));
    if (workspace_id.empty()) {
      workspace_id = resp.workspace_id();
      app_name = resp.app_name().empty() ? resp.app_slug() : resp.app_name();
      const bool allowed =
          caller->is_internal() || IsAdminOf(*caller, workspace_id) ||
          (!caller->api_key_id().empty() &&
           caller->workspace_id() == workspace_id &&
           std::find(caller->scopes().begin(), caller->scopes().end(),
                     kReportsScope) != caller->scopes().end());
      if (!allowed) {
        return scope.Done(absl::PermissionDeniedError(
            "only admins of the app's workspace or API keys with the "
            "reports.publish scope may publish reports"));
      }
      if (!request->idempotency_key().empty()) {
        absl::StatusOr<std::optional<Report>> existing =
            store_->FindReport(request->app_id(), request->idempotency_key());
        if (!existing.ok()) return scope.Done(existing.status());
        if (existing->has_value()) {
          if ((*existing)->request_hash != request_hash) {
            return scope.Done(absl::InvalidArgumentError(
                "idempotency_key was already used with a different report; "
                "use a new key"));
          }
          respond(**existing);
          return scope.Done(grpc::Status::OK);
        }
      }
    }
    for (const membership::v1::DirectoryUser& u : resp.users()) {
      users.push_back(u);
    }
    page_token = resp.next_page_token();
  } while (!page_token.empty());

  Report report;
  report.id = NewUuid(*random_);
  report.app_id = request->app_id();
  report.workspace_id = workspace_id;
  report.idempotency_key = request->idempotency_key();
  report.request_hash = request_hash;
  report.title = request->title();
  report.filename = request->filename();
  NewAttachment attachment{
      NewUuid(*random_),
      {request->filename(), "application/pdf", request->content()}};
  std::vector<NewMessage> messages;
  std::set<std::string> seen;
  for (const membership::v1::DirectoryUser& u : users) {
    if (u.status() != membership::v1::DirectoryUser::ACTIVE ||
        !IsValidEmailAddress(u.email()) ||
        !seen.insert(absl::AsciiStrToLower(u.email())).second) {
      continue;
    }
    NewMessage m;
    m.id = NewUuid(*random_);
    m.workspace_id = workspace_id;
    m.recipient = u.email();
    std::string name =
        absl::StrCat(u.first_name(),
                     u.first_name().empty() || u.last_name().empty() ? "" : " ",
                     u.last_name());
    m.recipient_name = HasLineBreak(name) ? "" : name;
    m.recipient_user_id = u.id();
    m.category = kReport;
    m.template_name = kReport;
    m.message_id_header = absl::StrCat("<", m.id, "@guestlist>");
    m.unsubscribe_url = UnsubscribeLink(workspace_id, m.recipient, kReport);
    absl::StatusOr<RenderedEmail> email = RenderTemplate(
        kReport, {{"app_name", app_name}, {"title", request->title()}},
        m.unsubscribe_url);
    if (!email.ok()) return scope.Done(email.status());
    m.subject = email->subject;
    m.text_body = email->text;
    m.html_body = email->html;
    m.report_id = report.id;
    m.attachment_ids = {attachment.id};
    messages.push_back(std::move(m));
  }
  absl::StatusOr<Report> stored =
      store_->EnqueueReport(report, attachment, messages, clock_->Now());
  if (stored.status().code() == absl::StatusCode::kAlreadyExists &&
      !request->idempotency_key().empty()) {
    // A concurrent call with the same key won; answer as it did.
    absl::StatusOr<std::optional<Report>> existing =
        store_->FindReport(request->app_id(), request->idempotency_key());
    if (existing.ok() && existing->has_value()) {
      respond(**existing);
      return scope.Done(grpc::Status::OK);
    }
  }
  if (!stored.ok()) return scope.Done(stored.status());
  if (options_.on_queued) options_.on_queued();
  respond(*stored);
  return scope.Done(grpc::Status::OK);
}

}  // namespace guestlist::notification
