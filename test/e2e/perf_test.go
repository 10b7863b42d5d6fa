package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// simEvent is one line of the embedded vCenter's GET /events.
type simEvent struct {
	Seq  int64  `json:"seq"`
	Kind string `json:"kind"`
	VM   string `json:"vm"`
}

func simEvents(t *testing.T, since int64) []simEvent {
	t.Helper()
	var out []simEvent
	sc := bufio.NewScanner(bytes.NewReader(simControl(t, "GET", fmt.Sprintf("/events?since=%d", since), "")))
	for sc.Scan() {
		var e simEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// TestStatefulSetUnderRealisticLatency is a figure, not an assertion of
// time (issue 14): a StatefulSet of 20 replicas (Parallel) from zero to
// all Running, through real Kubernetes, with the embedded vCenter as slow
// as a real one (`realistic`: an attach is a 7.6 s VM reconfiguration, a
// create 0.42 s). It logs the wall time and the node VM's reconfigurations
// (attaches batched per VM: far fewer than 20); it asserts only that every
// pod runs with a volume of its own.
func TestStatefulSetUnderRealisticLatency(t *testing.T) {
	const name, n = "e2e-sts-realistic", 20
	simControl(t, "PUT", "/latency", "realistic")
	t.Cleanup(func() { simControl(t, "PUT", "/latency", "none") })
	var mark int64
	if ev := simEvents(t, 0); len(ev) > 0 {
		mark = ev[len(ev)-1].Seq
	}
	script := "echo \"$POD_NAME\" > /data/id; sync; touch /tmp/ready; exec sleep 100000"
	start := time.Now()
	claims := createStatefulSet(t, name, n, script)
	waitReady(t, name, n)
	took := time.Since(start)
	reconfigs := 0
	for _, e := range simEvents(t, mark) {
		if e.Kind == "reconfig-start" {
			reconfigs++
		}
	}
	t.Logf("FIGURE: StatefulSet of %d (Parallel) from zero to all Running in %.1f s under realistic latency "+
		"(one attach 7.6 s; one by one: %d s); %d VM reconfigurations for %d attaches",
		n, took.Seconds(), n*76/10, reconfigs, n)

	simControl(t, "PUT", "/latency", "none")
	var pvs []string
	for _, c := range claims {
		pvs = append(pvs, waitBound(t, c).Name)
	}
	deleteStatefulSet(t, name, claims, pvs, 4*time.Minute)
}
