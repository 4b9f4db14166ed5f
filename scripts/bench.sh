#!/usr/bin/env bash
# The one entry point for Lifeboat's benchmarks: `scripts/bench.sh NAME`.
# Each benchmark measures its baseline in the same run and ends with one JSON line of its
# figures and "ratios". Benchmarks are not tests: they assert nothing about time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name="${1:-}"
if [ -z "$name" ] || [ ! -x "$here/bench-$name.sh" ]; then
    echo "usage: $0 NAME   (one of: $(cd "$here" && ls bench-*.sh 2>/dev/null | sed 's/^bench-//; s/\.sh$//' | tr '\n' ' '))" >&2
    exit 2
fi
shift
exec "$here/bench-$name.sh" "$@"
