# shellcheck shell=bash
# tools: the Debian packages, then Kubernetes $K8S_VERSION with helm and the CSI sidecars built
# from the tools modules (test/e2e/tools) into $E2E_CACHE once, then the driver (make build).

deps() {
	step "Debian packages: $DEB_PACKAGES"
	local missing="" c
	for c in etcd containerd runc ctr openssl losetup mkfs.ext4 mkfs.xfs curl mmdebstrap iptables ip jq; do
		command -v $c >/dev/null || missing="$missing $c"
	done
	[ -x /usr/lib/cni/loopback ] || missing="$missing cni-loopback"
	dpkg -s busybox-static >/dev/null 2>&1 || missing="$missing busybox-static"
	if [ -n "$missing" ]; then
		echo "    missing:$missing; installing"
		[ "$(id -u)" = 0 ] || die "run as root (apt-get)"
		apt-get update -qq
		# shellcheck disable=SC2086 # a list of packages
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $DEB_PACKAGES curl >/dev/null
	fi
	took
}

# build_module NAME OUTDIR PKG... builds the packages of test/e2e/tools/NAME
# into OUTDIR once; a stamp marks a complete build.
build_module() {
	local name=$1 out=$2; shift 2
	if [ -f "$out/.complete" ]; then
		echo "    $name: cached in $out"
		return
	fi
	echo "    $name: building $* (cold: minutes)"
	mkdir -p "$out"
	local s
	s=$(date +%s)
	(cd "$ROOT/test/e2e/tools/$name" && CGO_ENABLED=0 $GO build -trimpath -ldflags "${LDFLAGS_EXTRA:--s -w}" -o "$out/" "$@")
	touch "$out/.complete"
	echo "    $name: built in $(( $(date +%s) - s ))s"
}

# modkey DIR PKG...: a hash of a tools module and what is built of it: its output dir's name.
modkey() { (cat "$1/go.mod" "$1/go.sum"; shift; [ $# = 0 ] || echo "$@") | sha256sum | cut -c1-12; }

KUBE_PKGS="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet
	k8s.io/kubernetes/cmd/kube-proxy helm.sh/helm/v3/cmd/helm"
SIDECAR_PKGS="github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner
	github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher
	github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer
	github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter
	github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller"

# build_tools: the two modules, built side by side: on two cores each keeps the other's serial
# stretches (linking, loading packages) from idling a core. Their binaries are linked into bin/.
build_tools() {
	step "Tools into $E2E_CACHE: Kubernetes $K8S_VERSION and helm, the CSI sidecars (Go build cache does the rest)"
	local ld="-s -w" p minor=${K8S_VERSION#v1.}
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*} -X $p.gitTreeState=clean"
	done
	local kube_out sidecars_out pids=() names=(kube sidecars) i rc=0
	# shellcheck disable=SC2086 # the packages joined by spaces: part of the cache key
	kube_out=$E2E_CACHE/kube-$K8S_VERSION-$(modkey "$ROOT/test/e2e/tools/kube" $KUBE_PKGS)
	sidecars_out=$E2E_CACHE/sidecars-$(modkey "$ROOT/test/e2e/tools/sidecars")
	mkdir -p "$E2E_CACHE/logs"
	# shellcheck disable=SC2086 # one argument per package
	LDFLAGS_EXTRA="$ld" build_module kube "$kube_out" $KUBE_PKGS >"$E2E_CACHE/logs/build-kube.log" 2>&1 &
	pids+=($!)
	# shellcheck disable=SC2086 # one argument per package
	build_module sidecars "$sidecars_out" $SIDECAR_PKGS >"$E2E_CACHE/logs/build-sidecars.log" 2>&1 &
	pids+=($!)
	for i in 0 1; do
		if wait "${pids[$i]}"; then
			sed 's/^/  /' "$E2E_CACHE/logs/build-${names[$i]}.log"
		else
			rc=1
			echo "    ${names[$i]}: build FAILED; its output ($E2E_CACHE/logs/build-${names[$i]}.log):" >&2
			tail -40 "$E2E_CACHE/logs/build-${names[$i]}.log" >&2
		fi
	done
	[ $rc = 0 ] || die "building the e2e tools failed"
	mkdir -p "$E2E_CACHE/bin"
	for p in "$kube_out" "$sidecars_out"; do ln -sf "$p"/* "$E2E_CACHE/bin/"; done
	snapshot_crds
	echo "    $("$E2E_CACHE/bin/kubectl" version --client 2>/dev/null | head -1)"
	took
}

# snapshot_crds: the snapshot CRDs come with the snapshotter's client module (as YAML).
snapshot_crds() {
	local crds
	crds=$(cd "$ROOT/test/e2e/tools/sidecars" && $GO list -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8)/config/crd
	mkdir -p "$E2E_CACHE/crds"
	cp "$crds"/snapshot.storage.k8s.io_*.yaml "$E2E_CACHE/crds/"
	echo "    snapshot CRDs: $(cd "$E2E_CACHE/crds" && echo *.yaml)"
}

build_driver() {
	step "Driver: bin/vsphere-csi (make build: the Makefile's flags), bin/vsphere-sim; bin/mount.nfs (test/nfsmount: NFS over FUSE where the kernel has no NFS client)"
	make -C "$ROOT" --no-print-directory build GO="$GO" >/dev/null
	(cd "$ROOT" && CGO_ENABLED=0 $GO build -trimpath -o bin/mount.nfs ./test/nfsmount/cmd/mount.nfs)
	echo "    $("$ROOT/bin/vsphere-csi" --version)"
	took
}

tools() {
	deps
	build_tools
	build_driver
	[ -z "${E2E_CONFORMANCE:-}" ] || build_conformance
	images
}
