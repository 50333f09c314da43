package devstack

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/config"
	"github.com/bacalhau-project/bacalhau/pkg/config/types"
	bacdevstack "github.com/bacalhau-project/bacalhau/pkg/devstack"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/bacalhau-project/bacalhau/pkg/node"
	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	clientv2 "github.com/bacalhau-project/bacalhau/pkg/publicapi/client/v2"
	"github.com/bacalhau-project/bacalhau/pkg/system"
	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"
)

// BacalhauOptions configures the in-process Bacalhau node.
type BacalhauOptions struct {
	// DataDir holds the node's state; its tmp/ folder becomes TMPDIR, so
	// failed executions' leftovers stay inside it. Required.
	DataDir string
	// APIPort, OrchestratorPort and PublisherPort default to free ports.
	// (An orchestrator port of 0 would mean 4222 to Bacalhau, so a free
	// port is picked explicitly.)
	APIPort, OrchestratorPort, PublisherPort int
	// QueueBackoff is how long the orchestrator waits before it retries a
	// queued job. Default 2 s (Bacalhau's own default is 1 min).
	QueueBackoff time.Duration
	// Log receives the node's logs. Default: discarded.
	Log io.Writer
	// LogLevel is a zerolog level name. Default "warn".
	LogLevel string
	// Role is RoleHybrid (default: orchestrator and compute in one node),
	// RoleOrchestrator or RoleCompute.
	Role string
	// NodeID names the node. Default "connect-dev-node".
	NodeID string
	// Orchestrator is the NATS address a RoleCompute node joins, e.g.
	// nats://127.0.0.1:4222.
	Orchestrator string
	// CPU is the compute capacity the node offers, as Bacalhau reads it
	// ("1", "500m", "70%"). Default: Bacalhau's own (70 % of the machine).
	CPU string
	// DisconnectTimeout is how long an orchestrator waits for a compute
	// node's heartbeat before it counts the node gone. Default: Bacalhau's
	// own (30 s); compute nodes beat every 5 s.
	DisconnectTimeout time.Duration
	// Heartbeat is how often a compute node reports its capacity and
	// health to the orchestrator. Default 5 s.
	Heartbeat time.Duration
	// OverSubscription is how far past its capacity an orchestrator fills a
	// node's queue (Bacalhau's SystemConfig, not its config file). Default
	// Bacalhau's 1.5; 1 places a job only on a node with room for it.
	OverSubscription float64
}

// Node roles.
const (
	// RoleHybrid runs an orchestrator and a compute node in one node.
	RoleHybrid = "hybrid"
	// RoleOrchestrator runs only the orchestrator (its API, scheduler and
	// the NATS server compute nodes join).
	RoleOrchestrator = "orchestrator"
	// RoleCompute runs only a compute node that joins an orchestrator.
	RoleCompute = "compute"
)

// Bacalhau is a running in-process Bacalhau node (hybrid by default).
type Bacalhau struct {
	// prevTMPDIR is restored on Stop.
	prevTMPDIR *string
	node       *node.Node
	cleanup    *system.CleanupManager
	cancel     context.CancelFunc
	address    string
}

// StartBacalhau starts a hybrid Bacalhau node in this process and returns once
// its API answers and its compute side has registered with the orchestrator.
func StartBacalhau(ctx context.Context, opts BacalhauOptions) (*Bacalhau, error) {
	if opts.DataDir == "" {
		return nil, fmt.Errorf("bacalhau: DataDir is required")
	}
	cfg, err := bacalhauConfig(&opts)
	if err != nil {
		return nil, err
	}
	// Executions write temporary folders under TMPDIR; keep them in the data dir.
	tmp := filepath.Join(opts.DataDir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("bacalhau: creating %s: %w", tmp, err)
	}
	var prevTMPDIR *string
	if v, ok := os.LookupEnv("TMPDIR"); ok {
		prevTMPDIR = &v
	}
	if err := os.Setenv("TMPDIR", tmp); err != nil {
		return nil, fmt.Errorf("bacalhau: setting TMPDIR: %w", err)
	}

	level, err := zerolog.ParseLevel(opts.LogLevel)
	if err != nil || opts.LogLevel == "" {
		level = zerolog.WarnLevel
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	logger := zerolog.New(opts.Log).Level(level).With().Timestamp().Logger()
	// Bacalhau logs through zerolog's global logger as well as the context one.
	zerolog.SetGlobalLevel(level)
	zerolog.DefaultContextLogger = &logger
	zlog.Logger = logger

	nodeCtx, cancel := context.WithCancel(logger.WithContext(context.WithoutCancel(ctx)))
	sysCfg := node.DefaultSystemConfig()
	sysCfg.SkipLicenseValidation = true
	if opts.OverSubscription >= 1 {
		sysCfg.OverSubscriptionFactor = opts.OverSubscription
	}
	cm := system.NewCleanupManager()
	n, err := node.NewNode(nodeCtx, node.NodeConfig{
		NodeID:         opts.NodeID,
		CleanupManager: cm,
		BacalhauConfig: cfg,
		SystemConfig:   sysCfg,
	}, bacdevstack.NewMetadataStore())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bacalhau: creating node: %w", err)
	}
	if err := n.Start(nodeCtx); err != nil {
		cancel()
		cm.Cleanup(context.Background())
		return nil, fmt.Errorf("bacalhau: starting node: %w", err)
	}
	b := &Bacalhau{
		prevTMPDIR: prevTMPDIR,
		node:       n,
		cleanup:    cm,
		cancel:     cancel,
		address:    "http://127.0.0.1:" + strconv.Itoa(cfg.API.Port),
	}
	if opts.Role == RoleHybrid {
		if err := b.waitReady(ctx, 30*time.Second); err != nil {
			b.Stop()
			return nil, err
		}
	} else if err := waitHTTP(b.address+"/api/v1/agent/alive", 30*time.Second); err != nil {
		b.Stop()
		return nil, fmt.Errorf("bacalhau %s %s: %w", opts.Role, opts.NodeID, err)
	}
	return b, nil
}

func bacalhauConfig(opts *BacalhauOptions) (types.Bacalhau, error) {
	var err error
	if opts.APIPort, err = portOr(opts.APIPort); err != nil {
		return types.Bacalhau{}, err
	}
	if opts.OrchestratorPort, err = portOr(opts.OrchestratorPort); err != nil {
		return types.Bacalhau{}, err
	}
	if opts.PublisherPort, err = portOr(opts.PublisherPort); err != nil {
		return types.Bacalhau{}, err
	}
	if opts.QueueBackoff <= 0 {
		opts.QueueBackoff = 2 * time.Second
	}
	if opts.NodeID == "" {
		opts.NodeID = "connect-dev-node"
	}
	switch opts.Role {
	case "":
		opts.Role = RoleHybrid
	case RoleHybrid, RoleOrchestrator:
	case RoleCompute:
		if opts.Orchestrator == "" {
			return types.Bacalhau{}, fmt.Errorf("bacalhau: a compute node needs the orchestrator's NATS address")
		}
	default:
		return types.Bacalhau{}, fmt.Errorf("bacalhau: role %q: use %s, %s or %s", opts.Role, RoleHybrid, RoleOrchestrator, RoleCompute)
	}
	cfg := config.Default // a copy; slices and maps below are replaced, not shared
	cfg.DataDir = opts.DataDir
	cfg.DisableAnalytics = true
	cfg.UpdateConfig.Interval = -1
	cfg.API.Host = "127.0.0.1"
	cfg.API.Port = opts.APIPort
	cfg.API.Auth = types.AuthConfig{}
	cfg.Orchestrator.Enabled = opts.Role != RoleCompute
	cfg.Orchestrator.Host = "127.0.0.1"
	cfg.Orchestrator.Port = opts.OrchestratorPort
	cfg.Orchestrator.Scheduler.QueueBackoff = types.Duration(opts.QueueBackoff)
	cfg.Orchestrator.Scheduler.HousekeepingInterval = types.Duration(time.Second)
	cfg.Orchestrator.Scheduler.HousekeepingTimeout = types.Duration(5 * time.Second)
	if opts.DisconnectTimeout > 0 {
		cfg.Orchestrator.NodeManager.DisconnectTimeout = types.Duration(opts.DisconnectTimeout)
	}
	cfg.Compute.Enabled = opts.Role != RoleOrchestrator
	cfg.Compute.Orchestrators = []string{"nats://127.0.0.1:" + strconv.Itoa(opts.OrchestratorPort)}
	if opts.Role == RoleCompute {
		cfg.Compute.Orchestrators = []string{opts.Orchestrator}
	}
	cfg.Compute.Heartbeat.Interval = types.Duration(5 * time.Second)
	if opts.Heartbeat > 0 {
		cfg.Compute.Heartbeat.Interval = types.Duration(opts.Heartbeat)
	}
	if opts.CPU != "" {
		cfg.Compute.AllocatedCapacity.CPU = types.ResourceType(opts.CPU)
	}
	cfg.Engines.Disabled = []string{models.EngineDocker}
	cfg.Publishers.Disabled = []string{models.PublisherIPFS}
	cfg.Publishers.Types.Local = types.LocalPublisher{Address: "127.0.0.1", Port: opts.PublisherPort}
	cfg.JobDefaults.Batch.Task.Publisher = types.DefaultPublisherConfig{Type: models.PublisherLocal}
	cfg.Labels = map[string]string{"env": "connect-devstack"}
	cfg.Logging.Level = "warn"
	return cfg, nil
}

// waitReady waits until the API answers and at least one compute node is connected.
func (b *Bacalhau) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	api := b.Client()
	var lastErr error
	for {
		resp, err := api.Nodes().List(ctx, &apimodels.ListNodesRequest{})
		if err == nil {
			for _, n := range resp.Nodes {
				if n.Info.IsComputeNode() && n.IsConnected() {
					return nil
				}
			}
			err = fmt.Errorf("no connected compute node yet")
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("bacalhau: node not ready after %s: %w", timeout, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Address is the API base URL, e.g. http://127.0.0.1:1234.
func (b *Bacalhau) Address() string { return b.address }

// Client is a Bacalhau API client for this node.
func (b *Bacalhau) Client() clientv2.API { return clientv2.New(b.address) }

// Stop shuts the node down and releases its ports.
func (b *Bacalhau) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.cleanup.Cleanup(ctx)
	b.cancel()
	// TMPDIR is process-wide: give it back.
	if b.prevTMPDIR != nil {
		_ = os.Setenv("TMPDIR", *b.prevTMPDIR)
	} else {
		_ = os.Unsetenv("TMPDIR")
	}
}
