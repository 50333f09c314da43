package devstack

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// PubSubOptions configures the Google Cloud Pub/Sub stand-in.
type PubSubOptions struct {
	// Port for gRPC clients. Default: a free port.
	Port int
}

// PubSub is pstest, the in-memory Pub/Sub server of the official Go client,
// serving the Pub/Sub gRPC API on 127.0.0.1 without authentication. Any
// client pointed at Endpoint with plaintext gRPC works against it: the Go
// client through Client, or others through PUBSUB_EMULATOR_HOST. Topics,
// subscriptions and messages live in memory and are gone after Stop.
type PubSub struct {
	srv *pstest.Server
}

// StartPubSub starts the server; it takes connections when this returns.
func StartPubSub(opts PubSubOptions) (*PubSub, error) {
	port, err := portOr(opts.Port)
	if err != nil {
		return nil, err
	}
	srv, err := newPSTest(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("pubsub: starting pstest on port %d: %w", port, err)
	}
	return &PubSub{srv: srv}, nil
}

// newPSTest turns pstest's panic on a failed listen into an error.
func newPSTest(addr string) (srv *pstest.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return pstest.NewServerWithAddress(addr), nil
}

// Endpoint is the gRPC address, 127.0.0.1:PORT (what PUBSUB_EMULATOR_HOST
// takes).
func (p *PubSub) Endpoint() string { return p.srv.Addr }

// Client is a real Pub/Sub client for project, connected to the stand-in
// over plaintext gRPC without credentials. The caller closes it.
func (p *PubSub) Client(ctx context.Context, project string) (*pubsub.Client, error) {
	c, err := pubsub.NewClient(ctx, project,
		option.WithEndpoint(p.Endpoint()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithTelemetryDisabled(),
	)
	if err != nil {
		return nil, fmt.Errorf("pubsub: client for %s: %w", p.Endpoint(), err)
	}
	return c, nil
}

// Stop shuts the server down and drops everything it held.
func (p *PubSub) Stop() {
	if p.srv != nil {
		_ = p.srv.Close()
	}
}
