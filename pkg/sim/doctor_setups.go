package sim

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// The misconfigurations `vsphere-csi doctor` looks for, made the way an
// admin (or a VM template) makes them: a node VM's disk.EnableUUID off, a
// node VM of an old hardware version, a node VM whose SCSI units are all
// taken, and a privilege the driver's user lacks on one object. Each is a
// change of vCenter's state, read back over SOAP like anything else; none
// is kept across a restart (a restart brings the seeded node VMs and
// permissions back).

// NodeHardwareVersion is the hardware version of the seeded node VMs
// (vmx-19: ESXi 7.0 U2), at least the 15 the vSphere CSI driver requires.
const NodeHardwareVersion = 19

// SetEnableUUID sets a node VM's disk.EnableUUID (ReconfigVM of its
// extraConfig, as `govc vm.change -e disk.enableUUID=…` does).
func (s *Sim) SetEnableUUID(ctx context.Context, vmName string, on bool) error {
	n, err := s.node(vmName)
	if err != nil {
		return err
	}
	val := "FALSE"
	if on {
		val = "TRUE"
	}
	return s.reconfigure(ctx, n, types.VirtualMachineConfigSpec{
		ExtraConfig: []types.BaseOptionValue{&types.OptionValue{Key: "disk.enableUUID", Value: val}},
	})
}

// SetHardwareVersion makes a node VM one of hardware version v (a VM
// deployed from an old template: vSphere upgrades a VM's hardware, never
// downgrades it, so this sets the VM's state rather than reconfiguring).
func (s *Sim) SetHardwareVersion(vmName string, v int) error {
	n, err := s.node(vmName)
	if err != nil {
		return err
	}
	vctx := s.vimContext()
	obj := vctx.Map.Get(n.ref)
	if obj == nil {
		return fmt.Errorf("node VM %s is gone", vmName)
	}
	ver := fmt.Sprintf("vmx-%d", v)
	vctx.WithLock(obj, func() {
		vctx.Map.Update(vctx, obj, []types.PropertyChange{
			{Name: "config.version", Val: ver},
			{Name: "summary.config.hwVersion", Val: ver},
		})
	})
	return nil
}

// FillSCSISlots takes every free unit of a node VM's SCSI controllers
// with a small disk of its own (not a CNS volume), so that no volume can
// be attached to it.
func (s *Sim) FillSCSISlots(ctx context.Context, vmName string) error {
	n, err := s.node(vmName)
	if err != nil {
		return err
	}
	ictx, c, err := s.internalClient(ctx)
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(c, n.ref)
	devices, err := vm.Device(ictx)
	if err != nil {
		return err
	}
	var o mo.VirtualMachine
	if err := vm.Properties(ictx, n.ref, []string{"datastore"}, &o); err != nil {
		return err
	}
	if len(o.Datastore) == 0 {
		return fmt.Errorf("node VM %s has no datastore", vmName)
	}
	dsName := entityName(s.inv.model.Map(), o.Datastore[0])
	var spec types.VirtualMachineConfigSpec
	for _, d := range devices.SelectByType((*types.VirtualSCSIController)(nil)) {
		ctrl := d.(types.BaseVirtualController).GetVirtualController()
		used := map[int32]bool{7: true} // the controller's own unit
		for _, dev := range devices {
			vd := dev.GetVirtualDevice()
			if vd.ControllerKey == ctrl.Key && vd.UnitNumber != nil {
				used[*vd.UnitNumber] = true
			}
		}
		for unit := int32(0); unit < 16; unit++ {
			if used[unit] {
				continue
			}
			path := fmt.Sprintf("[%s] %s/filler-%d-%d.vmdk", dsName, vmName, ctrl.BusNumber, unit)
			disk := devices.CreateDisk(d.(types.BaseVirtualController), o.Datastore[0], path)
			disk.CapacityInKB = 1024
			disk.UnitNumber = types.NewInt32(unit)
			disk.Key = -int32(len(spec.DeviceChange) + 1)
			spec.DeviceChange = append(spec.DeviceChange, &types.VirtualDeviceConfigSpec{
				Operation:     types.VirtualDeviceConfigSpecOperationAdd,
				FileOperation: types.VirtualDeviceConfigSpecFileOperationCreate,
				Device:        disk,
			})
		}
	}
	if len(spec.DeviceChange) == 0 {
		return nil
	}
	return s.reconfigure(ctx, n, spec)
}

func (s *Sim) reconfigure(ctx context.Context, n *nodeVM, spec types.VirtualMachineConfigSpec) error {
	ictx, c, err := s.internalClient(ctx)
	if err != nil {
		return err
	}
	task, err := object.NewVirtualMachine(c, n.ref).Reconfigure(ictx, spec)
	if err == nil {
		err = task.Wait(ictx)
	}
	if err != nil {
		return fmt.Errorf("reconfigure node VM %s: %w", n.name, err)
	}
	return nil
}

// DenyPrivilege takes one privilege from the driver's user on one object
// (a node VM, datastore, host or cluster by name; "" for the root folder)
// as an admin does in vCenter: a role with every privilege but that one,
// given to the user on that object with propagation. The permission
// nearest an object decides, so the object and what is below it lose the
// privilege, and everything else keeps the user's Administrator role
// (given on the root folder). HasPrivilegeOnEntities answers from these
// permissions and roles from the first call on (authz below).
//
// Only the privilege checks see it: the calls the driver makes (an attach,
// a create) are not refused for it; inject a NoPermission fault for that
// (InjectFault).
func (s *Sim) DenyPrivilege(ctx context.Context, object, privilege string) error {
	az, err := s.authorization()
	if err != nil {
		return err
	}
	ref, err := s.entityByName(object)
	if err != nil {
		return err
	}
	az.mu.Lock()
	defer az.mu.Unlock()
	admin := roleByName(az.RoleList, "Admin")
	if admin == nil {
		return fmt.Errorf("no Admin role")
	}
	var privs []string
	found := false
	for _, p := range admin.Privilege {
		if p == privilege {
			found = true
			continue
		}
		privs = append(privs, p)
	}
	if !found {
		return fmt.Errorf("no privilege %q", privilege)
	}
	name := "no-" + privilege
	if roleByName(az.RoleList, name) == nil {
		res := az.AddAuthorizationRole(&types.AddAuthorizationRole{Name: name, PrivIds: privs})
		if f := res.Fault(); f != nil {
			return fmt.Errorf("add role %s: %v", name, f.VimFault())
		}
	}
	role := roleByName(az.RoleList, name)
	az.SetEntityPermissions(&types.SetEntityPermissions{Entity: ref, Permission: []types.Permission{{
		Entity: &ref, Principal: s.Username(), RoleId: role.RoleId, Propagate: true,
	}}})
	return nil
}

func roleByName(roles []types.AuthorizationRole, name string) *types.AuthorizationRole {
	for i := range roles {
		if roles[i].Name == name {
			return &roles[i]
		}
	}
	return nil
}

// entityByName finds a managed entity of the seeded inventory by name.
func (s *Sim) entityByName(name string) (types.ManagedObjectReference, error) {
	m := s.inv.model.Map()
	if name == "" {
		return serviceContent(m).RootFolder, nil
	}
	for _, kind := range []string{"VirtualMachine", "Datastore", "HostSystem", "ClusterComputeResource", "Datacenter"} {
		for _, e := range m.All(kind) {
			if e.Entity().Name == name {
				return e.Reference(), nil
			}
		}
	}
	return types.ManagedObjectReference{}, fmt.Errorf("no VM, datastore, host, cluster or datacenter named %q", name)
}

// authz is the AuthorizationManager with privilege checks that answer as
// vCenter does, from permissions and roles: for each entity, the
// permissions of the session's user on the entity itself, else the
// nearest ancestor's that propagate; the role they give holds the
// privileges (Admin: all of them). No permission: not granted.
// govmomi's own answers "granted" to everything.
type authz struct {
	*simulator.AuthorizationManager
	mu sync.Mutex
	s  *Sim
}

func serviceContent(m *simulator.Registry) types.ServiceContent {
	return m.Get(vim25.ServiceInstance).(*simulator.ServiceInstance).Content
}

// authorization installs authz in front of the simulator's
// AuthorizationManager (once), giving the configured user the Admin role
// on the root folder, as the seeded vCenter's administrator has.
func (s *Sim) authorization() (az *authz, err error) {
	vctx := s.vimContext()
	m := vctx.Map
	ref := *serviceContent(m).AuthorizationManager
	vctx.WithLock(ref, func() { az, err = s.installAuthz(m, ref) })
	return az, err
}

func (s *Sim) installAuthz(m *simulator.Registry, ref types.ManagedObjectReference) (*authz, error) {
	switch o := m.Get(ref).(type) {
	case *authz:
		return o, nil
	case *simulator.AuthorizationManager:
		az := &authz{AuthorizationManager: o, s: s}
		root := serviceContent(m).RootFolder
		perms := o.RetrieveEntityPermissions(s.vimContext(), &types.RetrieveEntityPermissions{Entity: root})
		var kept []types.Permission
		if b, ok := perms.(*methods.RetrieveEntityPermissionsBody); ok && b.Res != nil {
			kept = b.Res.Returnval
		}
		admin := roleByName(o.RoleList, "Admin")
		kept = append(kept, types.Permission{Entity: &root, Principal: s.Username(), RoleId: admin.RoleId, Propagate: true})
		o.SetEntityPermissions(&types.SetEntityPermissions{Entity: root, Permission: kept})
		m.Put(az)
		return az, nil
	default:
		return nil, fmt.Errorf("AuthorizationManager is a %T", o)
	}
}

// HasPrivilegeOnEntities answers for the session's user (the caller asks
// about its own session, as the driver does).
func (m *authz) HasPrivilegeOnEntities(ctx *simulator.Context, req *types.HasPrivilegeOnEntities) soap.HasFault {
	m.mu.Lock()
	defer m.mu.Unlock()
	body := &methods.HasPrivilegeOnEntitiesBody{Res: &types.HasPrivilegeOnEntitiesResponse{}}
	if ctx.Session == nil || req.SessionId != ctx.Session.Key {
		body.Fault_ = simulator.Fault("", &types.NotFound{})
		return body
	}
	user := ctx.Session.UserName
	for _, e := range req.Entity {
		granted := m.privileges(ctx, user, e)
		ep := types.EntityPrivilege{Entity: e}
		for _, id := range req.PrivId {
			ep.PrivAvailability = append(ep.PrivAvailability, types.PrivilegeAvailability{PrivId: id, IsGranted: granted(id)})
		}
		body.Res.Returnval = append(body.Res.Returnval, ep)
	}
	return body
}

// privileges is what the user's nearest permission gives on the entity.
func (m *authz) privileges(ctx *simulator.Context, user string, e types.ManagedObjectReference) func(string) bool {
	none := func(string) bool { return false }
	first := true
	for ref := &e; ref != nil; first = false {
		res := m.RetrieveEntityPermissions(ctx, &types.RetrieveEntityPermissions{Entity: *ref})
		if b, ok := res.(*methods.RetrieveEntityPermissionsBody); ok && b.Res != nil {
			for _, p := range b.Res.Returnval {
				if p.Group || !strings.EqualFold(p.Principal, user) || (!first && !p.Propagate) {
					continue
				}
				return m.rolePrivileges(p.RoleId)
			}
		}
		ent, ok := ctx.Map.Get(*ref).(mo.Entity)
		if !ok {
			return none
		}
		ref = ent.Entity().Parent
	}
	return none
}

func (m *authz) rolePrivileges(id int32) func(string) bool {
	for _, r := range m.RoleList {
		if r.RoleId != id {
			continue
		}
		if r.Name == "Admin" {
			return func(string) bool { return true }
		}
		set := map[string]bool{}
		for _, p := range r.Privilege {
			set[p] = true
		}
		return func(p string) bool { return set[p] || strings.HasPrefix(p, "System.") }
	}
	return func(string) bool { return false }
}
