package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNormalizeDiskUUID(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"6000C29D-1111-2222-3333-444455556666", "6000c29d111122223333444455556666", true},
		{"6000c29d111122223333444455556666", "6000c29d111122223333444455556666", true},
		{" 60 00 C2 9D 11 11 22 22 33 33 44 44 55 55 66 66 ", "6000c29d111122223333444455556666", true},
		{"6000c29d11112222333344445555666", "", false},  // 31 digits
		{"6000c29d11112222333344445555666g", "", false}, // not hex
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizeDiskUUID(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("NormalizeDiskUUID(%q) = %q, %v; want %q, ok=%t", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidDiskUUID) {
			t.Errorf("NormalizeDiskUUID(%q) error %v is not ErrInvalidDiskUUID", tt.in, err)
		}
	}
}

func TestNodeIDFromDMI(t *testing.T) {
	tests := []struct {
		name          string
		serial, uuid  string // file contents; "" = no file
		want, wantErr string
	}{
		{name: "VMware serial", serial: "VMware-42 1a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8\n",
			uuid: "3C2B1A42-5E4D-706F-8192-A3B4C5D6E7F8\n", want: "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8"},
		{name: "product_uuid when the serial is not VMware's", serial: "Not Specified\n",
			uuid: "421A2B3C-4D5E-6F70-8192-A3B4C5D6E7F8\n", want: "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8"},
		{name: "product_uuid alone", uuid: "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8", want: "421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8"},
		{name: "nothing usable", serial: "0\n", uuid: "garbage\n", wantErr: "--node-id"},
		{name: "no files", wantErr: "--node-id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.serial != "" {
				os.WriteFile(filepath.Join(dir, "product_serial"), []byte(tt.serial), 0o400)
			}
			if tt.uuid != "" {
				os.WriteFile(filepath.Join(dir, "product_uuid"), []byte(tt.uuid), 0o400)
			}
			got, err := NodeIDFromDMI(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NodeIDFromDMI = %q, %v; want an error saying %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("NodeIDFromDMI = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseExtSize(t *testing.T) {
	out := "dumpe2fs 1.47.0 (5-Feb-2023)\nFilesystem volume name:   <none>\nBlock count:              614400\nBlock size:               1024\n"
	if n, err := parseExtSize(out); err != nil || n != 614400*1024 {
		t.Errorf("parseExtSize = %d, %v", n, err)
	}
	if _, err := parseExtSize("nothing"); err == nil {
		t.Error("parseExtSize of nothing: no error")
	}
}
