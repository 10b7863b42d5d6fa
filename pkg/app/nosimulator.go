//go:build !simulator

package app

import (
	"context"
	"fmt"
)

// SimulatorBuilt says whether this binary can run the embedded vCenter.
const SimulatorBuilt = false

// CheckSimulatorLatency checks a --simulator-latency spec: none is
// accepted without the embedded vCenter.
func CheckSimulatorLatency(spec string) error {
	if spec == "" {
		return nil
	}
	return ErrNoSimulator
}

func startSimulator(context.Context, *Config) (string, func(), error) {
	return "", nil, fmt.Errorf("--simulator: %w", ErrNoSimulator)
}
