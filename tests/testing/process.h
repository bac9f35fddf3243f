// Child processes for end-to-end tests: start a real binary with extra
// environment, stop it with a signal, wait for it.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace guestlist::testing {

class ChildProcess final {
 public:
  // Starts `path args...` with the current environment plus `env`; stdout
  // and stderr go to `log_path` (appended).
  ChildProcess(std::string path, std::vector<std::string> args,
               std::map<std::string, std::string> env, std::string log_path);
  ~ChildProcess();  // SIGKILL if still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int sig);
  // Waits up to timeout_ms; returns the exit code, 128+signal, or -1 on
  // timeout.
  int Wait(int timeout_ms);
  // Restarts the same command (after a kill).
  void Restart();
  const std::string& log_path() const { return log_path_; }

 private:
  void Spawn();
  std::string path_;
  std::vector<std::string> args_;
  std::map<std::string, std::string> env_;
  std::string log_path_;
  pid_t pid_ = -1;
  int status_ = -1;
};

// Path of a binary in this test's runfiles ("services/identity/identity").
std::string RunfilePath(const std::string& relative);

// Whether something accepts TCP connections on 127.0.0.1:port.
bool PortOpen(int port);

}  // namespace guestlist::testing
