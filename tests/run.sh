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

BAZEL_FLAGS=(--test_output=errors --keep_going)
echo "== bazel test //... ==" >&2
bazel test "${BAZEL_FLAGS[@]}" //...

if [[ "${GUESTLIST_ASAN:-1}" == "1" ]]; then
  echo "== bazel test --config=asan (unit and PostgreSQL tests) ==" >&2
  bazel test "${BAZEL_FLAGS[@]}" --config=asan --test_tag_filters=-no-asan //...
fi

if [[ "${GUESTLIST_BENCH:-0}" == "1" ]]; then
  echo "== benchmarks ==" >&2
  bash tests/bench/run_all.sh
fi
echo "all tests passed"
