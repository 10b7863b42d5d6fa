//go:build !simulator

package main

import (
	"strings"
	"testing"
)

// TestSimulatorFlagNeedsTheTag: a binary built without the simulator tag
// (the image's) refuses --simulator and --simulator-latency, saying how to
// build one that has it, instead of starting without a vCenter.
func TestSimulatorFlagNeedsTheTag(t *testing.T) {
	for _, args := range [][]string{
		{"--simulator"},
		{"--simulator-latency=realistic"},
	} {
		if _, err := parseFlags(args); err == nil || !strings.Contains(err.Error(), "-tags simulator") {
			t.Errorf("parseFlags(%v) = %v, want an error saying to build with -tags simulator", args, err)
		}
	}
	if _, err := parseFlags(nil); err != nil {
		t.Errorf("no simulator flags: %v", err)
	}
}
