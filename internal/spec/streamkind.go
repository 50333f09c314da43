package spec

import (
	"encoding/json"
	"reflect"

	"github.com/bacalhau-connect/bacalhau-connect/source"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// SourceKindOf is the workflow names of a source stream kind.
func SourceKindOf(k source.StreamKind) workflows.SourceKind {
	connector, consumer, prefix := k.Types()
	return workflows.SourceKind{Kind: k.Name, ConnectorType: connector, ConsumerType: consumer, IDPrefix: prefix}
}

// resolveStreamKind decodes a source stream kind's section into its
// configuration, has the kind check it (problems at source.<kind>.<field>),
// and resolves what the engine takes from the rest of the spec: batch,
// mode, staging, max_record_age and on_failure (dead letters to S3), as
// for the other stream kinds.
func (s *Spec) resolveStreamKind(k source.StreamKind, dir string, add addFunc) *workflows.SourceStreamConfig {
	cfg := &workflows.SourceStreamConfig{Name: s.Name, SourceKind: SourceKindOf(k), Start: workflows.StartEarliest}
	conf := k.NewConfig()
	if raw, ok := s.decodeSourceSection(k.Name, conf, add); ok {
		cfg.Source, cfg.Describe = raw, conf.Describe()
		switch st := conf.StartAt(); st.From {
		case source.Latest.From:
			cfg.Start = workflows.StartLatest
		case "time":
			cfg.Start, cfg.StartTime = workflows.StartTimestamp, st.Time.UTC()
		}
	}
	cfg.StreamBatching = s.resolveStream(add)
	cfg.TaskConfig = s.resolveTask(dir, add)
	return cfg
}

// decodeSourceSection decodes the source kind name's section into conf (a
// pointer its kind's NewConfig returned) and reports the problems its
// Check finds at source.<name>.<field>; it returns the configuration's
// JSON, and false when the section is missing or cannot be decoded.
func (s *Spec) decodeSourceSection(name string, conf interface{ Check() []source.Problem }, add addFunc) (json.RawMessage, bool) {
	at := "source." + name
	node := s.streamSections[name]
	switch {
	case node == nil:
		add(at, "required: what the %s connector reads", name)
		return nil, false
	case reflect.ValueOf(conf).Kind() != reflect.Pointer:
		add(at, "the %s kind's NewConfig returns %T, not a pointer: its source section cannot be decoded", name, conf)
		return nil, false
	}
	if err := node.Decode(conf); err != nil {
		add(at, "%v", err)
		return nil, false
	}
	for _, p := range conf.Check() {
		path := at
		if p.Field != "" {
			path += "." + p.Field
		}
		add(path, "%s", p.Message)
	}
	raw, err := json.Marshal(conf)
	if err != nil {
		add(at, "the %s configuration does not encode as JSON: %v", name, err)
	}
	return raw, true
}
