#!/usr/bin/env bash
# The chart checks: helm lint, rendering with default and non-default values, strict decoding
# into the Kubernetes API types, pinned images, RBAC without wildcards, sidecar and driver
# flags against the driver's sources, the plain manifests up to date, the examples, the
# Dockerfile against the Makefile, and the Debian packages the image installs.
# Runs in its own Go module (test/chart), which brings the Helm library.
set -euo pipefail
cd "$(dirname "$0")/../test/chart"
if [ -z "$(gofmt -l .)" ]; then :; else echo "gofmt needed in test/chart:"; gofmt -l .; exit 1; fi
go vet ./...
exec go test -count=1 "$@" ./...
