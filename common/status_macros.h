// RETURN_IF_ERROR / ASSIGN_OR_RETURN: our Abseil (20220623) ships no
// status_macros.h, so every layer uses these to propagate absl::Status.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define GUESTLIST_CONCAT_INNER_(a, b) a##b
#define GUESTLIST_CONCAT_(a, b) GUESTLIST_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status guestlist_status_ = (expr); \
    if (!guestlist_status_.ok()) {             \
      return guestlist_status_;                \
    }                                          \
  } while (false)

// ASSIGN_OR_RETURN(lhs, statusor_expr): assigns the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(GUESTLIST_CONCAT_(guestlist_or_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                           \
  if (!statusor.ok()) {                             \
    return std::move(statusor).status();            \
  }                                                 \
  lhs = std::move(statusor).value()
