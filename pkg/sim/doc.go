// Package sim is the embedded vCenter: govmomi's simulator (vcsim) with the
// parts the CSI driver depends on made faithful: a seeded inventory, finite
// datastores with capacity accounting, policy-aware SPBM placement, a CNS
// volume manager of our own (real attach through ReconfigVM, per-disk UUIDs,
// paging cursors, faults instead of panics) and an optional node-side
// "hypervisor" that turns an attach into a loop device with a by-id link.
//
// The driver reaches it over SOAP exactly as a real vCenter; tests of other
// packages start it with pkg/sim/simtest, people with `vsphere-sim` or
// `vsphere-csi --simulator` (a binary built with -tags simulator, as make
// build does; the image is built without, so production code never
// imports this package).
//
// Where each part lives, by file-name prefix:
//
//   - sim.go: Options, Start and Close, the parts registered over vcsim;
//     server_*: what it serves on: TLS and the certificate clients pin
//     (server_tls.go), the HTTPS server whose connections can be made to
//     fail (server_transport.go), the vCenter release it says it is
//     (server_release.go), a csi-vsphere.conf that points at it
//     (server_config.go), its one-line summary and the standard logger's
//     lines (server_summary.go, server_stdlog.go).
//   - inventory*: the seeded datacenter, clusters and datastores
//     (inventory.go), the hosts and what they mount (inventory_hosts.go),
//     the zone and region tags (inventory_tags.go), node VMs added while it
//     runs (inventory_nodes.go).
//   - vim_*: the VIM side: the property collector that re-reads only what
//     changed (vim_collector.go), every task through startTask, running,
//     with progress, the caller's user and operation ID, its effect only at
//     completion (vim_tasks.go), the VMs' own tasks made to run the same way
//     (vim_vmtasks.go), what happens to a node VM's disks when it is powered
//     off or destroyed (vim_vmops.go).
//   - pbm_*: SPBM: the policies and which datastores satisfy each
//     (pbm_policies.go), the placement solver (pbm_placement.go).
//   - cns_*: the CNS volume manager: its state and locks (cns_manager.go),
//     one file per method family (create, delete, attach, extend, policy,
//     metadata, query, register, snapshot), the vSphere Client's Container
//     Volumes view (cns_container_volumes.go), volumes seeded in bulk
//     without tasks (cns_seed.go).
//   - vsan_* and nfs*: vSAN File Service: the file shares of CNS file
//     volumes (vsan_fileshares.go), the vSAN health service that says where
//     File Service is on (vsan_health.go), the NFS server that exports the
//     shares (nfs.go) and its outages (nfs_outage.go).
//   - hypervisor*: the node side of an attach, as root: a loop device and a
//     by-id link per attached disk (hypervisor.go), unmounted in order when
//     the disk goes (hypervisor_unmount.go).
//   - lab*: the fault laboratory: its controls (lab.go), served over HTTP by
//     Runner, which also restarts the vCenter in place (lab_control.go),
//     injected faults (lab_faults.go), per-method latency and the realistic
//     figures with their sources (lab_latency.go), the event log
//     (lab_events.go).
//   - state*: what is kept across restarts, one JSON file per object
//     (state.go), and read back at Start (state_restore.go).
//   - neighbour*: the shared vCenter's other tenants (Options.Neighbours,
//     none by default): the options and StartNeighbourTask (neighbour.go),
//     which VMs exist and where (neighbour_plan.go, neighbour_inventory.go),
//     their tasks and what vCenter shows of each (neighbour_tasks.go, with
//     neighbour_drs.go, neighbour_svmotion.go, neighbour_backup.go,
//     neighbour_schedule.go), another cluster's CNS volumes and calls under
//     the same user (neighbour_cns.go), what NeighbourVMs reports
//     (neighbour_info.go).
//   - keyed_mutex.go: a mutex per key (a volume, a VM), shared by the CNS
//     manager and the task runner.
package sim
