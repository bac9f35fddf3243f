// Settings come from absl flags; every flag can also be set through the
// environment as GUESTLIST_<SERVICE>_<FLAG> or GUESTLIST_<FLAG> (in that
// order of precedence). A command-line flag beats the environment.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace guestlist {

// Returns the environment variable names consulted for `flag_name` of
// `service` ("identity"), most specific first.
std::vector<std::string> EnvNamesForFlag(const std::string& service,
                                         const std::string& flag_name);

// Parses flags and the environment. On a bad value prints one line naming
// the setting and exits with status 2. Returns the positional arguments.
std::vector<char*> ParseFlagsAndEnvironment(const std::string& service,
                                            int argc, char** argv);

// Applies the environment to every registered flag of ours; returns
// InvalidArgument naming the variable and the problem on a bad value.
absl::Status ApplyEnvironment(const std::string& service);

// Prints "<service>: <message>" on one line and exits with `code`.
[[noreturn]] void ExitWithError(const std::string& service,
                                const std::string& message, int code = 2);

}  // namespace guestlist
