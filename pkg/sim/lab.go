package sim

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// The fault laboratory's controls on a running embedded vCenter; the same
// are served over HTTP by Runner.Handler (lab_control.go).

// SetLatency changes how long calls and tasks take from now on (tasks
// already running keep theirs).
func (s *Sim) SetLatency(l Latency) {
	s.lab.setLatency(l)
	klog.InfoS("vCenter simulator latency", "latency", l.String())
}

// Latency is the latency in force.
func (s *Sim) Latency() Latency { return s.lab.latency.Load().clone() }

// Outage makes the vCenter stop answering for d: every open connection is
// reset now and every new one while it lasts (clients see connection
// resets, as when vCenter's processes restart behind its proxy). Tasks go
// on. d ≤ 0 ends an outage.
func (s *Sim) Outage(d time.Duration) {
	s.wire.outage(d)
	s.lab.events.add(Event{Kind: EventOutage, Detail: d.String()})
	klog.InfoS("vCenter simulator: outage", "for", d)
}

// EndSessions ends every client session, as vCenter does when sessions
// time out or an admin terminates them: the next call of each client gets
// NotAuthenticated. It returns how many sessions it ended.
func (s *Sim) EndSessions(ctx context.Context) (int, error) {
	ictx, c, err := s.internalClient(ctx)
	if err != nil {
		return 0, err
	}
	var sm mo.SessionManager
	if err := property.DefaultCollector(c).RetrieveOne(ictx, *c.ServiceContent.SessionManager, []string{"sessionList"}, &sm); err != nil {
		return 0, fmt.Errorf("list sessions: %w", err)
	}
	n := 0
	for _, us := range sm.SessionList {
		_, err := methods.TerminateSession(ictx, c, &types.TerminateSession{This: *c.ServiceContent.SessionManager, SessionId: []string{us.Key}})
		if err == nil {
			n++
		}
	}
	s.lab.events.add(Event{Kind: EventSessions, Detail: fmt.Sprint(n)})
	klog.InfoS("vCenter simulator: sessions ended", "count", n)
	return n, nil
}
