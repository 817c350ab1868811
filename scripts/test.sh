#!/usr/bin/env bash
# Runs every test file under test/. Node 20 neither expands globs nor finds .ts tests by itself,
# and it exits 0 when it finds no test at all: an empty list is an error here.
set -euo pipefail
shopt -s globstar nullglob
cd "$(dirname "$0")/.."
files=(test/**/*.test.ts)
if [ "${#files[@]}" -eq 0 ]; then
  echo "no test files found under test/" >&2
  exit 1
fi
exec node --import tsx --test --test-reporter=spec "${files[@]}"
