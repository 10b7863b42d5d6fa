# shellcheck shell=bash disable=SC2034 # the settings are used by the other files
# config: every setting of the e2e harness and the helpers every phase uses.
# Sourced by hack/e2e.sh; each setting can be moved with its variable.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_DIR=${E2E_DIR:-/tmp/vsphere-csi-e2e}
E2E_CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vsphere-csi-e2e}
E2E_TEST_TIMEOUT=${E2E_TEST_TIMEOUT:-20m}
E2E_RUN=${E2E_RUN:-}
GO=${GO:-go}
# The Kubernetes version: the one the tools module builds (its go.mod, the one place it is written).
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$ROOT/test/e2e/tools/kube/go.mod")
NODE_NAME=e2e-node
NODE_VM=k8s-node-b-1 # the embedded vCenter's node VM node 0 plays (zone-b)
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
DEB_PACKAGES="etcd-server containerd runc containernetworking-plugins busybox-static openssl util-linux mount e2fsprogs xfsprogs mmdebstrap iptables iproute2 jq"
# Node 0's address: on lo, so it exists on any machine and leaves it for no one; the API server
# advertises it (the kubernetes Service's endpoint, which kube-proxy forwards 10.96.0.1:443 to),
# the embedded vCenter listens on it, and pods reach both through the pod network's gateway.
NODE_IP=${E2E_NODE_IP:-10.200.0.1}
POD_CIDR=${E2E_POD_CIDR:-10.244.0.0/24}
CLUSTER_CIDR=10.244.0.0/16 # every node's pod CIDR: node 0's above, spare node N's 10.244.N.0/24
CNI_BRIDGE=e2e-cni0
# Spare nodes for the chart phase: e2e-node-N (N = 1..), each in network namespace e2e-nN and a
# mount namespace of its own, playing node VM k8s-node-N (zone-a), tainted until a test takes it in.
SPARE_NODES=${E2E_SPARE_NODES:-2}
SPARE_TAINT=e2e.vsphere-csi/spare=true:NoSchedule
# The build tag of the chart phase's tests (test/e2e/doc.go): they run with the driver's
# host processes stopped, on every node.
CHART_TAG=e2e_chart

PROCS=$E2E_DIR/procs # one record per process: NAME.json (test/e2e/internal/harness)
LOGS=$E2E_DIR/logs
PKI=$E2E_DIR/pki
CLUSTER_JSON=$E2E_DIR/cluster.json
KUBELET_DIR=$E2E_DIR/kubelet
KUBECONFIG_FILE=$E2E_DIR/admin.kubeconfig
SIM_DIR=$E2E_DIR/vcenter
BYID_ROOT=$KUBELET_DIR/vsphere-sim-by-id # under the kubelet directory: the chart mounts it into the node plugin
CSI_CONTROLLER_SOCK=$E2E_DIR/controller/csi.sock
CSI_NODE_SOCK=$KUBELET_DIR/plugins/$DRIVER/csi.sock
# What makes a node the node VM it plays, under its kubelet directory so that the chart's node
# plugin sees it at the same path on every node: dmi/product_serial (its BIOS UUID in VMware's
# form, for --dmi-dir) and by-id (its disks' links, for --by-id-dir).
NODE_IDENTITY=$KUBELET_DIR/e2e-node

T0=${T0:-$(date +%s.%N)}
step_start=
step() { step_start=$(date +%s.%N); echo "==> [e2e] $*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
took() { echo "    done in $(since "$step_start")s (total $(since "$T0")s)"; }
die() { echo "e2e: $*" >&2; exit 1; }
kubectl() { "$E2E_CACHE/bin/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

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
