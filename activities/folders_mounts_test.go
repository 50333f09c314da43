package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bacalhau-project/bacalhau/pkg/executor/wasm/util/filefs"
	"github.com/bacalhau-project/bacalhau/pkg/executor/wasm/util/mountfs"
	"github.com/bacalhau-project/bacalhau/pkg/executor/wasm/util/touchfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// TestWASMExecutorListsAFolderOfMountsOnlyUpTo340Entries measures the limit
// FolderEntries exists for, with the filesystem Bacalhau v1.7's WASM
// executor builds (one mount per input, as its makeFsFromStorage does),
// wazero and the sample task: a folder of 340 mounted files is read once
// each; with 341 the task lists the folder forever and runs out of memory
// (any limit: 64 MB here to fail fast, Bacalhau's default 512 MB on a
// node). If this starts passing at 341, Bacalhau
// (or wazero) has fixed the listing and the bound can go.
func TestWASMExecutorListsAFolderOfMountsOnlyUpTo340Entries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sample task")
	}
	ctx := context.Background()
	dir := t.TempDir()
	module := filepath.Join(dir, "logsummary.wasm")
	require.NoError(t, devstack.BuildWASM(ctx, "../examples/tasks/logsummary", module))
	code, err := os.ReadFile(module)
	require.NoError(t, err)
	line := []byte(`1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/8"` + "\n")
	input := filepath.Join(dir, "input.log")
	require.NoError(t, os.WriteFile(input, line, 0o644))

	run := func(files int) (int, error) {
		root := mountfs.New()
		for i := 0; i < files; i++ {
			require.NoError(t, root.Mount(fmt.Sprintf("/inputs/app/obj-%04d.log", i), filefs.New(input)))
		}
		out := t.TempDir()
		require.NoError(t, root.Mount("outputs", touchfs.New(out)))
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(64<<20/65536))
		defer rt.Close(ctx)
		wasi_snapshot_preview1.MustInstantiate(ctx, rt)
		var stdout, stderr bytes.Buffer
		_, err := rt.InstantiateWithConfig(ctx, code, wazero.NewModuleConfig().WithStdout(&stdout).WithStderr(&stderr).
			WithArgs("logsummary", "-inputs=/inputs", "-outputs=/outputs").WithFS(root))
		if err != nil {
			return 0, fmt.Errorf("%w: %.200s", err, stderr.String())
		}
		var sum struct{ Files int }
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &sum))
		return sum.Files, nil
	}
	n, err := run(340)
	require.NoError(t, err)
	assert.Equal(t, 340, n, "each file read once")
	_, err = run(341)
	require.Error(t, err, "341 entries: listed forever")
	assert.Regexp(t, "out of memory|cannot allocate memory", err.Error())
}
