#!/usr/bin/env bash
# Runs berth's whole test suite: formatting, vet, unit tests and the
# end-to-end tests (a real berth server, real git and ssh clients, the real
# Docker Engine). Installs what is missing first, like the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test

echo "-----> gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.berth/*'))
if [ -n "$unformatted" ]; then
  echo " !     gofmt would change: $unformatted" >&2
  exit 1
fi
echo "-----> go vet"
go vet ./...
echo "-----> go test"
go test -count=1 -timeout 40m "$@" ./...
