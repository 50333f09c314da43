package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMakeDevExitsZeroOnCtrlC runs `make dev` in a terminal (a real
// pseudo-terminal, as a user's shell gives it) and presses Ctrl-C once the
// stack is starting: connect-dev, which took the terminal's foreground
// (takeTerminal), gets the interrupt, stops cleanly and exits 0, and make,
// which did not get it, exits 0 too: no "Error" nor "Interrupt" line. (A
// make that gets the SIGINT itself re-raises it after its recipe, ending
// "interrupted", 130, whatever the recipe did.) A real failure (a flag
// that does not exist) exits non-zero with make's "Error" line.
func TestMakeDevExitsZeroOnCtrlC(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	args := "--run-dir " + t.TempDir() + " --temporal-port 0 --ui-port 0 --bacalhau-port 0 --modules-port 0 --s3-port 0" +
		" --gateway-port 0 --kafka-port 0 --sqs-port 0 --kinesis-port 0 --nats-port 0"
	cmd := exec.Command("make", "-C", root, "--no-print-directory", "dev", "DEV_ARGS="+args)
	cmd.Env = userEnv()
	tty, err := pty.Start(cmd) // make leads a new session whose terminal is tty
	require.NoError(t, err)
	defer func() { _ = tty.Close() }()
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()

	// The binary is up once it prints its run folder (make's own messages
	// about building come before).
	var log strings.Builder
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(tty)
		once := false
		for {
			line, err := r.ReadString(' ')
			log.WriteString(line)
			if !once && strings.Contains(log.String(), "run folder ") {
				once = true
				close(started)
			}
			if err != nil {
				return // EIO once every process left the terminal
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Minute):
		t.Fatalf("make dev printed no step in 10 minutes:\n%s", log.String())
	}
	time.Sleep(2 * time.Second)
	_, err = tty.Write([]byte{3}) // Ctrl-C
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-time.After(2 * time.Minute):
		t.Fatalf("make dev still runs 2 minutes after Ctrl-C:\n%s", log.String())
	}
	_ = tty.Close()
	<-done
	require.NoError(t, err, "make dev exits 0 after Ctrl-C:\n%s", log.String())
	assert.NotContains(t, log.String(), "Error", "no error line after Ctrl-C")
	assert.NotContains(t, log.String(), "Interrupt", "connect-dev exited 0, not killed by the signal")
	assert.Contains(t, log.String(), "connect-dev: stopped")

	fail := exec.Command("make", "-C", root, "--no-print-directory", "dev", "DEV_ARGS=--no-such-flag")
	fail.Env = userEnv()
	outFail, err := fail.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "a real failure exits non-zero:\n%s", outFail)
	assert.NotZero(t, exit.ExitCode())
	assert.Contains(t, string(outFail), "Error 1")
}

// userEnv is this process's environment without what an enclosing make
// (make test) passes its sub-makes: the test runs make as a user would.
func userEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			env = append(env, kv)
		}
	}
	return env
}

func TestExitCode(t *testing.T) {
	var stderr strings.Builder
	ctx, cancel := context.WithCancel(context.Background())
	assert.Equal(t, 0, exitCode(ctx, nil, &stderr))
	assert.Equal(t, 1, exitCode(ctx, errors.New("temporal: port in use"), &stderr))
	assert.Contains(t, stderr.String(), "connect-dev: temporal: port in use")
	cancel()
	assert.Equal(t, 0, exitCode(ctx, context.Canceled, &stderr), "stopped by Ctrl-C while starting")
	assert.Contains(t, stderr.String(), "connect-dev: stopped")
}
