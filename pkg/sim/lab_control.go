package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	vsanfstypes "github.com/vmware/govmomi/vsan/vsanfs/types"
)

// Runner keeps an embedded vCenter running and can restart it in place
// (stop, stay down a while, start again on the same Dir and address), the
// way `vsphere-sim` runs it. Its Handler is the fault laboratory's HTTP
// control endpoint.
type Runner struct {
	mu   sync.Mutex
	sim  *Sim
	opts Options
}

// NewRunner starts an embedded vCenter.
func NewRunner(ctx context.Context, opts Options) (*Runner, error) {
	s, err := Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &Runner{sim: s, opts: opts}, nil
}

// Sim is the running embedded vCenter (another one after each Restart).
func (r *Runner) Sim() *Sim {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sim
}

// Restart stops the vCenter as a restart does (Stop), stays down for down
// (connections refused), and starts it again on the same Dir and address
// with the same latency. Fault rules do not survive it.
func (r *Runner) Restart(ctx context.Context, down time.Duration, fate TaskFate) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.sim
	opts := r.opts
	opts.Dir, opts.Listen, opts.Latency = old.opts.Dir, old.HostPort(), old.Latency()
	klog.InfoS("vCenter simulator: restarting", "down", down)
	old.Stop(StopOptions{RunningTasks: fate})
	select {
	case <-time.After(down):
	case <-ctx.Done():
	}
	s, err := Start(context.WithoutCancel(ctx), opts)
	if err != nil {
		return fmt.Errorf("start again: %w", err)
	}
	r.sim = s
	return nil
}

// Close closes the running vCenter (Sim.Close).
func (r *Runner) Close() error { return r.Sim().Close() }

// Stop stops the running vCenter, keeping its state (Sim.Stop).
func (r *Runner) Stop(opts StopOptions) { r.Sim().Stop(opts) }

// ControlUsage documents the control endpoint; docs/SIMULATOR.md has the same table.
const ControlUsage = `vsphere-sim control endpoint (plain HTTP, loopback only):
  GET    /latency                     the latency spec in force
  PUT    /latency        body: SPEC   set it (METHOD=DURATION,..., realistic, jitter=N%, none)
  GET    /faults                      the fault rules in force and the faults injected so far
  POST   /faults         body: JSON   add a rule: {"method":"CnsCreateVolume","fault":"CnsFault","times":2}
                                      {"method":"*","fault":"LostReply","probability":0.1}
                                      {"method":"CnsAttachVolume","fault":"CnsFault","inTask":true,"times":1}
                                      {"method":"WaitForUpdatesEx","fault":"Hang","duration":"30s","times":1}
                                      faults: CnsFault NotAuthenticated TaskInProgress InvalidState NoPermission
                                      HostNotConnected Timedout MethodNotFound ManagedObjectNotFound SystemError
                                      HTTP503 ConnectionReset Hang LostReply
  DELETE /faults                      remove every rule        DELETE /faults/ID   remove one
  POST   /outage?for=60s              reset every connection for that long (for=0 ends it)
  POST   /restart?down=60s&tasks=may  stop as a vCenter restart does, stay down, start again with the state
                                      (tasks: may | abandon | complete: what becomes of running tasks)
  POST   /sessions/end                end every session (clients get NotAuthenticated)
  POST   /vms/NAME/power-off          POST /vms/NAME/power-on      DELETE /vms/NAME
  POST   /datastores/NAME/fill?free=0 leave that many bytes free (free=-1 gives the space back)
  PUT    /file-service/ZONE?enabled=false  vSAN File Service off (or on) on zone-a's or zone-b's cluster
  GET    /shares                      the vSAN file shares (file volumes) with access points and permissions
  PUT    /shares/NAME/permissions     replace a share's net permissions, as an admin does in the vSphere Client
                                       (JSON [{"Ips":"*","Permissions":"READ_WRITE","AllowRoot":false}]: root squashed)
  GET    /container-volumes           the CNS volumes as the vSphere Client's Container Volumes view shows them:
                                      clusters, and each cluster's PV, PVC and pods (JSON; ?format=text: a table)
  GET    /events?since=N              what the vCenter did (tasks, reconfigurations, faults), as JSON lines
  GET    /vms   GET /datastores       the node VMs and datastores with their state
  GET    /hosts                       the hosts with their cluster and the datastores each mounts
  POST   /nodes?host=NAME             add a node VM of this cluster on that host (kept across restarts)
  GET    /neighbours                  the neighbours: options, VMs by kind, the other cluster's volumes,
                                      background tasks started by kind
  POST   /neighbours/tasks?kind=KIND&duration=60s   start one neighbour task now (no duration: its own)
                                      kinds: drs-migration storage-vmotion backup-snapshot backup-snapshot-remove
                                      scheduled-power cns-create cns-delete cns-snapshot cns-delete-snapshot
`

// Handler is the control endpoint (ControlUsage).
func (r *Runner) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, ControlUsage) })
	mux.HandleFunc("GET /latency", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, r.Sim().Latency().String())
	})
	mux.HandleFunc("PUT /latency", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<16))
		l, err := ParseLatency(string(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Sim().SetLatency(l)
		fmt.Fprintln(w, l.String())
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		s := r.Sim()
		writeJSON(w, map[string]any{"rules": s.FaultRules(), "injected": s.FaultStats()})
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, req *http.Request) {
		var rule FaultRule
		if err := decodeRule(req.Body, &rule); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id, err := r.Sim().InjectFault(rule)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string]int{"id": id})
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, _ *http.Request) { r.Sim().ClearFaults() })
	mux.HandleFunc("DELETE /faults/{id}", func(w http.ResponseWriter, req *http.Request) {
		id, err := strconv.Atoi(req.PathValue("id"))
		if err != nil || !r.Sim().RemoveFault(id) {
			http.Error(w, "no such rule", http.StatusNotFound)
		}
	})
	mux.HandleFunc("POST /outage", func(w http.ResponseWriter, req *http.Request) {
		d, err := durationParam(req, "for")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Sim().Outage(d)
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, req *http.Request) {
		d, err := durationParam(req, "down")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fate, err := parseFate(req.URL.Query().Get("tasks"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := r.Restart(req.Context(), d, fate); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "restarted:", r.Sim().URL())
	})
	mux.HandleFunc("POST /sessions/end", func(w http.ResponseWriter, req *http.Request) {
		n, err := r.Sim().EndSessions(req.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]int{"ended": n})
	})
	vmOp := func(op func(*Sim, context.Context, string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			if err := op(r.Sim(), req.Context(), req.PathValue("name")); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
			}
		}
	}
	mux.HandleFunc("POST /vms/{name}/power-off", vmOp((*Sim).PowerOffVM))
	mux.HandleFunc("POST /vms/{name}/power-on", vmOp((*Sim).PowerOnVM))
	mux.HandleFunc("DELETE /vms/{name}", vmOp((*Sim).DeleteVM))
	mux.HandleFunc("GET /vms", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, r.Sim().NodeVMs()) })
	mux.HandleFunc("GET /datastores", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, r.Sim().Datastores()) })
	mux.HandleFunc("POST /datastores/{name}/fill", func(w http.ResponseWriter, req *http.Request) {
		free, err := strconv.ParseInt(req.URL.Query().Get("free"), 10, 64)
		if err != nil {
			http.Error(w, "free: a number of bytes (-1 gives the space back)", http.StatusBadRequest)
			return
		}
		if err := r.Sim().FillDatastore(req.PathValue("name"), free); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("PUT /file-service/{zone}", func(w http.ResponseWriter, req *http.Request) {
		on, err := strconv.ParseBool(req.URL.Query().Get("enabled"))
		if err != nil {
			http.Error(w, "enabled: true or false", http.StatusBadRequest)
			return
		}
		if err := r.Sim().SetFileService(req.PathValue("zone"), on); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("GET /shares", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, r.Sim().Shares()) })
	mux.HandleFunc("PUT /shares/{name}/permissions", func(w http.ResponseWriter, req *http.Request) {
		var perms []vsanfstypes.VsanFileShareNetPermission
		if err := json.NewDecoder(req.Body).Decode(&perms); err != nil {
			http.Error(w, "a JSON list of net permissions: [{\"Ips\":\"*\",\"Permissions\":\"READ_WRITE\",\"AllowRoot\":false}]", http.StatusBadRequest)
			return
		}
		if err := r.Sim().SetSharePermissions(req.PathValue("name"), perms); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("GET /container-volumes", func(w http.ResponseWriter, req *http.Request) {
		vols := r.Sim().ContainerVolumes()
		if req.URL.Query().Get("format") == "text" {
			_ = WriteContainerVolumes(w, vols)
			return
		}
		writeJSON(w, vols)
	})
	r.neighbourHandlers(mux)
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, req *http.Request) {
		since, _ := strconv.ParseInt(req.URL.Query().Get("since"), 10, 64)
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, e := range r.Sim().Events(since) {
			_ = enc.Encode(e)
		}
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeRule reads a FaultRule whose duration may be written "30s".
func decodeRule(r io.Reader, rule *FaultRule) error {
	var raw struct {
		FaultRule
		Duration json.RawMessage `json:"duration"`
	}
	dec := json.NewDecoder(io.LimitReader(r, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("fault rule: %w", err)
	}
	*rule = raw.FaultRule
	if len(raw.Duration) > 0 {
		var s string
		if err := json.Unmarshal(raw.Duration, &s); err == nil {
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("fault rule: duration %q: %w", s, err)
			}
			rule.Duration = d
		} else if err := json.Unmarshal(raw.Duration, &rule.Duration); err != nil {
			return errors.New("fault rule: duration is a string such as \"30s\" or nanoseconds")
		}
	}
	return nil
}

func durationParam(req *http.Request, name string) (time.Duration, error) {
	v := req.URL.Query().Get(name)
	if v == "" {
		return 0, fmt.Errorf("%s: a duration such as 60s", name)
	}
	return time.ParseDuration(v)
}

// parseFate reads what becomes of running tasks at a restart.
func parseFate(s string) (TaskFate, error) {
	switch strings.ToLower(s) {
	case "", "may":
		return TasksMayHappen, nil
	case "abandon":
		return TasksAbandoned, nil
	case "complete":
		return TasksComplete, nil
	}
	return 0, fmt.Errorf("tasks=%q: may, abandon or complete", s)
}

// neighbourHandlers serve the hosts, added node VMs and the neighbours.
func (r *Runner) neighbourHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET /hosts", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, r.Sim().Hosts()) })
	mux.HandleFunc("POST /nodes", func(w http.ResponseWriter, req *http.Request) {
		n, err := r.Sim().AddNodeVM(req.Context(), req.URL.Query().Get("host"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, n)
	})
	mux.HandleFunc("GET /neighbours", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, r.Sim().NeighboursInfo()) })
	mux.HandleFunc("POST /neighbours/tasks", func(w http.ResponseWriter, req *http.Request) {
		var d time.Duration
		if v := req.URL.Query().Get("duration"); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil || d < 0 {
				http.Error(w, "duration: a duration such as 60s", http.StatusBadRequest)
				return
			}
		}
		ref, err := r.Sim().StartNeighbourTask(NeighbourTaskKind(req.URL.Query().Get("kind")), d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string]string{"task": ref.Value})
	})
}
