package sim

import (
	"fmt"
	"slices"
	"sync"

	"github.com/vmware/govmomi/pbm"
	pbmmethods "github.com/vmware/govmomi/pbm/methods"
	pbmsim "github.com/vmware/govmomi/pbm/simulator"
	pbmtypes "github.com/vmware/govmomi/pbm/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// policySeeds maps each storage policy to the datastores compatible with it.
// The simulator's four default policies get a sensible mapping too.
var policySeeds = []struct {
	name       string
	id         string // fixed for the policies we create; "" for the defaults
	datastores []string
}{
	{name: "Gold", id: "9e7a6f2c-0d1b-4c5e-8f3a-60c1d2a4b001", datastores: []string{"vsanDatastore", "nfs-gold", "zone-b-ds"}},
	{name: "Silver", id: "9e7a6f2c-0d1b-4c5e-8f3a-60c1d2a4b002", datastores: []string{"silver-ds", "vsanDatastore", "zone-b-ds"}},
	{name: "vSAN Default Storage Policy", datastores: []string{"vsanDatastore", "zone-b-ds"}},
	// No vVol datastore exists: a policy nothing satisfies.
	{name: "VVol No Requirements Policy"},
	// Encryption is a host I/O filter: every datastore can take it.
	{name: "VM Encryption Policy", datastores: []string{"vsanDatastore", "nfs-gold", "silver-ds", "local-ds-0", "zone-b-ds"}},
	// Host-local: only the datastore of a single host.
	{name: "Host-local PMem Default Storage Policy", datastores: []string{"local-ds-0"}},
}

// policyMap answers SPBM compatibility from a fixed policy→datastore map.
type policyMap struct {
	mu     sync.RWMutex
	byID   map[string]*policy
	byName map[string]*policy
	order  []*policy
	inv    *inventory
}

type policy struct {
	id, name   string
	datastores []string
}

func (p *policyMap) lookup(id string) (*policy, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	pol, ok := p.byID[id]
	return pol, ok
}

// policiesFor lists the names of the policies a datastore satisfies.
func (p *policyMap) policiesFor(ds string) []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []string
	for _, pol := range p.order {
		if slices.Contains(pol.datastores, ds) {
			out = append(out, pol.name)
		}
	}
	return out
}

// compatible says whether the datastore satisfies the policy ("" = no
// policy: always), and why not.
func (p *policyMap) compatible(policyID string, d *dsModel) (bool, string) {
	if policyID == "" {
		return true, ""
	}
	pol, ok := p.lookup(policyID)
	if !ok {
		return false, fmt.Sprintf("storage policy %s not found", policyID)
	}
	if slices.Contains(pol.datastores, d.name) {
		return true, ""
	}
	return false, fmt.Sprintf("datastore %s does not satisfy policy %s", d.name, pol.name)
}

// installPolicies creates Gold and Silver in the SPBM endpoint, learns the
// default policies' IDs and replaces the placement solver.
func installPolicies(m *simulator.Model, inv *inventory) (*policyMap, error) {
	ctx := m.Service.Context.For(pbm.Path)
	if ctx.Map == nil {
		return nil, fmt.Errorf("SPBM endpoint is not registered")
	}
	pm, ok := ctx.Map.Get(types.ManagedObjectReference{Type: "PbmProfileProfileManager", Value: "ProfileManager"}).(*pbmsim.ProfileManager)
	if !ok {
		return nil, fmt.Errorf("SPBM profile manager not found")
	}
	p := &policyMap{byID: map[string]*policy{}, byName: map[string]*policy{}, inv: inv}
	existing, err := queryProfiles(pm)
	if err != nil {
		return nil, err
	}
	for _, seed := range policySeeds {
		id, ok := existing[seed.name]
		if !ok {
			if id, err = createProfile(ctx, pm, seed.name, seed.id); err != nil {
				return nil, err
			}
		}
		pol := &policy{id: id, name: seed.name, datastores: seed.datastores}
		p.byID[id], p.byName[seed.name] = pol, pol
		p.order = append(p.order, pol)
	}
	// Policies that exist but are not in the seed map: compatible with nothing.
	for name, id := range existing {
		if _, ok := p.byName[name]; !ok {
			pol := &policy{id: id, name: name}
			p.byID[id], p.byName[name] = pol, pol
			p.order = append(p.order, pol)
		}
	}
	solverRef := types.ManagedObjectReference{Type: "PbmPlacementSolver", Value: "placementSolver"}
	base, ok := ctx.Map.Get(solverRef).(*pbmsim.PlacementSolver)
	if !ok {
		return nil, fmt.Errorf("SPBM placement solver not found")
	}
	ctx.Map.Put(&placementSolver{PlacementSolver: base, policies: p})
	return p, nil
}

func queryProfiles(pm *pbmsim.ProfileManager) (map[string]string, error) {
	body, ok := pm.PbmQueryProfileDetails(&pbmtypes.PbmQueryProfileDetails{}).(*pbmmethods.PbmQueryProfileDetailsBody)
	if !ok || body.Res == nil {
		return nil, fmt.Errorf("query SPBM profiles failed")
	}
	out := map[string]string{}
	for _, d := range body.Res.Returnval {
		p := d.Profile.GetPbmCapabilityProfile()
		out[p.Name] = p.ProfileId.UniqueId
	}
	return out, nil
}

// createProfile creates a requirements policy with PbmCreate and gives it
// the fixed ID (the simulator hands out random ones).
func createProfile(ctx *simulator.Context, pm *pbmsim.ProfileManager, name, id string) (string, error) {
	body, ok := pm.PbmCreate(ctx, &pbmtypes.PbmCreate{
		CreateSpec: pbmtypes.PbmCapabilityProfileCreateSpec{
			Name:         name,
			Description:  "vsphere-sim policy " + name,
			Category:     string(pbmtypes.PbmProfileCategoryEnumREQUIREMENT),
			ResourceType: pbmtypes.PbmProfileResourceType{ResourceType: string(pbmtypes.PbmProfileResourceTypeEnumSTORAGE)},
			Constraints:  &pbmtypes.PbmCapabilitySubProfileConstraints{},
		},
	}).(*pbmmethods.PbmCreateBody)
	if !ok || body.Res == nil {
		return "", fmt.Errorf("PbmCreate %s failed", name)
	}
	created := body.Res.Returnval.UniqueId
	// PbmRetrieveContent returns the profile objects the manager holds.
	rc, ok := pm.PbmRetrieveContent(&pbmtypes.PbmRetrieveContent{
		ProfileIds: []pbmtypes.PbmProfileId{{UniqueId: created}},
	}).(*pbmmethods.PbmRetrieveContentBody)
	if ok && rc.Res != nil && len(rc.Res.Returnval) == 1 && id != "" {
		rc.Res.Returnval[0].GetPbmProfile().ProfileId.UniqueId = id
		if again, err := queryProfiles(pm); err == nil && again[name] == id {
			return id, nil
		}
	}
	return created, nil
}
