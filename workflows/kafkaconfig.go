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
	// MaxRecords, MaxBytes and MaxWait bound one batch.
	MaxRecords int
	MaxBytes   int64
	MaxWait    time.Duration
	// Mode is inline (records travel in the job) or staged (written to
	// Staging first; the task reads the object through the gateway).
	Mode    string
	Staging *S3Location `json:",omitempty"`
	// TaskConfig is what runs per batch (fields promoted).
	TaskConfig
	// MaxRecordAge, when set, stops retrying a failing batch whose oldest
	// record is older: it goes to bisection and the dead letter at once.
	MaxRecordAge time.Duration `json:",omitempty"`
	// Bisect splits a failing batch to isolate the records that fail.
	Bisect bool
	// DeadLetterTopic or DeadLetterS3 receive records that fail every attempt.
	DeadLetterTopic string      `json:",omitempty"`
	DeadLetterS3    *S3Location `json:",omitempty"`
}

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

func s3Prefix(l *S3Location) *activities.S3Prefix {
	if l == nil {
		return nil
	}
	return &activities.S3Prefix{Bucket: l.Bucket, Prefix: l.Prefix, Region: l.Region, Endpoint: l.Endpoint}
}

// hasDeadLetter tells whether records that fail every attempt have
// somewhere to go.
func (c KafkaConfig) hasDeadLetter() bool { return c.DeadLetterTopic != "" || c.DeadLetterS3 != nil }

// Kafka start positions and modes.
const (
	StartEarliest  = "earliest"
	StartLatest    = "latest"
	StartTimestamp = "timestamp"
	StartOffsets   = "offsets"
	ModeInline     = "inline"
	ModeStaged     = "staged"
)

// MaxInlineBatchBytes bounds an inline batch: its records travel inside the
// job, which must stay well under Bacalhau's 1 MiB NATS limit once
// base64-encoded (tasktemplate.MaxJobBytes is 768 KiB).
const MaxInlineBatchBytes = 512 << 10

// Validate checks what a running connector relies on; internal/spec's
// validation is a superset, with YAML paths.
func (c KafkaConfig) Validate() error {
	var errs []error
	if c.Name == "" || c.Topic == "" || len(c.Brokers) == 0 {
		errs = append(errs, errors.New("name, source.kafka.topic and source.kafka.brokers are required"))
	}
	if c.MaxRecords < 1 || c.MaxBytes < 1 || c.MaxWait <= 0 {
		errs = append(errs, errors.New("batch: max_records, max_bytes and max_wait must be positive"))
	}
	switch c.Mode {
	case ModeInline:
		if c.MaxBytes > MaxInlineBatchBytes {
			errs = append(errs, fmt.Errorf("batch.max_bytes: %d is over the inline limit %d; use mode: staged", c.MaxBytes, MaxInlineBatchBytes))
		}
	case ModeStaged:
		if c.Staging == nil || c.Staging.Bucket == "" {
			errs = append(errs, errors.New("staging.s3.bucket: required for mode staged"))
		}
	default:
		errs = append(errs, fmt.Errorf("mode: unknown %q", c.Mode))
	}
	if c.Template == "" {
		errs = append(errs, errors.New("task.template: required"))
	}
	return errors.Join(errs...)
}
