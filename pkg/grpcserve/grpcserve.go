// Package grpcserve runs a gRPC server until its context ends.
package grpcserve

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc"
)

// Serve serves srv on l until ctx ends, then stops gracefully, waiting at
// most grace for running calls before it stops hard. It returns the
// server's error if it stops by itself.
func Serve(ctx context.Context, srv *grpc.Server, l net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(grace):
			srv.Stop()
		}
		return nil
	}
}
