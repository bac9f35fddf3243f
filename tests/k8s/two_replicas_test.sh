#!/usr/bin/env bash
# Bazel entry point of two_replicas_test.py: Debian's python3 (with
# aiosmtpd), the four binaries from the runfiles.
set -euo pipefail
RUNFILES="${TEST_SRCDIR:?run under bazel test}/${TEST_WORKSPACE:-guestlist}"
exec /usr/bin/python3 "$RUNFILES/tests/k8s/two_replicas_test.py" --bin-dir "$RUNFILES"
