package devstack

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSOptions configures the NATS stand-in.
type NATSOptions struct {
	// Port for clients. Default: a free port.
	Port int
	// DataDir holds JetStream's file store, so a server restarted on it
	// (same Port) has its streams, messages and consumers. Default: a
	// temporary folder removed by Stop.
	DataDir string
}

// NATS is the real nats-server (the module Bacalhau v1.7 builds on)
// embedded in this process with JetStream enabled, on 127.0.0.1. Any NATS
// client works against it: nats.go, the nats CLI.
type NATS struct {
	srv *server.Server
	// tempDir is the store Stop removes ("" when the caller owns it).
	tempDir string
}

// StartNATS starts the server and waits until it takes connections.
func StartNATS(opts NATSOptions) (*NATS, error) {
	port, err := portOr(opts.Port)
	if err != nil {
		return nil, err
	}
	n := &NATS{}
	dir := opts.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "connect-nats-"); err != nil {
			return nil, fmt.Errorf("nats: store folder: %w", err)
		}
		n.tempDir = dir
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "connect-dev-nats", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		n.removeStore()
		return nil, fmt.Errorf("nats: %w", err)
	}
	n.srv = srv
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		n.Stop()
		return nil, fmt.Errorf("nats: the server on port %d took no connections within 10 s", port)
	}
	return n, nil
}

// URL is the client URL, nats://127.0.0.1:PORT.
func (n *NATS) URL() string { return n.srv.ClientURL() }

// Stop shuts the server down and removes a store it made itself.
func (n *NATS) Stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
	n.removeStore()
}

func (n *NATS) removeStore() {
	if n.tempDir != "" {
		_ = os.RemoveAll(n.tempDir)
	}
}
