package devstack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
)

// TemporalOptions configures the Temporal dev server.
type TemporalOptions struct {
	// BinPath is the `temporal` CLI executable. Required: the SDK's own
	// download of the CLI cannot reach the web on these machines.
	BinPath string
	// Port is the frontend gRPC port. Default: a free port.
	Port int
	// UIPort is the web UI port. Default: a free port. Ignored when Headless.
	UIPort int
	// Headless turns the web UI off.
	Headless bool
	// DBFile keeps the server's state in this SQLite file across restarts.
	// Default: in memory.
	DBFile string
	// Namespace is registered at start. Default: "default".
	Namespace string
	// Log receives the server's stdout and stderr. Default: discarded.
	Log io.Writer
	// Logger is the SDK logger for the client. Default: discards.
	Logger log.Logger
	// SearchAttributes are custom search attributes to register (name →
	// type, e.g. Keyword): workflows.SearchAttributeTypes for connectors.
	SearchAttributes map[string]string
	// UICodecEndpoint is the codec server the web UI decodes payloads with.
	UICodecEndpoint string
	// Metrics serves the server's Prometheus metrics on a free port
	// (MetricsURL), among them the `action` counter of billable actions
	// (Actions).
	Metrics bool
}

// Temporal is a running Temporal dev server.
type Temporal struct {
	server    *testsuite.DevServer
	hostPort  string
	uiURL     string
	namespace string
	// metricsURL is the Prometheus endpoint, when Metrics was asked for.
	metricsURL string
}

// fastDispatch lifts the dev server's default dispatch rate limits: out of the
// box one workflow runs only ~10 activities/s (DESIGN.md §4).
var fastDispatch = []string{
	"--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
	"--dynamic-config-value", "history.timerProcessorMaxPollRPS=1000",
	"--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
	"--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
}

// searchAttributeArgs register custom search attributes (name → type).
func searchAttributeArgs(types map[string]string) []string {
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	var args []string
	for _, n := range names {
		args = append(args, "--search-attribute", n+"="+types[n])
	}
	return args
}

// StartTemporal starts `temporal server start-dev` and returns once a client
// can reach it.
func StartTemporal(ctx context.Context, opts TemporalOptions) (*Temporal, error) {
	if opts.BinPath == "" {
		return nil, fmt.Errorf("temporal: BinPath is required (run `make bin/temporal`)")
	}
	if _, err := os.Stat(opts.BinPath); err != nil {
		return nil, fmt.Errorf("temporal: CLI not found at %s (run `make bin/temporal`): %w", opts.BinPath, err)
	}
	port, err := portOr(opts.Port)
	if err != nil {
		return nil, err
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = log.NewStructuredLogger(slog.New(slog.DiscardHandler))
	}
	hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	devOpts := testsuite.DevServerOptions{
		ExistingPath: opts.BinPath,
		ClientOptions: &client.Options{
			HostPort:  hostPort,
			Namespace: opts.Namespace,
			Logger:    opts.Logger,
		},
		DBFilename: opts.DBFile,
		EnableUI:   !opts.Headless,
		LogLevel:   "warn",
		ExtraArgs:  append(append([]string(nil), fastDispatch...), searchAttributeArgs(opts.SearchAttributes)...),
		Stdout:     opts.Log,
		Stderr:     opts.Log,
	}
	if opts.UICodecEndpoint != "" {
		devOpts.ExtraArgs = append(devOpts.ExtraArgs, "--ui-codec-endpoint", opts.UICodecEndpoint)
	}
	metricsURL := ""
	if opts.Metrics {
		metricsPort, err := FreePort()
		if err != nil {
			return nil, err
		}
		devOpts.ExtraArgs = append(devOpts.ExtraArgs, "--metrics-port", strconv.Itoa(metricsPort))
		metricsURL = "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"
	}
	uiURL := ""
	if !opts.Headless {
		uiPort, err := portOr(opts.UIPort)
		if err != nil {
			return nil, err
		}
		devOpts.UIPort = strconv.Itoa(uiPort)
		uiURL = "http://127.0.0.1:" + devOpts.UIPort
	}
	server, err := testsuite.StartDevServer(ctx, devOpts)
	if err != nil {
		return nil, fmt.Errorf("temporal: starting dev server on %s: %w", hostPort, err)
	}
	return &Temporal{server: server, hostPort: hostPort, uiURL: uiURL, namespace: opts.Namespace, metricsURL: metricsURL}, nil
}

// HostPort is the frontend address for clients and workers.
func (t *Temporal) HostPort() string { return t.hostPort }

// Namespace is the namespace registered at start.
func (t *Temporal) Namespace() string { return t.namespace }

// UIURL is the web UI address, empty when headless.
func (t *Temporal) UIURL() string { return t.uiURL }

// Client is a client connected to the server; Stop closes it.
func (t *Temporal) Client() client.Client { return t.server.Client() }

// Stop interrupts the server and waits for it to exit.
func (t *Temporal) Stop() error {
	t.server.Client().Close()
	if err := t.server.Stop(); err != nil {
		return fmt.Errorf("temporal: stopping dev server: %w", err)
	}
	return nil
}
