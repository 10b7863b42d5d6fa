package sim

import (
	"sync"
	"time"
)

// Event is one thing the embedded vCenter did that tests and people may
// want to see in order: a task started or ended, a VM's reconfiguration
// began or ended, a fault was injected, an outage began.
type Event struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Method string    `json:"method,omitempty"`
	Task   string    `json:"task,omitempty"`
	VM     string    `json:"vm,omitempty"` // managed object ID
	Detail string    `json:"detail,omitempty"`
}

// Event kinds.
const (
	EventTaskStart     = "task-start"
	EventTaskEnd       = "task-end"
	EventReconfigStart = "reconfig-start" // a VM's reconfiguration got the VM
	EventReconfigEnd   = "reconfig-end"
	EventFault         = "fault"    // an injected fault fired (Detail: its kind)
	EventOutage        = "outage"   // Detail: how long
	EventSessions      = "sessions" // all sessions ended (Detail: how many)
	EventVM            = "vm"       // a node VM powered off, on or deleted (Detail)
	EventDatastore     = "datastore"
	EventCertificate   = "certificate" // the certificate was re-issued (Detail: by which CA)
)

// eventLogSize is how many events the log keeps.
const eventLogSize = 20000

// eventLog keeps the last eventLogSize events.
type eventLog struct {
	mu   sync.Mutex
	seq  int64
	ring []Event
	next int
	full bool
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ring == nil {
		l.ring = make([]Event, eventLogSize)
	}
	l.seq++
	e.Seq, e.Time = l.seq, time.Now()
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
	l.full = l.full || l.next == 0
}

// since returns the events after seq, oldest first.
func (l *eventLog) since(seq int64) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var all []Event
	if l.full {
		all = append(all, l.ring[l.next:]...)
	}
	all = append(all, l.ring[:l.next]...)
	out := all[:0:0]
	for _, e := range all {
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out
}

// Events returns what the embedded vCenter did after event number seq
// (0: everything it still remembers), oldest first.
func (s *Sim) Events(seq int64) []Event { return s.lab.events.since(seq) }

// LastEvent is the number of the latest event, for a later Events call.
func (s *Sim) LastEvent() int64 {
	s.lab.events.mu.Lock()
	defer s.lab.events.mu.Unlock()
	return s.lab.events.seq
}
