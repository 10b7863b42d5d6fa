//go:build simulator

package main

import (
	"strings"
	"testing"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

func TestSimulatorLatencyFlag(t *testing.T) {
	o, err := parseFlags([]string{"--simulator", "--simulator-latency=realistic,CnsCreateVolume=4s"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := sim.ParseLatency(o.simulatorLatency)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Methods["CnsCreateVolume"]; got.String() != "4s" {
		t.Errorf("CnsCreateVolume latency %v, want 4s", got)
	}
	if l.Methods["CnsAttachVolume"] == 0 {
		t.Error("realistic preset not applied")
	}
	if _, err := parseFlags([]string{"--simulator-latency=CnsCreateVolume=soon"}); err == nil || !strings.Contains(err.Error(), "--simulator-latency") {
		t.Errorf("a bad spec: %v", err)
	}
}
