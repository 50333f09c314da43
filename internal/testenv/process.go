package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// WorkerProcess is the worker binary (./worker) running as a process of its
// own against this stack, so tests can kill -9 it.
type WorkerProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// WorkerBinary builds ./worker once per environment and returns its path.
func (e *Env) WorkerBinary(ctx context.Context) (string, error) {
	e.buildOnce.Do(func() {
		e.workerBin = filepath.Join(e.Dir, "worker-bin")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", e.workerBin, "./worker")
		cmd.Dir = e.Root
		if out, err := cmd.CombinedOutput(); err != nil {
			e.buildErr = fmt.Errorf("building ./worker: %w\n%s", err, out)
		}
	})
	return e.workerBin, e.buildErr
}

// WorkerProcessOptions configures StartWorkerProcess.
type WorkerProcessOptions struct {
	TaskQueue string
	// GatewayListen and GatewaySecret: give every process of a test the same
	// ones, so URLs minted by a killed worker stay valid for its successor
	// (as replicas behind one address share a secret in production).
	// GatewayListen "off" runs without a gateway: then MetricsListen must
	// be an address (readiness is its port answering).
	GatewayListen, GatewaySecret string
	// Log receives the worker's output (appended).
	Log string
	// MetricsListen serves the worker's /metrics there; empty: off.
	MetricsListen string
	// Args are more flags, after the stack's own (a later flag wins, so
	// -temporal-address here replaces the stack's).
	Args []string
	// Env adds environment variables (NAME=value).
	Env []string
	// Binary runs this worker binary instead of building ./worker (an
	// older release, to test upgrades).
	Binary string
}

// StartWorkerProcess builds (once) and starts the worker binary.
func (e *Env) StartWorkerProcess(ctx context.Context, opts WorkerProcessOptions) (*WorkerProcess, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = e.WorkerBinary(ctx); err != nil {
			return nil, err
		}
	}
	u, err := url.Parse(e.Bacalhau.Address())
	if err != nil {
		return nil, err
	}
	if opts.MetricsListen == "" {
		opts.MetricsListen = "off"
	}
	e.noteGatewaySecret(opts.GatewaySecret)
	cmd := exec.Command(bin, "-temporal-address", e.Temporal.HostPort(), "-task-queue", opts.TaskQueue,
		"-bacalhau-host", u.Hostname(), "-bacalhau-port", u.Port(), "-gateway-listen", opts.GatewayListen,
		"-metrics-listen", opts.MetricsListen)
	cmd.Args = append(cmd.Args, opts.Args...)
	cmd.Env = append(append(os.Environ(), "CONNECT_GATEWAY_SECRET="+opts.GatewaySecret), opts.Env...)
	if opts.Log != "" {
		f, err := os.OpenFile(opts.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }()
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the worker process: %w", err)
	}
	p := &WorkerProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	// Ready once its gateway listens (without a gateway: its metrics).
	ready := opts.GatewayListen
	if ready == "off" {
		ready = opts.MetricsListen
	}
	if err := Eventually(30*time.Second, func() error {
		select {
		case <-p.done:
			return errors.New("worker process exited")
		default:
		}
		c, err := net.DialTimeout("tcp", ready, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		p.Kill()
		return nil, fmt.Errorf("worker process not ready: %w (see %s)", err, opts.Log)
	}
	return p, nil
}

// Kill sends SIGKILL and waits for the process to be gone: no deferred
// code, no graceful worker stop.
func (p *WorkerProcess) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// RSSMiB reads the process's resident set size and its peak (VmRSS,
// VmHWM) from /proc, in MiB.
func (p *WorkerProcess) RSSMiB() (rss, peak float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

// FreeAddr returns a loopback host:port nothing listens on now.
func FreeAddr() (string, error) {
	port, err := devstack.FreePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}
