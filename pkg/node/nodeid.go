package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultDMIDir is where the kernel shows the machine's DMI (SMBIOS) table.
const DefaultDMIDir = "/sys/class/dmi/id"

// NodeIDFromDMI reads the VM's BIOS UUID, the CSI node ID, from the DMI
// table in dmiDir, lowercase and dashed (8-4-4-4-12).
//
// product_serial comes first when it has VMware's form
// ("VMware-42 1a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8"): it is the VM's
// config.uuid byte for byte, whereas product_uuid shows the first three
// fields byte-swapped on some virtual hardware versions. product_uuid is the
// fallback. Both files are readable by root only.
func NodeIDFromDMI(dmiDir string) (string, error) {
	if dmiDir == "" {
		dmiDir = DefaultDMIDir
	}
	serialFile := filepath.Join(dmiDir, "product_serial")
	uuidFile := filepath.Join(dmiDir, "product_uuid")
	var tried []string
	if b, err := os.ReadFile(serialFile); err == nil {
		if id, ok := uuidFromVMwareSerial(string(b)); ok {
			return id, nil
		}
		tried = append(tried, fmt.Sprintf("%s is not in VMware's form (%q)", serialFile, strings.TrimSpace(string(b))))
	} else {
		tried = append(tried, err.Error())
	}
	if b, err := os.ReadFile(uuidFile); err == nil {
		id, err := dashedUUID(strings.TrimSpace(string(b)))
		if err == nil {
			return id, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v", uuidFile, err))
	} else {
		tried = append(tried, err.Error())
	}
	return "", fmt.Errorf("no BIOS UUID in the DMI table (%s); give the node ID with --node-id",
		strings.Join(tried, "; "))
}

// uuidFromVMwareSerial reads "VMware-42 1a 2b ... e7 f8".
func uuidFromVMwareSerial(serial string) (string, bool) {
	s, ok := strings.CutPrefix(strings.TrimSpace(serial), "VMware-")
	if !ok {
		return "", false
	}
	id, err := dashedUUID(s)
	return id, err == nil
}

// dashedUUID turns 32 hex digits, with any dashes and spaces, into the
// lowercase dashed form.
func dashedUUID(s string) (string, error) {
	h := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(s))
	if len(h) != 32 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is not a UUID", s)
	}
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}
