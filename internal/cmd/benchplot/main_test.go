package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The committed result tables still parse and plot (a renamed column in a
// benchmark's table fails here, not in the next `make bench`).
func TestPlotsTheCommittedResults(t *testing.T) {
	out := t.TempDir()
	require.NoError(t, run(filepath.Join("..", "..", "bench", "results"), out))
	for _, name := range []string{"bench-throughput.png", "bench-freshness.png"} {
		fi, err := os.Stat(filepath.Join(out, name))
		require.NoError(t, err)
		assert.Greater(t, fi.Size(), int64(5000), name)
	}
}

func TestReadTableNamesAMissingColumn(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.md")
	require.NoError(t, os.WriteFile(p, []byte("| A | B |\n|---|---|\n| 1 | 2 |\n"), 0o644))
	rows, err := readTable(p, "A", "B")
	require.NoError(t, err)
	assert.Equal(t, []map[string]string{{"A": "1", "B": "2"}}, rows)
	_, err = readTable(p, "A", "C")
	assert.ErrorContains(t, err, "no table with columns A, C")
}
