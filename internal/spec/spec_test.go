package spec

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

const exampleSpec = "../../examples/connectors/web-logs.yaml"

func TestTheExampleSpecIsValid(t *testing.T) {
	r, err := LoadFile(exampleSpec)
	require.NoError(t, err)
	assert.Equal(t, "web-logs", r.Spec.Name)
	cfg := r.Cron
	assert.Equal(t, "logs", cfg.Source.Bucket)
	assert.Equal(t, "nginx/", cfg.Source.Prefix)
	assert.Equal(t, time.Hour, cfg.Source.Lookback)
	assert.Equal(t, 20, cfg.MaxObjects)
	assert.Equal(t, int64(64<<20), cfg.MaxBytes)
	assert.Equal(t, activities.DeliveryGateway, cfg.Delivery)
	assert.Equal(t, 2*time.Minute, cfg.ExecutionTimeout)
	assert.Contains(t, cfg.Template, "http://127.0.0.1:8480/logsummary.wasm", "the template is rendered")
	assert.Equal(t, "dead-letter/web-logs/", cfg.DeadLetter.Prefix)
	require.NoError(t, cfg.Validate())
}

func TestDefaults(t *testing.T) {
	r, err := Load(exampleSpec, []byte(minimal()))
	require.NoError(t, err)
	cfg := r.Cron
	assert.Equal(t, DefaultMaxObjects, cfg.MaxObjects)
	assert.Equal(t, int64(DefaultMaxBytes), cfg.MaxBytes)
	assert.Equal(t, DefaultConcurrency, cfg.Concurrency)
	assert.Equal(t, OverlapSkip, cfg.Overlap)
	assert.Equal(t, DefaultCatchupWindow, cfg.CatchupWindow)
	assert.Equal(t, DefaultLookback, cfg.Source.Lookback)
	assert.Equal(t, DefaultMaxAttempts, cfg.Retry.MaxAttempts)
	assert.Equal(t, "UTC", cfg.Timezone)
	assert.Nil(t, cfg.DeadLetter)
}

// TestWASMBatchesBoundTheirFolders: a WASM template gets the folder bound
// once max_objects could pass it (activities.FolderEntries), a docker
// template none, and a value written is kept.
func TestWASMBatchesBoundTheirFolders(t *testing.T) {
	load := func(t *testing.T, text string) int {
		t.Helper()
		r, err := Load(exampleSpec, []byte(text))
		require.NoError(t, err)
		require.NoError(t, r.Cron.Validate())
		return r.Cron.MaxFolderEntries
	}
	assert.Zero(t, load(t, minimal()), "100 objects cannot fill a folder past 256")
	assert.Equal(t, DefaultWASMFolderEntries, load(t, edit(t, "task:\n", "batch:\n  max_objects: 1000\ntask:\n")))
	assert.Equal(t, 40, load(t, edit(t, "task:\n", "batch:\n  max_objects: 1000\n  max_folder_entries: 40\ntask:\n")))

	docker := filepath.Join(t.TempDir(), "docker.yaml")
	require.NoError(t, os.WriteFile(docker, []byte(`Type: batch
Count: 1
Tasks:
  - Name: main
    Engine:
      Type: docker
      Params: {Image: "busybox:1.36", Entrypoint: [cat]}
`), 0o644))
	text := strings.Replace(edit(t, "task:\n", "batch:\n  max_objects: 1000\ntask:\n"), "../jobs/logsummary.yaml", docker, 1)
	assert.Zero(t, load(t, text), "docker mounts real folders")

	_, err := Load(exampleSpec, []byte(`name: q
kind: sqs
source: {sqs: {queue: "http://127.0.0.1:1/q"}}
batch: {max_folder_entries: 10}
task: {template: ../jobs/logsummary.yaml, vars: {MODULES_URL: "http://m"}}
`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "batch.max_folder_entries")
}

func minimal() string {
	return `name: web-logs
kind: cron
schedule: "*/5 * * * *"
source:
  s3:
    bucket: logs
task:
  template: ../jobs/logsummary.yaml
  vars: {MODULES_URL: "http://m"}
`
}

// edit returns the minimal spec with old replaced by new (old must occur).
func edit(t *testing.T, old, new string) string {
	t.Helper()
	s := minimal()
	require.Contains(t, s, old)
	return strings.Replace(s, old, new, 1)
}

// malformedCronCases are the malformed specs TestMalformedSpecsAreRejectedNamingTheField refuses (the JSON
// Schema test checks them too).
func malformedCronCases(t *testing.T) []malformedCase {
	dir := t.TempDir()
	badTemplate := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(badTemplate, []byte("Type: batch\nTasks:\n  - Name: main\n    Engine: {Type: lambda}\n"), 0o644))

	cases := []malformedCase{
		{"missing name", edit(t, "name: web-logs\n", ""), "name", "required"},
		{"bad name", edit(t, "name: web-logs", "name: Web_Logs"), "name", "lowercase"},
		{"missing kind", edit(t, "kind: cron\n", ""), "kind", "required: cron, kafka, kinesis, nats, pubsub, sqs or sns"},
		{"unknown kind", edit(t, "kind: cron", "kind: cronjob"), "kind", `unknown "cronjob"`},
		{"kafka field on cron", edit(t, "task:\n", "mode: staged\ntask:\n"), "mode", "only for kind kafka"},
		{"record age on cron", edit(t, "task:\n", "retry: {max_record_age: 1h}\ntask:\n"), "retry.max_record_age", "only for kind kafka"},
		{"missing schedule", edit(t, "schedule: \"*/5 * * * *\"\n", ""), "schedule", "required"},
		{"bad cron", edit(t, `"*/5 * * * *"`, `"*/5 * * *"`), "schedule", "5 fields"},
		{"bad cron value", edit(t, `"*/5 * * * *"`, `"61 * * * *"`), "schedule", "above maximum (59)"},
		{"bad every", edit(t, `"*/5 * * * *"`, `"@every soon"`), "schedule", "@every"},
		{"unknown time zone", edit(t, "kind: cron\n", "kind: cron\ntimezone: Mars/Olympus\n"), "timezone", "IANA"},
		{"missing source", edit(t, "source:\n  s3:\n    bucket: logs\n", ""), "source.s3", "required"},
		{"missing bucket", edit(t, "    bucket: logs\n", "    prefix: a/\n"), "source.s3.bucket", "required"},
		{"bad endpoint", edit(t, "    bucket: logs\n", "    bucket: logs\n    endpoint: localhost:9000\n"), "source.s3.endpoint", "use a URL"},
		{"start after and time", edit(t, "    bucket: logs\n", "    bucket: logs\n    start_after: a\n    start_time: 2026-11-01T00:00:00Z\n"),
			"source.s3.start_after", "not both"},
		{"start after outside prefix", edit(t, "    bucket: logs\n", "    bucket: logs\n    prefix: nginx/\n    start_after: apache/x\n"),
			"source.s3.start_after", "not under prefix"},
		{"negative lookback", edit(t, "    bucket: logs\n", "    bucket: logs\n    lookback: -1h\n"), "source.s3.lookback", "negative"},
		{"negative batch size", edit(t, "task:\n", "batch:\n  max_objects: -5\ntask:\n"), "batch.max_objects", "use 1 to 1000"},
		{"huge batch", edit(t, "task:\n", "batch:\n  max_objects: 5000\ntask:\n"), "batch.max_objects", "use 1 to 1000"},
		{"bad byte size", edit(t, "task:\n", "batch:\n  max_bytes: lots\ntask:\n"), "batch.max_bytes", `"lots" is not a size such as 64MiB`},
		{"bad byte unit", edit(t, "task:\n", "batch:\n  max_bytes: 12XB\ntask:\n"), "batch.max_bytes", `"12XB" is not a size`},
		{"word for a number", edit(t, "task:\n", "batch:\n  max_objects: ten\ntask:\n"), "batch.max_objects", `"ten" is not a whole number`},
		{"list for a number", edit(t, "task:\n", "batch:\n  concurrency: [1, 2]\ntask:\n"), "batch.concurrency", "expected a whole number, got a list"},
		{"text for fields", edit(t, "task:\n", "batch: lots\ntask:\n"), "batch", `expected fields (key: value), got "lots"`},
		{"empty spec", "", "(spec)", "the spec is empty"},
		{"comments only", "# nothing yet\n", "(spec)", "the spec is empty"},
		{"not a mapping", "- name: x\n", "(spec)", "expected fields such as name: and kind:, got a list"},
		{"negative bytes", edit(t, "task:\n", "batch:\n  max_bytes: -1\ntask:\n"), "batch.max_bytes", "use a positive size"},
		// A value written is never read as "the default": leaving the field
		// out is how one asks for it.
		{"explicit zero objects", edit(t, "task:\n", "batch:\n  max_objects: 0\ntask:\n"), "batch.max_objects", "0: use 1 to 1000 (leave it out for the default, 100)"},
		{"explicit zero concurrency", edit(t, "task:\n", "batch:\n  concurrency: 0\ntask:\n"), "batch.concurrency", "0: use 1 to 32 (leave it out for the default"},
		{"explicit zero bytes", edit(t, "task:\n", "batch:\n  max_bytes: 0\ntask:\n"), "batch.max_bytes", "0: use a positive size"},
		{"explicit zero attempts", edit(t, "task:\n", "retry: {max_attempts: 0}\ntask:\n"), "retry.max_attempts", "0: use 1 (no retries) or more (leave it out for the default, 3)"},
		{"explicit zero folder entries", edit(t, "task:\n", "batch:\n  max_folder_entries: 0\ntask:\n"), "batch.max_folder_entries", "0: use 1 to 1000 (leave it out for the default: 256 for WASM tasks"},
		{"too many folder entries", edit(t, "task:\n", "batch:\n  max_folder_entries: 1001\ntask:\n"), "batch.max_folder_entries", "use 1 to 1000"},
		{"too much concurrency", edit(t, "task:\n", "batch:\n  concurrency: 100\ntask:\n"), "batch.concurrency", "use 1 to 32"},
		{"unknown field", edit(t, "kind: cron\n", "kind: cron\nshedule: x\n"), "shedule", "unknown field: did you mean schedule?"},
		{"unknown field far from any", edit(t, "kind: cron\n", "kind: cron\ncolour: blue\n"), "colour", "unknown field: remove it, or use one of name, kind,"},
		{"unknown nested field", edit(t, "    bucket: logs\n", "    bucket: logs\n    bukket: x\n"), "source.s3.bukket", "did you mean bucket?"},
		{"missing template", edit(t, "  template: ../jobs/logsummary.yaml\n", ""), "task.template", "required"},
		{"template not found", edit(t, "../jobs/logsummary.yaml", "../jobs/nope.yaml"), "task.template", "cannot read"},
		{"invalid template", edit(t, "../jobs/logsummary.yaml", badTemplate), "task.template", `unknown engine "lambda"`},
		{"missing template variable", edit(t, `  vars: {MODULES_URL: "http://m"}`+"\n", ""), "task.vars", "MODULES_URL"},
		{"unknown delivery", edit(t, "task:\n", "task:\n  input: {delivery: ftp}\n"), "task.input.delivery", `unknown "ftp"`},
		{"bad duration", edit(t, "task:\n", "task:\n  queue_timeout: 10 minutes\n"), "task.queue_timeout", `"10 minutes" is not a duration such as 30s`},
		{"bad time", edit(t, "    bucket: logs\n", "    bucket: logs\n    start_time: yesterday\n"), "source.s3.start_time", `"yesterday" is not a time: write one in RFC 3339`},
		{"negative timeout", edit(t, "task:\n", "task:\n  execution_timeout: -5m\n"), "task.execution_timeout", "negative"},
		{"negative attempts", edit(t, "task:\n", "retry: {max_attempts: -1}\ntask:\n"), "retry.max_attempts", "use 1"},
		{"max below initial interval", edit(t, "task:\n", "retry: {initial_interval: 1m, max_interval: 10s}\ntask:\n"), "retry.max_interval", "below initial_interval"},
		{"unknown overlap", edit(t, "task:\n", "overlap: queue_all\ntask:\n"), "overlap", "skip or buffer_one"},
		{"negative catchup", edit(t, "task:\n", "catchup_window: -1m\ntask:\n"), "catchup_window", "negative"},
		{"dead letter without bucket", edit(t, "task:\n", "dead_letter: {s3: {prefix: dlq/}}\ntask:\n"), "dead_letter.s3.bucket", "required"},
		{"dead letter without s3", edit(t, "task:\n", "dead_letter: {}\ntask:\n"), "dead_letter.s3", "required"},
		{"not yaml", "name: [unclosed", "(yaml)", "line 1"},
	}
	return cases
}

func TestMalformedSpecsAreRejectedNamingTheField(t *testing.T) {
	for _, tc := range malformedCronCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Load(exampleSpec, []byte(tc.spec))
			require.Error(t, err)
			assert.Nil(t, r)
			var serr *Error
			require.True(t, errors.As(err, &serr), "%T %v", err, err)
			assert.True(t, serr.Has(tc.path), "want a problem at %s, got: %v", tc.path, err)
			assert.Contains(t, err.Error(), tc.msg)
			assert.NotRegexp(t, goTerms, err.Error(), "speaks the spec's language, not Go's")
		})
	}
}

// goTerms are words of Go's type system that must not reach a user.
var goTerms = regexp.MustCompile(`\bint(8|16|32|64)?\b|!!(str|int|map|seq)|struct \{|\bunmarshal\b|spec\.[A-Z]`)

func TestAllProblemsAreReportedAtOnce(t *testing.T) {
	_, err := Load("x.yaml", []byte("name: X\nkind: cron\nschedule: nope\nsource: {s3: {}}\ntask: {}\n"))
	require.Error(t, err)
	var serr *Error
	require.True(t, errors.As(err, &serr))
	for _, p := range []string{"name", "schedule", "source.s3.bucket", "task.template"} {
		assert.True(t, serr.Has(p), p)
	}
	assert.Contains(t, err.Error(), "spec x.yaml: 4 problems:")
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"1024": 1024, "64KiB": 64 << 10, "256MiB": 256 << 20, "1GB": 1e9, "1.5 MiB": 3 << 19, "10B": 10} {
		got, err := ParseByteSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := ParseByteSize("12 parsecs")
	assert.Error(t, err)
}

// malformedCase is a spec apply refuses, with the path and message of its
// problem.
type malformedCase struct{ name, spec, path, msg string }
