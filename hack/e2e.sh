#!/usr/bin/env bash
# make e2e: the driver through real Kubernetes on this machine, loopback only (docs/E2E.md).
#
#   hack/e2e.sh            tools, up, test, down (down runs even when a step fails)
#   hack/e2e.sh tools      build what is missing into $E2E_CACHE: Kubernetes (the version of
#                          test/e2e/tools/kube/go.mod), helm, the CSI sidecars, the images
#   hack/e2e.sh up         start everything, leave it running; writes $E2E_DIR/cluster.json
#   hack/e2e.sh test       run the Go tests in test/e2e against a running cluster (E2E_RUN)
#   hack/e2e.sh down       stop what `up` started (by its records), unmount, free loop devices
#   hack/e2e.sh conformance  Kubernetes' storage e2e suite: tools (with the suite), up, the
#                          suite (CONFORMANCE_SET=full|ci), down (make conformance)
#   hack/e2e.sh conformance-run  the suite against a running cluster (E2E_CONFORMANCE=1 tools, up)
#
# Each phase is a file of hack/e2e/: config (settings, helpers), procs (the process records),
# tools, images, cluster (certificates, control plane, up, cluster.json), node-config, nodes,
# driver, test, conformance, teardown. What the tests read is data: cluster.json and procs/NAME.json
# (test/e2e/internal/harness).
set -euo pipefail

for f in config procs tools images cluster node-config nodes driver test conformance teardown; do
	# shellcheck source=/dev/null
	source "$(dirname "${BASH_SOURCE[0]}")/e2e/$f.sh"
done

# cycle NAME STEP FAILED: tools, up, `$0 STEP`, down (also when a step fails), each phase its
# own process so that `set -e` holds inside it; FAILED says where a failed step's output is.
cycle() {
	export T0
	"$0" tools
	local rc=0
	trap '"$0" down || true' EXIT
	if ! "$0" up; then
		rc=1
		echo "e2e: the cluster did not come up; logs in $LOGS" >&2
	elif ! "$0" "$2"; then
		rc=1
		echo "e2e: $3" >&2
	fi
	trap - EXIT
	"$0" down || rc=1
	echo "==> [e2e] $1$([ $rc = 0 ] && echo PASS || echo FAIL) in $(since "$T0")s"
	return $rc
}

all() { cycle "" test "tests failed; the output is in $LOGS/go-test*.log, every process's log is in $LOGS"; }

case "${1:-all}" in
tools) tools ;;
up) up ;;
test) run_tests ;;
down) down ;;
all) all ;;
conformance) conformance_all ;;
conformance-run) run_conformance ;;
*) die "usage: $0 [tools|up|test|down|all|conformance|conformance-run]" ;;
esac
