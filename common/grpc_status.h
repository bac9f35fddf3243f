// The one translation point between absl::Status and grpc::Status.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace guestlist {

// Returns the grpc::Status with the same code and message as `status`.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Returns the absl::Status with the same code and message as `status`.
absl::Status FromGrpcStatus(const grpc::Status& status);

// Whether a failure with this code is the server's fault (logged as an
// error) rather than the caller's (logged at info level).
bool IsServerError(absl::StatusCode code);

}  // namespace guestlist
