#!/usr/bin/env bash
# make e2e: the driver through real Kubernetes on this machine, loopback only.
#
#   hack/e2e.sh            tools, up, test, down (down runs even when a step fails)
#   hack/e2e.sh tools      build what is missing into $E2E_CACHE (Kubernetes v1.34.4,
#                          CSI sidecars, snapshot controller, helm, the pause and
#                          busybox images)
#   hack/e2e.sh up         start everything, leave it running (for debugging)
#   hack/e2e.sh test       run the Go tests in test/e2e against a running cluster
#   hack/e2e.sh down       stop what `up` started (by PID), unmount, free loop devices
#
# Everything runs as host processes: etcd (Debian), kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd (Debian), kubelet, the
# embedded vCenter (bin/vsphere-sim), the driver's controller with the
# provisioner, attacher, resizer and snapshotter sidecars, the snapshot
# controller, and its node plugin, which registers itself with kubelet. For the helm
# phase two more nodes join (spare_nodes, started while the first phase's tests run,
# tainted until the helm phase): each a kubelet, containerd and kube-proxy in network
# namespace e2e-nN and a mount namespace of its own, playing node VM k8s-node-N.
# Images are OCI archives cached by what they are built from; containerd unpacks them
# with the overlayfs snapshotter. State, logs and PIDs are in $E2E_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
E2E_DIR=${E2E_DIR:-/tmp/vsphere-csi-e2e}
E2E_CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vsphere-csi-e2e}
E2E_TEST_TIMEOUT=${E2E_TEST_TIMEOUT:-20m}
E2E_RUN=${E2E_RUN:-}
GO=${GO:-go}
K8S_VERSION=v1.34.4
NODE_NAME=e2e-node
NODE_VM=k8s-node-b-1 # the embedded vCenter's node VM the kubelet's node plays (zone-b)
DRIVER=csi.vsphere.vmware.com
DRIVER_IMAGE=ghcr.io/vsphere-cns/vsphere-csi:e2e # built by `tools` from the Dockerfile (test/e2e/cmd/driverimage)
# Ports, all on 127.0.0.1, away from the defaults other runs may hold.
ETCD_PORT=${ETCD_PORT:-23790}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-23800}
APISERVER_PORT=${APISERVER_PORT:-16443}
KCM_PORT=${KCM_PORT:-16257}
SCHED_PORT=${SCHED_PORT:-16259}
KUBELET_PORT=${KUBELET_PORT:-16250}
KUBELET_HEALTHZ_PORT=${KUBELET_HEALTHZ_PORT:-16248}
KUBE_PROXY_HEALTHZ_PORT=${KUBE_PROXY_HEALTHZ_PORT:-16256}
KUBE_PROXY_METRICS_PORT=${KUBE_PROXY_METRICS_PORT:-16249}
SIM_PORT=${SIM_PORT:-18989}
SIM_CONTROL_PORT=${SIM_CONTROL_PORT:-18990}
DRIVER_HEALTHZ_PORT=${DRIVER_HEALTHZ_PORT:-19808}
DEB_PACKAGES="etcd-server containerd runc containernetworking-plugins busybox-static openssl util-linux mount e2fsprogs xfsprogs mmdebstrap iptables iproute2"
# The node's address: on lo, so it exists on any machine and leaves it for
# no one; the API server advertises it (the kubernetes Service's endpoint,
# which kube-proxy forwards 10.96.0.1:443 to), the embedded vCenter listens
# on it, and pods reach both through the pod network's gateway.
NODE_IP=${E2E_NODE_IP:-10.200.0.1}
POD_CIDR=${E2E_POD_CIDR:-10.244.0.0/24}
CLUSTER_CIDR=10.244.0.0/16 # every node's pod CIDR: node 0's above, spare node N's 10.244.N.0/24
CNI_BRIDGE=e2e-cni0
# Spare nodes for the helm phase: e2e-node-N (N = 1..), each a kubelet with its own containerd,
# root directory (a mount namespace where it is $KUBELET_DIR), network namespace e2e-nN (a veth
# to the host, address 10.201.N.2) and cgroup root, playing node VM k8s-node-N (zone-a).
SPARE_NODES=${E2E_SPARE_NODES:-2}
SPARE_TAINT=e2e.vsphere-csi/spare=true:NoSchedule # until a test takes the node in

PIDS=$E2E_DIR/pids
LOGS=$E2E_DIR/logs
PKI=$E2E_DIR/pki
KUBELET_DIR=$E2E_DIR/kubelet
CTRD=$E2E_DIR/containerd
KUBECONFIG_FILE=$E2E_DIR/admin.kubeconfig
SIM_DIR=$E2E_DIR/vcenter
BYID_ROOT=$KUBELET_DIR/vsphere-sim-by-id # under the kubelet directory: the chart mounts it into the node plugin
CSI_CONTROLLER_SOCK=$E2E_DIR/controller/csi.sock
CSI_NODE_SOCK=$KUBELET_DIR/plugins/$DRIVER/csi.sock
# What makes a node the node VM it plays, under its kubelet directory so that the chart's node
# plugin sees it at the same path on every node: dmi/product_serial (its BIOS UUID in VMware's
# form, for --dmi-dir) and by-id (its disks' links, for --by-id-dir).
NODE_IDENTITY=$KUBELET_DIR/e2e-node

T0=$(date +%s.%N)
step_start=
step() { step_start=$(date +%s.%N); echo "==> [e2e] $*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
took() { echo "    done in $(since "$step_start")s (total $(since "$T0")s)"; }
die() { echo "e2e: $*" >&2; exit 1; }

# hash of a tools module: its build output dir changes when go.mod/go.sum do.
modkey() { cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-12; }

# ---------------------------------------------------------------- deps, tools
deps() {
	step "Debian packages: $DEB_PACKAGES"
	local missing=""
	for c in etcd containerd runc ctr openssl losetup mkfs.ext4 mkfs.xfs curl mmdebstrap iptables ip; do
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

tools() {
	deps
	step "Tools into $E2E_CACHE (Go build cache does the rest)"
	local ld="-s -w" p
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=34 -X $p.gitTreeState=clean"
	done
	# Two modules, built side by side: on two cores each keeps the other's
	# serial stretches (linking, loading packages) from idling a core.
	local kube_pkgs="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet
		k8s.io/kubernetes/cmd/kube-proxy helm.sh/helm/v3/cmd/helm"
	local kube_out sidecars_out
	# shellcheck disable=SC2086 # the packages joined by spaces: the cache key
	kube_out=$E2E_CACHE/kube-$K8S_VERSION-$( (cat "$ROOT/test/e2e/tools/kube/go.mod" "$ROOT/test/e2e/tools/kube/go.sum"; echo $kube_pkgs) | sha256sum | cut -c1-12)
	sidecars_out=$E2E_CACHE/sidecars-$(modkey "$ROOT/test/e2e/tools/sidecars")
	mkdir -p "$E2E_CACHE/logs"
	local pids=() names=(kube sidecars) i rc=0
	# shellcheck disable=SC2086
	LDFLAGS_EXTRA="$ld" build_module kube "$kube_out" $kube_pkgs >"$E2E_CACHE/logs/build-kube.log" 2>&1 &
	pids+=($!)
	build_module sidecars "$sidecars_out" \
		github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner \
		github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher \
		github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer \
		github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter \
		github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller \
		>"$E2E_CACHE/logs/build-sidecars.log" 2>&1 &
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
	# The snapshot CRDs come with the snapshotter's client module (as YAML).
	local crds
	crds=$(cd "$ROOT/test/e2e/tools/sidecars" && $GO list -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8)/config/crd
	mkdir -p "$E2E_CACHE/crds"
	cp "$crds"/snapshot.storage.k8s.io_*.yaml "$E2E_CACHE/crds/"
	echo "    snapshot CRDs: $(cd "$E2E_CACHE/crds" && echo *.yaml)"
	mkdir -p "$E2E_CACHE/bin"
	local d
	for d in "$kube_out" "$sidecars_out"; do
		ln -sf "$d"/* "$E2E_CACHE/bin/"
	done
	echo "    $("$E2E_CACHE/bin/kubectl" version --client 2>/dev/null | head -1)"
	took

	step "Driver: bin/vsphere-csi (make build: the Makefile's flags), bin/vsphere-sim; bin/mount.nfs (test/nfsmount: NFS over FUSE where the kernel has no NFS client)"
	make -C "$ROOT" --no-print-directory build GO="$GO" >/dev/null
	(cd "$ROOT" && CGO_ENABLED=0 $GO build -trimpath -o bin/mount.nfs ./test/nfsmount/cmd/mount.nfs)
	echo "    $("$ROOT/bin/vsphere-csi" --version)"
	took

	step "Images without a Docker engine, as OCI archives: the driver's from the Dockerfile (mmdebstrap root filesystem, cached), the sidecars', pause, busybox"
	local img=$E2E_CACHE/images
	rm -rf "$img" && mkdir -p "$img"
	(cd "$ROOT/test/e2e" && CGO_ENABLED=0 $GO build -trimpath -o "$img/" ./cmd/pause ./cmd/mkimage ./cmd/driverimage)
	# Where the kernel has no NFS client (as here), nfs-common's mount.nfs4
	# can't mount the node plugin's file shares: one more layer puts the test
	# NFS client (test/nfsmount) in its place; TestDriverImageFollowsDockerfile
	# holds that layer to exactly that.
	local nfs=()
	if ! "$ROOT/bin/mount.nfs" --kernel-has-nfs; then
		nfs=(-add "$ROOT/bin/mount.nfs=/usr/sbin/mount.nfs4" -add "$ROOT/bin/mount.nfs=/usr/sbin/mount.nfs")
		echo "    no NFS client in this kernel: the driver's images get the test NFS client as mount.nfs4 in a layer of its own"
	fi
	# Each archive is kept in $E2E_CACHE/image-cache under a hash of all it is
	# built from (the tool, the files, the arguments): a warm run copies it.
	# The driver's root filesystem is in the key through the Dockerfile and
	# driverimage (its cache key is theirs); when that cache is gone (to take
	# Debian's updates), the images made from it go too.
	local ver
	ls "$E2E_CACHE"/rootfs/rootfs-*.tar >/dev/null 2>&1 || rm -rf "$E2E_CACHE/image-cache"
	ver=$("$ROOT/bin/vsphere-csi" --version | awk '{print $2}')
	cached_image vsphere-csi "$(inputs_key "$img/driverimage" "$ROOT/Dockerfile" "$ROOT/bin/vsphere-csi" "$ROOT/bin/mount.nfs" -- "$ver" "${nfs[@]}")" \
		"$img/driverimage" -dockerfile "$ROOT/Dockerfile" -binary "$ROOT/bin/vsphere-csi" \
		-version "$ver" -cache "$E2E_CACHE/rootfs" -name "$DRIVER_IMAGE" -o "$img/vsphere-csi.tar" "${nfs[@]}"
	# A newly built driver for TestHelm's helm upgrade: the same source, another version.
	local next=$E2E_CACHE/next
	cached_image vsphere-csi-next "$(inputs_key "$img/driverimage" "$ROOT/Dockerfile" "$ROOT/bin/vsphere-csi" "$ROOT/bin/mount.nfs" -- "$ver-next" "${nfs[@]}")" \
		build_next_image "$next" "$ver-next" "${nfs[@]}"
	# The sidecars as their upstream images are: the static binary alone, run as root.
	local mod s sver
	for s in external-provisioner/v6:csi-provisioner external-attacher/v4:csi-attacher external-resizer/v2:csi-resizer \
		external-snapshotter/v8:csi-snapshotter external-snapshotter/v8:snapshot-controller; do
		mod=github.com/kubernetes-csi/${s%%:*}
		sver=$(cd "$ROOT/test/e2e/tools/sidecars" && $GO list -m -f '{{.Version}}' "$mod")
		cached_image "${s##*:}" "$(inputs_key "$img/mkimage" "$E2E_CACHE/bin/${s##*:}" -- "$sver")" \
			"$img/mkimage" -name "registry.k8s.io/sig-storage/${s##*:}:$sver" -o "$img/${s##*:}.tar" \
			-entrypoint "/${s##*:}" "$E2E_CACHE/bin/${s##*:}=/${s##*:}"
	done
	cached_image pause "$(inputs_key "$img/mkimage" "$img/pause" --)" \
		"$img/mkimage" -name registry.k8s.io/pause:3.10 -o "$img/pause.tar" -entrypoint /pause "$img/pause=/pause"
	local links="" a
	for a in sh ls cat echo sleep test [ stat mkdir rm dd sync hostname wc od head tail grep mount df true false env touch blockdev tee; do
		links="$links bin/$a->busybox"
	done
	# shellcheck disable=SC2086 # $links: one argument per link
	cached_image busybox "$(inputs_key "$img/mkimage" /bin/busybox -- $links)" \
		"$img/mkimage" -name docker.io/library/busybox:e2e -o "$img/busybox.tar" -entrypoint /bin/sh \
		/bin/busybox=/bin/busybox $links
	rm -f "$img/pause" "$img/mkimage" "$img/driverimage"
	took
}

# inputs_key FILE... -- WORD...: a hash of the files' contents and the words.
inputs_key() {
	local files=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
	shift
	{ sha256sum "${files[@]}" | cut -c1-64; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

# cached_image NAME KEY CMD...: $img/NAME.tar (img is the caller's) from
# $E2E_CACHE/image-cache when one was built from the same inputs (KEY), else
# built by CMD and kept there (replacing NAME's older ones).
cached_image() {
	local name=$1 key=$2; shift 2
	local dir=$E2E_CACHE/image-cache
	if [ -f "$dir/$name-$key.tar" ]; then
		cp "$dir/$name-$key.tar" "$img/$name.tar"
		echo "    $name.tar: cached ($key)"
		return 0
	fi
	"$@"
	mkdir -p "$dir"
	rm -f "$dir/$name"-????????????????.tar
	# Whole or not at all: a copy cut short must not pass for the image.
	cp "$img/$name.tar" "$dir/.$name-$key.tar.tmp"
	mv "$dir/.$name-$key.tar.tmp" "$dir/$name-$key.tar"
	echo "    $name.tar: built ($key)"
}

# build_next_image DIR VERSION DRIVERIMAGE-ARGS...: the driver built again
# with another version into DIR, and its image as vsphere-csi-next.tar.
build_next_image() {
	local dir=$1 ver=$2; shift 2
	make -C "$ROOT" --no-print-directory build GO="$GO" BIN="$dir" VERSION="$ver" >/dev/null
	"$img/driverimage" -dockerfile "$ROOT/Dockerfile" -binary "$dir/vsphere-csi" -version "$ver" -cache "$E2E_CACHE/rootfs" \
		-name "$DRIVER_IMAGE-next" -o "$img/vsphere-csi-next.tar" "$@"
}

# ---------------------------------------------------------------- processes
# start NAME CMD...: runs CMD in the background, its output in $LOGS/NAME.log,
# its PID in $PIDS/NAME.
start() {
	local name=$1; shift
	echo "    start $name: $*" >"$LOGS/$name.cmd"
	setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
	echo "$! $1" >"$PIDS/$name"
	echo "    $name: pid $!"
}

# ours NAME: the PID in $PIDS/NAME, if that process is still the program we started.
ours() {
	[ -f "$PIDS/$1" ] || return 1
	local pid prog
	read -r pid prog <"$PIDS/$1"
	kill -0 "$pid" 2>/dev/null || return 1
	if [ -n "$prog" ]; then
		[ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -1)" = "$prog" ] || return 1
	fi
	echo "$pid"
}
alive() { ours "$1" >/dev/null; }

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
	local what=$1 secs=$2; shift 2
	local end=$(( $(date +%s) + secs ))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$end" ]; then
			echo "e2e: timed out after ${secs}s waiting for $what" >&2
			return 1
		fi
		sleep 0.5
	done
}

# alive_or_log NAME: fails showing the log's tail if NAME died.
alive_or_log() {
	alive "$1" && return 0
	echo "e2e: $1 is not running; the end of $LOGS/$1.log:" >&2
	tail -30 "$LOGS/$1.log" >&2 || true
	return 1
}

kubectl() { "$E2E_CACHE/bin/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

pki() {
	step "Certificates (openssl, everything on 127.0.0.1)"
	mkdir -p "$PKI"
	cd "$PKI"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=vsphere-csi-e2e-ca" 2>/dev/null
	cert() { # name subject [san]
		openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
		if [ -n "${3:-}" ]; then printf 'subjectAltName=%s\n' "$3" >"$1.ext"; else : >"$1.ext"; fi
		openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
	}
	cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
	cert admin "/O=system:masters/CN=e2e-admin"
	cert kubelet "/CN=$NODE_NAME" "IP:127.0.0.1,IP:$NODE_IP,DNS:localhost,DNS:$NODE_NAME"
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	cd - >/dev/null
	cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$PKI/admin.crt", client-key: "$PKI/admin.key"}
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
EOF
	took
}

control_plane() {
	local bin=$E2E_CACHE/bin
	step "etcd (Debian) on 127.0.0.1:$ETCD_PORT"
	start etcd etcd --name e2e --data-dir "$E2E_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn
	wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health" || { alive_or_log etcd; return 1; }
	took

	step "Node address $NODE_IP (on lo)"
	if ! ip -4 addr show dev lo | grep -qw "$NODE_IP"; then
		ip addr add "$NODE_IP/32" dev lo && touch "$E2E_DIR/node-ip-added"
	fi
	took

	step "kube-apiserver $K8S_VERSION on 127.0.0.1 and $NODE_IP:$APISERVER_PORT (the kubernetes Service's endpoint)"
	start kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
		--service-cluster-ip-range 10.96.0.0/24 \
		--client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--service-account-issuer https://kubernetes.default.svc --authorization-mode Node,RBAC \
		--allow-privileged=true --profiling=false --v 1
	wait_for "the API server's /readyz" 120 kubectl get --raw /readyz || { alive_or_log kube-apiserver; return 1; }
	took

	step "kube-controller-manager and kube-scheduler"
	start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$KUBECONFIG_FILE" \
		--authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
		--bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
		--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
		--use-service-account-credentials=false --node-monitor-grace-period 20s --v 1
	start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" \
		--authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
		--bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --v 1
	wait_for "kube-controller-manager's /healthz" 60 curl -skf "https://127.0.0.1:$KCM_PORT/healthz" || { alive_or_log kube-controller-manager; return 1; }
	wait_for "kube-scheduler's /healthz" 60 curl -skf "https://127.0.0.1:$SCHED_PORT/healthz" || { alive_or_log kube-scheduler; return 1; }
	wait_for "the default ServiceAccount" 60 kubectl -n default get serviceaccount default || true
	took
}

# cni_config DIR CIDR: a bridge network for the pods of one node (in that node's network namespace).
cni_config() {
	mkdir -p "$1/net.d"
	cat >"$1/net.d/10-e2e-bridge.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "e2e-pods", "plugins": [
  {"type": "bridge", "bridge": "$CNI_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$2"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$1/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
EOF
}

# containerd_config DIR CNIDIR: one node's containerd, everything of it under DIR.
containerd_config() {
	mkdir -p "$1"
	cat >"$1/config.toml" <<EOF
version = 2
root = "$1/root"
state = "$1/state"
[grpc]
  address = "$1/containerd.sock"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$1/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$2/net.d"
EOF
}

# import_images SOCKET: the images built by tools into one node's containerd.
import_images() {
	local i
	for i in "$E2E_CACHE"/images/*.tar; do
		ctr --address "$1" -n k8s.io images import "$i" >/dev/null
	done
}

# kubelet_config IP PODLOGSDIR CGROUPROOT: one node's kubelet configuration.
kubelet_config() {
	cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
${3:+cgroupRoot: $3}
failCgroupV1: false
failSwapOn: false
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
syncFrequency: 10s
# The attach/detach controller detaches a volume only once the node's status
# no longer lists it in use, which kubelet updates every
# nodeStatusUpdateFrequency (10 s by default): 1 s, so that a detach follows
# its unmount within a second or two (a write only when the status changed,
# else every nodeStatusReportFrequency).
nodeStatusUpdateFrequency: 1s
nodeStatusReportFrequency: 1m
fileCheckFrequency: 10s
volumeStatsAggPeriod: 10s
podLogsDir: $2
EOF
}

node() {
	local bin=$E2E_CACHE/bin
	step "containerd (Debian) with restrict_oom_score_adj, overlayfs snapshotter; pod network: CNI bridge $CNI_BRIDGE, $POD_CIDR"
	mkdir -p "$CTRD" "$E2E_DIR/cni/net.d"
	# The bridge plugin's gateway turns IP forwarding on: down puts it back.
	cat /proc/sys/net/ipv4/ip_forward >"$E2E_DIR/ip_forward"
	cni_config "$E2E_DIR/cni" "$POD_CIDR"
	containerd_config "$CTRD" "$E2E_DIR/cni"
	start containerd containerd --config "$CTRD/config.toml"
	wait_for containerd 30 ctr --address "$CTRD/containerd.sock" version || { alive_or_log containerd; return 1; }
	import_images "$CTRD/containerd.sock"
	ctr --address "$CTRD/containerd.sock" -n k8s.io images ls -q | grep -v '^sha256:' | sed 's/^/    image: /'
	took

	step "kubelet $K8S_VERSION (cgroupfs, failCgroupV1: false, root dir $KUBELET_DIR)"
	mkdir -p "$KUBELET_DIR"
	kubelet_config "$NODE_IP" "$E2E_DIR/pod-logs" "" >"$E2E_DIR/kubelet-config.yaml"
	start kubelet "$bin/kubelet" --kubeconfig "$KUBECONFIG_FILE" --config "$E2E_DIR/kubelet-config.yaml" \
		--container-runtime-endpoint "unix://$CTRD/containerd.sock" --root-dir "$KUBELET_DIR" \
		--node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --v 1
	wait_for "node $NODE_NAME Ready" 120 bash -c "'$bin/kubectl' --kubeconfig '$KUBECONFIG_FILE' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True" ||
		{ alive_or_log kubelet; kubectl describe node "$NODE_NAME" | tail -30 >&2; return 1; }
	took

	step "kube-proxy $K8S_VERSION (iptables): Services, the kubernetes Service's 10.96.0.1:443 to $NODE_IP:$APISERVER_PORT"
	start kube-proxy "$bin/kube-proxy" --kubeconfig "$KUBECONFIG_FILE" --hostname-override "$NODE_NAME" \
		--proxy-mode iptables --cluster-cidr "$CLUSTER_CIDR" --iptables-localhost-nodeports=false \
		--conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
		--healthz-bind-address "127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT" --metrics-bind-address "127.0.0.1:$KUBE_PROXY_METRICS_PORT" --v 1
	wait_for "kube-proxy's rules for the kubernetes Service" 60 bash -c "iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q 10.96.0.1/32" ||
		{ alive_or_log kube-proxy; return 1; }
	took
}

# vm_uuid VM: the BIOS UUID of one of the embedded vCenter's node VMs (from its summary).
vm_uuid() {
	local line
	line=$(grep -m1 "^  $1 " "$LOGS/vsphere-sim.log") || die "no $1 in the embedded vCenter's summary"
	sed -n 's/.* uuid=\([^ ]*\).*/\1/p' <<<"$line"
}

# vmware_serial UUID: DMI's product_serial of a VMware VM with that BIOS UUID
# ("VMware-42 1a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8").
vmware_serial() {
	local h=${1//-/} a="" b="" i
	for i in 0 2 4 6 8 10 12 14; do a+="${h:i:2} "; done
	for i in 16 18 20 22 24 26 28 30; do b+="${h:i:2} "; done
	echo "VMware-${a% }-${b% }"
}

# node_identity DIR UUID BYID: the node VM a node plays, where the chart's node plugin reads it.
node_identity() {
	mkdir -p "$1/dmi"
	vmware_serial "$2" >"$1/dmi/product_serial"
	ln -sfn "$3" "$1/by-id"
}

# start_in NAME PID CMD...: start, in the network and mount namespaces of process PID.
start_in() {
	local name=$1 pid=$2; shift 2
	echo "    start $name in the namespaces of pid $pid: $*" >"$LOGS/$name.cmd"
	setsid nsenter --target "$pid" --mount --net -- "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
	echo "$! $1" >"$PIDS/$name"
	echo "    $name: pid $!"
}

# cgroup_dirs NAME: the node's cgroup root in every cgroup v1 hierarchy (or the v2 tree).
cgroup_dirs() {
	local h
	for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		[ -e "$h/cgroup.procs" ] || continue
		[ "$h" = /sys/fs/cgroup/ ] && [ -d /sys/fs/cgroup/memory ] && continue
		echo "${h%/}/$1"
	done
}

spare_node() {
	local n=$1 bin=$E2E_CACHE/bin
	local name=e2e-node-$n vm=k8s-node-$n netns=e2e-n$n veth=e2e-v$n
	local dir=$E2E_DIR/nodes/$n ip=10.201.$n.2 gw=10.201.$n.1 cidr=10.244.$n.0/24
	step "Node $name: network namespace $netns ($ip, veth $veth), its own containerd and kubelet root, node VM $vm"
	mkdir -p "$dir/kubelet" "$dir/pod-logs" "$BYID_ROOT/$vm"
	ip netns add "$netns"
	ip link add "$veth" type veth peer name eth0 netns "$netns"
	ip addr add "$gw/24" dev "$veth"
	ip link set "$veth" up
	ip -n "$netns" addr add "$ip/24" dev eth0
	ip -n "$netns" link set eth0 up
	ip -n "$netns" link set lo up
	ip -n "$netns" route add default via "$gw"
	ip route add "$cidr" via "$ip"
	local uuid
	uuid=$(vm_uuid "$vm")
	mkdir -p "$dir/kubelet/$(basename "$BYID_ROOT")"
	node_identity "$dir/kubelet/e2e-node" "$uuid" "../$(basename "$BYID_ROOT")/$vm"
	# The node's mount namespace, held by a sleep: its kubelet directory is
	# $KUBELET_DIR there, with the embedded vCenter's links for its VM.
	# (nsenter, not ip netns exec: that mounts a sysfs of the namespace over /sys, hiding the cgroup mounts.)
	setsid nsenter --net="/run/netns/$netns" unshare --mount --propagation slave sleep infinity </dev/null >/dev/null 2>&1 &
	local holder=$!
	echo "$holder sleep" >"$PIDS/$name-ns"
	wait_for "$name's mount namespace" 10 bash -c "readlink /proc/$holder/exe | grep -q '/sleep\$'"
	nsenter --target "$holder" --mount -- mount --bind "$BYID_ROOT" "$dir/kubelet/$(basename "$BYID_ROOT")"
	# Node 0's kubelet directory is a mount (kubelet binds its root onto itself): not in this
	# namespace, where only this node's is, shared as kubelet and containerd want it for
	# Bidirectional propagation (containerd looks at one mount of the path: no stack of them).
	while nsenter --target "$holder" --mount -- mountpoint -q "$KUBELET_DIR"; do
		nsenter --target "$holder" --mount -- umount -l "$KUBELET_DIR"
	done
	nsenter --target "$holder" --mount -- mount --rbind "$dir/kubelet" "$KUBELET_DIR"
	nsenter --target "$holder" --mount -- mount --make-rshared "$KUBELET_DIR"
	local cg
	for cg in $(cgroup_dirs "e2e-$name"); do
		mkdir -p "$cg"
		if [ -e "$cg/cpuset.cpus" ]; then cat "$(dirname "$cg")/cpuset.cpus" >"$cg/cpuset.cpus"; cat "$(dirname "$cg")/cpuset.mems" >"$cg/cpuset.mems"; fi
	done
	cni_config "$dir/cni" "$cidr"
	containerd_config "$dir/containerd" "$dir/cni"
	start_in "$name-containerd" "$holder" containerd --config "$dir/containerd/config.toml"
	wait_for "$name's containerd" 30 ctr --address "$dir/containerd/containerd.sock" version || { alive_or_log "$name-containerd"; return 1; }
	import_images "$dir/containerd/containerd.sock"
	kubelet_config "$ip" "$dir/pod-logs" "/e2e-$name" >"$dir/kubelet-config.yaml"
	start_in "$name-kubelet" "$holder" "$bin/kubelet" --kubeconfig "$E2E_DIR/nodes/kubeconfig" --config "$dir/kubelet-config.yaml" \
		--container-runtime-endpoint "unix://$dir/containerd/containerd.sock" --root-dir "$KUBELET_DIR" \
		--node-ip "$ip" --hostname-override "$name" --register-with-taints "$SPARE_TAINT" --v 1
	start_in "$name-kube-proxy" "$holder" "$bin/kube-proxy" --kubeconfig "$E2E_DIR/nodes/kubeconfig" --hostname-override "$name" \
		--proxy-mode iptables --cluster-cidr "$CLUSTER_CIDR" --iptables-localhost-nodeports=false \
		--conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
		--healthz-bind-address "127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT" --metrics-bind-address "127.0.0.1:$KUBE_PROXY_METRICS_PORT" --v 1
	echo "    $name plays $vm: BIOS UUID $uuid"
	took
}

# spare_nodes: the helm phase's other nodes, started together, then waited for.
spare_nodes() {
	[ "$SPARE_NODES" -gt 0 ] || return 0
	mkdir -p "$E2E_DIR/nodes"
	echo 1 >/proc/sys/net/ipv4/ip_forward # the host routes between the nodes' namespaces (down puts it back)
	sed "s|https://127.0.0.1:$APISERVER_PORT|https://$NODE_IP:$APISERVER_PORT|" "$KUBECONFIG_FILE" >"$E2E_DIR/nodes/kubeconfig"
	local n bin=$E2E_CACHE/bin
	# Side by side (most of each is importing the images into its containerd).
	local pids=() rc=0
	for n in $(seq 1 "$SPARE_NODES"); do
		spare_node "$n" >"$LOGS/spare-node-$n.out" 2>&1 &
		pids+=($!)
	done
	for n in $(seq 1 "$SPARE_NODES"); do
		wait "${pids[$((n - 1))]}" || rc=1
		cat "$LOGS/spare-node-$n.out"
	done
	[ $rc = 0 ] || return 1
	step "Spare nodes Ready (tainted $SPARE_TAINT until a test takes them in)"
	for n in $(seq 1 "$SPARE_NODES"); do
		wait_for "node e2e-node-$n Ready" 120 bash -c "'$bin/kubectl' --kubeconfig '$KUBECONFIG_FILE' get node e2e-node-$n -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True" ||
			{ alive_or_log "e2e-node-$n-kubelet"; kubectl describe node "e2e-node-$n" | tail -30 >&2; return 1; }
	done
	kubectl get nodes -o wide | sed 's/^/    /'
	took
}

# ctr_tasks SOCKET ARGS...: `ctr tasks ARGS ID` for every container one containerd runs.
ctr_tasks() {
	local sock=$1 c
	shift
	for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
		ctr --address "$sock" -n k8s.io tasks "$@" "$c" >/dev/null 2>&1 || true
	done
}

# spare_nodes_down: what is left of the spare nodes once their processes are
# stopped (down stops every node's at once): shims, network namespaces, cgroups.
spare_nodes_down() {
	local d n name pid cg
	for d in "$E2E_DIR"/nodes/*/; do
		[ -d "$d/containerd" ] || continue
		n=$(basename "$d"); name=e2e-node-$n
		for pid in $(pgrep -f "containerd-shim.*-address ${d%/}/containerd/containerd.sock" || true); do
			echo "    shim pid $pid of $name's containerd: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
		done
		if ip netns list 2>/dev/null | grep -qw "e2e-n$n"; then ip netns del "e2e-n$n" && echo "    deleted network namespace e2e-n$n"; fi
		for cg in $(cgroup_dirs "e2e-$name"); do
			if [ -d "$cg" ]; then find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
		done
	done
	return 0
}

driver() {
	local bin=$E2E_CACHE/bin
	step "NFS client for ReadWriteMany volumes (the node plugin runs mount -t nfs4)"
	# The test helper goes in only where the kernel has no NFS client and no
	# mount.nfs4 exists (test/nfsmount/README.md); down takes it out again.
	"$ROOT/bin/mount.nfs" --install 2>&1 | sed 's/^/    /'
	if grep -q vsphere-csi-test-nfs-helper /sbin/mount.nfs4 2>/dev/null; then touch "$E2E_DIR/nfs-helper-installed"; fi
	took

	step "Embedded vCenter (bin/vsphere-sim) on $NODE_IP:$SIM_PORT"
	mkdir -p "$SIM_DIR" "$BYID_ROOT"
	# Zones from vSphere tags: the node VMs k8s-node-1.. are in zone-a, k8s-node-b-1 in zone-b.
	# A shared vCenter, as real ones are: unrelated VMs on every host (zone B's and a workload
	# cluster's lack nfs-gold), another cluster's volumes, background tasks (DRS moves our node
	# VMs too, Storage vMotions under the driver's own user, backups, another cluster's CNS calls).
	# --release-on-exit: at teardown its node VMs' disks go with it (a restart for a
	# test goes through the control endpoint, which keeps them, as a vCenter restart does).
	start vsphere-sim "$ROOT/bin/vsphere-sim" --listen "$NODE_IP:$SIM_PORT" --dir "$SIM_DIR" --hypervisor \
		--by-id-root "$BYID_ROOT" --zone-b-node-vms 1 --topology --release-on-exit --control "127.0.0.1:$SIM_CONTROL_PORT" \
		--write-config "$E2E_DIR/csi-vsphere.conf" --cluster-id e2e-cluster --nfs-address "$NODE_IP" \
		--neighbour-vms 300 --neighbour-tasks-per-minute 10 --neighbour-volumes 20
	wait_for "the embedded vCenter" 60 grep -q '^listening on' "$LOGS/vsphere-sim.log" || { alive_or_log vsphere-sim; return 1; }
	local line uuid
	line=$(grep -m1 "^  $NODE_VM " "$LOGS/vsphere-sim.log") || die "no $NODE_VM in the embedded vCenter's summary"
	uuid=$(sed -n 's/.* uuid=\([^ ]*\).*/\1/p' <<<"$line")
	echo "    node VM $NODE_VM plays $NODE_NAME: BIOS UUID $uuid, $(grep -o 'zone=[^ ]*' <<<"$line"), disks appear in $BYID_ROOT/$NODE_VM"
	echo "$uuid" >"$E2E_DIR/node-uuid"
	echo "$NODE_VM" >"$E2E_DIR/node-vm"
	echo "$BYID_ROOT/$NODE_VM" >"$E2E_DIR/node-by-id"
	node_identity "$NODE_IDENTITY" "$uuid" "../$(basename "$BYID_ROOT")/$NODE_VM"
	took

	step "CSIDriver $DRIVER (from deploy/kubernetes/csidriver.yaml); snapshot CRDs and snapshot-controller"
	kubectl apply -f "$ROOT/deploy/kubernetes/csidriver.yaml" >/dev/null
	kubectl apply -f "$E2E_CACHE/crds/" >/dev/null
	kubectl wait --for condition=established --timeout 60s -f "$E2E_CACHE/crds/" >/dev/null
	start snapshot-controller "$bin/snapshot-controller" --kubeconfig "$KUBECONFIG_FILE" --leader-election=false --v 4
	took

	step "Driver controller (host process) + csi-provisioner, csi-attacher, csi-resizer, csi-snapshotter"
	mkdir -p "$(dirname "$CSI_CONTROLLER_SOCK")"
	start csi-controller "$ROOT/bin/vsphere-csi" --mode controller --endpoint "unix://$CSI_CONTROLLER_SOCK" \
		--config "$E2E_DIR/csi-vsphere.conf" --kubeconfig "$KUBECONFIG_FILE" --healthz-address "127.0.0.1:$DRIVER_HEALTHZ_PORT" \
		--full-sync-interval 2m --leader-election-namespace kube-system -v 4
	wait_for "the controller's CSI socket" 30 test -S "$CSI_CONTROLLER_SOCK" || { alive_or_log csi-controller; return 1; }
	wait_for "the controller's /healthz" 30 curl -sf "http://127.0.0.1:$DRIVER_HEALTHZ_PORT/healthz" || { alive_or_log csi-controller; return 1; }
	start csi-provisioner "$bin/csi-provisioner" --kubeconfig "$KUBECONFIG_FILE" --csi-address "$CSI_CONTROLLER_SOCK" \
		--leader-election=false --extra-create-metadata --default-fstype ext4 --strict-topology --timeout 120s --v 4
	start csi-attacher "$bin/csi-attacher" --kubeconfig "$KUBECONFIG_FILE" --csi-address "$CSI_CONTROLLER_SOCK" \
		--leader-election=false --timeout 120s --v 4
	start csi-resizer "$bin/csi-resizer" --kubeconfig "$KUBECONFIG_FILE" --csi-address "$CSI_CONTROLLER_SOCK" \
		--leader-election=false --timeout 120s --v 4
	start csi-snapshotter "$bin/csi-snapshotter" --kubeconfig "$KUBECONFIG_FILE" --csi-address "$CSI_CONTROLLER_SOCK" \
		--leader-election=false --extra-create-metadata --timeout 120s --v 4
	took

	step "Driver node plugin (host process) registering itself with kubelet; its zone from vCenter"
	start csi-node "$ROOT/bin/vsphere-csi" --mode node --endpoint "unix://$CSI_NODE_SOCK" --config "$E2E_DIR/csi-vsphere.conf" \
		--node-id "$(cat "$E2E_DIR/node-uuid")" --by-id-dir "$BYID_ROOT/$NODE_VM" \
		--kubelet-registration-path "$CSI_NODE_SOCK" --plugin-registration-dir "$KUBELET_DIR/plugins_registry" -v 4
	wait_for "CSINode $NODE_NAME listing $DRIVER" 60 bash -c "'$bin/kubectl' --kubeconfig '$KUBECONFIG_FILE' get csinode $NODE_NAME -o jsonpath='{.spec.drivers[*].name}' | grep -qw $DRIVER" ||
		{ alive_or_log csi-node; tail -20 "$LOGS/kubelet.log" >&2; return 1; }
	kubectl get csinode "$NODE_NAME" -o jsonpath='    CSINode {.metadata.name}: driver {.spec.drivers[0].name}, node ID {.spec.drivers[0].nodeID}, topology keys {.spec.drivers[0].topologyKeys}{"\n"}'
	for p in csi-provisioner csi-attacher csi-resizer csi-snapshotter snapshot-controller; do alive "$p" || echo "    warning: $p exited; see $LOGS/$p.log"; done
	took
}

up() {
	[ ! -e "$PIDS" ] || [ -z "$(ls -A "$PIDS" 2>/dev/null)" ] || die "$E2E_DIR has running processes: hack/e2e.sh down first"
	! awk -v d="$E2E_DIR" 'index($5, d) == 1 {found=1} END {exit !found}' /proc/self/mountinfo || die "mounts left under $E2E_DIR: hack/e2e.sh down first"
	rm -rf "$E2E_DIR"
	mkdir -p "$PIDS" "$LOGS"
	pki
	control_plane
	node
	driver
	echo "==> [e2e] cluster up: export KUBECONFIG=$KUBECONFIG_FILE (kubectl in $E2E_CACHE/bin)"
}

# gotest LOGNAME ARGS...: go test in test/e2e against the cluster, output shown and kept.
gotest() {
	local log=$LOGS/$1.log; shift
	set +e
	(cd "$ROOT/test/e2e" && E2E_DIR="$E2E_DIR" E2E_BIN="$E2E_CACHE/bin" E2E_IMAGES="$E2E_CACHE/images" E2E_ROOT="$ROOT" NODE_NAME="$NODE_NAME" \
		E2E_SIM_CONTROL="127.0.0.1:$SIM_CONTROL_PORT" \
		KUBECONFIG="$KUBECONFIG_FILE" $GO test -count=1 -timeout "$E2E_TEST_TIMEOUT" -v "$@" . 2>&1) | tee "$log"
	local rc=${PIPESTATUS[0]}
	set -e
	return "$rc"
}

run_tests() {
	local rc=0 helm=0 spare=
	if [ -z "$E2E_RUN" ] || [[ TestHelm =~ $E2E_RUN ]]; then helm=1; fi
	# The helm phase's spare nodes start while the first phase's tests run
	# (tainted: none of those tests' pods goes there).
	if [ $helm = 1 ]; then
		spare_nodes >"$LOGS/spare-nodes.out" 2>&1 &
		spare=$!
	fi
	step "Go tests in test/e2e against the real API server${E2E_RUN:+ (-run $E2E_RUN)}"
	# The tests that call t.Parallel (each its own objects, nothing that
	# stops the driver or the vCenter or changes its latency) run together
	# once the others are done: most of their time is waiting.
	gotest go-test -parallel 8 -skip '^TestHelm$' ${E2E_RUN:+-run "$E2E_RUN"} || rc=1
	took
	if [ $helm = 1 ]; then
		local spare_rc=0
		wait "$spare" || spare_rc=1
		cat "$LOGS/spare-nodes.out"
		[ $spare_rc = 0 ] || { echo "e2e: the spare nodes did not come up: no helm phase" >&2; return 1; }
		step "helm install/uninstall of the chart: the driver processes above stop, the test runs the chart's"
		stop_pids csi-provisioner csi-attacher csi-resizer csi-snapshotter csi-node csi-controller
		E2E_HELM=1 gotest go-test-helm -run '^TestHelm$' || rc=1
		took
	fi
	return $rc
}

# ---------------------------------------------------------------- teardown
# stop_pids NAME...: SIGTERM to each (only the PID we recorded, if it is still
# ours), all at once; SIGKILL to any still alive after 20 s.
stop_pids() {
	local name pid i t0 names=() pids=() sig=${STOP_SIGNAL:-TERM}
	t0=$(date +%s.%N)
	for name in "$@"; do
		[ -f "$PIDS/$name" ] || continue
		if pid=$(ours "$name"); then
			kill -"$sig" "$pid" 2>/dev/null || true
			names+=("$name")
			pids+=("$pid")
		else
			rm -f "$PIDS/$name"
		fi
	done
	[ ${#pids[@]} -gt 0 ] || return 0
	local left
	for i in $(seq 1 200); do
		left=0
		for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
		[ $left = 1 ] || break
		sleep 0.1
	done
	for i in "${!pids[@]}"; do
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "    ${names[$i]} (pid ${pids[$i]}) ignored SIGTERM: SIGKILL"
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
		rm -f "$PIDS/${names[$i]}"
	done
	echo "    $([ "$sig" = KILL ] && echo killed || echo stopped) ${names[*]} in $(since "$t0")s"
}
stop_pid() { stop_pids "$1"; }
# kill_pids NAME...: SIGKILL to each, then wait until they are gone.
kill_pids() { STOP_SIGNAL=KILL stop_pids "$@"; }

down() {
	step "Teardown: processes by PID, pods' containers, mounts, loop devices"
	[ -d "$E2E_DIR" ] || { echo "    nothing to do"; took; return 0; }
	# Pods first, while kubelet and the driver can still unmount and detach.
	if alive kubelet && alive kube-apiserver; then
		kubectl delete pods,statefulsets --all -A --wait=false >/dev/null 2>&1 || true
	fi
	local n f d spare=() ctrds=()
	# Processes TestHelm started, if it could not stop them itself.
	for f in "$PIDS"/helm-*; do [ -e "$f" ] && stop_pid "$(basename "$f")"; done
	# Every node at once: kubelets and kube-proxies, then the containers, then the containerds.
	alive containerd && ctrds+=("$CTRD/containerd.sock")
	for d in "$E2E_DIR"/nodes/*/; do
		[ -d "$d/containerd" ] || continue
		n=e2e-node-$(basename "$d")
		spare+=("$n")
		alive "$n-containerd" && ctrds+=("${d%/}/containerd/containerd.sock")
	done
	stop_pids csi-provisioner csi-attacher csi-resizer csi-snapshotter snapshot-controller csi-node csi-controller kubelet kube-proxy \
		"${spare[@]/%/-kubelet}" "${spare[@]/%/-kube-proxy}"
	if [ ${#ctrds[@]} -gt 0 ]; then
		for f in "${ctrds[@]}"; do ctr_tasks "$f" kill -s KILL; done
		sleep 1
		for f in "${ctrds[@]}"; do ctr_tasks "$f" delete -f; done
	fi
	stop_pids containerd "${spare[@]/%/-containerd}" "${spare[@]/%/-ns}"
	spare_nodes_down
	# The control plane's state goes with $E2E_DIR: no need for a graceful stop
	# (kube-apiserver takes seconds to drain its watches).
	kill_pids kube-scheduler kube-controller-manager kube-apiserver etcd
	# containerd-shim processes serving our containerd root (found by their -address argument).
	local pid
	for pid in $(pgrep -f "containerd-shim.*-address $CTRD/containerd.sock" || true); do
		echo "    shim pid $pid of our containerd: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
	done
	# Pod network namespaces no process is in any more (of pods whose containers were killed).
	local ns
	for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do
		if [ -z "$(ip netns pids "$ns" 2>/dev/null)" ]; then ip netns del "$ns" 2>/dev/null && echo "    deleted pod network namespace $ns"; fi
	done
	# The embedded vCenter last: on SIGTERM it detaches its loop devices.
	stop_pid vsphere-sim
	# The network: kube-proxy's rules, the pod bridge, the node address, IP forwarding as it was.
	if [ -x "$E2E_CACHE/bin/kube-proxy" ] && iptables -t nat -S 2>/dev/null | grep -q KUBE-SERVICES; then
		"$E2E_CACHE/bin/kube-proxy" --cleanup >/dev/null 2>&1 && echo "    kube-proxy's iptables rules removed"
	fi
	# The chains kubelet makes (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT), and any
	# KUBE-* chain left: the jumps to them first, then the chains. Only when this run started a
	# kubelet (a machine that runs a real one has no business running make e2e).
	if [ -e "$LOGS/kubelet.cmd" ]; then
		local ipt t c
		for ipt in iptables ip6tables; do
			command -v $ipt >/dev/null || continue
			for t in filter nat mangle; do
				$ipt -t $t -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | sed 's/^-A //' |
					while read -r rule; do eval "$ipt -t $t -D $rule" 2>/dev/null || true; done || true
				for c in $($ipt -t $t -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do $ipt -t $t -F "$c" 2>/dev/null || true; done
				for c in $($ipt -t $t -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do $ipt -t $t -X "$c" 2>/dev/null || true; done
			done
		done
	fi
	if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then ip link del "$CNI_BRIDGE" && echo "    deleted bridge $CNI_BRIDGE"; fi
	if [ -e "$E2E_DIR/node-ip-added" ]; then ip addr del "$NODE_IP/32" dev lo 2>/dev/null && echo "    removed $NODE_IP from lo"; rm -f "$E2E_DIR/node-ip-added"; fi
	if [ -s "$E2E_DIR/ip_forward" ]; then cat "$E2E_DIR/ip_forward" >/proc/sys/net/ipv4/ip_forward; fi
	# Mounts under $E2E_DIR, deepest first (kubelet bind-mounts its root dir onto itself).
	local m left
	for _ in 1 2 3; do
		left=$(awk -v d="$E2E_DIR" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r -u)
		[ -n "$left" ] || break
		for m in $left; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; echo "    unmounted $m"; done
	done
	# Loop devices backed by files under $E2E_DIR.
	local dev
	for dev in $(losetup -a 2>/dev/null | grep -F "$E2E_DIR/" | cut -d: -f1); do
		losetup -d "$dev" && echo "    detached $dev"
	done
	# The NFS test helper, if up installed it (never a real mount.nfs).
	if [ -e "$E2E_DIR/nfs-helper-installed" ] && [ -x "$ROOT/bin/mount.nfs" ]; then
		"$ROOT/bin/mount.nfs" --uninstall 2>&1 | sed 's/^/    /' || true
	fi
	left=$(awk -v d="$E2E_DIR" 'index($5, d) == 1' /proc/self/mountinfo; losetup -a | grep -F "$E2E_DIR/" || true
		ip link show "$CNI_BRIDGE" 2>/dev/null; ip -o link show type veth 2>/dev/null | grep -F "master $CNI_BRIDGE" || true
		iptables-save 2>/dev/null | grep -E '^:KUBE-|-j KUBE-' || true; ip netns list 2>/dev/null | grep -E '^(cni-|e2e-n)' || true
		ip -o link show 2>/dev/null | grep -E ': e2e-v[0-9]+@' || true; ls -d /sys/fs/cgroup/*/e2e-e2e-node-* 2>/dev/null || true)
	[ -z "$left" ] || { echo "e2e: still left after teardown:"; echo "$left"; }
	took
	[ -z "$left" ]
}

# all runs each phase as its own process so that `set -e` holds inside it.
all() {
	"$0" tools
	local rc=0
	trap '"$0" down || true' EXIT
	if ! "$0" up; then
		rc=1
		echo "e2e: the cluster did not come up; logs in $LOGS" >&2
	elif ! "$0" test; then
		rc=1
		echo "e2e: tests failed; the full output is $LOGS/go-test.log, every process's log is in $LOGS" >&2
	fi
	trap - EXIT
	"$0" down || rc=1
	echo "==> [e2e] $([ $rc = 0 ] && echo PASS || echo FAIL) in $(since "$T0")s"
	return $rc
}

case "${1:-all}" in
tools) tools ;;
up) up ;;
test) run_tests ;;
down) down ;;
all) all ;;
*) die "usage: $0 [tools|up|test|down|all]" ;;
esac
