# shellcheck shell=bash
# conformance: Kubernetes' own external storage e2e suite against the driver (make conformance,
# docs/conformance.md). Its tools: the suite as one test binary (test/e2e/tools/conformance),
# ginkgo to run it in parallel, agnhost; its images under the exact names the suite asks for.
# The run: up, the spare nodes, the driver's host processes stopped, then TestConformance
# (test/e2e, build tag $CONFORMANCE_TAG) installs the chart on every node and runs the suite.
# CONFORMANCE_SET=full (every selected test; writes docs/conformance.md) or ci (one or more
# tests of each suite: .ci/run).

CONFORMANCE_TAG=e2e_conformance
CONFORMANCE_SET=${CONFORMANCE_SET:-full}

# build_conformance: the suite's binary, ginkgo and agnhost into $E2E_CACHE once (a stamp marks
# a complete build), linked into bin/.
build_conformance() {
	local mod=$ROOT/test/e2e/tools/conformance out s
	out=$E2E_CACHE/conformance-$K8S_VERSION-$(modkey "$mod")
	step "Kubernetes' storage e2e suite $K8S_VERSION (test/e2e/tools/conformance), ginkgo, agnhost into $out"
	if [ -f "$out/.complete" ]; then
		echo "    cached in $out"
	else
		echo "    building (cold: minutes; the kube tools' build cache does most of it)"
		mkdir -p "$out"
		s=$(date +%s)
		(cd "$mod" && CGO_ENABLED=0 $GO test -c -vet=off -trimpath -ldflags "-s -w" -o "$out/e2e-storage.test" . &&
			CGO_ENABLED=0 $GO build -trimpath -ldflags "-s -w" -o "$out/" github.com/onsi/ginkgo/v2/ginkgo k8s.io/kubernetes/test/images/agnhost) \
			>"$E2E_CACHE/logs/build-conformance.log" 2>&1 || { tail -40 "$E2E_CACHE/logs/build-conformance.log" >&2; die "building the suite failed"; }
		touch "$out/.complete"
		echo "    built in $(( $(date +%s) - s ))s"
	fi
	mkdir -p "$E2E_CACHE/bin"
	ln -sf "$out"/* "$E2E_CACHE/bin/"
	took
}

# conformance_images (img is the caller's): the images the selected tests run, under the names
# the suite has for them (k8s.io/kubernetes test/utils/image/manifest.go): busybox with all its
# applets; nginx and jessie-dnsutils, Debian-based in reality, whose storage tests run a shell and
# GNU dd (oflag=nocache, which busybox's dd lacks): the machine's dash as /bin/sh (busybox-static's
# own shell runs its dd applet whatever /bin/dd is), its dd, the C library they need, busybox for
# the rest; agnhost (static, with busybox for its shell); the pause image of this
# Kubernetes version.
# shellcheck disable=SC2154 # img: the caller's (images)
conformance_images() {
	local links="" gnu="" a f reg=registry.k8s.io/e2e-test-images
	for a in $(/bin/busybox --list); do [ "$a" = busybox ] || links="$links bin/$a->busybox"; done
	# shellcheck disable=SC2086 # $links: one argument per link
	cached_image e2e-busybox "$(inputs_key "$img/mkimage" /bin/busybox -- $links)" \
		"$img/mkimage" -name "$reg/busybox:1.37.0-1" -o "$img/e2e-busybox.tar" -entrypoint /bin/sh /bin/busybox=/bin/busybox $links
	local debian=(/bin/busybox=/bin/busybox "$(realpath /bin/dash)=/bin/sh" "$(realpath /usr/bin/dd)=/bin/dd")
	for f in /lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2; do debian+=("$(realpath "$f")=$f"); done
	gnu=${links/ bin\/dd->busybox/}
	gnu=${gnu/ bin\/sh->busybox/}
	for a in nginx:1.14-4 jessie-dnsutils:1.7; do
		# shellcheck disable=SC2086 # $gnu: one argument per link
		cached_image "e2e-${a%%:*}" "$(inputs_key "$img/mkimage" "${debian[@]%%=*}" -- "$a" $gnu)" \
			"$img/mkimage" -name "$reg/$a" -o "$img/e2e-${a%%:*}.tar" -entrypoint /bin/sh "${debian[@]}" $gnu
	done
	# shellcheck disable=SC2086
	cached_image e2e-agnhost "$(inputs_key "$img/mkimage" /bin/busybox "$E2E_CACHE/bin/agnhost" -- $links)" \
		"$img/mkimage" -name "$reg/agnhost:2.56" -o "$img/e2e-agnhost.tar" -entrypoint /agnhost \
		"$E2E_CACHE/bin/agnhost=/agnhost" /bin/busybox=/bin/busybox $links
	cached_image e2e-pause "$(inputs_key "$img/mkimage" "$img/pause" -- 3.10.1)" \
		"$img/mkimage" -name registry.k8s.io/pause:3.10.1 -o "$img/e2e-pause.tar" -entrypoint /pause "$img/pause=/pause"
}

# run_conformance: the spare nodes, the driver's host processes stopped, TestConformance.
run_conformance() {
	spare_nodes
	step "The suite ($CONFORMANCE_SET): TestConformance installs the chart on every node and runs it (output: $LOGS/conformance)"
	stop_pids csi-provisioner csi-attacher csi-resizer csi-snapshotter csi-node csi-controller
	local rc=0
	E2E_CONFORMANCE_SET=$CONFORMANCE_SET E2E_CONFORMANCE_FOCUS=${CONFORMANCE_FOCUS:-} E2E_CONFORMANCE_REPORT=${CONFORMANCE_REPORT:-} E2E_TEST_TIMEOUT=${E2E_TEST_TIMEOUT_CONFORMANCE:-150m} \
		gotest go-test-conformance -tags "$CONFORMANCE_TAG" -run '^TestConformance$' || rc=1
	took
	return $rc
}

# conformance_all: tools (with the suite), up, the suite, down (also when a step fails).
conformance_all() {
	export E2E_CONFORMANCE=1
	cycle "conformance ($CONFORMANCE_SET) " conformance-run \
		"the suite failed; its output is in $LOGS/go-test-conformance.log and $LOGS/conformance"
}
