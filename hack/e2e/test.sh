# shellcheck shell=bash
# test: the Go tests of test/e2e against the running cluster, in two phases that the tests
# declare, not this script: phase one is the package built as is, against the driver's host
# processes; the chart phase is the tests that only the build tag $CHART_TAG adds (go test
# -list tells them apart), run with the driver's host processes stopped, on every node (the
# spare nodes start while phase one runs, tainted until then). E2E_RUN picks tests in both.

# gotest LOGNAME ARGS...: go test in test/e2e against the cluster, output shown and kept.
gotest() {
	local log=$LOGS/$1.log; shift
	set +e
	(cd "$ROOT/test/e2e" && E2E_CLUSTER="$CLUSTER_JSON" $GO test -count=1 -timeout "$E2E_TEST_TIMEOUT" -v "$@" . 2>&1) | tee "$log"
	local rc=${PIPESTATUS[0]}
	set -e
	return "$rc"
}

# list_tests [TAG]: the top-level tests matching E2E_RUN in test/e2e's build (with TAG).
list_tests() {
	local run=${E2E_RUN%%/*} out
	out=$(cd "$ROOT/test/e2e" && $GO test ${1:+-tags "$1"} -list "${run:-.}" . 2>&1) || { echo "$out" >&2; return 1; }
	grep '^Test' <<<"$out" || true
}

run_tests() {
	step "The tests of each phase (go test -list${E2E_RUN:+ $E2E_RUN}; the chart phase's: build tag $CHART_TAG)"
	local one every chart sub=""
	one=$(list_tests)
	every=$(list_tests "$CHART_TAG")
	chart=$(comm -13 <(sort <<<"$one") <(sort <<<"$every") | paste -sd'|' -)
	[ -n "$every" ] || die "E2E_RUN=$E2E_RUN matches no test of test/e2e"
	[[ $E2E_RUN == */* ]] && sub=/${E2E_RUN#*/}
	echo "    phase one: $(echo "$one" | wc -w) tests; the chart phase: ${chart:-none}"
	took
	local rc=0 spare=""
	# The chart phase's spare nodes start while phase one's tests run (tainted: none of those
	# tests' pods goes there).
	if [ -n "$chart" ]; then
		spare_nodes >"$LOGS/spare-nodes.out" 2>&1 &
		spare=$!
	fi
	if [ -n "$one" ]; then
		step "Phase one: go test in test/e2e against the driver's host processes${E2E_RUN:+ (-run $E2E_RUN)}"
		# The tests that call t.Parallel (each its own objects, nothing that stops the driver or
		# the vCenter or changes its latency) run together once the others are done.
		gotest go-test -parallel 8 ${E2E_RUN:+-run "$E2E_RUN"} || rc=1
		took
	fi
	[ -z "$chart" ] || chart_phase "$spare" "^($chart)\$$sub" || rc=1
	return $rc
}

# chart_phase SPARE-PID RUN: the chart phase's tests once the spare nodes are up, the driver's
# host processes stopped (the tests install the chart, whose pods take their place).
chart_phase() {
	local spare_rc=0
	wait "$1" || spare_rc=1
	cat "$LOGS/spare-nodes.out"
	[ $spare_rc = 0 ] || { echo "e2e: the spare nodes did not come up: no chart phase" >&2; return 1; }
	step "The chart phase ($2): the driver's host processes stop, the tests run the chart's"
	stop_pids csi-provisioner csi-attacher csi-resizer csi-snapshotter csi-node csi-controller
	gotest go-test-chart -tags "$CHART_TAG" -run "$2"
	local rc=$?
	took
	return $rc
}
