package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// SourceKind names the workflows of a stream kind written against the
// public source.Stream interface (NATS JetStream, kinds from outside this
// repository). Every such kind runs the same two workflow functions,
// SourceStreamConnector and SourceStreamConsumer, registered under its own
// type names so the Temporal UI, the CLI and visibility queries tell the
// kinds apart.
type SourceKind struct {
	// Kind is the spec's `kind:` value, the metrics tag and job label.
	Kind string
	// ConnectorType and ConsumerType are the registered workflow types.
	ConnectorType, ConsumerType string
	// IDPrefix + connector name is the connector's workflow ID.
	IDPrefix string
}

// WorkflowID is the workflow ID of the connector called name.
func (k SourceKind) WorkflowID(name string) string { return k.IDPrefix + name }

// UnitWorkflowID is the ID of the consumer of one unit: Temporal then
// guarantees one running consumer per unit.
func (k SourceKind) UnitWorkflowID(name, unit string) string {
	return k.WorkflowID(name) + "-" + unit
}

// SourceStreamConfig is a source stream connector's resolved
// configuration, as `starter apply` produces it from a spec. It holds no
// secrets.
type SourceStreamConfig struct {
	Name string
	// SourceKind names the kind's workflows (fields promoted).
	SourceKind
	// Source is the kind's own configuration, decoded and checked from the
	// spec's source section; the worker opens the source from it.
	Source json.RawMessage
	// Describe says what the connector reads, for status and messages
	// ("stream ORDERS at nats://…").
	Describe string `json:",omitempty"`
	// Start is earliest, latest or timestamp (StartTime): where a unit's
	// reading begins before its first checkpoint. latest means the records
	// stored after the connector first started (a unit found later starts
	// there too).
	Start     string
	StartTime time.Time `json:",omitzero"`
	// StreamBatching: batch limits, mode, staging, failure policy (fields
	// promoted, also in JSON).
	StreamBatching
	// TaskConfig is what runs per batch (fields promoted).
	TaskConfig
}

func (c SourceStreamConfig) ref() activities.SourceRef {
	return activities.SourceRef{Kind: c.Kind, Config: c.Source}
}

func (c SourceStreamConfig) streamJob(attempt int) activities.StreamJob {
	return c.StreamBatching.streamJob(c.Name, c.TaskConfig, attempt)
}

// Validate checks what a running connector relies on; the kind's spec
// validation is a superset, with YAML paths.
func (c SourceStreamConfig) Validate() error {
	var errs []error
	if c.Name == "" || c.Kind == "" || c.ConnectorType == "" || c.ConsumerType == "" || c.IDPrefix == "" {
		errs = append(errs, errors.New("name and the source kind's names are required"))
	}
	if len(c.Source) == 0 || !json.Valid(c.Source) {
		errs = append(errs, fmt.Errorf("source.%s: required", c.Kind))
	}
	switch c.Start {
	case StartEarliest, StartLatest:
	case StartTimestamp:
		if c.StartTime.IsZero() {
			errs = append(errs, fmt.Errorf("source.%s.start_time: required with start timestamp", c.Kind))
		}
	default:
		errs = append(errs, fmt.Errorf("source.%s.start: use earliest, latest or timestamp", c.Kind))
	}
	errs = append(errs, c.StreamBatching.validate())
	if c.Template == "" {
		errs = append(errs, errors.New("task.template: required"))
	}
	return errors.Join(errs...)
}
