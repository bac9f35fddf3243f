#!/usr/bin/env bash
# Builds and runs every guestlist test (unit, PostgreSQL, end-to-end,
# fault, security, fuzz smoke, Kubernetes manifest checks). Exits non-zero
# on any failure. Long soaks and big benchmarks are opt-in:
#   GUESTLIST_BENCH=1 tests/run.sh    also runs tests/bench (figures printed)
#   GUESTLIST_ASAN=0 tests/run.sh     skips the ASan+UBSan pass
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash deploy/local/install-deps.sh

# Benchmarks carry the "bench" tag and run only with GUESTLIST_BENCH=1.
BAZEL_FLAGS=(--test_output=errors --keep_going --test_tag_filters=-bench)
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# Runs bazel test, keeping its summary line ("Executed N out of M tests:
# M tests pass.") to total up at the end.
run_tests() {
  bazel test "$@" 2>&1 | tee -a "$LOG"
}
echo "== bazel test //... ==" >&2
run_tests "${BAZEL_FLAGS[@]}" //...

if [[ "${GUESTLIST_ASAN:-1}" == "1" ]]; then
  # Everything again under ASan+UBSan, end-to-end and fault tests included
  # (their binaries are sanitized too; time bounds and leases scale with
  # the sanitizer's slowdown, see kSlowdown in tests/faults).
  echo "== bazel test --config=asan ==" >&2
  run_tests "${BAZEL_FLAGS[@]}" --config=asan --test_tag_filters=-bench //...
fi

if [[ "${GUESTLIST_BENCH:-0}" == "1" ]]; then
  echo "== benchmarks ==" >&2
  bazel test -c opt --test_output=all --test_tag_filters=bench \
    --per_file_copt=tests/testing/postgres.cc@-Wno-unused-result //tests/bench/...
fi
passed=$(grep -oE '[0-9]+ tests? pass' "$LOG" | awk '{n += $1} END {print n + 0}')
echo "all tests passed"
echo "${passed} passed, 0 failed"
