package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/embedgw"
)

// S3Options configures the S3 stand-in.
type S3Options struct {
	// Dir holds the buckets (one folder each) and their metadata. Required.
	Dir string
	// Port defaults to a free port.
	Port int
	// AccessKey and SecretKey are the root credentials clients sign with.
	// Defaults: "connect-dev" / "connect-dev-secret".
	AccessKey, SecretKey string
	// Region reported to clients. Default us-east-1.
	Region string
}

// S3 is a running versitygw gateway over a posix folder: real SigV4 checks,
// presigned URLs bound to their method and expiry, as AWS does (DESIGN.md §4).
// versitygw allows one gateway per process, and its posix backend changes
// the process's working directory to the bucket folder and works relative
// to it: while it runs, use absolute paths. Stop restores the directory.
//
// Clients reach the gateway through a TCP front on the public port that
// Stop closes with every connection through it: versitygw's shutdown leaves
// a connection that was busy at the time open, and the stopped gateway
// answers every later request on it with 500 (its context is cancelled), so
// a client that keeps such a connection alive (a Bacalhau node's S3 input
// source) would never reach a restarted gateway.
type S3 struct {
	prevDir              string
	endpoint             string
	accessKey, secretKey string
	region               string
	front                *Proxy
	cancel               context.CancelFunc
	done                 chan error
}

// StartS3 starts versitygw and returns once it answers.
func StartS3(ctx context.Context, opts S3Options) (*S3, error) {
	if opts.Dir == "" {
		return nil, errors.New("s3: Dir is required")
	}
	if opts.AccessKey == "" {
		opts.AccessKey, opts.SecretKey = "connect-dev", "connect-dev-secret"
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	port, err := portOr(opts.Port)
	if err != nil {
		return nil, err
	}
	root, sidecar := filepath.Join(opts.Dir, "buckets"), filepath.Join(opts.Dir, "meta")
	for _, d := range []string{root, sidecar} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("s3: %w", err)
		}
	}
	ms, err := meta.NewSideCar(sidecar)
	if err != nil {
		return nil, fmt.Errorf("s3: metadata folder: %w", err)
	}
	popts := posix.PosixOpts{SideCarDir: sidecar, Concurrency: 5000, IOBufferSize: 1 << 20}
	popts.SetNewDirPerm(0o755)
	popts.SetNewFilePerm(0o644)
	prevDir, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	be, err := posix.New(root, ms, popts) // chdirs into root
	if err != nil {
		_ = os.Chdir(prevDir)
		return nil, fmt.Errorf("s3: posix backend: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	inner, err := FreePort()
	if err != nil {
		_ = os.Chdir(prevDir)
		return nil, fmt.Errorf("s3: %w", err)
	}
	innerAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(inner))
	front, err := StartProxy(addr, innerAddr)
	if err != nil {
		_ = os.Chdir(prevDir)
		return nil, fmt.Errorf("s3: %w", err)
	}
	cfg := &embedgw.Config{
		RootUserAccess: opts.AccessKey, RootUserSecret: opts.SecretKey, Region: opts.Region,
		Ports:          []string{innerAddr},
		MaxConnections: 1000, MaxRequests: 500, MultipartMaxParts: 10000,
		Quiet: true, KeepAlive: true,
	}
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &S3{prevDir: prevDir, endpoint: "http://" + addr, accessKey: opts.AccessKey, secretKey: opts.SecretKey,
		region: opts.Region, front: front, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- embedgw.RunVersityGW(gctx, be, cfg) }()
	if err := waitHTTP(s.endpoint+"/", 10*time.Second); err != nil {
		s.Stop()
		select {
		case runErr := <-s.done:
			return nil, fmt.Errorf("s3: versitygw on %s: %w", addr, runErr)
		default:
		}
		return nil, fmt.Errorf("s3: %w", err)
	}
	return s, nil
}

// Endpoint is the S3 API base URL (path-style addressing).
func (s *S3) Endpoint() string { return s.endpoint }

// Region is the region clients must sign for.
func (s *S3) Region() string { return s.region }

// Credentials returns the root access key and secret. Callers pass them
// through the environment (AWS_ACCESS_KEY_ID…), never into workflow inputs.
func (s *S3) Credentials() (accessKey, secretKey string) { return s.accessKey, s.secretKey }

// Client returns an S3 client for this gateway.
func (s *S3) Client() *s3.Client {
	return S3Client(s.endpoint, s.region, s.accessKey, s.secretKey)
}

// S3Client returns a client of the S3 stand-in at endpoint (path-style,
// static keys): what S3.Client returns, for a process that has only the
// stand-in's address and keys (a worker replica of make dev).
func S3Client(endpoint, region, accessKey, secretKey string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     region,
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Stop closes the front and every connection through it, shuts the gateway
// down and returns once it has stopped (or after stopWait), then restores
// the working directory. versitygw's own shutdown
// waits up to 10 s for busy connections; waiting longer than that keeps a
// restart from starting while the old gateway still runs (one per process)
// and from changing the directory under it.
func (s *S3) Stop() {
	_ = s.front.Close() // every client reconnects, to the next gateway
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(stopWait):
	}
	_ = os.Chdir(s.prevDir)
}

// stopWait bounds Stop: past versitygw's 10-s shutdown timeout and its
// backend's shutdown.
const stopWait = 30 * time.Second
