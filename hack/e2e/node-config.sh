# shellcheck shell=bash
# node-config: what every node's containerd, CNI bridge and kubelet are configured with, and the
# images every node's containerd imports.

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
