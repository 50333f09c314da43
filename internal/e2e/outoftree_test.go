package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// dirtailDir is the out-of-tree example source: a module of its own.
func dirtailDir() string { return filepath.Join(env.Root, "examples", "sources", "dirtail") }

// buildDirtail builds the example's worker and starter, in its own module.
func buildDirtail(t *testing.T) (worker, starter string) {
	t.Helper()
	bin := t.TempDir()
	for _, c := range []string{"worker", "starter"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, c), "./cmd/"+c)
		cmd.Dir = dirtailDir()
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "building the dirtail %s: %s", c, out)
	}
	return filepath.Join(bin, "worker"), filepath.Join(bin, "starter")
}

// TestOutOfTreeSourceUsesThePublicAPIOnly: the example's packages import
// nothing of this repository but its public packages (Go's internal rule
// would refuse to build them otherwise; this says which import it was).
func TestOutOfTreeSourceUsesThePublicAPIOnly(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, "./...")
	cmd.Dir = dirtailDir()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	const repo = "github.com/bacalhau-connect/bacalhau-connect/"
	var own []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		for _, imp := range strings.Fields(imports) {
			if !strings.HasPrefix(imp, repo) || strings.HasPrefix(imp, repo+"examples/sources/dirtail") {
				continue
			}
			own = append(own, imp)
			assert.Contains(t, []string{repo + "source", repo + "sdk"}, imp, "%s imports %s: only source and sdk are public", pkg, imp)
		}
	}
	assert.NotEmpty(t, own, "the example builds on the public API")
}

// TestOutOfTreeSourceRunsExactlyOnceThroughItsOwnWorker builds the dirtail
// example's worker and starter in its own module, applies a dirtail
// connector over a directory of three log files with the example's
// starter, appends to the files while the worker process is SIGKILLed
// once, and reads the ledger from the task outputs: every line processed
// by exactly one successful task, each file in order.
func TestOutOfTreeSourceRunsExactlyOnceThroughItsOwnWorker(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	workerBin, starterBin := buildDirtail(t)
	const name, queue = "e2e-dirtail", "e2e-dirtail"
	dir := t.TempDir()
	files := []string{"api.log", "edge.log", "web.log"}
	lines := map[string]int{}
	write := func(n int) {
		for _, f := range files {
			var b strings.Builder
			for i := 0; i < n; i++ {
				lines[f]++
				fmt.Fprintf(&b, "{\"status\":200,\"bytes\":%d,\"path\":\"/%s/%d\"}\n", lines[f], f, lines[f])
			}
			fh, err := os.OpenFile(filepath.Join(dir, f), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			require.NoError(t, err)
			_, err = fh.WriteString(b.String())
			require.NoError(t, err)
			require.NoError(t, fh.Close())
		}
	}
	write(300)

	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	secret := make([]byte, 24)
	_, _ = crand.Read(secret)
	wopts := testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw, GatewaySecret: hex.EncodeToString(secret),
		Log: filepath.Join(env.Dir, "worker-dirtail.log"), Binary: workerBin}
	w, err := env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	defer func() { w.Kill() }()

	starter := func(args ...string) (string, error) {
		cmd := exec.Command(starterBin, append(args, "--temporal-address", env.Temporal.HostPort(), "--task-queue", queue)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	spec := connectorSpecFile(t, name, "dirtail", fmt.Sprintf("  dirtail: {dir: %q}", dir), "batch: {max_records: 500, max_wait: 1s}\n")
	// A mistake in the kind's own section is refused with its path.
	bad := connectorSpecFile(t, name+"-bad", "dirtail", "  dirtail: {dir: logs}", "")
	o, err := starter("apply", "-f", bad)
	require.Error(t, err)
	assert.Contains(t, o, "source.dirtail.dir: \"logs\" is relative")
	o, err = starter("apply", "-f", spec)
	require.NoError(t, err, o)
	defer func() { _, _ = starter("delete", name) }()

	time.Sleep(3 * time.Second)
	w.Kill()
	t.Log("worker killed")
	write(200)
	w, err = env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)

	total := 0
	for _, n := range lines {
		total += n
	}
	var st workflows.SourceConnectorStatus
	require.NoError(t, testenv.Eventually(3*time.Minute, func() error {
		o, err := starter("describe", name, "-o", "json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, o)
		}
		if err := json.Unmarshal([]byte(o), &st); err != nil {
			return err
		}
		if st.Records < int64(total) || st.Lag > 0 {
			return fmt.Errorf("%d of %d lines, lag %d: %s", st.Records, total, st.Lag, unitSummary(st))
		}
		return nil
	}))
	assert.EqualValues(t, total, st.Records, "no line counted twice")
	assert.Equal(t, "dirtail", st.Kind)
	require.Len(t, st.Units, len(files))
	o, err = starter("list")
	require.NoError(t, err, o)
	assert.Contains(t, o, name)
	assert.Contains(t, o, "3 files, lag 0")

	seen := map[string]int{}
	last := map[string]int64{}
	runs := sourceLedger(t, name)
	for _, r := range runs {
		for _, id := range r.records {
			seen[id]++
			file, pos, _ := strings.Cut(id, "/")
			var p int64
			_, err := fmt.Sscan(pos, &p)
			require.NoError(t, err)
			if p <= last[file] {
				t.Errorf("%s: line %d processed after %d (job %s)", file, p, last[file], r.job)
			}
			last[file] = p
		}
	}
	assert.Len(t, seen, total, "every line processed")
	for id, c := range seen {
		if c != 1 {
			assert.Equal(t, 1, c, "line %s in exactly one successful task", id)
		}
	}
	for _, f := range files {
		assert.EqualValues(t, lines[f], last[f], "%s read to its end", f)
	}
	t.Logf("%d lines in %d successful jobs", len(seen), len(runs))
}
