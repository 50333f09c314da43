package workflows

import (
	"errors"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// KinesisConfig is a Kinesis stream connector's resolved configuration, as
// `starter apply` produces it from a spec. It holds no secrets: AWS
// credentials come from the worker's standard chain.
type KinesisConfig struct {
	Name string
	// Stream is the stream's name; StreamARN its ARN when the spec gave one.
	Stream    string
	StreamARN string `json:",omitempty"`
	Region    string `json:",omitempty"`
	Endpoint  string `json:",omitempty"`
	// Start is trim_horizon, latest or at_timestamp (StartTime): where a
	// shard's reading begins before its first checkpoint. latest means the
	// connector's first start time, fixed in its history.
	Start     string
	StartTime time.Time `json:",omitempty"`
	// StreamBatching: batch limits, mode, staging, failure policy (fields
	// promoted, also in JSON).
	StreamBatching
	// TaskConfig is what runs per batch (fields promoted).
	TaskConfig
}

// Kinesis start positions.
const (
	KinesisTrimHorizon = "trim_horizon"
	KinesisLatest      = "latest"
	KinesisAtTimestamp = "at_timestamp"
)

func (c KinesisConfig) streamRef() activities.KinesisStreamRef {
	return activities.KinesisStreamRef{Stream: c.Stream, StreamARN: c.StreamARN, Region: c.Region, Endpoint: c.Endpoint}
}

// streamName names the stream in IDs and messages.
func (c KinesisConfig) streamName() string {
	if c.Stream != "" {
		return c.Stream
	}
	return c.StreamARN
}

// startPosition is where a shard without a checkpoint starts; startedAt is
// the connector's first start (for latest).
func (c KinesisConfig) startPosition(startedAt time.Time) activities.ShardPosition {
	switch c.Start {
	case KinesisLatest:
		return activities.ShardPosition{Start: activities.ShardStartAtTimestamp, StartTime: startedAt}
	case KinesisAtTimestamp:
		return activities.ShardPosition{Start: activities.ShardStartAtTimestamp, StartTime: c.StartTime}
	default:
		return activities.ShardPosition{Start: activities.ShardStartTrimHorizon}
	}
}

func (c KinesisConfig) streamJob(attempt int) activities.StreamJob {
	return c.StreamBatching.streamJob(c.Name, c.TaskConfig, attempt)
}

// Validate checks what a running connector relies on; internal/spec's
// validation is a superset, with YAML paths.
func (c KinesisConfig) Validate() error {
	var errs []error
	if c.Name == "" || (c.Stream == "" && c.StreamARN == "") {
		errs = append(errs, errors.New("name and source.kinesis.stream are required"))
	}
	switch c.Start {
	case KinesisTrimHorizon, KinesisLatest:
	case KinesisAtTimestamp:
		if c.StartTime.IsZero() {
			errs = append(errs, errors.New("source.kinesis.start_time: required with start at_timestamp"))
		}
	default:
		errs = append(errs, errors.New("source.kinesis.start: use trim_horizon, latest or at_timestamp"))
	}
	errs = append(errs, c.StreamBatching.validate())
	if c.Template == "" {
		errs = append(errs, errors.New("task.template: required"))
	}
	return errors.Join(errs...)
}
