// Package doctor is `vsphere-csi doctor`: a preflight that connects to
// vCenter with the driver's csi-vsphere.conf, reads what the cluster's
// Kubernetes API says (nodes, StorageClasses, claims) and checks, one
// finding per check and object, what makes volumes fail later: TLS and
// login, the documented privileges, each StorageClass's policy and
// datastores, every node VM's settings, File Service for ReadWriteMany
// classes, topology tags. It only reads: nothing changes in vCenter or in
// Kubernetes (docs/DOCTOR.md).
package doctor

import (
	"encoding/json"
	"fmt"
	"io"
)

// Finding is the outcome of one check on one object.
type Finding struct {
	Check   string `json:"check"`
	Object  string `json:"object"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
	Fix     string `json:"fix,omitempty"`
	// Detail says what was found when OK.
	Detail string `json:"detail,omitempty"`
}

// The checks, as findings name them.
const (
	CheckTLS             = "tls"
	CheckLogin           = "login"
	CheckNodes           = "nodes"
	CheckNodeVM          = "node-vm"
	CheckEnableUUID      = "enable-uuid"
	CheckHardwareVersion = "hardware-version"
	CheckPVSCSI          = "pvscsi"
	CheckSCSISlots       = "scsi-slots"
	CheckTopology        = "topology"
	CheckStoragePolicy   = "storage-policy"
	CheckDatastores      = "datastores"
	CheckFreeSpace       = "free-space"
	CheckFileService     = "file-service"
	CheckPrivileges      = "privileges"
)

// Problems counts the findings that are not OK.
func Problems(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if !f.OK {
			n++
		}
	}
	return n
}

// WriteText writes a line per finding:
//
//	OK       <check>: <object>: <detail>
//	PROBLEM  <check>: <object>: <problem>  (fix: <how>)
func WriteText(w io.Writer, fs []Finding) error {
	for _, f := range fs {
		var err error
		if f.OK {
			line := fmt.Sprintf("OK       %s: %s", f.Check, f.Object)
			if f.Detail != "" {
				line += ": " + f.Detail
			}
			_, err = fmt.Fprintln(w, line)
		} else {
			_, err = fmt.Fprintf(w, "PROBLEM  %s: %s: %s  (fix: %s)\n", f.Check, f.Object, f.Problem, f.Fix)
		}
		if err != nil {
			return err
		}
	}
	n := Problems(fs)
	_, err := fmt.Fprintf(w, "%d checks, %d problems\n", len(fs), n)
	return err
}

// WriteJSON writes the findings as a JSON array.
func WriteJSON(w io.Writer, fs []Finding) error {
	if fs == nil {
		fs = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(fs)
}

func ok(check, object, detail string) Finding {
	return Finding{Check: check, Object: object, OK: true, Detail: detail}
}

func problem(check, object, what, fix string) Finding {
	return Finding{Check: check, Object: object, Problem: what, Fix: fix}
}
