package workflows

import (
	"errors"
	"fmt"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// KafkaConfig is a Kafka stream connector's resolved configuration, as
// `starter apply` produces it from a spec (internal/spec). It holds no
// secrets: TLS files are paths and SASL credentials are names of
// environment variables the worker reads.
type KafkaConfig struct {
	Name    string
	Brokers []string
	Topic   string
	// Group mirrors checkpoints as committed offsets so Kafka tooling shows lag.
	Group string
	// Start is earliest, latest, timestamp or offsets.
	Start        string
	StartTime    time.Time       `json:",omitempty"`
	StartOffsets map[int32]int64 `json:",omitempty"`
	// OnOffsetOutOfRange is earliest or fail.
	OnOffsetOutOfRange string
	TLS                *KafkaTLS  `json:",omitempty"`
	SASL               *KafkaSASL `json:",omitempty"`
	// StreamBatching: batch limits, mode, staging, failure policy (fields
	// promoted, also in JSON).
	StreamBatching
	// TaskConfig is what runs per batch (fields promoted).
	TaskConfig
	// DeadLetterTopic (or StreamBatching.DeadLetterS3) receives records
	// that fail every attempt.
	DeadLetterTopic string `json:",omitempty"`
	// MaxInFlight bounds the batches of one partition in flight at once
	// (each with its own lease from the budget); checkpoints still move
	// strictly in offset order. 0 (configs from before the field) runs one.
	MaxInFlight int `json:",omitempty"`
}

// MaxMaxInFlight bounds KafkaConfig.MaxInFlight.
const MaxMaxInFlight = 16

// KafkaTLS names the files of a TLS connection.
type KafkaTLS = activities.KafkaTLS

// KafkaSASL names a mechanism and the environment variables holding the
// credentials: the worker reads them; they never enter a workflow.
type KafkaSASL = activities.KafkaSASL

// cluster is how activities reach the connector's brokers.
func (c KafkaConfig) cluster() activities.KafkaCluster {
	return activities.KafkaCluster{Brokers: c.Brokers, TLS: c.TLS, SASL: c.SASL}
}

func (c KafkaConfig) topicRef() activities.TopicRef {
	return activities.TopicRef{KafkaCluster: c.cluster(), Topic: c.Topic}
}

// hasDeadLetter tells whether records that fail every attempt have
// somewhere to go.
func (c KafkaConfig) hasDeadLetter() bool { return c.DeadLetterTopic != "" || c.DeadLetterS3 != nil }

// Kafka start positions.
const (
	StartEarliest  = "earliest"
	StartLatest    = "latest"
	StartTimestamp = "timestamp"
	StartOffsets   = "offsets"
	// StartKey is a cron connector's reset to a start-after S3 key.
	StartKey = "key"
)

// Validate checks what a running connector relies on; internal/spec's
// validation is a superset, with YAML paths.
func (c KafkaConfig) Validate() error {
	var errs []error
	if c.Name == "" || c.Topic == "" || len(c.Brokers) == 0 {
		errs = append(errs, errors.New("name, source.kafka.topic and source.kafka.brokers are required"))
	}
	errs = append(errs, c.StreamBatching.validate())
	if c.Template == "" {
		errs = append(errs, errors.New("task.template: required"))
	}
	if c.MaxInFlight < 0 || c.MaxInFlight > MaxMaxInFlight {
		errs = append(errs, fmt.Errorf("batch.max_in_flight: %d: use 1 to %d", c.MaxInFlight, MaxMaxInFlight))
	}
	return errors.Join(errs...)
}

func (c KafkaConfig) streamJob(attempt int) activities.StreamJob {
	return c.StreamBatching.streamJob(c.Name, c.TaskConfig, attempt)
}
