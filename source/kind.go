package source

import (
	"fmt"
	"regexp"
)

// StreamKind is a connector kind whose source is a Stream: what a module
// outside this repository hands to sdk.RunWorker and sdk.RunStarter to add
// a kind. The spec of such a connector is
//
//	name: my-connector
//	kind: <Name>
//	source:
//	  <Name>: {…}        # decoded into NewConfig(), checked by its Check
//	batch: …             # max_records, max_bytes, max_wait
//	mode: inline         # or staged (staging: …)
//	task: …
//	retry: …
//	on_failure: …        # bisect, dead_letter: {s3: …}
//
// and everything but the source section is the engine's, as for the
// built-in stream kinds.
type StreamKind struct {
	// Name is the spec's kind and the key of its source section:
	// lowercase letters and digits, starting with a letter.
	Name string
	// Units names the kind's units in status, plural: "subjects",
	// "files".
	Units string
	// NewConfig returns an empty configuration to decode the source
	// section into: a pointer to a struct whose fields have yaml tags.
	// Unknown fields and values of the wrong type are refused with their
	// path (source.<name>.<field>) before Check runs. The configuration
	// travels to the worker as JSON (encoding/json, in the connector's
	// workflow input and history): it must survive that, and hold no
	// secrets — name where the worker finds them instead.
	NewConfig func() StreamConfig
	// Open opens the source from the configuration's JSON, in the worker.
	Open StreamOpener
	// ConnectorType, ConsumerType and IDPrefix override the workflow type
	// names and the connectors' workflow ID prefix; leave them empty for
	// <Name>-connector, <Name>-consumer and <Name>-.
	ConnectorType, ConsumerType, IDPrefix string
}

// StreamConfig is a stream kind's decoded source section.
type StreamConfig interface {
	// Check checks the configuration after decoding: each problem names
	// a field of the section (Field "dir" for source.<name>.dir; "" for the
	// section) and says what to write instead.
	Check() []Problem
	// Describe says what the connector reads, for status and messages
	// ("files *.log in /var/log/app").
	Describe() string
	// StartAt is where a unit without a checkpoint starts. Latest means
	// the records stored after the connector first started, in every
	// unit, found then or later.
	StartAt() StartAt
}

// Problem is one thing wrong with a source section.
type Problem struct {
	// Field is the field's path inside the section ("" for the section).
	Field string
	// Message says what is wrong and what to write instead.
	Message string
}

var kindNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,30}$`)

// Check checks that the kind is complete.
func (k StreamKind) Check() error {
	switch {
	case !kindNameRE.MatchString(k.Name):
		return fmt.Errorf("source kind %q: a name is 1-31 lowercase letters and digits, starting with a letter", k.Name)
	case k.NewConfig == nil || k.Open == nil:
		return fmt.Errorf("source kind %s: NewConfig and Open are required", k.Name)
	case k.Units == "":
		return fmt.Errorf("source kind %s: Units (what its units are called, such as files) is required", k.Name)
	}
	return nil
}

// Types are the kind's workflow type names and ID prefix, defaults
// filled in.
func (k StreamKind) Types() (connector, consumer, idPrefix string) {
	connector, consumer, idPrefix = k.ConnectorType, k.ConsumerType, k.IDPrefix
	if connector == "" {
		connector = k.Name + "-connector"
	}
	if consumer == "" {
		consumer = k.Name + "-consumer"
	}
	if idPrefix == "" {
		idPrefix = k.Name + "-"
	}
	return connector, consumer, idPrefix
}
