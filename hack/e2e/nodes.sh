# shellcheck shell=bash
# nodes: every node is started by start_node N: its containerd, kubelet and kube-proxy. Node 0
# (e2e-node, playing zone-b's k8s-node-b-1) runs in the host's namespaces with its kubelet root at
# $KUBELET_DIR; spare node N (e2e-node-N, playing zone-a's k8s-node-N, started for the chart
# phase while the first phase's tests run, tainted until then) in network namespace e2e-nN (a
# veth to the host, 10.201.N.2) and a mount namespace of its own where its kubelet root is at the
# same path, with a cgroup root of its own. Its records: NODE-containerd, -kubelet, -kube-proxy
# (and -ns, the process holding a spare node's namespaces).

# node_def N: the caller's nname nvm nip ndir ncidr nkubeconfig ncgroup ntaint nkubelet.
node_def() {
	if [ "$1" = 0 ]; then
		nname=$NODE_NAME nvm=$NODE_VM nip=$NODE_IP ndir=$E2E_DIR ncidr=$POD_CIDR
		nkubeconfig=$KUBECONFIG_FILE ncgroup="" ntaint="" nkubelet=$KUBELET_DIR
	else
		nname=e2e-node-$1 nvm=k8s-node-$1 nip=10.201.$1.2 ndir=$E2E_DIR/nodes/$1 ncidr=10.244.$1.0/24
		nkubeconfig=$E2E_DIR/nodes/kubeconfig ncgroup=/e2e-e2e-node-$1 ntaint=$SPARE_TAINT nkubelet=$E2E_DIR/nodes/$1/kubelet
	fi
}

# start_node N: node N's processes (they register the node; wait_ready waits for it).
start_node() {
	local nname nvm nip ndir ncidr nkubeconfig ncgroup ntaint nkubelet ns_pid="" ns_name=""
	node_def "$1"
	local bin=$E2E_CACHE/bin ctrd=$ndir/containerd
	step "Node $nname ($nip, pods $ncidr${ncgroup:+, cgroup root $ncgroup}) playing node VM $nvm: containerd, kubelet $K8S_VERSION, kube-proxy"
	mkdir -p "$ndir/pod-logs" "$nkubelet/$(basename "$BYID_ROOT")" "$BYID_ROOT/$nvm"
	if [ "$1" != 0 ]; then
		node_namespaces "$1"
		ns_pid=$(ours "$nname-ns") ns_name=e2e-n$1
	fi
	local uuid
	uuid=$(vm_uuid "$nvm") || return 1
	node_identity "$nkubelet/e2e-node" "$uuid" "../$(basename "$BYID_ROOT")/$nvm"
	cni_config "$ndir/cni" "$ncidr"
	containerd_config "$ctrd" "$ndir/cni"
	NS_PID=$ns_pid NS_NAME=$ns_name start "$nname-containerd" containerd --config "$ctrd/config.toml"
	wait_for "$nname's containerd" 30 ctr --address "$ctrd/containerd.sock" version || { alive_or_log "$nname-containerd"; return 1; }
	import_images "$ctrd/containerd.sock"
	kubelet_config "$nip" "$ndir/pod-logs" "$ncgroup" >"$ndir/kubelet-config.yaml"
	NS_PID=$ns_pid NS_NAME=$ns_name start "$nname-kubelet" "$bin/kubelet" --kubeconfig "$nkubeconfig" --config "$ndir/kubelet-config.yaml" \
		--container-runtime-endpoint "unix://$ctrd/containerd.sock" --root-dir "$KUBELET_DIR" \
		--node-ip "$nip" --hostname-override "$nname" ${ntaint:+--register-with-taints "$ntaint"} --v 1
	NS_PID=$ns_pid NS_NAME=$ns_name start "$nname-kube-proxy" "$bin/kube-proxy" --kubeconfig "$nkubeconfig" --hostname-override "$nname" \
		--proxy-mode iptables --cluster-cidr "$CLUSTER_CIDR" --iptables-localhost-nodeports=false \
		--conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
		--healthz-bind-address "127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT" --metrics-bind-address "127.0.0.1:$KUBE_PROXY_METRICS_PORT" --v 1
	echo "    $nname plays $nvm: BIOS UUID $uuid, its disks' links in $BYID_ROOT/$nvm"
	took
}

# wait_ready NAME: until node NAME is Ready.
wait_ready() {
	wait_for "node $1 Ready" 120 bash -c "'$E2E_CACHE/bin/kubectl' --kubeconfig '$KUBECONFIG_FILE' get node $1 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True" ||
		{ alive_or_log "$1-kubelet"; kubectl describe node "$1" | tail -30 >&2; return 1; }
}

# node_zero: node 0, Ready, with kube-proxy's rules for the kubernetes Service in place.
node_zero() {
	# The bridge plugin's gateway turns IP forwarding on: down puts it back.
	cat /proc/sys/net/ipv4/ip_forward >"$E2E_DIR/ip_forward"
	start_node 0
	step "Node $NODE_NAME Ready; kube-proxy's rules: the kubernetes Service's 10.96.0.1:443 to $NODE_IP:$APISERVER_PORT"
	wait_ready "$NODE_NAME"
	wait_for "kube-proxy's rules for the kubernetes Service" 60 bash -c "iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q 10.96.0.1/32" ||
		{ alive_or_log "$NODE_NAME-kube-proxy"; return 1; }
	took
}

# spare_nodes: the chart phase's other nodes, started side by side (most of each is importing the
# images into its containerd), then waited for.
spare_nodes() {
	[ "$SPARE_NODES" -gt 0 ] || return 0
	mkdir -p "$E2E_DIR/nodes"
	echo 1 >/proc/sys/net/ipv4/ip_forward # the host routes between the nodes' namespaces (down puts it back)
	kubeconfig "$NODE_IP" >"$E2E_DIR/nodes/kubeconfig"
	local n pids=() rc=0
	for n in $(seq 1 "$SPARE_NODES"); do
		start_node "$n" >"$LOGS/spare-node-$n.out" 2>&1 &
		pids+=($!)
	done
	for n in $(seq 1 "$SPARE_NODES"); do
		wait "${pids[$((n - 1))]}" || rc=1
		cat "$LOGS/spare-node-$n.out"
	done
	[ $rc = 0 ] || return 1
	step "Spare nodes Ready (tainted $SPARE_TAINT until a test takes them in)"
	for n in $(seq 1 "$SPARE_NODES"); do wait_ready "e2e-node-$n" || return 1; done
	kubectl get nodes -o wide | sed 's/^/    /'
	took
}

# node_namespaces N: spare node N's network namespace (a veth to the host, its pods' CIDR routed
# through it), its mount namespace held by a sleep (record NODE-ns) where its kubelet directory is
# $KUBELET_DIR, and its cgroup root. (nsenter, not ip netns exec: that mounts a sysfs of the
# namespace over /sys, hiding the cgroup mounts.)
node_namespaces() {
	local netns=e2e-n$1 veth=e2e-v$1 gw=10.201.$1.1 holder cg
	ip netns add "$netns"
	ip link add "$veth" type veth peer name eth0 netns "$netns"
	ip addr add "$gw/24" dev "$veth"
	ip link set "$veth" up
	ip -n "$netns" addr add "$nip/24" dev eth0
	ip -n "$netns" link set eth0 up
	ip -n "$netns" link set lo up
	ip -n "$netns" route add default via "$gw"
	ip route add "$ncidr" via "$nip"
	NS_NAME=$netns PROGRAM=sleep start "$nname-ns" nsenter --net="/run/netns/$netns" unshare --mount --propagation slave sleep infinity
	holder=$(jq -r .pid "$PROCS/$nname-ns.json")
	wait_for "$nname's mount namespace" 10 bash -c "readlink /proc/$holder/exe | grep -q '/sleep\$'"
	nsenter --target "$holder" --mount -- mount --bind "$BYID_ROOT" "$nkubelet/$(basename "$BYID_ROOT")"
	# Node 0's kubelet directory is a mount (kubelet binds its root onto itself): not in this
	# namespace, where only this node's is, shared as kubelet and containerd want it for
	# Bidirectional propagation (containerd looks at one mount of the path: no stack of them).
	while nsenter --target "$holder" --mount -- mountpoint -q "$KUBELET_DIR"; do
		nsenter --target "$holder" --mount -- umount -l "$KUBELET_DIR"
	done
	nsenter --target "$holder" --mount -- mount --rbind "$nkubelet" "$KUBELET_DIR"
	nsenter --target "$holder" --mount -- mount --make-rshared "$KUBELET_DIR"
	for cg in $(cgroup_dirs "${ncgroup#/}"); do
		mkdir -p "$cg"
		if [ -e "$cg/cpuset.cpus" ]; then cat "$(dirname "$cg")/cpuset.cpus" >"$cg/cpuset.cpus"; cat "$(dirname "$cg")/cpuset.mems" >"$cg/cpuset.mems"; fi
	done
}

# cgroup_dirs NAME: a cgroup root in every cgroup v1 hierarchy (or the v2 tree).
cgroup_dirs() {
	local h
	for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		[ -e "$h/cgroup.procs" ] || continue
		[ "$h" = /sys/fs/cgroup/ ] && [ -d /sys/fs/cgroup/memory ] && continue
		echo "${h%/}/$1"
	done
}

# vm_uuid VM: the BIOS UUID of one of the embedded vCenter's node VMs (its control endpoint's GET /vms).
vm_uuid() {
	local uuid
	uuid=$(curl -sf "http://127.0.0.1:$SIM_CONTROL_PORT/vms" | jq -r --arg vm "$1" '.[] | select(.Name == $vm) | .UUID')
	[ -n "$uuid" ] || { echo "e2e: the embedded vCenter has no node VM $1 (GET /vms)" >&2; return 1; }
	echo "$uuid"
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
