#include "services/notification/delivery/mail_sender.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace guestlist::notification {
namespace {

class SmtpSender final : public MailSender {
 public:
  explicit SmtpSender(SmtpOptions options)
      : options_(std::move(options)), curl_(curl_easy_init()) {}
  ~SmtpSender() override {
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
  }

  SendOutcome Send(const Envelope& envelope, const std::string& mime,
                   const std::function<void()>& before_commit) override {
    if (curl_ == nullptr) {
      return {SendOutcome::Kind::kTransient, "curl_easy_init failed", false};
    }
    Upload upload{&mime, 0, &before_commit, false};
    last_reply_.clear();
    // The same handle keeps its connection open between messages.
    curl_easy_setopt(curl_, CURLOPT_URL, options_.url.c_str());
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(
        curl_, CURLOPT_CONNECTTIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
    curl_easy_setopt(
        curl_, CURLOPT_TIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
    if (options_.starttls) {
      curl_easy_setopt(curl_, CURLOPT_USE_SSL,
                       static_cast<long>(CURLUSESSL_ALL));
    }
    if (!options_.ca_file.empty()) {
      curl_easy_setopt(curl_, CURLOPT_CAINFO, options_.ca_file.c_str());
    }
    if (!options_.username.empty()) {
      curl_easy_setopt(curl_, CURLOPT_USERNAME, options_.username.c_str());
      curl_easy_setopt(curl_, CURLOPT_PASSWORD, options_.password.c_str());
    }
    const std::string from = absl::StrCat("<", envelope.from, ">");
    const std::string to = absl::StrCat("<", envelope.to, ">");
    curl_slist* rcpt = curl_slist_append(nullptr, to.c_str());
    curl_easy_setopt(curl_, CURLOPT_MAIL_FROM, from.c_str());
    curl_easy_setopt(curl_, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(curl_, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl_, CURLOPT_READFUNCTION, &SmtpSender::Read);
    curl_easy_setopt(curl_, CURLOPT_READDATA, &upload);
    curl_easy_setopt(curl_, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(mime.size()));
    // Server replies arrive as "header in" debug lines; the last one is
    // what we keep in last_error.
    curl_easy_setopt(curl_, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(curl_, CURLOPT_DEBUGFUNCTION, &SmtpSender::Debug);
    curl_easy_setopt(curl_, CURLOPT_DEBUGDATA, this);
    error_buffer_[0] = '\0';
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, error_buffer_);

    const CURLcode rc = curl_easy_perform(curl_);
    curl_easy_setopt(curl_, CURLOPT_MAIL_RCPT, nullptr);
    curl_slist_free_all(rcpt);
    if (rc == CURLE_OK) return {SendOutcome::Kind::kSent, "", true};

    long code = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &code);
    std::string detail = error_buffer_[0] != '\0' ? std::string(error_buffer_)
                                                  : curl_easy_strerror(rc);
    std::string reply = last_reply_;
    if (code >= 400 && code < 600) {
      std::string error =
          reply.empty() ? absl::StrCat(code, " ", detail) : reply;
      // A rejected login is a configuration problem, not the message's.
      if (code >= 500 && rc != CURLE_LOGIN_DENIED) {
        return {SendOutcome::Kind::kPermanent, error, true};
      }
      return {SendOutcome::Kind::kTransient, error, true};
    }
    const bool reached = rc != CURLE_COULDNT_CONNECT &&
                         rc != CURLE_COULDNT_RESOLVE_HOST &&
                         rc != CURLE_OPERATION_TIMEDOUT;
    return {SendOutcome::Kind::kTransient,
            absl::StrCat("smtp: ", detail,
                         reply.empty() ? "" : absl::StrCat(" (", reply, ")")),
            reached};
  }

 private:
  struct Upload {
    const std::string* data;
    size_t offset;
    const std::function<void()>* before_commit;
    bool committed;
  };

  static size_t Read(char* buffer, size_t size, size_t nitems, void* user) {
    auto* u = static_cast<Upload*>(user);
    const size_t left = u->data->size() - u->offset;
    if (left == 0) {
      if (!u->committed) {
        u->committed = true;
        if (*u->before_commit) (*u->before_commit)();
      }
      return 0;
    }
    const size_t n = std::min(left, size * nitems);
    std::memcpy(buffer, u->data->data() + u->offset, n);
    u->offset += n;
    return n;
  }

  static int Debug(CURL*, curl_infotype type, char* data, size_t size,
                   void* user) {
    if (type == CURLINFO_HEADER_IN) {
      // Keep the last error reply: after a rejection curl still sends QUIT,
      // and its "221 bye" must not hide the reason.
      absl::string_view line =
          absl::StripTrailingAsciiWhitespace(absl::string_view(data, size));
      if (!line.empty() && (line[0] == '4' || line[0] == '5')) {
        static_cast<SmtpSender*>(user)->last_reply_ = std::string(line);
      }
    }
    return 0;
  }

  const SmtpOptions options_;
  CURL* curl_;
  std::string last_reply_;
  char error_buffer_[CURL_ERROR_SIZE];
};

class FileSender final : public MailSender {
 public:
  explicit FileSender(std::string dir) : dir_(std::move(dir)) {}

  SendOutcome Send(const Envelope& envelope, const std::string& mime,
                   const std::function<void()>&) override {
    // Same name for a re-send, so a crash leaves one file, never two.
    std::string name;
    for (char c : envelope.message_id) {
      name.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                             c == '-' || c == '.' || c == '@'
                         ? c
                         : '_');
    }
    const std::string final_path = absl::StrCat(dir_, "/", name, ".eml");
    const std::string tmp_path =
        absl::StrCat(dir_, "/.", name, ".", getpid(), ".tmp");
    ::mkdir(dir_.c_str(), 0755);
    int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
      return {
          SendOutcome::Kind::kTransient,
          absl::StrCat("cannot write ", tmp_path, ": ", std::strerror(errno)),
          false};
    }
    const std::string content =
        absl::StrCat("X-Envelope-From: <", envelope.from,
                     ">\r\nX-Envelope-To: <", envelope.to, ">\r\n", mime);
    size_t off = 0;
    while (off < content.size()) {
      ssize_t n = ::write(fd, content.data() + off, content.size() - off);
      if (n <= 0) {
        ::close(fd);
        ::unlink(tmp_path.c_str());
        return {SendOutcome::Kind::kTransient,
                absl::StrCat("write ", tmp_path, " failed"), false};
      }
      off += static_cast<size_t>(n);
    }
    ::fsync(fd);
    ::close(fd);
    if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) {
      ::unlink(tmp_path.c_str());
      return {SendOutcome::Kind::kTransient,
              absl::StrCat("rename to ", final_path, " failed"), false};
    }
    return {SendOutcome::Kind::kSent, "", true};
  }

 private:
  const std::string dir_;
};

}  // namespace

void InitMailTransport() { curl_global_init(CURL_GLOBAL_DEFAULT); }

absl::StatusOr<std::function<std::unique_ptr<MailSender>()>>
MakeMailSenderFactory(const SmtpOptions& options) {
  absl::string_view url = options.url;
  if (absl::ConsumePrefix(&url, "file://")) {
    std::string dir(url);
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    if (dir.empty() || dir[0] != '/') {
      return absl::InvalidArgumentError(
          "--smtp_url file:// needs an absolute directory, e.g. "
          "file:///var/lib/guestlist/mail");
    }
    return std::function<std::unique_ptr<MailSender>()>(
        [dir]() { return std::make_unique<FileSender>(dir); });
  }
  if (absl::StartsWith(options.url, "smtp://") ||
      absl::StartsWith(options.url, "smtps://")) {
    return std::function<std::unique_ptr<MailSender>()>(
        [options]() { return std::make_unique<SmtpSender>(options); });
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--smtp_url \"", options.url,
                   "\" must start with smtp://, smtps:// or file://"));
}

}  // namespace guestlist::notification
