#include "services/notification/testing/smtp_sink.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace guestlist::notification::testing {
namespace {

bool SendAll(int fd, absl::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Buffered line reader over a socket.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  // Returns false at EOF/error; the line excludes CRLF.
  bool ReadLine(std::string* line) {
    while (true) {
      size_t nl = buf_.find("\r\n", pos_);
      if (nl != std::string::npos) {
        line->assign(buf_, pos_, nl - pos_);
        pos_ = nl + 2;
        if (pos_ > 65536) {
          buf_.erase(0, pos_);
          pos_ = 0;
        }
        return true;
      }
      char tmp[65536];
      ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) return false;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
  size_t pos_ = 0;
};

std::string Address(absl::string_view arg) {
  // "FROM:<a@b>" or "TO:<a@b> PARAMS"
  size_t lt = arg.find('<');
  size_t gt = arg.find('>');
  if (lt == absl::string_view::npos || gt == absl::string_view::npos ||
      gt < lt) {
    return std::string(arg);
  }
  return std::string(arg.substr(lt + 1, gt - lt - 1));
}

}  // namespace

std::string ReceivedMail::message_id() const {
  for (absl::string_view line : absl::StrSplit(data, "\r\n")) {
    if (line.empty()) break;  // end of headers
    if (absl::StartsWithIgnoreCase(line, "Message-ID:")) {
      return std::string(absl::StripAsciiWhitespace(line.substr(11)));
    }
  }
  return "";
}

SmtpSink::~SmtpSink() { Stop(); }

bool SmtpSink::Start(int port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0 ||
      ::listen(listen_fd_, 128) != 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    return false;
  }
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  running_ = true;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return true;
}

void SmtpSink::Stop() {
  if (!running_.exchange(false)) return;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  listen_fd_ = -1;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    workers.swap(workers_);
  }
  for (std::thread& t : workers) t.join();
}

std::string SmtpSink::url() const {
  return absl::StrCat("smtp://127.0.0.1:", port_);
}

void SmtpSink::FailNext(int count, const std::string& reply) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < count; ++i) next_replies_.push_back(reply);
}

void SmtpSink::RequireAuth(const std::string& username,
                           const std::string& password) {
  absl::MutexLock lock(&mu_);
  auth_ = absl::StrCat(std::string(1, '\0'), username, std::string(1, '\0'),
                       password);
}

void SmtpSink::RejectRecipient(const std::string& recipient,
                               const std::string& reply) {
  absl::MutexLock lock(&mu_);
  rejected_[absl::AsciiStrToLower(recipient)] = reply;
}

std::vector<ReceivedMail> SmtpSink::messages() const {
  absl::MutexLock lock(&mu_);
  return received_;
}

size_t SmtpSink::count() const {
  absl::MutexLock lock(&mu_);
  return received_.size();
}

bool SmtpSink::WaitForCount(size_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return received_.size() >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

void SmtpSink::AcceptLoop() {
  while (running_) {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) {
      if (!running_) return;
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ++connections_;
    absl::MutexLock lock(&mu_);
    if (!running_) {
      ::close(fd);
      return;
    }
    open_fds_.push_back(fd);
    workers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void SmtpSink::Serve(int fd) {
  LineReader reader(fd);
  SendAll(fd, "220 sink ESMTP ready\r\n");
  ReceivedMail mail;
  std::string line;
  std::string auth;
  {
    absl::MutexLock lock(&mu_);
    auth = auth_;
  }
  bool authenticated = auth.empty();
  while (reader.ReadLine(&line)) {
    const std::string upper = absl::AsciiStrToUpper(line.substr(0, 10));
    if (absl::StartsWith(upper, "EHLO")) {
      SendAll(fd, auth.empty()
                      ? "250-sink\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n"
                      : "250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n");
    } else if (absl::StartsWith(upper, "AUTH PLAIN")) {
      std::string response(absl::StripAsciiWhitespace(line.substr(10)));
      if (response.empty()) {
        SendAll(fd, "334 \r\n");
        if (!reader.ReadLine(&response)) break;
      }
      std::string decoded;
      absl::Base64Unescape(response, &decoded);
      authenticated = !auth.empty() && decoded == auth;
      SendAll(fd, authenticated ? "235 2.7.0 Authentication successful\r\n"
                                : "535 5.7.8 Authentication failed\r\n");
    } else if (!authenticated && absl::StartsWith(upper, "MAIL FROM:")) {
      SendAll(fd, "530 5.7.0 Authentication required\r\n");
    } else if (absl::StartsWith(upper, "HELO")) {
      SendAll(fd, "250 sink\r\n");
    } else if (absl::StartsWith(upper, "MAIL FROM:")) {
      mail = ReceivedMail();
      mail.from = Address(line.substr(10));
      SendAll(fd, "250 2.1.0 OK\r\n");
    } else if (absl::StartsWith(upper, "RCPT TO:")) {
      const std::string rcpt = Address(line.substr(8));
      std::string reply;
      {
        absl::MutexLock lock(&mu_);
        auto it = rejected_.find(absl::AsciiStrToLower(rcpt));
        if (it != rejected_.end()) reply = it->second;
      }
      if (!reply.empty()) {
        SendAll(fd, absl::StrCat(reply, "\r\n"));
      } else {
        mail.recipients.push_back(rcpt);
        SendAll(fd, "250 2.1.5 OK\r\n");
      }
    } else if (upper == "DATA") {
      SendAll(fd, "354 end with <CRLF>.<CRLF>\r\n");
      std::string data;
      bool complete = false;
      while (reader.ReadLine(&line)) {
        if (line == ".") {
          complete = true;
          break;
        }
        if (!line.empty() && line[0] == '.') line.erase(0, 1);
        absl::StrAppend(&data, line, "\r\n");
      }
      if (!complete) break;
      mail.data = std::move(data);
      std::string reply;
      {
        absl::MutexLock lock(&mu_);
        if (!next_replies_.empty()) {
          reply = next_replies_.front();
          next_replies_.pop_front();
        } else {
          received_.push_back(mail);
        }
      }
      SendAll(fd, reply.empty() ? "250 2.0.0 OK queued\r\n"
                                : absl::StrCat(reply, "\r\n"));
      mail = ReceivedMail();
    } else if (upper == "RSET") {
      mail = ReceivedMail();
      SendAll(fd, "250 2.0.0 OK\r\n");
    } else if (upper == "NOOP") {
      SendAll(fd, "250 2.0.0 OK\r\n");
    } else if (upper == "QUIT") {
      SendAll(fd, "221 2.0.0 bye\r\n");
      break;
    } else {
      SendAll(fd, "502 5.5.2 command not recognised\r\n");
    }
  }
  absl::MutexLock lock(&mu_);
  open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd),
                  open_fds_.end());
  ::close(fd);
}

}  // namespace guestlist::notification::testing
