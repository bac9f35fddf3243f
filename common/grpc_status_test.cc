#include "common/grpc_status.h"

#include "common/status_macros.h"
#include "gtest/gtest.h"

namespace guestlist {
namespace {

TEST(GrpcStatusTest, KeepsCodeAndMessage) {
  grpc::Status g = ToGrpcStatus(absl::NotFoundError("user 42 not found"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), "user 42 not found");
  absl::Status back = FromGrpcStatus(g);
  EXPECT_EQ(back, absl::NotFoundError("user 42 not found"));
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(GrpcStatusTest, ServerErrorsAreTheServersFault) {
  EXPECT_TRUE(IsServerError(absl::StatusCode::kInternal));
  EXPECT_TRUE(IsServerError(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(IsServerError(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(IsServerError(absl::StatusCode::kPermissionDenied));
}

absl::StatusOr<int> Half(int v) {
  if (v % 2 != 0) return absl::InvalidArgumentError("odd");
  return v / 2;
}

absl::Status Quarter(int v, int* out) {
  ASSIGN_OR_RETURN(int half, Half(v));
  ASSIGN_OR_RETURN(*out, Half(half));
  RETURN_IF_ERROR(absl::OkStatus());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagateTheFirstError) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  EXPECT_EQ(Quarter(6, &out), absl::InvalidArgumentError("odd"));
}

}  // namespace
}  // namespace guestlist
