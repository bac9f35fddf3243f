#include "common/config.h"

#include <cstdio>
#include <cstdlib>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace guestlist {
namespace {

// Flags defined by Abseil/gRPC themselves must not be read from our env.
bool IsOurFlag(const absl::CommandLineFlag& flag) {
  const std::string file = flag.Filename();
  return file.find("common/") != std::string::npos ||
         file.find("services/") != std::string::npos ||
         file.find("tests/") != std::string::npos;
}

}  // namespace

std::vector<std::string> EnvNamesForFlag(const std::string& service,
                                         const std::string& flag_name) {
  const std::string flag = absl::AsciiStrToUpper(flag_name);
  return {absl::StrCat("GUESTLIST_", absl::AsciiStrToUpper(service), "_", flag),
          absl::StrCat("GUESTLIST_", flag)};
}

absl::Status ApplyEnvironment(const std::string& service) {
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!IsOurFlag(*flag)) continue;
    for (const std::string& env : EnvNamesForFlag(service, std::string(name))) {
      const char* value = std::getenv(env.c_str());
      if (value == nullptr) continue;
      std::string error;
      if (!flag->ParseFrom(value, &error)) {
        return absl::InvalidArgumentError(
            absl::StrCat("environment variable ", env, "=\"", value,
                         "\" is not valid for --", name, ": ", error));
      }
      break;
    }
  }
  return absl::OkStatus();
}

void ExitWithError(const std::string& service, const std::string& message,
                   int code) {
  std::fprintf(stderr, "%s: %s\n", service.c_str(), message.c_str());
  std::fflush(stderr);
  std::exit(code);
}

std::vector<char*> ParseFlagsAndEnvironment(const std::string& service,
                                            int argc, char** argv) {
  absl::SetProgramUsageMessage(absl::StrCat(
      "guestlist ", service,
      " service. Every --flag can also be set as GUESTLIST_",
      absl::AsciiStrToUpper(service), "_<FLAG> or GUESTLIST_<FLAG>."));
  // Environment first, so explicit command-line flags override it.
  if (absl::Status s = ApplyEnvironment(service); !s.ok()) {
    ExitWithError(service, std::string(s.message()));
  }
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace guestlist
