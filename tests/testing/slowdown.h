// How much slower a sanitized build runs. Tests scale their time bounds by
// it: the bounds are about staying fast, not about the sanitizer.
#pragma once

namespace guestlist::testing {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr double kSlowdown = 4;
#else
inline constexpr double kSlowdown = 1;
#endif

}  // namespace guestlist::testing
