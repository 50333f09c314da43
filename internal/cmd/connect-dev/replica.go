package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/bacalhau-connect/bacalhau-connect/internal/conn"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workerapp"
)

// replicaCommand is connect-dev's first argument when it runs as one more
// worker replica (--workers N starts N-1 of them beside the in-process
// worker): the same worker as the in-process one, in a process of its own,
// so it can be killed.
const replicaCommand = "worker-replica"

// Environment a replica reads its secrets from (never its command line).
const (
	envReplicaS3Key       = "CONNECT_DEV_S3_ACCESS_KEY"
	envReplicaS3Secret    = "CONNECT_DEV_S3_SECRET_KEY"
	envReplicaGatewayHex  = "CONNECT_DEV_GATEWAY_SECRET_HEX"
	replicaGatewayDefault = "127.0.0.1:0"
)

// replicaLaunch says how to start replicas like the in-process worker.
type replicaLaunch struct {
	temporal, namespace    string
	codecKeyFile, bacalhau string
	s3Endpoint, s3Region   string
	s3Key, s3Secret        string
	gatewaySecret          []byte
}

// startReplica starts worker replica i as a process logging to log.
func startReplica(l replicaLaunch, i int, log io.Writer) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	gw, err := devstack.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, replicaCommand, "-temporal-address", l.temporal, "-namespace", l.namespace, "-codec-key-file", l.codecKeyFile,
		"-bacalhau", l.bacalhau, "-s3-endpoint", l.s3Endpoint, "-s3-region", l.s3Region,
		"-gateway-listen", "127.0.0.1:"+strconv.Itoa(gw), "-name", fmt.Sprintf("replica-%d", i))
	cmd.Env = append(os.Environ(), envReplicaS3Key+"="+l.s3Key, envReplicaS3Secret+"="+l.s3Secret,
		envReplicaGatewayHex+"="+hex.EncodeToString(l.gatewaySecret))
	cmd.Stdout, cmd.Stderr = log, log
	// A replica goes when connect-dev does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting worker replica %d: %w", i, err)
	}
	return cmd, nil
}

// runReplica is connect-dev worker-replica: a worker of the dev stack
// until ctx ends.
func runReplica(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(replicaCommand, flag.ContinueOnError)
	temporalAddr := fs.String("temporal-address", "127.0.0.1:7233", "Temporal frontend")
	namespace := fs.String("namespace", "default", "Temporal namespace")
	codecKey := fs.String("codec-key-file", "", "payload codec key file")
	bacalhau := fs.String("bacalhau", "http://127.0.0.1:1234", "Bacalhau API base URL")
	s3Endpoint := fs.String("s3-endpoint", "", "S3 stand-in endpoint")
	s3Region := fs.String("s3-region", "us-east-1", "S3 region")
	gwListen := fs.String("gateway-listen", replicaGatewayDefault, "input gateway address")
	name := fs.String("name", "replica", "name in logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret, err := hex.DecodeString(os.Getenv(envReplicaGatewayHex))
	if err != nil || len(secret) < inputgateway.MinSecretBytes {
		return errors.New(envReplicaGatewayHex + " must hold the dev stack's gateway secret (hex)")
	}
	store := devstack.S3Client(*s3Endpoint, *s3Region, os.Getenv(envReplicaS3Key), os.Getenv(envReplicaS3Secret))
	s3Clients := func(context.Context, string, string) (*s3.Client, error) { return store, nil }
	srv, err := inputgateway.Listen(*gwListen)
	if err != nil {
		return err
	}
	gateway, err := inputgateway.New(inputgateway.Options{Secret: secret, PublicURL: srv.URL(), Clients: s3Clients})
	if err != nil {
		return err
	}
	srv.Serve(gateway)
	defer func() { _ = srv.Stop() }()

	logger := slog.New(slog.NewTextHandler(stderr, nil)).With("worker", *name)
	tc := conn.Temporal{Address: *temporalAddr, Namespace: *namespace, CodecKeyFile: *codecKey}
	copts, err := tc.ClientOptions(client.Options{Logger: sdklog.NewStructuredLogger(logger)})
	if err != nil {
		return err
	}
	c, err := client.DialContext(ctx, copts)
	if err != nil {
		return fmt.Errorf("connecting to Temporal: %w", err)
	}
	defer c.Close()
	w := workerapp.New(c, workerapp.Options{BacalhauAddress: *bacalhau, Gateway: gateway, S3Clients: s3Clients,
		QueueClients: devstack.QueueClients, KinesisClients: devstack.KinesisClient})
	if err := w.Start(); err != nil {
		return err
	}
	logger.Info("worker replica up", "gateway", srv.URL())
	<-ctx.Done()
	w.Stop()
	return nil
}
