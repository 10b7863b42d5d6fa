# shellcheck shell=bash
# cluster: certificates, etcd and the control plane on 127.0.0.1, and `up`, which starts every
# phase and writes cluster.json, what the tests read (test/e2e/internal/harness: Cluster).

# cert NAME SUBJECT [SAN]: a key and a certificate signed by the cluster's CA (in $PKI).
cert() {
	openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "$2" 2>/dev/null
	if [ -n "${3:-}" ]; then printf 'subjectAltName=%s\n' "$3" >"$PKI/$1.ext"; else : >"$PKI/$1.ext"; fi
	openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-out "$PKI/$1.crt" -days 2 -extfile "$PKI/$1.ext" 2>/dev/null
}

pki() {
	step "Certificates (openssl, everything on 127.0.0.1)"
	mkdir -p "$PKI"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 2 -subj "/CN=vsphere-csi-e2e-ca" 2>/dev/null
	cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
	cert admin "/O=system:masters/CN=e2e-admin"
	cert kubelet "/CN=$NODE_NAME" "IP:127.0.0.1,IP:$NODE_IP,DNS:localhost,DNS:$NODE_NAME"
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	kubeconfig "127.0.0.1" >"$KUBECONFIG_FILE"
	took
}

# kubeconfig HOST: the admin's kubeconfig, the API server at HOST.
kubeconfig() {
	cat <<EOC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://$1:$APISERVER_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$PKI/admin.crt", client-key: "$PKI/admin.key"}
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
EOC
}

etcd_and_address() {
	step "etcd (Debian) on 127.0.0.1:$ETCD_PORT; node 0's address $NODE_IP on lo"
	start etcd etcd --name e2e --data-dir "$E2E_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn
	if ! ip -4 addr show dev lo | grep -qw "$NODE_IP"; then
		ip addr add "$NODE_IP/32" dev lo && touch "$E2E_DIR/node-ip-added"
	fi
	wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health" || { alive_or_log etcd; return 1; }
	took
}

control_plane() {
	local bin=$E2E_CACHE/bin
	etcd_and_address
	step "kube-apiserver $K8S_VERSION on 127.0.0.1 and $NODE_IP:$APISERVER_PORT (the kubernetes Service's endpoint)"
	start kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
		--service-cluster-ip-range 10.96.0.0/24 \
		--client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
		--kubelet-preferred-address-types InternalIP,Hostname \
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

# write_cluster: cluster.json, every node (the spare nodes too, which start later) with the
# records of its kubelet and namespaces.
write_cluster() {
	# shellcheck disable=SC2034 # node_def sets them all; the nodes' records need some
	local n nodes="[]" nname nip ndir nkubeconfig ncgroup ntaint ncidr nvm nkubelet
	for n in $(seq 0 "$SPARE_NODES"); do
		node_def "$n"
		nodes=$(jq -c --arg name "$nname" --arg vm "$nvm" --arg ip "$nip" --arg logs "$ndir/pod-logs" --argjson spare "$([ "$n" = 0 ] && echo false || echo true)" \
			'. + [{name: $name, vm: $vm, ip: $ip, spare: $spare, namespace: (if $spare then $name + "-ns" else "" end),
			kubelet: ($name + "-kubelet"), podLogs: $logs}]' <<<"$nodes")
	done
	jq -n --arg dir "$E2E_DIR" --arg root "$ROOT" --arg bin "$E2E_CACHE/bin" --arg images "$E2E_CACHE/images" \
		--arg kubeconfig "$KUBECONFIG_FILE" --arg api "https://127.0.0.1:$APISERVER_PORT" --arg logs "$LOGS" --arg procs "$PROCS" \
		--arg kubelet "$KUBELET_DIR" --arg identity "$NODE_IDENTITY" --arg podlogs "$E2E_DIR/pod-logs" \
		--arg vcurl "https://$NODE_IP:$SIM_PORT/sdk" --arg control "127.0.0.1:$SIM_CONTROL_PORT" --arg simdir "$SIM_DIR" \
		--arg conf "$E2E_DIR/csi-vsphere.conf" --arg csock "$CSI_CONTROLLER_SOCK" --arg nsock "$CSI_NODE_SOCK" --argjson nodes "$nodes" \
		'{dir: $dir, root: $root, bin: $bin, images: $images, kubeconfig: $kubeconfig, apiServer: $api, logs: $logs, procs: $procs,
		kubeletDir: $kubelet, identity: $identity, podLogs: $podlogs,
		vcenter: {url: $vcurl, control: $control, dir: $simdir, config: $conf},
		driver: {controllerSocket: $csock, nodeSocket: $nsock}, nodes: $nodes}' >"$CLUSTER_JSON"
}

up() {
	[ ! -e "$PROCS" ] || [ -z "$(ls -A "$PROCS" 2>/dev/null)" ] || die "$E2E_DIR has running processes: hack/e2e.sh down first"
	! awk -v d="$E2E_DIR" 'index($5, d) == 1 {found=1} END {exit !found}' /proc/self/mountinfo || die "mounts left under $E2E_DIR: hack/e2e.sh down first"
	rm -rf "$E2E_DIR"
	mkdir -p "$PROCS" "$LOGS"
	pki
	control_plane
	vcenter
	node_zero
	driver
	write_cluster
	echo "==> [e2e] cluster up: export KUBECONFIG=$KUBECONFIG_FILE (kubectl in $E2E_CACHE/bin); what runs: $CLUSTER_JSON, $PROCS"
}
