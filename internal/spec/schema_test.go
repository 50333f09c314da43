package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/invopop/jsonschema"
	orderedmap "github.com/pb33f/ordered-map/v2"
	sjsonschema "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/bacalhau-connect/bacalhau-connect/internal/natssource"
	"github.com/bacalhau-connect/bacalhau-connect/internal/pubsubsource"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// schemaID is where editors and validators find the schema.
const schemaID = "https://raw.githubusercontent.com/bacalhau-connect/bacalhau-connect/main/internal/spec/connector.schema.json"

// generateSchema reflects the Spec type into a JSON Schema (invopop's
// generator, field names from the yaml tags, descriptions from the doc
// comments), then adds what the Go types cannot say: ranges, patterns,
// enums, the fields each kind requires and the fields it refuses
// (KindFields).
func generateSchema(t *testing.T) []byte {
	t.Helper()
	r := &jsonschema.Reflector{
		FieldNameTag: "yaml", RequiredFromJSONSchemaTags: true, ExpandedStruct: true, DoNotReference: true,
		Mapper: func(typ reflect.Type) *jsonschema.Schema {
			switch typ {
			case reflect.TypeFor[Duration](), reflect.TypeFor[pubsubsource.Duration]():
				return &jsonschema.Schema{Type: "string", Pattern: durationPattern,
					Description: "A duration such as 90s, 5m or 1h30m (Go's time.ParseDuration)."}
			case reflect.TypeFor[ByteSize]():
				return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
					{Type: "integer", Minimum: "1"},
					{Type: "string", Pattern: byteSizePattern},
				}, Description: "A size: a number of bytes, or a number with KiB, MiB, GiB, KB, MB, GB or B, such as 64MiB."}
			case reflect.TypeFor[time.Time]():
				return &jsonschema.Schema{Type: "string", Format: "date-time", Description: "An RFC 3339 time such as 2026-11-01T00:00:00Z."}
			}
			return nil
		},
	}
	require.NoError(t, r.AddGoComments("github.com/bacalhau-connect/bacalhau-connect/internal/spec", "."))
	require.NoError(t, r.AddGoComments("github.com/bacalhau-connect/bacalhau-connect/internal/natssource", "../natssource"))
	require.NoError(t, r.AddGoComments("github.com/bacalhau-connect/bacalhau-connect/internal/pubsubsource", "../pubsubsource"))
	s := r.Reflect(&Spec{})
	// The source sections of the built-in stream kinds are their
	// configurations' own.
	srcSchema, ok := s.Properties.Get("source")
	require.True(t, ok)
	sourceKinds := map[string]any{}
	for _, k := range BuiltinStreamKinds() {
		sourceKinds[k.Name] = k.NewConfig()
	}
	for _, k := range BuiltinQueueKinds() {
		sourceKinds[k.Name] = k.NewConfig()
	}
	for _, name := range slices.Sorted(maps.Keys(sourceKinds)) {
		ks := r.Reflect(sourceKinds[name])
		ks.Version, ks.ID = "", ""
		srcSchema.Properties.Set(name, ks)
	}
	s.Version = "https://json-schema.org/draft/2020-12/schema"
	s.ID = schemaID
	s.Title = "bacalhau-connect connector spec"
	s.Description = "A connector spec for `starter apply` (docs/: one reference page per kind)."
	s.Required = []string{"name", "kind", "source", "task"}

	prop := func(path string) *jsonschema.Schema {
		cur := s
		for _, p := range strings.Split(path, ".") {
			next, ok := cur.Properties.Get(p)
			require.True(t, ok, "schema has no field %s", path)
			cur = next
		}
		return cur
	}
	prop("name").Pattern = nameRE.String()
	prop("kind").Enum = []any{KindCron, KindKafka, KindKinesis, KindNATS, KindPubSub, KindSQS, KindSNS}
	prop("overlap").Enum = []any{OverlapSkip, OverlapBufferOne}
	prop("mode").Enum = []any{workflows.ModeInline, workflows.ModeStaged}
	prop("task").Required = []string{"template"}
	prop("task.input.delivery").Enum = []any{DeliveryPresigned, DeliveryS3}
	prop("source.kafka").Required = []string{"brokers", "topic"}
	prop("source.kafka.start").Enum = []any{workflows.StartEarliest, workflows.StartLatest, workflows.StartTimestamp, workflows.StartOffsets}
	prop("source.kafka.on_offset_out_of_range").Enum = []any{workflows.StartEarliest, "fail"}
	prop("source.kafka.sasl.mechanism").Enum = []any{"plain", "scram-sha-256", "scram-sha-512"}
	prop("source.kafka.topic").Pattern = topicRE.String()
	prop("source.kafka.brokers").Items = &jsonschema.Schema{Type: "string", Pattern: `^(\[[0-9a-fA-F:]+\]|[^:\s]+):[0-9]{1,5}$`}
	prop("source.kafka.sasl.username_env").Pattern = envVarRE.String()
	prop("source.kafka.sasl.password_env").Pattern = envVarRE.String()
	offsets := prop("source.kafka.start_offsets")
	offsets.PropertyNames = &jsonschema.Schema{Pattern: `^[0-9]+$`}
	offsets.PatternProperties = nil
	offsets.AdditionalProperties = &jsonschema.Schema{Type: "integer", Minimum: "0"}
	prop("source.kafka").AllOf = []*jsonschema.Schema{
		whenThen("start", workflows.StartTimestamp, "start_time"),
		whenThen("start", workflows.StartOffsets, "start_offsets"),
	}
	prop("source.kinesis.stream").AnyOf = []*jsonschema.Schema{{Pattern: streamNameRE.String()}, {Pattern: streamARNRE.String()}}
	prop("source.kinesis").AllOf = []*jsonschema.Schema{
		whenThen("start", "at_timestamp", "start_time"),
		{If: &jsonschema.Schema{Properties: props("start", &jsonschema.Schema{Not: &jsonschema.Schema{Const: "at_timestamp"}})},
			Then: &jsonschema.Schema{Properties: props("start_time", jsonschema.FalseSchema)}},
	}
	prop("source.sqs.queue").AnyOf = []*jsonschema.Schema{{Pattern: queueNameRE.String()}, {Pattern: `^https?://`}}
	prop("source.kinesis").Required = []string{"stream"}
	prop("source.kinesis.start").Enum = []any{"trim_horizon", "latest", "at_timestamp"}
	prop("source.nats").Required = []string{"url", "stream"}
	prop("source.nats.url").Pattern = `^(nats|tls|ws|wss)://[^@/\s]+(/[^@\s]*)?$`
	prop("source.nats.stream").Pattern = natssource.StreamPattern
	prop("source.nats.subjects").Items = &jsonschema.Schema{Type: "string", Pattern: natssource.SubjectPattern}
	prop("source.nats.subjects").UniqueItems = true
	prop("source.nats.start").Enum = []any{natssource.StartEarliest, natssource.StartLatest, natssource.StartTimestamp}
	prop("source.nats").AllOf = []*jsonschema.Schema{
		whenThen("start", workflows.StartTimestamp, "start_time"),
		{If: &jsonschema.Schema{Properties: props("start", &jsonschema.Schema{Not: &jsonschema.Schema{Const: workflows.StartTimestamp}})},
			Then: &jsonschema.Schema{Properties: props("start_time", jsonschema.FalseSchema)}},
	}
	prop("source.pubsub").Required = []string{"project", "subscription"}
	prop("source.pubsub.project").Pattern = pubsubsource.ProjectPattern
	prop("source.pubsub.subscription").AnyOf = []*jsonschema.Schema{{Pattern: pubsubsource.SubscriptionPattern}, {Pattern: `^projects/[^/]+/subscriptions/[^/]+$`}}
	prop("source.pubsub.endpoint").Pattern = pubsubsource.EndpointPattern
	prop("source.s3").Required = []string{"bucket"}
	prop("source.sqs").Required = []string{"queue"}
	prop("source.sns").Required = []string{"topic_arn"}
	prop("source.sns.topic_arn").Pattern = topicARNRE.String()
	prop("dead_letter").Required = []string{"s3"}
	prop("dead_letter.s3").Required = []string{"bucket"}
	prop("staging").Required = []string{"s3"}
	prop("staging.s3").Required = []string{"bucket"}
	one := uint64(1)
	prop("on_failure.dead_letter").MinProperties = &one
	for path, hi := range map[string]int{
		"batch.max_objects": MaxMaxObjects, "batch.max_folder_entries": 1000,
		"batch.concurrency": max(workflows.MaxCronConcurrency, workflows.MaxQueueConcurrency),
		"batch.max_records": MaxMaxRecords, "batch.max_in_flight": 16, "batch.max_messages": workflows.MaxQueueMessages,
	} {
		prop(path).Minimum, prop(path).Maximum = "1", json.Number(fmt.Sprint(hi))
	}
	prop("retry.max_attempts").Minimum = "1"

	// Each kind: the source section it requires, the fields it refuses.
	for _, kind := range []string{KindCron, KindKafka, KindKinesis, KindNATS, KindPubSub, KindSQS, KindSNS} {
		then := &jsonschema.Schema{Properties: orderedmap.New[string, *jsonschema.Schema]()}
		if kind == KindCron {
			then.Required = []string{"schedule"}
		}
		if kind == KindKinesis || kind == KindNATS {
			then.Properties.Set("on_failure", &jsonschema.Schema{Properties: props("dead_letter",
				&jsonschema.Schema{Properties: props("kafka", jsonschema.FalseSchema)})})
		}
		if kind == KindSQS || kind == KindSNS || kind == KindPubSub {
			then.Properties.Set("retry", &jsonschema.Schema{Not: &jsonschema.Schema{}, Description: "a queue's redrive policy counts retries"})
		}
		family := kind
		switch kind {
		case KindNATS:
			family = KindStream
		case KindPubSub:
			family = KindQueue
		}
		srcThen := &jsonschema.Schema{Properties: orderedmap.New[string, *jsonschema.Schema]()}
		then.Properties.Set("source", srcThen)
		for _, name := range slices.Sorted(maps.Keys(sourceKinds)) {
			if name == kind {
				srcThen.Required = []string{name}
			} else {
				srcThen.Properties.Set(name, jsonschema.FalseSchema)
			}
		}
		for _, f := range KindFields() {
			parent, field, nested := strings.Cut(f.Path, ".")
			on := slices.Contains(f.Kinds, family)
			if !nested {
				if !on {
					then.Properties.Set(parent, jsonschema.FalseSchema)
				}
				continue
			}
			sub, ok := then.Properties.Get(parent)
			if !ok {
				sub = &jsonschema.Schema{Properties: orderedmap.New[string, *jsonschema.Schema]()}
				then.Properties.Set(parent, sub)
			}
			switch {
			case sub.Properties == nil: // the whole parent is refused
			case !on:
				sub.Properties.Set(field, jsonschema.FalseSchema)
			case parent == "source" && len(f.Kinds) == 1:
				sub.Required = append(sub.Required, field)
			}
		}
		s.AllOf = append(s.AllOf, &jsonschema.Schema{
			If:   &jsonschema.Schema{Properties: props("kind", &jsonschema.Schema{Const: kind}), Required: []string{"kind"}},
			Then: then,
		})
	}
	raw, err := json.MarshalIndent(s, "", "  ")
	require.NoError(t, err)
	return append(raw, '\n')
}

const (
	durationPattern = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$`
	byteSizePattern = `^[0-9]+(\.[0-9]+)?\s*(KiB|MiB|GiB|KB|MB|GB|B)?$`
)

// whenThen requires field required when field is value.
func whenThen(field, value, required string) *jsonschema.Schema {
	return &jsonschema.Schema{
		If:   &jsonschema.Schema{Properties: props(field, &jsonschema.Schema{Const: value}), Required: []string{field}},
		Then: &jsonschema.Schema{Required: []string{required}},
	}
}

func props(name string, s *jsonschema.Schema) *orderedmap.OrderedMap[string, *jsonschema.Schema] {
	p := orderedmap.New[string, *jsonschema.Schema]()
	p.Set(name, s)
	return p
}

// TestSchemaIsCurrent fails when connector.schema.json is not what the
// Spec type generates now; UPDATE_SCHEMA=1 (make schema) rewrites it.
func TestSchemaIsCurrent(t *testing.T) {
	want := generateSchema(t)
	if os.Getenv("UPDATE_SCHEMA") != "" {
		require.NoError(t, os.WriteFile(SchemaFile, want, 0o644))
	}
	got, err := os.ReadFile(SchemaFile)
	require.NoError(t, err)
	if !bytes.Equal(got, want) {
		t.Fatalf("internal/spec/%s is stale: the spec types changed; run `make schema` and commit it", SchemaFile)
	}
	assert.True(t, bytes.Equal(got, Schema()), "the embedded schema is the committed file (rebuild after make schema)")
}

// compiledSchema compiles the committed schema with format assertions on.
func compiledSchema(t *testing.T) *sjsonschema.Schema {
	t.Helper()
	doc, err := sjsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	require.NoError(t, err)
	c := sjsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource(schemaID, doc))
	s, err := c.Compile(schemaID)
	require.NoError(t, err)
	return s
}

// asJSON reads YAML as a JSON value, as editors do (keys become strings,
// times RFC 3339 strings).
func asJSON(t *testing.T, raw []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	var fix func(any) any
	fix = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = fix(e)
			}
		case map[any]any:
			m := map[string]any{}
			for k, e := range x {
				m[fmt.Sprint(k)] = fix(e)
			}
			return m
		case []any:
			for i, e := range x {
				x[i] = fix(e)
			}
		case time.Time:
			return x.Format(time.RFC3339Nano)
		}
		return v
	}
	j, err := json.Marshal(fix(v))
	require.NoError(t, err)
	return sjsonschema.UnmarshalJSON(bytes.NewReader(j))
}

func TestSchemaValidatesEveryExampleSpec(t *testing.T) {
	s := compiledSchema(t)
	files, err := filepath.Glob("../../examples/connectors/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		assert.Contains(t, string(raw), "# yaml-language-server: $schema=../../internal/spec/"+SchemaFile, "%s: editors find the schema", f)
		v, err := asJSON(t, raw)
		require.NoError(t, err, f)
		assert.NoError(t, s.Validate(v), f)
	}
}

// beyondSchema are the malformed specs of the spec tests that a JSON Schema
// cannot refuse, and why; apply refuses them (the spec tests show it). The
// test fails when the schema starts refusing one, so the list stays true.
var beyondSchema = map[string]string{
	"bad cron":                        "a cron expression's fields are parsed, not matched",
	"bad cron value":                  "a cron expression's fields are parsed, not matched",
	"bad every":                       "a cron expression's fields are parsed, not matched",
	"unknown time zone":               "the IANA zone database is not in the schema",
	"bad endpoint":                    "a URL with a scheme is checked by parsing",
	"start after outside prefix":      "compares two fields' values",
	"start after and time":            "two fields that exclude each other",
	"template not found":              "reads the template file",
	"invalid template":                "reads the template file",
	"missing template variable":       "reads the template file",
	"max below initial interval":      "compares two fields' values",
	"dead letter to itself":           "compares two fields' values",
	"inline too big":                  "the bound depends on mode",
	"staged without staging":          "the requirement depends on mode",
	"tls cert without key":            "two fields that go together",
	"bad filter policy":               "the filter policy is JSON inside a string",
	"envelope with raw delivery":      "the requirement depends on raw_delivery",
	"zero wait":                       "max_wait must be positive; 0s is a valid duration elsewhere",
	"visibility too long":             "a duration's range is checked by parsing",
	"ack deadline too short":          "a duration's range is checked by parsing",
	"subscription of another project": "compares two fields' values",
	"not yaml":                        "not YAML at all: the editor's parser refuses it before any schema",
}

func TestSchemaRefusesTheMalformedSpecs(t *testing.T) {
	s := compiledSchema(t)
	var cases []malformedCase
	for _, f := range []func(*testing.T) []malformedCase{malformedCronCases, malformedKafkaCases, malformedKinesisCases, malformedNATSCases, malformedPubSubCases, malformedQueueCases} {
		cases = append(cases, f(t)...)
	}
	refused, beyond := 0, 0
	for _, tc := range cases {
		v, err := asJSON(t, []byte(tc.spec))
		if err != nil {
			assert.Contains(t, beyondSchema, tc.name, "%s: not YAML: %v", tc.name, err)
			beyond++
			continue
		}
		err = s.Validate(v)
		if why, ok := beyondSchema[tc.name]; ok {
			beyond++
			assert.NoError(t, err, "%s: the schema refuses it now; take it off beyondSchema (%s)", tc.name, why)
			continue
		}
		if assert.Error(t, err, "%s: the schema accepts a spec apply refuses (%s: %s)", tc.name, tc.path, tc.msg) {
			refused++
		}
	}
	t.Logf("the schema refuses %d of %d malformed specs; %d need apply's checks", refused, len(cases), beyond)
}

// TestKindFieldsCoverOnlyFor checks that onlyFor knows every kind-specific
// field: a spec with all of them set, under a kind none takes, is refused
// once for each.
func TestKindFieldsCoverOnlyFor(t *testing.T) {
	n, d, b := 1, Duration{time.Second}, ByteSize(1)
	s := &Spec{Schedule: "x", Timezone: "x", Overlap: "x", CatchupWindow: &d, DeadLetter: &DeadLetter{}, Mode: "x", Staging: &DeadLetter{}, OnFailure: &OnFailure{},
		Source: Source{S3: &S3Source{}, Kafka: &KafkaSource{}, Kinesis: &KinesisSource{}, SQS: &SQSSource{}, SNS: &SNSSource{}},
		Batch:  Batch{MaxObjects: &n, MaxFolderEntries: &n, Concurrency: &n, MaxRecords: &n, MaxInFlight: &n, MaxWait: &d, MaxMessages: &n, MaxBytes: &b},
		Retry:  Retry{MaxRecordAge: &d}}
	var paths []string
	s.onlyFor("none", func(path, _ string, _ ...any) { paths = append(paths, path) })
	var want []string
	for _, f := range KindFields() {
		want = append(want, f.Path)
	}
	assert.ElementsMatch(t, want, paths)
}
