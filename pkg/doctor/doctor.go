package doctor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// DriverName is the CSI driver whose StorageClasses and CSINodes count.
const DriverName = "csi.vsphere.vmware.com"

// minFreeBytes: a class whose usable datastores all have less free space
// can't hold a volume of the default size (1 GiB).
const minFreeBytes = int64(1) << 30

// Run checks vCenter (opts, from csi-vsphere.conf) and the cluster (kc).
// The error is for what kept it from checking: the Kubernetes API or
// vCenter unreachable. A refused certificate or login is a finding, after
// which nothing else can be checked.
func Run(ctx context.Context, opts vcenter.Options, kc kubernetes.Interface) ([]Finding, error) {
	var out []Finding
	port := opts.Port
	if port == 0 {
		port = 443
	}
	addr := net.JoinHostPort(opts.Host, strconv.Itoa(port))
	t, err := vcenter.CheckTLS(ctx, opts)
	if err != nil {
		return nil, err
	}
	out = append(out, tlsFinding(addr, opts, t))
	if !out[0].OK {
		return out, nil
	}

	k, err := readKube(ctx, kc)
	if err != nil {
		return out, err
	}
	var uuids []string
	for _, n := range k.nodes {
		if n.uuid != "" {
			uuids = append(uuids, n.uuid)
		}
	}
	opts.Nodes = vcenter.StaticNodes(uuids...)
	opts.UserAgent = "vsphere-csi-doctor"
	vc, err := vcenter.New(ctx, opts)
	if err != nil {
		f, stop := loginProblem(opts, err)
		if !stop {
			return out, err
		}
		return append(out, f), nil
	}
	defer func() { _ = vc.Close(context.WithoutCancel(ctx)) }()
	rel := vc.About()
	out = append(out, ok(CheckLogin, addr, fmt.Sprintf("logged in as %s (%s)", opts.User, rel.FullName)))
	insp, isInsp := vc.(vcenter.Inspector)
	if !isInsp {
		return out, fmt.Errorf("the vCenter client can't inspect (a %T)", vc)
	}

	nodeFs, found, zones := checkNodes(ctx, insp, k.nodes, opts)
	out = append(out, nodeFs...)
	classFs, scope, err := checkClasses(ctx, vc, k, zones)
	if err != nil {
		return out, err
	}
	out = append(out, classFs...)

	scope.NodeUUIDs = found
	scope.Topology = len(opts.TopologyCategories) > 0
	privs, err := insp.CheckPrivileges(ctx, scope)
	if err != nil {
		return out, err
	}
	return append(out, privilegeFindings(privs)...), nil
}

func tlsFinding(addr string, opts vcenter.Options, t vcenter.TLSResult) Finding {
	switch {
	case t.Verified:
		return ok(CheckTLS, addr, "certificate verified by "+t.By)
	case t.Problem == "":
		return ok(CheckTLS, addr, "certificate not verified: insecure-flag = true (set thumbprint = \""+t.SHA1+"\" or ca-file to verify it)")
	case opts.CAFile != "":
		return problem(CheckTLS, addr, "vCenter's certificate is not accepted by "+t.By+": "+t.Problem,
			"put vCenter's CA certificates in "+opts.CAFile+" (https://"+opts.Host+"/certs/download.zip holds them), or set thumbprint = \""+t.SHA1+"\" after checking it is vCenter's")
	case opts.Thumbprint != "":
		return problem(CheckTLS, addr, t.Problem,
			"set thumbprint = \""+t.SHA1+"\" in csi-vsphere.conf after checking that it is vCenter's certificate (vSphere Client or `openssl s_client -connect "+addr+"`), or set ca-file to vCenter's CA")
	default:
		return problem(CheckTLS, addr, "vCenter's certificate is not trusted by the system's CAs: "+t.Problem,
			"set ca-file to vCenter's CA (https://"+opts.Host+"/certs/download.zip) or thumbprint = \""+t.SHA1+"\" in csi-vsphere.conf")
	}
}

// loginProblem turns vcenter.New's error into a finding when it is one
// csi-vsphere.conf or vCenter's permissions can fix (stop: report it and
// check nothing more); other errors mean vCenter could not be asked.
func loginProblem(opts vcenter.Options, err error) (Finding, bool) {
	who := opts.Host
	switch {
	case errors.Is(err, vcenter.ErrNotAuthenticated):
		return problem(CheckLogin, who, "vCenter refused the login of "+opts.User+": "+err.Error(),
			"check user and password in csi-vsphere.conf (the Secret); the user is written user@domain (administrator@vsphere.local)"), true
	case errors.Is(err, vcenter.ErrPermissionDenied):
		return problem(CheckLogin, who, "the user "+opts.User+" can't read the inventory: "+err.Error(),
			"give the user the ReadOnly role on the datacenters (and the roles of docs/DOCTOR.md#privileges)"), true
	case errors.Is(err, vcenter.ErrInvalidArgument):
		return problem(CheckLogin, who, err.Error(), "fix datacenters in csi-vsphere.conf: name datacenters that exist"), true
	}
	return Finding{}, false
}

// kubeNode is a Kubernetes node and the node ID the driver knows it by.
type kubeNode struct {
	name string
	uuid string // the CSINode's node ID of the driver, else the vsphere:// providerID
	from string
}

type kubeState struct {
	nodes   []kubeNode
	classes []class
}

type class struct {
	name, policy, datastoreURL string
	rwx                        string // why it makes file volumes ("" when it does not)
}

func readKube(ctx context.Context, kc kubernetes.Interface) (kubeState, error) {
	var k kubeState
	nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return k, fmt.Errorf("list Nodes: %w", err)
	}
	csiNodes, err := kc.StorageV1().CSINodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return k, fmt.Errorf("list CSINodes: %w", err)
	}
	ids := map[string]string{}
	for _, cn := range csiNodes.Items {
		for _, d := range cn.Spec.Drivers {
			if d.Name == DriverName && d.NodeID != "" {
				ids[cn.Name] = d.NodeID
			}
		}
	}
	for _, n := range nodes.Items {
		kn := kubeNode{name: n.Name}
		if id := ids[n.Name]; id != "" {
			kn.uuid, kn.from = id, "CSINode"
		} else if p, found := strings.CutPrefix(n.Spec.ProviderID, "vsphere://"); found && p != "" {
			kn.uuid, kn.from = p, "providerID"
		}
		k.nodes = append(k.nodes, kn)
	}
	scs, err := kc.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return k, fmt.Errorf("list StorageClasses: %w", err)
	}
	pvcs, err := kc.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return k, fmt.Errorf("list PersistentVolumeClaims: %w", err)
	}
	multi := map[string]string{}
	for _, c := range pvcs.Items {
		if c.Spec.StorageClassName == nil {
			continue
		}
		for _, m := range c.Spec.AccessModes {
			if m == corev1.ReadWriteMany || m == corev1.ReadOnlyMany {
				multi[*c.Spec.StorageClassName] = "claim " + c.Namespace + "/" + c.Name + " asks " + string(m)
			}
		}
	}
	for _, sc := range scs.Items {
		if sc.Provisioner != DriverName {
			continue
		}
		c := class{name: sc.Name, rwx: multi[sc.Name]}
		for key, v := range sc.Parameters {
			switch strings.ToLower(key) {
			case "storagepolicyname":
				c.policy = v
			case "datastoreurl":
				c.datastoreURL = v
			case "csi.storage.k8s.io/fstype", "fstype":
				if fs := strings.ToLower(v); fs == "nfs" || fs == "nfs4" {
					c.rwx = "fstype " + v
				}
			}
		}
		k.classes = append(k.classes, c)
	}
	sort.Slice(k.classes, func(i, j int) bool { return k.classes[i].name < k.classes[j].name })
	return k, nil
}

// checkNodes checks every node's VM; found are the node IDs that name one,
// zones the topology segments of their VMs (with topology categories).
func checkNodes(ctx context.Context, insp vcenter.Inspector, nodes []kubeNode, opts vcenter.Options) (out []Finding, found []string, zones []map[string]string) {
	if len(nodes) == 0 {
		return []Finding{problem(CheckNodes, "cluster", "the Kubernetes API lists no node",
			"run the doctor against the cluster's API server (--kubeconfig)")}, nil, nil
	}
	for _, n := range nodes {
		obj := "node " + n.name
		if n.uuid == "" {
			out = append(out, problem(CheckNodeVM, obj, "no node ID: no CSINode of "+DriverName+" and no vsphere:// providerID",
				"install the driver's node plugin on the node (it registers the VM's BIOS UUID), or the vSphere cloud provider (it sets providerID)"))
			continue
		}
		f, err := insp.InspectNodeVM(ctx, n.uuid)
		if err != nil {
			if errors.Is(err, vcenter.ErrNodeNotFound) {
				out = append(out, problem(CheckNodeVM, obj, fmt.Sprintf("its node ID %s (from its %s) names no VM in datacenters %v", n.uuid, n.from, opts.Datacenters),
					"the node ID is the VM's BIOS UUID (cat /sys/class/dmi/id/product_uuid on the node): check that the VM is in a datacenter csi-vsphere.conf names, and that the user can read it"))
			} else {
				out = append(out, problem(CheckNodeVM, obj, err.Error(), "check that vCenter answers and the user can read the VM"))
			}
			continue
		}
		found = append(found, n.uuid)
		out = append(out, ok(CheckNodeVM, obj, fmt.Sprintf("VM %s (BIOS UUID %s, from its %s) on host %s", f.Name, n.uuid, n.from, f.Host)))
		out = append(out, vmFindings(f, opts.TopologyCategories)...)
		if len(opts.TopologyCategories) > 0 && len(f.Topology) > 0 && !slices.ContainsFunc(zones, func(z map[string]string) bool { return maps.Equal(z, f.Topology) }) {
			zones = append(zones, f.Topology)
		}
	}
	return out, found, zones
}

func vmFindings(f vcenter.VMFacts, categories []string) []Finding {
	obj := "VM " + f.Name
	var out []Finding
	if f.EnableUUID {
		out = append(out, ok(CheckEnableUUID, obj, "disk.EnableUUID = TRUE"))
	} else {
		out = append(out, problem(CheckEnableUUID, obj, "disk.EnableUUID is not TRUE: the guest sees no disk UUIDs, so no volume's device is found after an attach",
			"power the VM off, set its advanced parameter disk.EnableUUID = TRUE (govc vm.change -vm '"+f.Name+"' -e disk.enableUUID=TRUE), power it on"))
	}
	if f.HardwareVersion >= vcenter.MinHardwareVersion {
		out = append(out, ok(CheckHardwareVersion, obj, fmt.Sprintf("vmx-%d", f.HardwareVersion)))
	} else {
		out = append(out, problem(CheckHardwareVersion, obj, fmt.Sprintf("hardware version vmx-%d is older than the vmx-%d the driver needs", f.HardwareVersion, vcenter.MinHardwareVersion),
			fmt.Sprintf("with the VM powered off, upgrade its compatibility to hardware version %d or later (vSphere Client: Actions > Compatibility > Upgrade VM Compatibility; govc vm.upgrade -vm '%s')", vcenter.MinHardwareVersion, f.Name)))
	}
	if f.PVSCSIControllers > 0 {
		out = append(out, ok(CheckPVSCSI, obj, fmt.Sprintf("%d VMware Paravirtual SCSI controllers", f.PVSCSIControllers)))
	} else {
		out = append(out, problem(CheckPVSCSI, obj, fmt.Sprintf("no VMware Paravirtual SCSI controller (%d SCSI controllers of other types)", f.SCSIControllers),
			"add a SCSI controller of type VMware Paravirtual (Edit Settings > Add New Device > SCSI Controller)"))
	}
	if f.FreeSCSISlots > 0 {
		out = append(out, ok(CheckSCSISlots, obj, fmt.Sprintf("%d free SCSI units for volumes", f.FreeSCSISlots)))
	} else {
		out = append(out, problem(CheckSCSISlots, obj, fmt.Sprintf("every unit of its %d SCSI controllers is taken: no volume can be attached", f.SCSIControllers),
			"add a VMware Paravirtual SCSI controller (a VM has at most 4), or remove disks the node does not need"))
	}
	for _, cat := range categories {
		if tag := f.Topology[cat]; tag != "" {
			out = append(out, ok(CheckTopology, obj, cat+" = "+tag))
		} else {
			out = append(out, problem(CheckTopology, obj, "its host "+f.Host+" has no tag of category "+cat+" (on itself, its cluster or datacenter)",
				"attach a tag of category "+cat+" to the host, its cluster or its datacenter, or remove "+cat+" from [Labels] topology-categories"))
		}
	}
	return out
}

// checkClasses checks each StorageClass of the driver; scope gets the
// datastores they use.
//
// With zones (the node VMs' topology segments), a datastore need not be
// reachable from every node VM: a volume goes to a datastore of its pod's
// zone, so each zone that has node VMs needs a usable datastore of its own.
func checkClasses(ctx context.Context, vc vcenter.Client, k kubeState, zones []map[string]string) ([]Finding, vcenter.PrivilegeScope, error) {
	var out []Finding
	var scope vcenter.PrivilegeScope
	inScope := map[string]bool{}
	for _, c := range k.classes {
		obj := "StorageClass " + c.name
		policyID := ""
		if c.policy != "" {
			p, err := vc.PolicyByName(ctx, c.policy)
			if errors.Is(err, vcenter.ErrPolicyNotFound) {
				out = append(out, problem(CheckStoragePolicy, obj, err.Error(),
					"create the storage policy "+c.policy+" in vCenter (Policies and Profiles > VM Storage Policies), or name one that exists in storagepolicyname"))
				continue
			}
			if err != nil {
				return out, scope, err
			}
			policyID = p.ID
			out = append(out, ok(CheckStoragePolicy, obj, "policy "+c.policy+" exists"))
		}
		dss, err := vc.Datastores(ctx, policyID)
		if err != nil {
			return out, scope, err
		}
		usable, why := usableDatastores(dss, policyID != "", c.datastoreURL, len(zones) > 0)
		if len(usable) > 0 && len(zones) > 0 {
			if missing := zonesWithout(usable, zones); len(missing) > 0 {
				out = append(out, problem(CheckDatastores, obj, "no usable datastore in zone "+strings.Join(missing, "; ")+" (its pods' volumes could not be made there)",
					"mount a datastore compatible with the policy on the hosts of that zone, or keep the class's pods out of it (allowedTopologies)"))
				continue
			}
		}
		if len(usable) == 0 {
			out = append(out, problem(CheckDatastores, obj, "no datastore is usable: "+why,
				"mount a datastore compatible with the policy on every host that runs a node VM, or change the class's storagepolicyname/datastoreurl"))
			continue
		}
		var names []string
		best := usable[0]
		for _, d := range usable {
			names = append(names, d.Name)
			if d.FreeBytes > best.FreeBytes {
				best = d
			}
			if !inScope[d.ID] {
				inScope[d.ID] = true
				scope.DatastoreIDs = append(scope.DatastoreIDs, d.ID)
			}
		}
		out = append(out, ok(CheckDatastores, obj, "compatible and reachable from every node VM: "+strings.Join(names, ", ")))
		if best.FreeBytes < minFreeBytes {
			out = append(out, problem(CheckFreeSpace, obj, fmt.Sprintf("the most free space on its datastores is %d MiB (%s): less than a 1 GiB volume", best.FreeBytes>>20, best.Name),
				"free space on "+strings.Join(names, ", ")+" or make another datastore compatible with the policy"))
		} else {
			out = append(out, ok(CheckFreeSpace, obj, fmt.Sprintf("%d GiB free on %s", best.FreeBytes>>30, best.Name)))
		}
		if c.rwx != "" {
			f, ids, err := checkFileService(ctx, vc, obj, c, usable)
			if err != nil {
				return out, scope, err
			}
			out = append(out, f)
			scope.FileServiceDatastoreIDs = append(scope.FileServiceDatastoreIDs, ids...)
		}
	}
	return out, scope, nil
}

// usableDatastores are those a class may use: with the URL it names, the
// policy's, reachable from every node VM, or with zones from those of a
// zone at least.
func usableDatastores(dss []vcenter.Datastore, policy bool, url string, zoned bool) ([]vcenter.Datastore, string) {
	var usable []vcenter.Datastore
	var why []string
	for _, d := range dss {
		switch {
		case url != "" && d.URL != url:
		case policy && !d.Compatible:
			why = append(why, d.Name+" is not compatible with the policy")
		case zoned && !d.Reachable && len(d.Topology) == 0:
			why = append(why, d.Name+" is reachable from no zone's node VMs")
		case !zoned && !d.Reachable:
			why = append(why, d.Name+" is not mounted on the hosts of "+strings.Join(d.Unreachable, ", "))
		default:
			usable = append(usable, d)
		}
	}
	if url != "" && len(usable) == 0 && len(why) == 0 {
		why = append(why, "no datastore has the URL "+url)
	}
	return usable, strings.Join(why, "; ")
}

// zonesWithout names the zones no usable datastore reaches.
func zonesWithout(usable []vcenter.Datastore, zones []map[string]string) []string {
	var missing []string
	for _, z := range zones {
		covered := slices.ContainsFunc(usable, func(d vcenter.Datastore) bool {
			return d.Reachable || slices.ContainsFunc(d.Topology, func(seg map[string]string) bool { return segmentIn(z, seg) })
		})
		if !covered {
			missing = append(missing, describeZone(z))
		}
	}
	return missing
}

// segmentIn says whether the node's zone z lies in the datastore's
// segment seg (every category seg names has z's tag).
func segmentIn(z, seg map[string]string) bool {
	for k, v := range seg {
		if z[k] != v {
			return false
		}
	}
	return len(seg) > 0
}

func describeZone(z map[string]string) string {
	keys := slices.Sorted(maps.Keys(z))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+z[k])
	}
	return strings.Join(parts, ",")
}

func checkFileService(ctx context.Context, vc vcenter.Client, obj string, c class, usable []vcenter.Datastore) (Finding, []string, error) {
	support, err := vc.FileShareSupport(ctx, true)
	if err != nil {
		return Finding{}, nil, err
	}
	var on, why []string
	var ids []string
	for _, d := range usable {
		w, known := support[d.ID]
		switch {
		case known && w == "":
			on = append(on, d.Name)
			ids = append(ids, d.ID)
		case known:
			why = append(why, d.Name+": "+w)
		}
	}
	if len(on) > 0 {
		return ok(CheckFileService, obj, "ReadWriteMany ("+c.rwx+"): vSAN File Service can hold shares on "+strings.Join(on, ", ")), ids, nil
	}
	if len(why) == 0 {
		why = append(why, "none of its datastores is a vSAN datastore")
	}
	return problem(CheckFileService, obj, "it makes ReadWriteMany file volumes ("+c.rwx+") but vSAN File Service can hold none: "+strings.Join(why, "; "),
		"turn vSAN File Service on for the vSAN cluster (vSphere Client: cluster > Configure > vSAN > Services > File Service), with a policy compatible with its vSAN datastore"), nil, nil
}

func privilegeFindings(checks []vcenter.PrivilegeCheck) []Finding {
	on := map[string]string{}
	for _, r := range vcenter.PrivilegeRoles() {
		on[r.Name] = r.On
	}
	var out []Finding
	held := map[string][]string{}
	var roles []string
	for _, c := range checks {
		if len(c.Missing) == 0 {
			if held[c.Role] == nil {
				roles = append(roles, c.Role)
			}
			held[c.Role] = append(held[c.Role], c.Object)
			continue
		}
		out = append(out, problem(CheckPrivileges, c.Object, "the user lacks "+strings.Join(c.Missing, ", ")+" (role "+c.Role+")",
			"give the user a role with "+strings.Join(c.Missing, ", ")+" on "+c.Object+" (VMware's role "+c.Role+", needed on "+on[c.Role]+")"))
	}
	for _, r := range roles {
		out = append(out, ok(CheckPrivileges, "role "+r, "held on "+strings.Join(held[r], ", ")))
	}
	return out
}
