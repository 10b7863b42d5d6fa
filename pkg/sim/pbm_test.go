package sim

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/vmware/govmomi/pbm/methods"
	pbmtypes "github.com/vmware/govmomi/pbm/types"
)

func hubNames(s *Sim, hubs []pbmtypes.PbmPlacementHub) []string {
	byRef := map[string]string{}
	for _, d := range s.Datastores() {
		byRef[d.Ref] = d.Name
	}
	var out []string
	for _, h := range hubs {
		out = append(out, byRef[h.HubId])
	}
	sort.Strings(out)
	return out
}

func TestPolicyCompatibility(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()

	want := map[string][]string{
		"Gold":                                   {"nfs-gold", "vsanDatastore", "zone-b-ds"},
		"Silver":                                 {"silver-ds", "vsanDatastore", "zone-b-ds"},
		"vSAN Default Storage Policy":            {"vsanDatastore", "zone-b-ds"},
		"VVol No Requirements Policy":            nil,
		"Host-local PMem Default Storage Policy": {"local-ds-0"},
	}
	for name, compatible := range want {
		id := policyID(t, c, name)
		res, err := c.pbm.CheckRequirements(ctx, nil, nil, []pbmtypes.BasePbmPlacementRequirement{
			&pbmtypes.PbmPlacementCapabilityProfileRequirement{ProfileId: pbmtypes.PbmProfileId{UniqueId: id}},
		})
		if err != nil {
			t.Fatalf("%s: CheckRequirements: %v", name, err)
		}
		if got := hubNames(s, res.CompatibleDatastores()); !slices.Equal(got, compatible) {
			t.Errorf("%s: compatible %v, want %v", name, got, compatible)
		}
		for _, r := range res {
			if len(r.Error) != 0 && !strings.Contains(r.Error[0].LocalizedMessage, "does not satisfy policy "+name) {
				t.Errorf("%s: error message %q", name, r.Error[0].LocalizedMessage)
			}
		}
		if s.policies.policiesFor("vsanDatastore") == nil {
			t.Errorf("Datastores().Policies empty")
		}

		// PbmCheckCompatibility and PbmQueryMatchingHub agree.
		cc, err := methods.PbmCheckCompatibility(ctx, c.pbm, &pbmtypes.PbmCheckCompatibility{
			This: c.pbm.ServiceContent.PlacementSolver, Profile: pbmtypes.PbmProfileId{UniqueId: id},
		})
		if err != nil {
			t.Fatalf("%s: PbmCheckCompatibility: %v", name, err)
		}
		var ok []pbmtypes.PbmPlacementHub
		for _, r := range cc.Returnval {
			if len(r.Error) == 0 {
				ok = append(ok, r.Hub)
			}
		}
		if got := hubNames(s, ok); !slices.Equal(got, compatible) {
			t.Errorf("%s: PbmCheckCompatibility compatible %v, want %v", name, got, compatible)
		}
		mh, err := methods.PbmQueryMatchingHub(ctx, c.pbm, &pbmtypes.PbmQueryMatchingHub{
			This: c.pbm.ServiceContent.PlacementSolver, Profile: pbmtypes.PbmProfileId{UniqueId: id},
		})
		if err != nil {
			t.Fatalf("%s: PbmQueryMatchingHub: %v", name, err)
		}
		if got := hubNames(s, mh.Returnval); !slices.Equal(got, compatible) {
			t.Errorf("%s: PbmQueryMatchingHub %v, want %v", name, got, compatible)
		}
	}

	// Restricting the hubs restricts the answer.
	gold := policyID(t, c, "Gold")
	res, err := c.pbm.CheckRequirements(ctx, []pbmtypes.PbmPlacementHub{{HubType: "Datastore", HubId: dsRef(t, s, "silver-ds").Value}}, nil,
		[]pbmtypes.BasePbmPlacementRequirement{&pbmtypes.PbmPlacementCapabilityProfileRequirement{ProfileId: pbmtypes.PbmProfileId{UniqueId: gold}}})
	if err != nil || len(res) != 1 || len(res[0].Error) == 0 {
		t.Errorf("Gold on silver-ds only: %+v, %v; want one incompatible hub", res, err)
	}

	// An unknown policy is a fault, not "everything fits".
	if _, err := c.pbm.CheckRequirements(ctx, nil, nil, []pbmtypes.BasePbmPlacementRequirement{
		&pbmtypes.PbmPlacementCapabilityProfileRequirement{ProfileId: pbmtypes.PbmProfileId{UniqueId: "no-such-policy"}},
	}); err == nil {
		t.Errorf("CheckRequirements with an unknown policy succeeded")
	}
}
