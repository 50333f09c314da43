// Package e2e runs bacalhau-connect end to end on the real local stack: a
// Temporal dev server, a Bacalhau node executing real WASM, and real workers.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
)

// env is shared by every test of the package: starting the stack costs seconds.
var env *testenv.Env

func TestMain(m *testing.M) {
	if devstack.IsNodeProcess() {
		// A Bacalhau node of a multi-node test's network (devstack.StartNetwork).
		os.Exit(devstack.NodeProcessMain(os.Args[1:]))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "connect-e2e-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	env, err = testenv.Start(ctx, dir)
	if err == nil {
		_, secretKey := env.S3.Credentials()
		noteSecret("the S3 secret key", secretKey)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the local stack:", err, "(logs in", dir+")")
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: local stack up in %s (logs in %s)\n", time.Since(start).Round(time.Millisecond), dir)
	code := m.Run()
	if code == 0 && os.Getenv("E2E_SKIP_HISTORY_SCAN") == "" {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Minute)
		problems, scanned, err := scanHistories(sctx)
		scancel()
		switch {
		case err != nil:
			fmt.Fprintln(os.Stderr, "e2e: history scan:", err)
			code = 1
		case len(problems) > 0:
			fmt.Fprintf(os.Stderr, "e2e: history scan: %d problem(s) in %d workflow histories:\n", len(problems), scanned)
			for _, p := range problems {
				fmt.Fprintln(os.Stderr, "  "+p)
			}
			code = 1
		default:
			fmt.Fprintf(os.Stderr, "e2e: history scan: %d workflow histories hold no secret, no record canary and no presigned URL signature\n", scanned)
		}
	}
	env.Stop()
	if code == 0 && os.Getenv("KEEP_E2E_DIR") == "" {
		_ = os.RemoveAll(dir)
	}
	return code
}

// runsAlongside marks a test that owns every resource it touches (its
// Kafka broker or queue stand-in, task queue, worker and budget) and
// bounds no wall-clock time: such tests run in parallel with each other,
// two at a time (-parallel defaults to GOMAXPROCS), once the serial tests
// are done. They are the long ones; the package runs ~5 min shorter.
func runsAlongside(t *testing.T) {
	t.Helper()
	t.Parallel()
}

// recordHistory saves a finished workflow's history under RECORD_HISTORIES
// (unset: nothing), to refresh the replay tests' testdata:
//
//	RECORD_HISTORIES=$PWD/workflows/testdata/histories go test ./internal/e2e/
func recordHistory(t *testing.T, workflowID, name string) {
	t.Helper()
	recordRunHistory(t, workflowID, "", name)
}

// recordRunHistory is recordHistory of one run (runID "" is the latest).
func recordRunHistory(t *testing.T, workflowID, runID, name string) {
	t.Helper()
	dir := os.Getenv("RECORD_HISTORIES")
	if dir == "" {
		return
	}
	if err := env.ExportRunHistory(context.Background(), workflowID, runID, filepath.Join(dir, name+".json")); err != nil {
		t.Errorf("recording history of %s: %v", workflowID, err)
	}
}
