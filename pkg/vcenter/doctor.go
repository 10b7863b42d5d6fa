package vcenter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// What `vsphere-csi doctor` reads of vCenter, beyond what the driver
// reads anyway (policies, datastores, File Service, topology). Every call
// here is a read: the doctor changes nothing in vCenter.

// MinHardwareVersion is the oldest VM hardware version a node VM may have:
// "Virtual machines of hardware version 15 or later" is a requirement of
// the vSphere CSI driver (Red Hat's "VMware vSphere CSI Driver Operator
// requirements", https://docs.redhat.com/en/documentation/openshift_container_platform/4.13/html/installing_on_vsphere/vsphere-csi-driver-reqs_installing-vsphere,
// stating VMware's requirement; also rancher/rancher#25174: "VM hardware
// version 15 is a requirement for VMware CSI").
const MinHardwareVersion = 15

// Inspector is the read-only examination the doctor makes; the Client New
// returns implements it.
type Inspector interface {
	// InspectNodeVM reads the settings of the node VM with that BIOS UUID
	// that the driver depends on; ErrNodeNotFound when there is none.
	InspectNodeVM(ctx context.Context, uuid string) (VMFacts, error)
	// CheckPrivileges asks vCenter whether the session's user holds the
	// documented privileges (PrivilegeRoles) on each object they apply to.
	CheckPrivileges(ctx context.Context, scope PrivilegeScope) ([]PrivilegeCheck, error)
}

// VMFacts are a node VM's settings the driver depends on.
type VMFacts struct {
	NodeVM
	// EnableUUID: extraConfig disk.EnableUUID is TRUE, so that the guest
	// sees each disk's UUID (the /dev/disk/by-id/wwn-0x<uuid> links).
	EnableUUID bool
	// HardwareVersion is N of config.version "vmx-N" (0: unreadable).
	HardwareVersion int
	// PVSCSIControllers counts its VMware Paravirtual SCSI controllers;
	// FreeSCSISlots the units free for disks on its SCSI controllers (15
	// per controller; unit 7 is the controller's).
	PVSCSIControllers int
	SCSIControllers   int
	FreeSCSISlots     int
}

// PrivilegeRole is one of the roles VMware documents for the vSphere CSI
// driver's vCenter user, with the objects it is needed on.
type PrivilegeRole struct {
	Name       string
	Privileges []string
	On         string
}

// Role names (PrivilegeRoles).
const (
	RoleDatastore     = "CNS-DATASTORE"
	RoleHostStorage   = "CNS-HOST-CONFIG-STORAGE"
	RoleVM            = "CNS-VM"
	RoleSearchAndSPBM = "CNS-SEARCH-AND-SPBM"
	RoleReadOnly      = "ReadOnly"
)

// PrivilegeRoles are the roles and privileges VMware documents for the
// CSI driver's user of a generic Kubernetes cluster: "vSphere Roles and
// Privileges" of Cloud Native Storage, vSphere Storage guide 7.0 and 8.0,
// https://docs.vmware.com/en/VMware-vSphere/7.0/com.vmware.vsphere.storage.doc/GUID-AEB07597-F303-4FDD-87D9-0FDA4836E5BB.html
// (privilege IDs as vCenter names them: Datastore > Low level file
// operations is Datastore.FileManagement, and so on).
func PrivilegeRoles() []PrivilegeRole {
	return []PrivilegeRole{
		{RoleDatastore, []string{"Datastore.FileManagement"}, "the shared datastores where persistent volumes reside"},
		{RoleHostStorage, []string{"Host.Config.Storage"}, "vSAN clusters with vSAN File Service (file volumes only)"},
		{RoleVM, []string{"VirtualMachine.Config.AddExistingDisk", "VirtualMachine.Config.AddRemoveDevice"}, "all node VMs"},
		{RoleSearchAndSPBM, []string{"Cns.Searchable", "StorageProfile.View"}, "the root vCenter Server"},
		{RoleReadOnly, []string{"System.Read"}, "the hosts of the node VMs and the datacenter (with topology: every ancestor of the node VMs)"},
	}
}

// PrivilegeScope says which objects the privileges are checked on.
type PrivilegeScope struct {
	NodeUUIDs    []string // the node VMs (CNS-VM; their hosts: ReadOnly)
	DatastoreIDs []string // the datastores volumes go to (CNS-DATASTORE)
	// FileServiceDatastoreIDs are the vSAN datastores file volumes go to:
	// their clusters need CNS-HOST-CONFIG-STORAGE.
	FileServiceDatastoreIDs []string
	// Topology: the node VMs' hosts' clusters need ReadOnly too.
	Topology bool
}

// PrivilegeCheck is one role on one object: Missing lists the role's
// privileges the user lacks there (none: it holds them).
type PrivilegeCheck struct {
	Role    string
	Object  string // what and which: "VM k8s-node-1", "datastore vsanDatastore"
	Missing []string
}

// InspectNodeVM implements Inspector: one property read of the VM.
func (c *client) InspectNodeVM(ctx context.Context, uuid string) (VMFacts, error) {
	vm, ref, ok, err := c.lookupNode(ctx, uuid)
	if err != nil {
		return VMFacts{}, err
	}
	if !ok {
		return VMFacts{}, fmt.Errorf("%w: no VM with BIOS UUID %q", ErrNodeNotFound, uuid)
	}
	var o mo.VirtualMachine
	props := []string{"config.extraConfig", "config.version", "config.hardware.device"}
	if err := property.DefaultCollector(c.conn.vim).RetrieveOne(ctx, ref, props, &o); err != nil {
		return VMFacts{}, fmt.Errorf("read VM %s: %w", vm.Name, mapFault(err, nil))
	}
	f := VMFacts{NodeVM: vm}
	f.Topology = c.nodeTopology(ref)
	if o.Config == nil {
		return f, nil
	}
	for _, ov := range o.Config.ExtraConfig {
		if v := ov.GetOptionValue(); strings.EqualFold(v.Key, "disk.enableUUID") {
			s := strings.ToUpper(fmt.Sprint(v.Value))
			f.EnableUUID = s == "TRUE" || s == "1"
		}
	}
	f.HardwareVersion, _ = strconv.Atoi(strings.TrimPrefix(o.Config.Version, "vmx-"))
	devices := object.VirtualDeviceList(o.Config.Hardware.Device)
	for _, d := range devices.SelectByType((*types.VirtualSCSIController)(nil)) {
		ctrl := d.(types.BaseVirtualController).GetVirtualController()
		f.SCSIControllers++
		if _, pv := d.(*types.ParaVirtualSCSIController); pv {
			f.PVSCSIControllers++
		}
		used := 0
		for _, dev := range devices {
			if vd := dev.GetVirtualDevice(); vd.ControllerKey == ctrl.Key && vd.UnitNumber != nil && *vd.UnitNumber != 7 {
				used++
			}
		}
		f.FreeSCSISlots += max(0, 15-used)
	}
	return f, nil
}

// CheckPrivileges implements Inspector: HasPrivilegeOnEntities for the
// session's own user, one call per role.
func (c *client) CheckPrivileges(ctx context.Context, scope PrivilegeScope) ([]PrivilegeCheck, error) {
	vim := c.conn.vim
	us, err := c.conn.sm.UserSession(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the session: %w", mapFault(err, nil))
	}
	if us == nil {
		return nil, fmt.Errorf("%w: no session", ErrNotAuthenticated)
	}
	inv := c.inv.Load()
	type target struct {
		ref  types.ManagedObjectReference
		name string
	}
	byRole := map[string][]target{}
	add := func(role string, ref types.ManagedObjectReference, name string) {
		for _, t := range byRole[role] {
			if t.ref == ref {
				return
			}
		}
		byRole[role] = append(byRole[role], target{ref, name})
	}
	add(RoleSearchAndSPBM, vim.ServiceContent.RootFolder, "vCenter (root folder)")
	var hosts []types.ManagedObjectReference
	for _, u := range scope.NodeUUIDs {
		vm, ref, ok, err := c.lookupNode(ctx, u)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		add(RoleVM, ref, "VM "+vm.Name)
		if h := inv.hostOf(ref); h.Value != "" {
			hosts = append(hosts, h)
		}
	}
	for _, id := range scope.DatastoreIDs {
		if ds, ok := inv.datastore(id); ok {
			add(RoleDatastore, ds.ref, "datastore "+ds.name)
		}
	}
	var vsanHosts []types.ManagedObjectReference
	for _, id := range scope.FileServiceDatastoreIDs {
		ds, _ := inv.datastore(id)
		for h, ok := range ds.mounts {
			if ok {
				vsanHosts = append(vsanHosts, h)
			}
		}
	}
	info, err := c.entities(ctx, append(append([]types.ManagedObjectReference(nil), hosts...), vsanHosts...))
	if err != nil {
		return nil, err
	}
	var parents []types.ManagedObjectReference
	for _, h := range hosts {
		add(RoleReadOnly, h, "host "+info[h].Name)
		if p := info[h].Parent; scope.Topology && p != nil {
			parents = append(parents, *p)
		}
	}
	for _, h := range vsanHosts {
		if p := info[h].Parent; p != nil {
			parents = append(parents, *p)
		}
	}
	pinfo, err := c.entities(ctx, parents)
	if err != nil {
		return nil, err
	}
	if scope.Topology {
		for _, h := range hosts {
			if p := info[h].Parent; p != nil {
				add(RoleReadOnly, *p, "cluster "+pinfo[*p].Name)
			}
		}
	}
	for _, h := range vsanHosts {
		if p := info[h].Parent; p != nil {
			add(RoleHostStorage, *p, "cluster "+pinfo[*p].Name)
		}
	}
	for _, r := range c.roots {
		if r.Type == "Datacenter" {
			add(RoleReadOnly, r, "datacenter "+c.rootName(ctx, r))
		}
	}

	var out []PrivilegeCheck
	for _, role := range PrivilegeRoles() {
		targets := byRole[role.Name]
		if len(targets) == 0 {
			continue
		}
		req := types.HasPrivilegeOnEntities{
			This:      *vim.ServiceContent.AuthorizationManager,
			SessionId: us.Key,
			PrivId:    role.Privileges,
		}
		for _, t := range targets {
			req.Entity = append(req.Entity, t.ref)
		}
		res, err := methods.HasPrivilegeOnEntities(ctx, vim, &req)
		if err != nil {
			return nil, fmt.Errorf("HasPrivilegeOnEntities (%s): %w", role.Name, mapFault(err, nil))
		}
		granted := map[types.ManagedObjectReference]map[string]bool{}
		for _, ep := range res.Returnval {
			g := map[string]bool{}
			for _, a := range ep.PrivAvailability {
				g[a.PrivId] = a.IsGranted
			}
			granted[ep.Entity] = g
		}
		for _, t := range targets {
			pc := PrivilegeCheck{Role: role.Name, Object: t.name}
			for _, p := range role.Privileges {
				if !granted[t.ref][p] {
					pc.Missing = append(pc.Missing, p)
				}
			}
			out = append(out, pc)
		}
	}
	return out, nil
}

// entityInfo is a managed entity's name and parent.
type entityInfo struct {
	Name   string
	Parent *types.ManagedObjectReference
}

// entities reads the name and parent of each object (one read).
func (c *client) entities(ctx context.Context, refs []types.ManagedObjectReference) (map[types.ManagedObjectReference]entityInfo, error) {
	out := map[types.ManagedObjectReference]entityInfo{}
	if len(refs) == 0 {
		return out, nil
	}
	seen := map[types.ManagedObjectReference]bool{}
	var uniq []types.ManagedObjectReference
	for _, r := range refs {
		if !seen[r] {
			seen[r] = true
			uniq = append(uniq, r)
		}
	}
	var es []mo.ManagedEntity
	if err := property.DefaultCollector(c.conn.vim).Retrieve(ctx, uniq, []string{"name", "parent"}, &es); err != nil {
		return nil, fmt.Errorf("read %d objects' names: %w", len(uniq), mapFault(err, nil))
	}
	for _, e := range es {
		out[e.Self] = entityInfo{Name: e.Name, Parent: e.Parent}
	}
	return out, nil
}

func (c *client) rootName(ctx context.Context, r types.ManagedObjectReference) string {
	info, err := c.entities(ctx, []types.ManagedObjectReference{r})
	if err != nil || info[r].Name == "" {
		return r.Value
	}
	return info[r].Name
}

// TLSResult is what the doctor found of vCenter's certificate.
type TLSResult struct {
	// Verified: the certificate is what csi-vsphere.conf says to trust
	// (By says how). Not verified and no Problem: insecure-flag.
	Verified bool
	By       string
	Problem  string
	// SHA1 and SHA256 are the certificate's fingerprints ("AA:BB:…").
	SHA1, SHA256 string
	Subject      string
	NotAfter     time.Time
}

// CheckTLS connects to vCenter and checks its certificate as the driver
// would (ca-file, else thumbprint, else the system's roots; nothing with
// insecure-flag), without logging in. An error means it could not connect
// at all (ErrUnavailable).
func CheckTLS(ctx context.Context, opts Options) (TLSResult, error) {
	opts.setDefaults()
	addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 30 * time.Second},
		// Read the certificate whatever it is; it is verified below, and
		// nothing is sent over this connection.
		Config: &tls.Config{InsecureSkipVerify: true, ServerName: opts.Host, MinVersion: tls.VersionTLS12}, //nolint:gosec // verified below
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return TLSResult{}, fmt.Errorf("%w: connect to %s: %v", ErrUnavailable, addr, err)
	}
	state := nc.(*tls.Conn).ConnectionState()
	_ = nc.Close()
	if len(state.PeerCertificates) == 0 {
		return TLSResult{}, fmt.Errorf("%w: %s sent no certificate", ErrUnavailable, addr)
	}
	leaf := state.PeerCertificates[0]
	r := TLSResult{SHA1: soap.ThumbprintSHA1(leaf), SHA256: soap.ThumbprintSHA256(leaf), Subject: leaf.Subject.String(), NotAfter: leaf.NotAfter}
	verify := func(roots *x509.CertPool) error {
		inter := x509.NewCertPool()
		for _, c := range state.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: opts.Host})
		return err
	}
	switch {
	case opts.Insecure:
		r.By = "nothing (insecure-flag = true)"
	case opts.CAFile != "":
		r.By = "ca-file " + opts.CAFile
		pool, err := (&caFile{path: opts.CAFile}).roots()
		if err == nil {
			err = verify(pool)
		}
		r.Verified, r.Problem = err == nil, errText(err)
	case opts.Thumbprint != "":
		r.By = "thumbprint"
		want := normalizeThumbprint(opts.Thumbprint)
		r.Verified = want == r.SHA1 || want == r.SHA256
		if !r.Verified {
			r.Problem = fmt.Sprintf("the certificate's thumbprint is %s (SHA-1), not %s", r.SHA1, want)
		}
	default:
		r.By = "the system's CA certificates"
		err := verify(nil)
		r.Verified, r.Problem = err == nil, errText(err)
	}
	return r, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return "the certificate is not signed by a trusted CA: " + err.Error()
	}
	return err.Error()
}
