package devstack

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	clientv2 "github.com/bacalhau-project/bacalhau/pkg/publicapi/client/v2"
)

// NodeProcessEnv marks a process started by StartNetwork as a Bacalhau
// node: a program that can be one (connect-dev, a test binary) checks
// IsNodeProcess first thing in main or TestMain and hands over to
// NodeProcessMain.
const NodeProcessEnv = "CONNECT_DEVSTACK_BACALHAU_NODE"

// IsNodeProcess tells whether this process was started as a Bacalhau node.
func IsNodeProcess() bool { return os.Getenv(NodeProcessEnv) == "1" }

// NodeProcessMain runs one Bacalhau node from its command line (the flags
// StartNetwork passes) until SIGINT or SIGTERM and returns the exit code.
// Its logs go to stderr.
func NodeProcessMain(args []string) int {
	fs := flag.NewFlagSet("bacalhau-node", flag.ContinueOnError)
	var opts BacalhauOptions
	fs.StringVar(&opts.Role, "role", RoleCompute, "node role: orchestrator, compute or hybrid")
	fs.StringVar(&opts.NodeID, "node-id", "", "node ID")
	fs.StringVar(&opts.DataDir, "data-dir", "", "node state folder")
	fs.StringVar(&opts.Orchestrator, "orchestrator", "", "orchestrator NATS address (compute)")
	fs.StringVar(&opts.CPU, "cpu", "", "CPU capacity offered (compute)")
	fs.IntVar(&opts.APIPort, "api-port", 0, "API port")
	fs.IntVar(&opts.OrchestratorPort, "orchestrator-port", 0, "NATS port (orchestrator)")
	fs.IntVar(&opts.PublisherPort, "publisher-port", 0, "local publisher port (compute)")
	fs.DurationVar(&opts.DisconnectTimeout, "disconnect-timeout", 0, "heartbeat silence that counts a compute node gone (orchestrator)")
	fs.DurationVar(&opts.Heartbeat, "heartbeat", 0, "how often the node reports its capacity (compute)")
	fs.Float64Var(&opts.OverSubscription, "oversubscription", 0, "how far past its capacity a node's queue is filled (orchestrator)")
	fs.StringVar(&opts.LogLevel, "log-level", "warn", "log level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := StartBacalhau(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-ctx.Done()
	b.Stop()
	return 0
}

// NetworkOptions configures StartNetwork.
type NetworkOptions struct {
	// Command starts this program as a node: the executable and any
	// arguments before the node's flags (connect-dev: itself and
	// "bacalhau-node"; a test binary: os.Args[0]). NodeProcessEnv is set
	// for it. Required.
	Command []string
	// Dir holds each node's state and log. Required.
	Dir string
	// ComputeNodes is how many compute nodes join. Default 1.
	ComputeNodes int
	// CPU is each compute node's capacity ("1": two 500m tasks at once).
	// Default: Bacalhau's own, 70 % of the machine per node.
	CPU string
	// APIPort is the orchestrator's API port. Default: a free port.
	APIPort int
	// DisconnectTimeout: see BacalhauOptions. Default 15 s, so a killed
	// node shows within seconds.
	DisconnectTimeout time.Duration
	// Heartbeat is how often compute nodes report their capacity. Default
	// 5 s.
	Heartbeat time.Duration
	// OverSubscription: see BacalhauOptions. Default Bacalhau's 1.5.
	OverSubscription float64
	// LogLevel of every node. Default "warn".
	LogLevel string
}

// Network is a Bacalhau orchestrator and its compute nodes, each a
// process of its own, so a test or a user can kill one.
type Network struct {
	opts         NetworkOptions
	orchestrator *NodeProcess
	compute      []*NodeProcess
	natsURL      string
	address      string
}

// NodeProcess is one running Bacalhau node process.
type NodeProcess struct {
	// ID is the node's ID as Bacalhau reports it.
	ID string
	// Role is RoleOrchestrator or RoleCompute.
	Role    string
	args    []string // as started, for Restart
	cmd     *exec.Cmd
	done    chan struct{}
	logFile *os.File
}

// StartNetwork starts an orchestrator process and opts.ComputeNodes compute
// node processes, and returns once every compute node is connected.
func StartNetwork(ctx context.Context, opts NetworkOptions) (*Network, error) {
	if len(opts.Command) == 0 || opts.Dir == "" {
		return nil, errors.New("bacalhau network: Command and Dir are required")
	}
	if opts.ComputeNodes <= 0 {
		opts.ComputeNodes = 1
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	if opts.DisconnectTimeout <= 0 {
		opts.DisconnectTimeout = 15 * time.Second
	}
	api, err := portOr(opts.APIPort)
	if err != nil {
		return nil, err
	}
	nats, err := FreePort()
	if err != nil {
		return nil, err
	}
	n := &Network{opts: opts, natsURL: "nats://127.0.0.1:" + strconv.Itoa(nats), address: "http://127.0.0.1:" + strconv.Itoa(api)}
	args := []string{"-role", RoleOrchestrator, "-api-port", strconv.Itoa(api), "-orchestrator-port", strconv.Itoa(nats),
		"-disconnect-timeout", opts.DisconnectTimeout.String()}
	if opts.OverSubscription >= 1 {
		args = append(args, "-oversubscription", strconv.FormatFloat(opts.OverSubscription, 'g', -1, 64))
	}
	if n.orchestrator, err = n.start("orchestrator", RoleOrchestrator, args); err != nil {
		return nil, err
	}
	if err := waitHTTP(n.address+"/api/v1/agent/alive", 30*time.Second); err != nil {
		n.Stop()
		return nil, fmt.Errorf("bacalhau orchestrator: %w", err)
	}
	for range opts.ComputeNodes {
		if _, err := n.AddCompute(ctx); err != nil {
			n.Stop()
			return nil, err
		}
	}
	return n, nil
}

// AddCompute starts one more compute node and returns once the
// orchestrator counts it connected.
func (n *Network) AddCompute(ctx context.Context) (*NodeProcess, error) {
	id := fmt.Sprintf("compute-%d", len(n.compute)+1)
	api, err := FreePort()
	if err != nil {
		return nil, err
	}
	publisher, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"-role", RoleCompute, "-orchestrator", n.natsURL,
		"-api-port", strconv.Itoa(api), "-publisher-port", strconv.Itoa(publisher)}
	if n.opts.CPU != "" {
		args = append(args, "-cpu", n.opts.CPU)
	}
	if n.opts.Heartbeat > 0 {
		args = append(args, "-heartbeat", n.opts.Heartbeat.String())
	}
	p, err := n.start(id, RoleCompute, args)
	if err != nil {
		return nil, err
	}
	n.compute = append(n.compute, p)
	if err := n.waitConnected(ctx, id, 60*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// start launches one node process with its state and log under Dir/id.
func (n *Network) start(id, role string, args []string) (*NodeProcess, error) {
	dir, err := filepath.Abs(filepath.Join(n.opts.Dir, id))
	if err != nil {
		return nil, fmt.Errorf("bacalhau %s: %w", id, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bacalhau %s: %w", id, err)
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "node.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bacalhau %s: %w", id, err)
	}
	startArgs := args
	args = append(args, "-node-id", id, "-data-dir", dir, "-log-level", n.opts.LogLevel)
	cmd := exec.Command(n.opts.Command[0], append(append([]string{}, n.opts.Command[1:]...), args...)...)
	cmd.Env = append(os.Environ(), NodeProcessEnv+"=1")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A node outlives nothing: it goes when the process that started it does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("bacalhau %s: starting %s: %w", id, n.opts.Command[0], err)
	}
	p := &NodeProcess{ID: id, Role: role, args: startArgs, cmd: cmd, done: make(chan struct{}), logFile: logFile}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Restart starts a compute node that was stopped or killed again, with its
// ID, ports and state (the results it published are served again), and
// returns once it is connected.
func (n *Network) Restart(ctx context.Context, p *NodeProcess) error {
	select {
	case <-p.done:
	default:
		return fmt.Errorf("bacalhau %s: still running", p.ID)
	}
	q, err := n.start(p.ID, p.Role, p.args)
	if err != nil {
		return err
	}
	*p = *q
	return n.waitConnected(ctx, p.ID, 60*time.Second)
}

// waitConnected waits until the orchestrator lists node id as connected.
func (n *Network) waitConnected(ctx context.Context, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		connected, err := n.ConnectedComputeNodes(ctx)
		if err == nil {
			for _, c := range connected {
				if c == id {
					return nil
				}
			}
			err = fmt.Errorf("not connected yet (connected: %v)", connected)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("bacalhau compute node %s: %w", id, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ConnectedComputeNodes lists the IDs of the compute nodes the
// orchestrator counts connected.
func (n *Network) ConnectedComputeNodes(ctx context.Context) ([]string, error) {
	resp, err := n.Client().Nodes().List(ctx, &apimodels.ListNodesRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing bacalhau nodes: %w", err)
	}
	var ids []string
	for _, node := range resp.Nodes {
		if node.Info.IsComputeNode() && node.IsConnected() {
			ids = append(ids, node.Info.ID())
		}
	}
	return ids, nil
}

// Address is the orchestrator's API base URL.
func (n *Network) Address() string { return n.address }

// Client is a Bacalhau API client for the orchestrator.
func (n *Network) Client() clientv2.API { return clientv2.New(n.address) }

// Compute returns the compute node processes started so far, killed ones
// included.
func (n *Network) Compute() []*NodeProcess { return append([]*NodeProcess(nil), n.compute...) }

// Stop stops every node, compute nodes first.
func (n *Network) Stop() {
	for _, p := range n.compute {
		p.Stop()
	}
	if n.orchestrator != nil {
		n.orchestrator.Stop()
	}
}

// Kill ends the node at once (SIGKILL), as a crash or a lost machine would.
func (p *NodeProcess) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop interrupts the node, killing it after 10 s.
func (p *NodeProcess) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// CPUTime is the CPU time (user + system) the node's process has used so
// far, read from /proc (Linux; clock ticks of 1/100 s).
func (p *NodeProcess) CPUTime() (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("bacalhau %s: reading its CPU time: %w", p.ID, err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("bacalhau %s: unexpected /proc stat %q", p.ID, raw)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bacalhau %s: %w", p.ID, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
