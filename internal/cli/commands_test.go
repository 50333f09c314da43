package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// runStarter runs the CLI in-process against a Temporal address where
// nothing listens: these cases must fail before any connection.
func runStarter(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewRootCommand(&out, &errOut)
	cmd.SetArgs(append(args, "--temporal-address", "127.0.0.1:1"))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func writeTemplate(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.yaml")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

func TestRunTaskChecksTheTemplateBeforeStarting(t *testing.T) {
	sample, err := os.ReadFile("../../examples/jobs/logsummary.yaml")
	require.NoError(t, err)
	cases := map[string]struct {
		args []string
		want string
	}{
		"missing template flag": {nil, `required flag(s) "template" not set`},
		"template not found":    {[]string{"--template", "/nonexistent.yaml"}, "--template: open /nonexistent.yaml"},
		"missing variable": {[]string{"--template", writeTemplate(t, string(sample))},
			`map has no entry for key "MODULES_URL"`},
		"unknown engine": {[]string{"--template", writeTemplate(t, strings.Replace(string(sample), "Type: wasm", "Type: nope", 1)),
			"--var", "MODULES_URL=http://m"}, `Tasks[0].Engine.Type: unknown engine "nope"`},
		"relative input target": {[]string{"--template", writeTemplate(t, string(sample)), "--var", "MODULES_URL=http://m",
			"--input", "inputs/a.log=http://x/a.log"}, "inputs[0].target"},
		"bad output format": {[]string{"--template", "x", "-o", "xml"}, `--output: "xml" is not text, json or yaml`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := runStarter(t, append([]string{"run-task"}, tc.args...)...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "connecting to Temporal", "must fail before connecting")
		})
	}
}

func TestBudgetResizeRejectsABadSize(t *testing.T) {
	_, err := runStarter(t, "budget", "resize", "0")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `SIZE: "0" must be a whole number >= 1`)
}

func TestApplyValidatesBeforeDialing(t *testing.T) {
	out, err := runStarter(t, "apply", "--dry-run", "-f", "../../examples/connectors/web-logs.yaml")
	require.NoError(t, err)
	assert.Contains(t, out, "connector web-logs: cron spec is valid")
	out, err = runStarter(t, "apply", "--dry-run", "-f", "../../examples/connectors/web-events.yaml", "-o", "json")
	require.NoError(t, err)
	assert.Contains(t, out, `"result": "valid"`)
	out, err = runStarter(t, "apply", "--dry-run", "-f", "../../examples/connectors/web-clicks.yaml", "-o", "yaml")
	require.NoError(t, err)
	assert.Contains(t, out, "result: valid\n")
	assert.Contains(t, out, "kind: kinesis\n")
	staged := writeTemplate(t, "") // placeholder path; replaced below
	raw, err := os.ReadFile("../../examples/connectors/web-events.yaml")
	require.NoError(t, err)
	text := strings.Replace(string(raw), "mode: inline", "mode: staged\nstaging: {s3: {bucket: stage}}", 1)
	tmpl, err := filepath.Abs("../../examples/jobs/logsummary.yaml")
	require.NoError(t, err)
	text = strings.ReplaceAll(text, "../jobs/logsummary.yaml", tmpl)
	require.NoError(t, os.WriteFile(staged, []byte(text), 0o644))
	out, err = runStarter(t, "apply", "--dry-run", "-f", staged)
	require.NoError(t, err)
	assert.Contains(t, out, "kafka spec is valid")
	_, err = runStarter(t, "apply")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "-f: required")
	_, err = runStarter(t, "apply", "-f", writeTemplate(t, "name: x\nkind: cron\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "schedule: required")
	assert.NotContains(t, err.Error(), "connecting to Temporal")
}

func TestResetParsesEveryPosition(t *testing.T) {
	r, err := parseReset("earliest")
	require.NoError(t, err)
	assert.Equal(t, workflows.StartEarliest, r.To)
	r, err = parseReset("2026-11-27T10:00:00Z")
	require.NoError(t, err)
	assert.Equal(t, workflows.StartTimestamp, r.To)
	assert.Equal(t, 10, r.Time.Hour())
	r, err = parseReset("0=1200, 3=7")
	require.NoError(t, err)
	assert.Equal(t, map[int32]int64{0: 1200, 3: 7}, r.Offsets)
	for _, bad := range []string{"", "soon", "0=", "x=1", "1=-2", "-1=4"} {
		_, err = parseReset(bad)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "PARTITION=OFFSET", bad)
	}
	_, err = runStarter(t, "reset", "web-events", "--to", "soon")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "connecting to Temporal", "must fail before connecting")
}

func TestApplyAFolderValidatesEverySpecBeforeStartingAny(t *testing.T) {
	out, err := runStarter(t, "apply", "--dry-run", "-f", "../../examples/connectors/")
	require.NoError(t, err)
	for _, name := range []string{"web-clicks", "web-events", "web-logs", "web-queue", "web-topic"} {
		assert.Contains(t, out, "connector "+name+":", "every example spec is checked")
	}

	dir := t.TempDir()
	good, err := os.ReadFile("../../examples/connectors/web-clicks.yaml")
	require.NoError(t, err)
	tmpl, err := filepath.Abs("../../examples/jobs/logsummary.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a-good.yaml"), []byte(strings.ReplaceAll(string(good), "../jobs/logsummary.yaml", tmpl)), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b-bad.yml"), []byte("name: bad\nkind: kinesis\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c-worse.yaml"), []byte("name: Worse!\nkind: cron\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a spec"), 0o644))
	_, err = runStarter(t, "apply", "-f", dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "b-bad.yml")
	assert.Contains(t, err.Error(), "source.kinesis")
	assert.Contains(t, err.Error(), "c-worse.yaml")
	assert.Contains(t, err.Error(), "schedule: required")
	assert.NotContains(t, err.Error(), "connecting to Temporal", "nothing starts while a spec is invalid")

	_, err = runStarter(t, "apply", "-f", t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no *.yaml or *.yml spec")
}

func TestSchemaPrintsTheEmbeddedSchema(t *testing.T) {
	out, err := runStarter(t, "schema")
	require.NoError(t, err)
	assert.Contains(t, out, `"title": "bacalhau-connect connector spec"`)
	assert.Equal(t, string(spec.Schema()), out)
}
