package kinds

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/source"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestRegistryIsOneEntryPerKind checks the table: names, spec kinds,
// workflow types and ID prefixes are unique, every entry is complete, and
// together they serve every spec kind the spec accepts.
func TestRegistryIsOneEntryPerKind(t *testing.T) {
	seen := map[string]string{}
	unique := func(what, v, kind string) {
		t.Helper()
		if prev, ok := seen[what+v]; ok {
			t.Errorf("%s %q of kind %s is also kind %s's", what, v, kind, prev)
		}
		seen[what+v] = kind
	}
	var specKinds []string
	for _, k := range All().Kinds() {
		unique("name", k.Name, k.Name)
		unique("workflow type", k.WorkflowType, k.Name)
		unique("ID prefix", k.IDPrefix, k.Name)
		for _, s := range k.SpecKinds {
			unique("spec kind", s, k.Name)
			specKinds = append(specKinds, s)
		}
		assert.NotNil(t, k.Section, k.Name)
		assert.NotNil(t, k.Status, k.Name)
		assert.NotNil(t, k.Register, k.Name)
		if k.Reset.Style == ResetConsumers {
			assert.NotNil(t, k.Reset.Progress, k.Name)
			assert.NotEmpty(t, k.Reset.Unit, k.Name)
		}
		if k.Reset.Style == ResetNone {
			assert.NotEmpty(t, k.Reset.Why, k.Name)
		}
	}
	// No prefix is a prefix of another, so an ID names one kind.
	all := All().Kinds()
	for i, a := range all {
		for j, b := range all {
			if i != j && strings.HasPrefix(a.IDPrefix, b.IDPrefix) {
				t.Errorf("ID prefix %q (%s) starts with %q (%s)", a.IDPrefix, a.Name, b.IDPrefix, b.Name)
			}
		}
	}
	slices.Sort(specKinds)
	assert.Equal(t, []string{spec.KindCron, spec.KindKafka, spec.KindKinesis, spec.KindNATS, spec.KindPubSub, spec.KindSNS, spec.KindSQS}, specKinds)
}

// TestEveryExampleSpecHasOneKind resolves each example spec and finds the
// kind that starts it, with its ID scheme.
func TestEveryExampleSpecHasOneKind(t *testing.T) {
	files, err := filepath.Glob("../../examples/connectors/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	kinds := map[string]string{}
	for _, f := range files {
		r, err := spec.LoadFile(f)
		require.NoError(t, err, f)
		k, s, err := All().ForSpec(r)
		require.NoError(t, err, f)
		assert.Contains(t, k.SpecKinds, r.Spec.Kind, f)
		assert.Equal(t, k.ID(r.Spec.Name), s.WorkflowID, f)
		assert.Equal(t, k.WorkflowType, s.WorkflowType, f)
		assert.Equal(t, r.Spec.Kind, s.Kind, f)
		assert.NotNil(t, s.Input, f)
		kinds[k.Name] = f
		byType, ok := All().ByWorkflowType(s.WorkflowType)
		require.True(t, ok)
		assert.Equal(t, k.Name, byType.Name)
	}
	assert.Len(t, kinds, len(All().Kinds()), "an example per kind: %v", kinds)
}

func TestFindQueryNamesEveryKindOnce(t *testing.T) {
	q := All().query("web-logs", true)
	assert.Equal(t, "ExecutionStatus = 'Running' AND WorkflowType IN ('Cron', 'KafkaConnector', 'QueueConnector', 'KinesisConnector', 'NATSConnector', 'PubSubConnector') AND "+
		"(ConnectorName = 'web-logs' OR WorkflowId IN ('cron-web-logs', 'kafka-web-logs', 'queue-web-logs', 'kinesis-web-logs', 'nats-web-logs', 'pubsub-web-logs'))", q)
	assert.NotContains(t, All().query("web-logs", false), workflows.SearchAttrConnectorName)
	require.Error(t, checkName("x' OR WorkflowId != '"), "a name that could change the query is refused")
	require.NoError(t, checkName("web-logs"))
}

// fakeConfig is a source stream kind's configuration for the registry tests.
type fakeConfig struct {
	Dir string `yaml:"dir"`
}

func (c *fakeConfig) Check() []source.Problem {
	if c.Dir == "" {
		return []source.Problem{{Field: "dir", Message: "required"}}
	}
	return nil
}
func (c *fakeConfig) Describe() string        { return "dir " + c.Dir }
func (c *fakeConfig) StartAt() source.StartAt { return source.Earliest }

func fakeKind(name string) source.StreamKind {
	return source.StreamKind{Name: name, Units: "files", NewConfig: func() source.StreamConfig { return &fakeConfig{} },
		Open: func(context.Context, json.RawMessage) (source.Stream, error) {
			return nil, errors.New("not in this test")
		}}
}

// TestWithAddsAStreamKindOfAnotherModule: an extra kind is served like a
// built-in one (its spec resolves, its connector has its own types and ID),
// and a kind that would share a name, a type or an ID prefix is refused.
func TestWithAddsAStreamKindOfAnotherModule(t *testing.T) {
	reg, err := With(fakeKind("tail"))
	require.NoError(t, err)
	assert.Len(t, reg.Kinds(), len(All().Kinds())+1)
	text := "name: app\nkind: tail\nsource:\n  tail: {dir: /logs}\ntask:\n  template: ../../examples/jobs/logsummary.yaml\n  vars: {MODULES_URL: \"http://m\"}\n"
	r, err := reg.Loader().Load("app.yaml", []byte(text))
	require.NoError(t, err)
	k, s, err := reg.ForSpec(r)
	require.NoError(t, err)
	assert.Equal(t, "tail", k.Name)
	assert.Equal(t, "tail-app", s.WorkflowID)
	assert.Equal(t, "tail-connector", s.WorkflowType)
	assert.Equal(t, "tail:dir /logs", s.Source)
	_, err = All().Loader().Load("app.yaml", []byte(text))
	require.Error(t, err, "the built-in registry does not know the kind")
	assert.Contains(t, err.Error(), "source.tail: unknown field: remove it, or use one of s3, kafka, sqs, sns, kinesis, nats, pubsub (a source kind's section; a kind of another module needs a starter built with it)")

	_, err = reg.Loader().Load("app.yaml", []byte(strings.Replace(text, "{dir: /logs}", "{}", 1)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "source.tail.dir: required", "the kind's own check, with the field's path")

	for _, bad := range []source.StreamKind{fakeKind("kafka"), fakeKind("nats"), fakeKind("Tail"), {Name: "tail2"}} {
		_, err := With(bad)
		assert.Error(t, err, bad.Name)
	}
	overlap := fakeKind("natsx")
	overlap.IDPrefix = "nats-x-"
	_, err = With(overlap)
	assert.ErrorContains(t, err, "overlaps")
}

// fakeQueueConfig is a source queue kind's configuration for the registry
// tests.
type fakeQueueConfig struct {
	Dir string `yaml:"dir"`
}

func (c *fakeQueueConfig) Check() []source.Problem {
	if c.Dir == "" {
		return []source.Problem{{Field: "dir", Message: "required"}}
	}
	return nil
}
func (c *fakeQueueConfig) Describe() string     { return "spool " + c.Dir }
func (c *fakeQueueConfig) Lease() time.Duration { return 42 * time.Second }

func fakeQueueKind(name string) source.QueueKind {
	return source.QueueKind{Name: name, NewConfig: func() source.QueueConfig { return &fakeQueueConfig{} },
		Open: func(context.Context, json.RawMessage) (source.Queue, error) {
			return nil, errors.New("not in this test")
		}}
}

// TestWithAddsAQueueKindOfAnotherModule: a queue kind resolves into the
// shared queue connector's configuration (its lease, the queue batch
// fields), refuses the stream kinds' fields, and may not take a workflow
// type another kind has.
func TestWithAddsAQueueKindOfAnotherModule(t *testing.T) {
	reg, err := With(fakeKind("tail"), fakeQueueKind("spool"))
	require.NoError(t, err)
	assert.Len(t, reg.Kinds(), len(All().Kinds())+2)
	text := "name: app\nkind: spool\nsource:\n  spool: {dir: /spool}\nbatch: {max_messages: 7, concurrency: 2}\n" +
		"task:\n  template: ../../examples/jobs/logsummary.yaml\n  vars: {MODULES_URL: \"http://m\"}\n"
	r, err := reg.Loader().Load("app.yaml", []byte(text))
	require.NoError(t, err)
	require.NotNil(t, r.SourceQueue)
	assert.Equal(t, 7, r.SourceQueue.MaxMessages)
	assert.Equal(t, 2, r.SourceQueue.Concurrency)
	assert.Equal(t, 42*time.Second, r.SourceQueue.Lease)
	k, s, err := reg.ForSpec(r)
	require.NoError(t, err)
	assert.Equal(t, "spool", k.Name)
	assert.NotNil(t, k.Queue)
	assert.Equal(t, "spool-app", s.WorkflowID)
	assert.Equal(t, "spool-connector", s.WorkflowType)
	assert.Equal(t, "spool:spool /spool", s.Source)

	_, err = reg.Loader().Load("app.yaml", []byte(strings.Replace(text, "max_messages: 7", "max_records: 7", 1)))
	assert.ErrorContains(t, err, "batch.max_records: only for kind kafka or kinesis or a source stream kind such as nats: remove it")
	_, err = reg.Loader().Load("app.yaml", []byte(text+"retry: {max_attempts: 3}\n"))
	assert.ErrorContains(t, err, "retry: spool connectors do not retry tasks themselves")

	clash := fakeQueueKind("spool2")
	clash.ConnectorType = "NATSStreamConsumer"
	_, err = With(clash)
	assert.ErrorContains(t, err, "workflow type NATSStreamConsumer is another kind's")
	_, err = With(fakeQueueKind("pubsub"))
	assert.ErrorContains(t, err, "a kind of that name exists")
}
