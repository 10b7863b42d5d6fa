package vcenter

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	pbmtypes "github.com/vmware/govmomi/pbm/types"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"
)

// missRefreshInterval: an unknown policy name refreshes the policy list at
// most once per this interval.
const missRefreshInterval = 30 * time.Second

// policyCache holds SPBM facts for PolicyTTL, refreshed lazily on use and
// never in the background.
type policyCache struct {
	c *client

	mu       sync.Mutex // held across refreshes: concurrent callers share one
	policies []Policy
	fetched  time.Time
	lastMiss time.Time
	compat   map[string]*compatEntry // by policy ID
}

type compatEntry struct {
	fetched time.Time
	// reasons maps each datastore checked to why it is incompatible ("" when
	// compatible).
	reasons map[types.ManagedObjectReference]string
}

func newPolicyCache(c *client) *policyCache {
	return &policyCache{c: c, compat: map[string]*compatEntry{}}
}

func (p *policyCache) now() time.Time { return time.Now() }

// list returns the policies, refreshing them when older than the TTL.
func (p *policyCache) list(ctx context.Context) ([]Policy, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.ensureLocked(ctx, false); err != nil {
		return nil, err
	}
	return append([]Policy(nil), p.policies...), nil
}

// ensureLocked refreshes the list when forced or older than the TTL and
// reports whether it did.
func (p *policyCache) ensureLocked(ctx context.Context, force bool) (bool, error) {
	if !force && !p.fetched.IsZero() && p.now().Sub(p.fetched) < p.c.opts.PolicyTTL {
		return false, nil
	}
	pols, err := p.fetch(ctx)
	if err != nil {
		return false, err
	}
	p.policies, p.fetched = pols, p.now()
	return true, nil
}

// fetch reads the storage (requirement) profiles: two SPBM calls.
func (p *policyCache) fetch(ctx context.Context) ([]Policy, error) {
	pc := p.c.conn.pbm
	ids, err := pc.QueryProfile(ctx, pbmtypes.PbmProfileResourceType{
		ResourceType: string(pbmtypes.PbmProfileResourceTypeEnumSTORAGE),
	}, string(pbmtypes.PbmProfileCategoryEnumREQUIREMENT))
	if err != nil {
		return nil, fmt.Errorf("query storage policies: %w", mapFault(err, nil))
	}
	var out []Policy
	if len(ids) > 0 {
		profiles, err := pc.RetrieveContent(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("read storage policies: %w", mapFault(err, nil))
		}
		for _, bp := range profiles {
			pr := bp.GetPbmProfile()
			out = append(out, Policy{ID: pr.ProfileId.UniqueId, Name: pr.Name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	klog.V(4).InfoS("Storage policies read", "count", len(out))
	return out, nil
}

// byName resolves a policy name: exact match first, then case-insensitive.
// An unknown name refreshes the list once per missRefreshInterval.
func (p *policyCache) byName(ctx context.Context, name string) (Policy, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	refreshed, err := p.ensureLocked(ctx, false)
	if err != nil {
		return Policy{}, err
	}
	if pol, ok := findPolicy(p.policies, name); ok {
		return pol, nil
	}
	if refreshed {
		p.lastMiss = p.now() // this miss already read a fresh list
	} else if p.now().Sub(p.lastMiss) >= missRefreshInterval {
		p.lastMiss = p.now()
		if _, err := p.ensureLocked(ctx, true); err != nil {
			return Policy{}, err
		}
		if pol, ok := findPolicy(p.policies, name); ok {
			return pol, nil
		}
	}
	names := make([]string, 0, len(p.policies))
	for _, pol := range p.policies {
		names = append(names, fmt.Sprintf("%q", pol.Name))
	}
	return Policy{}, fmt.Errorf("%w: %q; vCenter has %s", ErrPolicyNotFound, name, strings.Join(names, ", "))
}

func findPolicy(pols []Policy, name string) (Policy, bool) {
	for _, p := range pols {
		if p.Name == name {
			return p, true
		}
	}
	for _, p := range pols {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Policy{}, false
}

// compatibility returns, for every datastore, why it is incompatible with
// the policy ("" when compatible), from one CheckRequirements over all
// datastores, cached for PolicyTTL.
func (p *policyCache) compatibility(ctx context.Context, policyID string, dss []types.ManagedObjectReference) (map[types.ManagedObjectReference]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.compat[policyID]
	if e != nil && p.now().Sub(e.fetched) < p.c.opts.PolicyTTL && coversAll(e.reasons, dss) {
		return e.reasons, nil
	}
	hubs := make([]pbmtypes.PbmPlacementHub, 0, len(dss))
	for _, ds := range dss {
		hubs = append(hubs, pbmtypes.PbmPlacementHub{HubType: ds.Type, HubId: ds.Value})
	}
	req := []pbmtypes.BasePbmPlacementRequirement{
		&pbmtypes.PbmPlacementCapabilityProfileRequirement{ProfileId: pbmtypes.PbmProfileId{UniqueId: policyID}},
	}
	res, err := p.c.conn.pbm.CheckRequirements(ctx, hubs, nil, req)
	if err != nil {
		return nil, fmt.Errorf("check datastores against policy %s: %w", policyID, mapFault(err, nil))
	}
	reasons := make(map[types.ManagedObjectReference]string, len(dss))
	for _, ds := range dss {
		reasons[ds] = "SPBM did not consider it"
	}
	for _, r := range res {
		ref := types.ManagedObjectReference{Type: r.Hub.HubType, Value: r.Hub.HubId}
		var why []string
		for _, f := range r.Error {
			why = append(why, localizedError(&f).Error())
		}
		reasons[ref] = strings.Join(why, "; ")
	}
	p.compat[policyID] = &compatEntry{fetched: p.now(), reasons: reasons}
	return reasons, nil
}

func coversAll(m map[types.ManagedObjectReference]string, dss []types.ManagedObjectReference) bool {
	for _, ds := range dss {
		if _, ok := m[ds]; !ok {
			return false
		}
	}
	return true
}

// Policies lists the storage policies.
func (c *client) Policies(ctx context.Context) ([]Policy, error) {
	return c.pol.list(ctx)
}

// PolicyByName resolves a storage policy name.
func (c *client) PolicyByName(ctx context.Context, name string) (Policy, error) {
	return c.pol.byName(ctx, name)
}

// Datastores lists the datastores from the cache, with SPBM compatibility
// when a policy is given.
func (c *client) Datastores(ctx context.Context, policyID string) ([]Datastore, error) {
	inv := c.inv.Load()
	nodes := c.nodeFilter()
	list := inv.datastoreList(nodes)
	if c.nodes != nil && len(c.nodes.nodeRefs()) == 0 {
		// No node known (a controller that started before any node
		// plugin registered): reachable from nowhere, rather than from
		// every node of none.
		for i := range list {
			list[i].Reachable, list[i].Unreachable = false, []string{noNodesYet}
		}
	}
	c.annotateTopology(list, nodes)
	if policyID == "" {
		return list, nil
	}
	reasons, err := c.pol.compatibility(ctx, policyID, inv.datastoreRefs())
	if err != nil {
		return nil, err
	}
	for i := range list {
		why, ok := reasons[types.ManagedObjectReference{Type: "Datastore", Value: list[i].ID}]
		if !ok {
			why = "SPBM did not consider it"
		}
		list[i].Compatible = why == ""
		list[i].Incompatible = why
	}
	return list, nil
}
