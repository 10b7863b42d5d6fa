package sim

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/vim25/types"
)

// BenchmarkCreateVolume measures CnsCreateVolume + wait (cns.GetTaskInfo)
// through a real SOAP client, with 1 and with 16 concurrent callers.
func BenchmarkCreateVolume(b *testing.B) {
	for _, callers := range []int{1, 16} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := startSim(b, Options{})
			c := connect(b, s)
			ds := dsRef(b, s, "vsanDatastore")
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if err := createAndWait(c, fmt.Sprintf("bench-%d", i), ds); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}

func createAndWait(c *clients, name string, ds types.ManagedObjectReference) error {
	ctx := context.Background()
	task, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{createSpec(name, 1, "", ds)})
	if err != nil {
		return err
	}
	info, err := cns.GetTaskInfo(ctx, task)
	if err != nil {
		return err
	}
	res, err := cns.GetTaskResult(ctx, info)
	if err != nil {
		return err
	}
	if f := res.GetCnsVolumeOperationResult().Fault; f != nil {
		return fmt.Errorf("create %s: %s", name, f.LocalizedMessage)
	}
	return nil
}

// BenchmarkStartWithNeighbours measures Start (and Close) with 0, 500 and
// 1,000 unrelated VMs (issue 20): go test -run '^$' -bench StartWithNeighbours ./pkg/sim
func BenchmarkStartWithNeighbours(b *testing.B) {
	for _, vms := range []int{0, 500, 1000} {
		b.Run(fmt.Sprintf("vms=%d", vms), func(b *testing.B) {
			skipShort(b, "starts the embedded vCenter")
			for range b.N {
				s, err := Start(context.Background(), Options{Dir: b.TempDir(), Neighbours: Neighbours{VMs: vms}})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = s.Close()
				b.StartTimer()
			}
		})
	}
}
