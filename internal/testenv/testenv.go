// Package testenv starts the real local stack for end-to-end tests: a
// Temporal dev server, an in-process Bacalhau node, the module server with the
// sample WASM task built and served, and helpers to run workers against them.
package testenv

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workerapp"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// Env is a running local stack.
type Env struct {
	Root     string // repository root
	Dir      string // scratch folder of this environment
	Temporal *devstack.Temporal
	Bacalhau *devstack.Bacalhau
	Modules  *devstack.ModuleServer
	S3       *devstack.S3
	// Gateway is the input gateway workers of this environment mint URLs
	// with; GatewayServer serves it.
	Gateway       *inputgateway.Gateway
	GatewayServer *inputgateway.Server
	Client        client.Client
	s3client      *s3.Client
	// The worker binary, built once (StartWorkerProcess).
	buildOnce sync.Once
	workerBin string
	buildErr  error
	// gatewaySecrets are the gateway secrets of this environment and its
	// worker processes (GatewaySecrets).
	mu             sync.Mutex
	gatewaySecrets []string
	// temporalOpts start the dev server again (RestartTemporal).
	temporalOpts devstack.TemporalOptions
}

// Options configure Start.
type Options struct {
	// TemporalDBFile keeps the Temporal dev server's state in this SQLite
	// file, so RestartTemporal keeps every workflow. Default: in memory.
	TemporalDBFile string
	// TemporalMetrics serves the dev server's Prometheus metrics, so
	// Temporal.Actions counts billable actions (benchmarks).
	TemporalMetrics bool
}

// GatewaySecrets are the input gateway secrets this environment and its
// worker processes sign with: a history scan looks for them.
func (e *Env) GatewaySecrets() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.gatewaySecrets...)
}

func (e *Env) noteGatewaySecret(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s != "" && !slices.Contains(e.gatewaySecrets, s) {
		e.gatewaySecrets = append(e.gatewaySecrets, s)
	}
}

// RepoRoot finds the repository root (the folder with go.mod) above the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Start brings the stack up with its state and logs under dir. Logs go to
// dir/*.log.
func Start(ctx context.Context, dir string) (*Env, error) {
	return StartWith(ctx, dir, Options{})
}

// StartWith is Start with options.
func StartWith(ctx context.Context, dir string, opts Options) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	e := &Env{Root: root, Dir: dir}
	ok := false
	defer func() {
		if !ok {
			e.Stop()
		}
	}()
	modules := filepath.Join(dir, "modules")
	if err := devstack.BuildWASM(ctx, filepath.Join(root, "examples/tasks/logsummary"), filepath.Join(modules, "logsummary.wasm")); err != nil {
		return nil, err
	}
	if e.Modules, err = devstack.StartModuleServer(modules, 0, nil); err != nil {
		return nil, err
	}
	tlog, err := os.Create(filepath.Join(dir, "temporal.log"))
	if err != nil {
		return nil, err
	}
	port, err := devstack.FreePort()
	if err != nil {
		return nil, err
	}
	e.temporalOpts = devstack.TemporalOptions{
		BinPath: filepath.Join(root, "bin/temporal"), Port: port, Headless: true, Log: tlog,
		SearchAttributes: workflows.SearchAttributeTypes(), DBFile: opts.TemporalDBFile,
		Metrics: opts.TemporalMetrics,
	}
	if e.Temporal, err = devstack.StartTemporal(ctx, e.temporalOpts); err != nil {
		return nil, err
	}
	e.Client = e.Temporal.Client()
	if e.S3, err = devstack.StartS3(ctx, devstack.S3Options{Dir: filepath.Join(dir, "s3")}); err != nil {
		return nil, err
	}
	// The node's s3 input source reads with the node's own credentials, from
	// its environment: give it the stand-in's (tests only; connectors pass
	// no keys anywhere).
	access, secretKey := e.S3.Credentials()
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secretKey, "AWS_REGION": e.S3.Region()} {
		if err := os.Setenv(k, v); err != nil {
			return nil, err
		}
	}
	blog, err := os.Create(filepath.Join(dir, "bacalhau.log"))
	if err != nil {
		return nil, err
	}
	if e.Bacalhau, err = devstack.StartBacalhau(ctx, devstack.BacalhauOptions{
		DataDir: filepath.Join(dir, "bacalhau"), Log: blog,
	}); err != nil {
		return nil, err
	}
	secret := make([]byte, inputgateway.MinSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	if e.GatewayServer, err = inputgateway.Listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	e.s3client = e.S3.Client()
	e.noteGatewaySecret(string(secret))
	if e.Gateway, err = inputgateway.New(inputgateway.Options{
		Secret: secret, PublicURL: e.GatewayServer.URL(), Clients: e.S3Clients,
	}); err != nil {
		return nil, err
	}
	e.GatewayServer.Serve(e.Gateway)
	ok = true
	return e, nil
}

// StartWorker starts a worker on taskQueue (default queue when empty).
// Stop it with Stop(); stopping it is how tests "kill" a worker.
func (e *Env) StartWorker(taskQueue string) (worker.Worker, error) {
	return e.StartWorkerWith(workerapp.Options{TaskQueue: taskQueue, Gateway: e.Gateway})
}

// S3Clients hands out the stand-in's client, whatever endpoint is asked.
func (e *Env) S3Clients(context.Context, string, string) (*s3.Client, error) {
	return e.s3client, nil
}

// StartWorkerWith starts a worker with opts; BacalhauAddress defaults to
// the stack's node.
func (e *Env) StartWorkerWith(opts workerapp.Options) (worker.Worker, error) {
	if opts.BacalhauAddress == "" {
		opts.BacalhauAddress = e.Bacalhau.Address()
	}
	if opts.S3Clients == nil {
		opts.S3Clients = e.S3Clients
	}
	if opts.QueueClients == nil {
		opts.QueueClients = devstack.QueueClients
	}
	if opts.KinesisClients == nil {
		opts.KinesisClients = devstack.KinesisClient
	}
	w := workerapp.New(e.Client, opts)
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("starting worker: %w", err)
	}
	return w, nil
}

// TemplateVars are the template variables the stack provides.
func (e *Env) TemplateVars() map[string]string {
	return map[string]string{"MODULES_URL": e.Modules.URL()}
}

// ServeFile writes data under the module server and returns its URL.
func (e *Env) ServeFile(name string, data []byte) (string, error) {
	p := filepath.Join(e.Modules.Dir(), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return "", err
	}
	return e.Modules.URL() + "/" + filepath.ToSlash(name), nil
}

// RestartTemporal stops the Temporal dev server, waits downFor and starts
// it again on the same port (with its state when Options.TemporalDBFile is
// set). Clients dialled to HostPort reconnect; e.Client is replaced.
func (e *Env) RestartTemporal(ctx context.Context, downFor time.Duration) error {
	if err := e.Temporal.Stop(); err != nil {
		return err
	}
	time.Sleep(downFor)
	t, err := devstack.StartTemporal(ctx, e.temporalOpts)
	if err != nil {
		return fmt.Errorf("restarting temporal: %w", err)
	}
	e.Temporal, e.Client = t, t.Client()
	return nil
}

// Stop stops everything that started.
func (e *Env) Stop() {
	if e.GatewayServer != nil {
		_ = e.GatewayServer.Stop()
	}
	if e.S3 != nil {
		e.S3.Stop()
	}
	if e.Bacalhau != nil {
		e.Bacalhau.Stop()
	}
	if e.Temporal != nil {
		_ = e.Temporal.Stop()
	}
	if e.Modules != nil {
		_ = e.Modules.Stop()
	}
}

// Eventually polls cond every 100 ms until it returns nil or timeout passes,
// and returns its last error.
func Eventually(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ExportHistory writes a workflow's full history as JSON (the format of
// `temporal workflow show --output json`), for replay tests, and its
// workflow ID beside it (path with .id for .json): workflows that derive
// names from their own ID replay only under that ID.
func (e *Env) ExportHistory(ctx context.Context, workflowID, path string) error {
	return e.ExportRunHistory(ctx, workflowID, "", path)
}

// ExportRunHistory is ExportHistory of one run of the workflow (runID ""
// is its latest).
func (e *Env) ExportRunHistory(ctx context.Context, workflowID, runID, path string) error {
	iter := e.Client.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return fmt.Errorf("history of %s: %w", workflowID, err)
		}
		events = append(events, ev)
	}
	raw, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&historypb.History{Events: events})
	if err != nil {
		return fmt.Errorf("encoding history of %s: %w", workflowID, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(strings.TrimSuffix(path, ".json")+".id", []byte(workflowID+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}
