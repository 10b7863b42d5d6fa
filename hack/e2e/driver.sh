# shellcheck shell=bash
# driver: the embedded vCenter (bin/vsphere-sim), then the driver as host processes: the
# controller with the provisioner, attacher, resizer and snapshotter sidecars, the snapshot
# controller, and the node plugin of node 0, which registers itself with kubelet.

vcenter() {
	step "NFS client for ReadWriteMany volumes (the node plugin runs mount -t nfs4)"
	# The test helper goes in only where the kernel has no NFS client and no
	# mount.nfs4 exists (test/nfsmount/README.md); down takes it out again.
	"$ROOT/bin/mount.nfs" --install 2>&1 | sed 's/^/    /'
	if grep -q vsphere-csi-test-nfs-helper /sbin/mount.nfs4 2>/dev/null; then touch "$E2E_DIR/nfs-helper-installed"; fi
	took

	step "Embedded vCenter (bin/vsphere-sim) on $NODE_IP:$SIM_PORT, its control endpoint on 127.0.0.1:$SIM_CONTROL_PORT"
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
	wait_for "the embedded vCenter's control endpoint" 30 curl -sf "http://127.0.0.1:$SIM_CONTROL_PORT/vms" || { alive_or_log vsphere-sim; return 1; }
	curl -sf "http://127.0.0.1:$SIM_CONTROL_PORT/vms" | jq -r '.[] | "    node VM \(.Name): \(.Zone), BIOS UUID \(.UUID)"'
	took
}

driver() {
	step "CSIDriver $DRIVER (from deploy/kubernetes/csidriver.yaml); snapshot CRDs and snapshot-controller"
	kubectl apply -f "$ROOT/deploy/kubernetes/csidriver.yaml" >/dev/null
	kubectl apply -f "$E2E_CACHE/crds/" >/dev/null
	kubectl wait --for condition=established --timeout 60s -f "$E2E_CACHE/crds/" >/dev/null
	start snapshot-controller "$E2E_CACHE/bin/snapshot-controller" --kubeconfig "$KUBECONFIG_FILE" --leader-election=false --v 4
	took
	driver_controller
	driver_node
}

driver_controller() {
	local bin=$E2E_CACHE/bin
	step "Driver controller (host process) + csi-provisioner, csi-attacher, csi-resizer, csi-snapshotter"
	mkdir -p "$(dirname "$CSI_CONTROLLER_SOCK")"
	start csi-controller "$ROOT/bin/vsphere-csi" --mode controller --endpoint "unix://$CSI_CONTROLLER_SOCK" \
		--config "$E2E_DIR/csi-vsphere.conf" --kubeconfig "$KUBECONFIG_FILE" --healthz-address "127.0.0.1:$DRIVER_HEALTHZ_PORT" \
		--full-sync-interval 2m --leader-election-namespace kube-system -v 4
	wait_for "the controller's CSI socket" 30 test -S "$CSI_CONTROLLER_SOCK" || { alive_or_log csi-controller; return 1; }
	wait_for "the controller's /healthz" 30 curl -sf "http://127.0.0.1:$DRIVER_HEALTHZ_PORT/healthz" || { alive_or_log csi-controller; return 1; }
	local common=(--kubeconfig "$KUBECONFIG_FILE" --csi-address "$CSI_CONTROLLER_SOCK" --leader-election=false --timeout 120s --v 4)
	start csi-provisioner "$bin/csi-provisioner" "${common[@]}" --extra-create-metadata --default-fstype ext4 --strict-topology
	start csi-attacher "$bin/csi-attacher" "${common[@]}"
	start csi-resizer "$bin/csi-resizer" "${common[@]}"
	start csi-snapshotter "$bin/csi-snapshotter" "${common[@]}" --extra-create-metadata
	took
}

driver_node() {
	step "Driver node plugin (host process) registering itself with kubelet; its zone from vCenter"
	local uuid p
	uuid=$(vm_uuid "$NODE_VM") || return 1
	start csi-node "$ROOT/bin/vsphere-csi" --mode node --endpoint "unix://$CSI_NODE_SOCK" --config "$E2E_DIR/csi-vsphere.conf" \
		--node-id "$uuid" --by-id-dir "$BYID_ROOT/$NODE_VM" \
		--kubelet-registration-path "$CSI_NODE_SOCK" --plugin-registration-dir "$KUBELET_DIR/plugins_registry" -v 4
	wait_for "CSINode $NODE_NAME listing $DRIVER" 60 bash -c "'$E2E_CACHE/bin/kubectl' --kubeconfig '$KUBECONFIG_FILE' get csinode $NODE_NAME -o jsonpath='{.spec.drivers[*].name}' | grep -qw $DRIVER" ||
		{ alive_or_log csi-node; tail -20 "$LOGS/$NODE_NAME-kubelet.log" >&2; return 1; }
	kubectl get csinode "$NODE_NAME" -o jsonpath='    CSINode {.metadata.name}: driver {.spec.drivers[0].name}, node ID {.spec.drivers[0].nodeID}, topology keys {.spec.drivers[0].topologyKeys}{"\n"}'
	for p in csi-provisioner csi-attacher csi-resizer csi-snapshotter snapshot-controller; do alive "$p" || echo "    warning: $p exited; see $LOGS/$p.log"; done
	took
}
