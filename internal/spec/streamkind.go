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
	at := "source." + k.Name
	node := s.streamSections[k.Name]
	if node == nil {
		add(at, "required: what the %s connector reads", k.Name)
	} else {
		conf := k.NewConfig()
		if reflect.ValueOf(conf).Kind() != reflect.Pointer {
			add(at, "the %s kind's NewConfig returns %T, not a pointer: its source section cannot be decoded", k.Name, conf)
		} else if err := node.Decode(conf); err != nil {
			add(at, "%v", err)
		} else {
			for _, p := range conf.Check() {
				path := at
				if p.Field != "" {
					path += "." + p.Field
				}
				add(path, "%s", p.Message)
			}
			raw, err := json.Marshal(conf)
			if err != nil {
				add(at, "the %s configuration does not encode as JSON: %v", k.Name, err)
			}
			cfg.Source, cfg.Describe = raw, conf.Describe()
			switch st := conf.StartAt(); st.From {
			case source.Latest.From:
				cfg.Start = workflows.StartLatest
			case "time":
				cfg.Start, cfg.StartTime = workflows.StartTimestamp, st.Time.UTC()
			}
		}
	}
	cfg.StreamBatching = s.resolveStream(add)
	cfg.TaskConfig = s.resolveTask(dir, add)
	return cfg
}
