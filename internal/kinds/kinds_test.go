package kinds

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
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
	for _, k := range All() {
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
	all := All()
	for i, a := range all {
		for j, b := range all {
			if i != j && strings.HasPrefix(a.IDPrefix, b.IDPrefix) {
				t.Errorf("ID prefix %q (%s) starts with %q (%s)", a.IDPrefix, a.Name, b.IDPrefix, b.Name)
			}
		}
	}
	slices.Sort(specKinds)
	assert.Equal(t, []string{spec.KindCron, spec.KindKafka, spec.KindKinesis, spec.KindNATS, spec.KindSNS, spec.KindSQS}, specKinds)
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
		k, s, err := ForSpec(r)
		require.NoError(t, err, f)
		assert.Contains(t, k.SpecKinds, r.Spec.Kind, f)
		assert.Equal(t, k.ID(r.Spec.Name), s.WorkflowID, f)
		assert.Equal(t, k.WorkflowType, s.WorkflowType, f)
		assert.Equal(t, r.Spec.Kind, s.Kind, f)
		assert.NotNil(t, s.Input, f)
		kinds[k.Name] = f
		byType, ok := ByWorkflowType(s.WorkflowType)
		require.True(t, ok)
		assert.Equal(t, k.Name, byType.Name)
	}
	assert.Len(t, kinds, len(All()), "an example per kind: %v", kinds)
}

func TestFindQueryNamesEveryKindOnce(t *testing.T) {
	q := query("web-logs", true)
	assert.Equal(t, "ExecutionStatus = 'Running' AND WorkflowType IN ('Cron', 'KafkaConnector', 'QueueConnector', 'KinesisConnector', 'NATSConnector') AND "+
		"(ConnectorName = 'web-logs' OR WorkflowId IN ('cron-web-logs', 'kafka-web-logs', 'queue-web-logs', 'kinesis-web-logs', 'nats-web-logs'))", q)
	assert.NotContains(t, query("web-logs", false), workflows.SearchAttrConnectorName)
	require.Error(t, checkName("x' OR WorkflowId != '"), "a name that could change the query is refused")
	require.NoError(t, checkName("web-logs"))
}
