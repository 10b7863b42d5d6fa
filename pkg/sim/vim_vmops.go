package sim

import (
	"context"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// What happens to a node VM's volumes when the VM goes away, as vSphere
// does it:
//   - powered off: the disks stay attached to the VM in vCenter (CNS still
//     lists the attachment, and a detach from a powered-off VM works); the
//     guest is gone, so the node side's devices go (what was mounted from
//     them is unmounted). Powered on again, the disks appear again.
//   - deleted: CNS makes its disks with keepAfterDeleteVm, so vSphere
//     removes them from the VM without deleting them: the volumes stay,
//     detached, with their data, and can be attached elsewhere. (Whether
//     CNS's own attachment record goes at once is not documented; here it
//     does, as the disk is no longer on any VM.)

// node finds a node VM by name.
func (s *Sim) node(name string) (*nodeVM, error) {
	for _, n := range s.inv.nodeList() {
		if n.name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node VM %q", name)
}

// internalClient is an in-process vim25 client that faults and latency
// do not apply to.
func (s *Sim) internalClient(ctx context.Context) (context.Context, *vim25.Client, error) {
	ictx := internalContext(ctx)
	c, err := vim25.NewClient(ictx, s.model.Service)
	return ictx, c, err
}

// PowerOffVM powers a node VM off: its volumes stay attached in vCenter,
// the node side loses their devices.
func (s *Sim) PowerOffVM(ctx context.Context, name string) error {
	n, err := s.node(name)
	if err != nil {
		return err
	}
	if n.deleted.get() {
		return fmt.Errorf("node VM %s was deleted", name)
	}
	if err := s.powerVM(ctx, n, false); err != nil {
		return err
	}
	for _, id := range s.cns.attachedTo(n.ref) {
		if err := s.hv.detach(id); err != nil {
			klog.ErrorS(err, "power off: removing the node-side device failed", "volumeID", id, "vm", name)
		}
	}
	n.poweredOff.set(true)
	s.saveVM(n)
	s.lab.events.add(Event{Kind: EventVM, VM: n.ref.Value, Detail: "powered off"})
	klog.InfoS("Node VM powered off", "vm", name)
	return nil
}

// PowerOnVM powers a node VM on again: its attached volumes' devices come
// back on the node side.
func (s *Sim) PowerOnVM(ctx context.Context, name string) error {
	n, err := s.node(name)
	if err != nil {
		return err
	}
	if n.deleted.get() {
		return fmt.Errorf("node VM %s was deleted", name)
	}
	if err := s.powerVM(ctx, n, true); err != nil {
		return err
	}
	n.poweredOff.set(false)
	s.cns.attachDevices(n)
	s.saveVM(n)
	s.lab.events.add(Event{Kind: EventVM, VM: n.ref.Value, Detail: "powered on"})
	klog.InfoS("Node VM powered on", "vm", name)
	return nil
}

// DeleteVM deletes a node VM as an admin would (power off, delete from
// disk): its volumes are detached and kept (keepAfterDeleteVm).
func (s *Sim) DeleteVM(ctx context.Context, name string) error {
	n, err := s.node(name)
	if err != nil {
		return err
	}
	if n.deleted.get() {
		return nil
	}
	if err := s.deleteVM(ctx, n); err != nil {
		return err
	}
	s.saveVM(n)
	s.lab.events.add(Event{Kind: EventVM, VM: n.ref.Value, Detail: "deleted"})
	klog.InfoS("Node VM deleted; its volumes were detached and kept", "vm", name)
	return nil
}

func (s *Sim) deleteVM(ctx context.Context, n *nodeVM) error {
	vctx := s.model.Service.Context.For(vim25.Path)
	vm, ok := lookupVM(vctx, n.ref)
	if !ok {
		return fmt.Errorf("node VM %s is not in the inventory", n.name)
	}
	for _, id := range s.cns.attachedTo(n.ref) {
		if err := s.cns.release(vctx, vm, id); err != nil {
			return fmt.Errorf("delete VM %s: keep volume %s: %w", n.name, id, err)
		}
	}
	if !n.poweredOff.get() {
		if err := s.powerVM(ctx, n, false); err != nil {
			return err
		}
	}
	ictx, c, err := s.internalClient(ctx)
	if err != nil {
		return err
	}
	task, err := object.NewVirtualMachine(c, n.ref).Destroy(ictx)
	if err != nil {
		return fmt.Errorf("delete VM %s: %w", n.name, err)
	}
	if err := task.Wait(ictx); err != nil {
		return fmt.Errorf("delete VM %s: %w", n.name, err)
	}
	n.deleted.set(true)
	n.poweredOff.set(true)
	return nil
}

func (s *Sim) powerVM(ctx context.Context, n *nodeVM, on bool) error {
	ictx, c, err := s.internalClient(ctx)
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(c, n.ref)
	var task *object.Task
	if on {
		task, err = vm.PowerOn(ictx)
	} else {
		task, err = vm.PowerOff(ictx)
	}
	if err == nil {
		err = task.Wait(ictx)
	}
	if err != nil {
		return fmt.Errorf("power %s VM %s: %w", map[bool]string{true: "on", false: "off"}[on], n.name, err)
	}
	return nil
}

func (s *Sim) saveVM(n *nodeVM) {
	var err error
	if n.deleted.get() || n.poweredOff.get() {
		err = s.store.put("vms", n.name, vmRecord{PoweredOff: n.poweredOff.get(), Deleted: n.deleted.get()})
	} else {
		err = s.store.del("vms", n.name)
	}
	if err != nil {
		klog.ErrorS(err, "vCenter simulator: keeping the VM's state failed", "vm", n.name)
	}
}

// attachedTo lists the volumes attached to a VM.
func (m *volumeManager) attachedTo(vm types.ManagedObjectReference) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, v := range m.volumes {
		if v.vm != nil && *v.vm == vm {
			ids = append(ids, id)
		}
	}
	return ids
}

// attachDevices gives a powered-on node VM the node-side devices of its
// attached volumes.
func (m *volumeManager) attachDevices(n *nodeVM) {
	for _, id := range m.attachedTo(n.ref) {
		v, ok := m.snapshot(id)
		if !ok {
			continue
		}
		if err := m.hv.attach(id, v.flatFile, n.byIDDir, v.diskUUID); err != nil {
			klog.ErrorS(err, "the node-side device of an attached volume failed", "volumeID", id, "vm", n.name)
		}
	}
}

// release removes a volume's disk from a VM that is going away, keeping
// the disk: the volume is detached.
func (m *volumeManager) release(vctx *simulator.Context, vm *simulator.VirtualMachine, id string) error {
	defer m.volLocks.lock(id)()
	v, ok := m.snapshot(id)
	if !ok {
		return nil
	}
	if err := m.hv.detach(id); err != nil {
		return err
	}
	c := vctx.For(vctx.Map.Path)
	if f := m.removeDevice(c, vm, id, v.ds); f != nil {
		return fmt.Errorf("remove the disk from the VM: %s", faultMessage(f))
	}
	m.mu.Lock()
	if cur, ok := m.volumes[id]; ok {
		cur.vm = nil
	}
	m.mu.Unlock()
	m.saveVolume(id)
	return nil
}

// FillDatastore leaves only freeBytes free on a datastore, as other
// workloads on a shared datastore do (freeBytes < 0 gives the space back).
func (s *Sim) FillDatastore(name string, freeBytes int64) error {
	d, ok := s.inv.dsByName[name]
	if !ok {
		return fmt.Errorf("no datastore %q", name)
	}
	s.inv.fill(d, freeBytes)
	s.inv.publish(s.model.Service.Context.For(vim25.Path), d)
	s.saveDatastore(d)
	s.lab.events.add(Event{Kind: EventDatastore, Detail: fmt.Sprintf("%s: %d bytes free", name, freeBytes)})
	return nil
}

func (s *Sim) saveDatastore(d *dsModel) {
	filled := s.inv.filledBytes(d)
	var err error
	if filled > 0 {
		err = s.store.put("datastores", d.name, datastoreRecord{FilledBytes: filled})
	} else {
		err = s.store.del("datastores", d.name)
	}
	if err != nil {
		klog.ErrorS(err, "vCenter simulator: keeping the datastore's state failed", "datastore", d.name)
	}
}
