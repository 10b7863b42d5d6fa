# shellcheck shell=bash
# teardown: `down` stops what `up` started, each process only while its record says it is still
# ours: pods first, while kubelet and the driver can still unmount and detach, then every node's
# processes, containers and containerd, the control plane, the embedded vCenter last (on SIGTERM
# it detaches its loop devices); then the network, mounts and loop devices under $E2E_DIR, the
# NFS test helper. It lists anything still left and fails if there is.

down() {
	step "Teardown: processes by their records, pods' containers, mounts, loop devices"
	[ -d "$E2E_DIR" ] || { echo "    nothing to do"; took; return 0; }
	if alive "$NODE_NAME-kubelet" && alive kube-apiserver; then
		kubectl delete pods,statefulsets --all -A --wait=false >/dev/null 2>&1 || true
	fi
	down_nodes
	# The control plane's state goes with $E2E_DIR: no need for a graceful stop
	# (kube-apiserver takes seconds to drain its watches).
	kill_pids kube-scheduler kube-controller-manager kube-apiserver etcd
	local pid ns
	# containerd-shim processes serving our containerds (found by their -address argument).
	for pid in $(pgrep -f "containerd-shim.*-address $E2E_DIR/(nodes/[0-9]+/)?containerd/containerd.sock" || true); do
		echo "    shim pid $pid of our containerd: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
	done
	# Pod network namespaces no process is in any more (of pods whose containers were killed).
	for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do
		if [ -z "$(ip netns pids "$ns" 2>/dev/null)" ]; then ip netns del "$ns" 2>/dev/null && echo "    deleted pod network namespace $ns"; fi
	done
	spare_namespaces_down
	stop_pids vsphere-sim
	down_network
	down_mounts
	local left
	left=$(leftovers)
	[ -z "$left" ] || { echo "e2e: still left after teardown:"; echo "$left"; }
	took
	[ -z "$left" ]
}

# down_nodes: the driver's processes, then every node's at once: kubelets and kube-proxies, the
# containers, the containerds and the spare nodes' namespace holders.
down_nodes() {
	local n nodes=("$NODE_NAME") ctrds=() f
	for f in "$E2E_DIR"/nodes/*/; do [ -d "$f/containerd" ] && nodes+=("e2e-node-$(basename "$f")"); done
	for n in "${nodes[@]}"; do
		f=$E2E_DIR/containerd/containerd.sock
		[ "$n" = "$NODE_NAME" ] || f=$E2E_DIR/nodes/${n#e2e-node-}/containerd/containerd.sock
		alive "$n-containerd" && ctrds+=("$f")
	done
	stop_pids csi-provisioner csi-attacher csi-resizer csi-snapshotter snapshot-controller csi-node csi-controller \
		"${nodes[@]/%/-kubelet}" "${nodes[@]/%/-kube-proxy}"
	if [ ${#ctrds[@]} -gt 0 ]; then
		for f in "${ctrds[@]}"; do ctr_tasks "$f" kill -s KILL; done
		sleep 1
		for f in "${ctrds[@]}"; do ctr_tasks "$f" delete -f; done
	fi
	stop_pids "${nodes[@]/%/-containerd}" "${nodes[@]/%/-ns}"
}

# ctr_tasks SOCKET ARGS...: `ctr tasks ARGS ID` for every container one containerd runs.
ctr_tasks() {
	local sock=$1 c
	shift
	for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
		ctr --address "$sock" -n k8s.io tasks "$@" "$c" >/dev/null 2>&1 || true
	done
}

# spare_namespaces_down: the spare nodes' network namespaces and cgroups, once their processes
# are gone.
spare_namespaces_down() {
	local d n cg
	for d in "$E2E_DIR"/nodes/*/; do
		[ -d "$d/containerd" ] || continue
		n=$(basename "$d")
		if ip netns list 2>/dev/null | grep -qw "e2e-n$n"; then ip netns del "e2e-n$n" && echo "    deleted network namespace e2e-n$n"; fi
		for cg in $(cgroup_dirs "e2e-e2e-node-$n"); do
			if [ -d "$cg" ]; then find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
		done
	done
	return 0
}

# down_network: kube-proxy's rules; the chains kubelet makes (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
# KUBE-IPTABLES-HINT) and any KUBE-* chain left, the jumps to them first, only when this run
# started a kubelet (a machine that runs a real one has no business running make e2e); the pod
# bridge, node 0's address, IP forwarding as it was.
down_network() {
	if [ -x "$E2E_CACHE/bin/kube-proxy" ] && iptables -t nat -S 2>/dev/null | grep -q KUBE-SERVICES; then
		"$E2E_CACHE/bin/kube-proxy" --cleanup >/dev/null 2>&1 && echo "    kube-proxy's iptables rules removed"
	fi
	if [ -e "$LOGS/$NODE_NAME-kubelet.log" ]; then
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
	return 0
}

# down_mounts: mounts under $E2E_DIR, deepest first (kubelet bind-mounts its root dir onto
# itself), loop devices backed by files under it, the NFS test helper if up installed it (never
# a real mount.nfs).
down_mounts() {
	local m left dev _
	for _ in 1 2 3; do
		left=$(awk -v d="$E2E_DIR" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r -u)
		[ -n "$left" ] || break
		for m in $left; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; echo "    unmounted $m"; done
	done
	for dev in $(losetup -a 2>/dev/null | grep -F "$E2E_DIR/" | cut -d: -f1); do
		losetup -d "$dev" && echo "    detached $dev"
	done
	if [ -e "$E2E_DIR/nfs-helper-installed" ] && [ -x "$ROOT/bin/mount.nfs" ]; then
		"$ROOT/bin/mount.nfs" --uninstall 2>&1 | sed 's/^/    /' || true
	fi
	return 0
}

# leftovers: what down should have removed and did not.
leftovers() {
	awk -v d="$E2E_DIR" 'index($5, d) == 1' /proc/self/mountinfo
	losetup -a | grep -F "$E2E_DIR/" || true
	ip link show "$CNI_BRIDGE" 2>/dev/null || true
	ip -o link show type veth 2>/dev/null | grep -F "master $CNI_BRIDGE" || true
	iptables-save 2>/dev/null | grep -E '^:KUBE-|-j KUBE-' || true
	ip netns list 2>/dev/null | grep -E '^(cni-|e2e-n)' || true
	ip -o link show 2>/dev/null | grep -E ': e2e-v[0-9]+@' || true
	ls -d /sys/fs/cgroup/*/e2e-e2e-node-* /sys/fs/cgroup/e2e-e2e-node-* 2>/dev/null || true
	ls "$PROCS"/*.json 2>/dev/null || true
}
