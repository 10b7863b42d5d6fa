package sim

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	cnstypes "github.com/vmware/govmomi/cns/types"
)

// ContainerVolume is a CNS volume as the vSphere Client's Container
// Volumes view shows it: the volume, the clusters that use it, and each
// cluster's Kubernetes entities as CNS holds them.
type ContainerVolume struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Type      string        `json:"type"` // BLOCK or FILE
	Datastore string        `json:"datastore"`
	Cluster   string        `json:"cluster"`  // the container cluster that created it
	Clusters  []string      `json:"clusters"` // every container cluster that uses it
	Entities  []EntityState `json:"entities"`
}

// EntityState is one entity of a volume's metadata.
type EntityState struct {
	Cluster   string            `json:"cluster"`
	Kind      string            `json:"kind"`
	Namespace string            `json:"namespace,omitempty"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	Refers    string            `json:"refers,omitempty"` // "KIND namespace/name"
}

// ContainerVolumes lists every CNS volume with its metadata, in creation
// order.
func (s *Sim) ContainerVolumes() []ContainerVolume {
	vols := s.cns.query(cnstypes.CnsQueryFilter{})
	out := make([]ContainerVolume, 0, len(vols))
	for _, v := range vols {
		cv := ContainerVolume{ID: v.VolumeId.Id, Name: v.Name, Type: v.VolumeType, Datastore: v.DatastoreUrl,
			Cluster: v.Metadata.ContainerCluster.ClusterId}
		for _, cc := range v.Metadata.ContainerClusterArray {
			cv.Clusters = append(cv.Clusters, cc.ClusterId)
		}
		for _, e := range v.Metadata.EntityMetadata {
			base := e.GetCnsEntityMetadata()
			st := EntityState{Cluster: base.ClusterID, Name: base.EntityName}
			if len(base.Labels) > 0 {
				st.Labels = map[string]string{}
				for _, l := range base.Labels {
					st.Labels[l.Key] = l.Value
				}
			}
			if k, ok := e.(*cnstypes.CnsKubernetesEntityMetadata); ok {
				st.Kind, st.Namespace = k.EntityType, k.Namespace
				for _, r := range k.ReferredEntity {
					st.Refers = fmt.Sprintf("%s %s/%s", r.EntityType, r.Namespace, r.EntityName)
					if r.Namespace == "" {
						st.Refers = r.EntityType + " " + r.EntityName
					}
				}
			}
			cv.Entities = append(cv.Entities, st)
		}
		sort.SliceStable(cv.Entities, func(i, j int) bool {
			a, b := cv.Entities[i], cv.Entities[j]
			return a.Cluster+"\x00"+kindOrder(a.Kind)+a.Namespace+"/"+a.Name < b.Cluster+"\x00"+kindOrder(b.Kind)+b.Namespace+"/"+b.Name
		})
		out = append(out, cv)
	}
	return out
}

func kindOrder(kind string) string {
	switch kind {
	case string(cnstypes.CnsKubernetesEntityTypePV):
		return "1"
	case string(cnstypes.CnsKubernetesEntityTypePVC):
		return "2"
	}
	return "3"
}

// WriteContainerVolumes writes the listing as the Container Volumes view
// reads: one line per volume, then its entities, indented.
func WriteContainerVolumes(w io.Writer, vols []ContainerVolume) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "VOLUME\tNAME\tTYPE\tCLUSTERS\tDATASTORE\n")
	for _, v := range vols {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.ID, v.Name, v.Type, strings.Join(v.Clusters, ","), v.Datastore)
		for _, e := range v.Entities {
			name := e.Name
			if e.Namespace != "" {
				name = e.Namespace + "/" + e.Name
			}
			var labels []string
			for k, val := range e.Labels {
				labels = append(labels, k+"="+val)
			}
			sort.Strings(labels)
			line := fmt.Sprintf("  %s %s %s", e.Cluster, e.Kind, name)
			if len(labels) > 0 {
				line += " labels=" + strings.Join(labels, ",")
			}
			if e.Refers != "" {
				line += " → " + e.Refers
			}
			fmt.Fprintf(tw, "%s\t\t\t\t\n", line)
		}
	}
	return tw.Flush()
}
