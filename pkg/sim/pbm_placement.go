package sim

import (
	"github.com/vmware/govmomi/pbm/methods"
	pbmsim "github.com/vmware/govmomi/pbm/simulator"
	pbmtypes "github.com/vmware/govmomi/pbm/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// placementSolver replaces the simulator's "everything is compatible"
// solver with answers from the policy→datastore map.
type placementSolver struct {
	*pbmsim.PlacementSolver
	policies *policyMap
}

// hubs are the datastores to consider: the requested ones (unknown ones
// included, so they come back with an error) or all of them.
func (s *placementSolver) hubs(req []pbmtypes.PbmPlacementHub) []pbmtypes.PbmPlacementHub {
	if len(req) != 0 {
		return req
	}
	var out []pbmtypes.PbmPlacementHub
	for _, d := range s.policies.inv.datastores {
		out = append(out, pbmtypes.PbmPlacementHub{HubType: d.ref.Type, HubId: d.ref.Value})
	}
	return out
}

func (s *placementSolver) check(hubs []pbmtypes.PbmPlacementHub, profileID string) []pbmtypes.PbmPlacementCompatibilityResult {
	var out []pbmtypes.PbmPlacementCompatibilityResult
	for _, hub := range s.hubs(hubs) {
		res := pbmtypes.PbmPlacementCompatibilityResult{Hub: hub}
		ref := types.ManagedObjectReference{Type: hub.HubType, Value: hub.HubId}
		d, ok := s.policies.inv.dsByRef[ref]
		var msg string
		switch {
		case !ok:
			msg = "datastore " + hub.HubId + " not found"
			res.Error = []types.LocalizedMethodFault{{
				Fault:            &types.ManagedObjectNotFound{Obj: ref},
				LocalizedMessage: msg,
			}}
		default:
			if good, why := s.policies.compatible(profileID, d); !good {
				res.Error = []types.LocalizedMethodFault{{
					Fault:            &pbmtypes.PbmFault{MethodFault: types.MethodFault{FaultMessage: []types.LocalizableMessage{{Key: "com.vmware.pbm.placement.incompatible", Message: why}}}},
					LocalizedMessage: why,
				}}
			}
		}
		out = append(out, res)
	}
	return out
}

func unknownProfile(id string) *soap.Fault {
	return simulator.Fault("storage policy "+id+" not found", &types.InvalidArgument{InvalidProperty: "profile"})
}

// PbmCheckRequirements answers per hub from the policy map.
func (s *placementSolver) PbmCheckRequirements(_ *simulator.Context, req *pbmtypes.PbmCheckRequirements) soap.HasFault {
	body := new(methods.PbmCheckRequirementsBody)
	profileID := ""
	for _, r := range req.PlacementSubjectRequirement {
		if p, ok := r.(*pbmtypes.PbmPlacementCapabilityProfileRequirement); ok {
			profileID = p.ProfileId.UniqueId
		}
	}
	if _, ok := s.policies.lookup(profileID); profileID != "" && !ok {
		body.Fault_ = unknownProfile(profileID)
		return body
	}
	body.Res = &pbmtypes.PbmCheckRequirementsResponse{Returnval: s.check(req.HubsToSearch, profileID)}
	return body
}

// PbmCheckCompatibility answers per hub from the policy map.
func (s *placementSolver) PbmCheckCompatibility(_ *simulator.Context, req *pbmtypes.PbmCheckCompatibility) soap.HasFault {
	body := new(methods.PbmCheckCompatibilityBody)
	if _, ok := s.policies.lookup(req.Profile.UniqueId); !ok {
		body.Fault_ = unknownProfile(req.Profile.UniqueId)
		return body
	}
	body.Res = &pbmtypes.PbmCheckCompatibilityResponse{Returnval: s.check(req.HubsToSearch, req.Profile.UniqueId)}
	return body
}

// PbmQueryMatchingHub lists the compatible hubs.
func (s *placementSolver) PbmQueryMatchingHub(_ *simulator.Context, req *pbmtypes.PbmQueryMatchingHub) soap.HasFault {
	body := new(methods.PbmQueryMatchingHubBody)
	if _, ok := s.policies.lookup(req.Profile.UniqueId); !ok {
		body.Fault_ = unknownProfile(req.Profile.UniqueId)
		return body
	}
	body.Res = new(pbmtypes.PbmQueryMatchingHubResponse)
	for _, r := range s.check(req.HubsToSearch, req.Profile.UniqueId) {
		if len(r.Error) == 0 {
			body.Res.Returnval = append(body.Res.Returnval, r.Hub)
		}
	}
	return body
}
