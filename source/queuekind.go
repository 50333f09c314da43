package source

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// QueueKind is a connector kind whose source is a Queue, registered the
// way a StreamKind is (sdk.RunWorker, sdk.RunStarter). The spec of such a
// connector is
//
//	name: my-connector
//	kind: <Name>
//	source:
//	  <Name>: {…}        # decoded into NewConfig(), checked by its Check
//	batch: …             # max_messages, max_wait, concurrency
//	task: …
//
// and everything but the source section is the engine's, as for the
// built-in queue kinds. There is no retry section: a failed batch's
// messages are released, and the queue's own dead-letter policy counts
// their deliveries.
type QueueKind struct {
	// Name is the spec's kind and the key of its source section:
	// lowercase letters and digits, starting with a letter.
	Name string
	// NewConfig returns an empty configuration to decode the source
	// section into: a pointer to a struct whose fields have yaml tags.
	// It travels to the worker as JSON, as a StreamKind's does, and
	// holds no secrets.
	NewConfig func() QueueConfig
	// Open opens the queue from the configuration's JSON, in the worker.
	Open QueueOpener
	// ConnectorType and IDPrefix override the connector's workflow type
	// name and workflow ID prefix; leave them empty for
	// <Name>-connector and <Name>-.
	ConnectorType, IDPrefix string
}

// QueueOpener opens a queue source from its kind's configuration (JSON).
type QueueOpener func(ctx context.Context, config json.RawMessage) (Queue, error)

// QueueConfig is a queue kind's decoded source section.
type QueueConfig interface {
	// Check checks the configuration after decoding, as
	// StreamConfig.Check does.
	Check() []Problem
	// Describe says what the connector reads, for status and messages
	// ("subscription orders of project shop").
	Describe() string
	// Lease is how long a received message stays leased to the engine
	// between two extensions (an ack deadline, a visibility timeout); the
	// engine extends it every third of that while the message's task runs.
	Lease() time.Duration
}

// Check checks that the kind is complete.
func (k QueueKind) Check() error {
	switch {
	case !kindNameRE.MatchString(k.Name):
		return fmt.Errorf("source kind %q: a name is 1-31 lowercase letters and digits, starting with a letter", k.Name)
	case k.NewConfig == nil || k.Open == nil:
		return fmt.Errorf("source kind %s: NewConfig and Open are required", k.Name)
	}
	return nil
}

// Types are the kind's workflow type name and ID prefix, defaults filled
// in.
func (k QueueKind) Types() (connector, idPrefix string) {
	connector, idPrefix = k.ConnectorType, k.IDPrefix
	if connector == "" {
		connector = k.Name + "-connector"
	}
	if idPrefix == "" {
		idPrefix = k.Name + "-"
	}
	return connector, idPrefix
}

// Kind is a connector kind a module adds: a StreamKind or a QueueKind.
type Kind interface {
	// KindName is the spec's kind.
	KindName() string
}

// KindName is the spec's kind.
func (k StreamKind) KindName() string { return k.Name }

// KindName is the spec's kind.
func (k QueueKind) KindName() string { return k.Name }
