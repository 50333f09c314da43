package spec

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// Kinds of connector.
const (
	KindCron    = workflows.KindCron
	KindKafka   = workflows.KindKafka
	KindSQS     = workflows.KindSQS
	KindSNS     = workflows.KindSNS
	KindKinesis = workflows.KindKinesis
	KindNATS    = workflows.KindNATS
	KindPubSub  = workflows.KindPubSub
	// KindStream stands for every source stream kind (nats, and kinds
	// from other modules) in KindFields: they take the same fields.
	KindStream = "stream"
	// KindQueue stands for every source queue kind (pubsub, and kinds
	// from other modules) in KindFields.
	KindQueue = "queue"
)

// Overlap policies of a cron connector.
const (
	// OverlapSkip drops ticks that come due while one runs.
	OverlapSkip = workflows.OverlapSkip
	// OverlapBufferOne runs one more tick right after, if any came due.
	OverlapBufferOne = workflows.OverlapBufferOne
)

// Input deliveries.
const (
	// DeliveryPresigned hands tasks capability URLs from the worker's input
	// gateway (which redirects to presigned S3 URLs).
	DeliveryPresigned = "presigned"
	// DeliveryS3 hands tasks Bacalhau s3 input sources; compute nodes need
	// their own credentials.
	DeliveryS3 = "s3"
)

// Spec is a connector spec as written in YAML.
type Spec struct {
	// Name identifies the connector (workflow IDs derive from it):
	// lowercase letters, digits and '-', at most 63.
	Name string `yaml:"name"`
	// Kind is the connector kind: cron, kafka, sqs, sns, kinesis, or a
	// source stream kind (nats, or one a worker was built with).
	Kind string `yaml:"kind"`
	// Schedule is a 5-field cron expression or a descriptor such as
	// "@every 5m" or "@hourly". Cron connectors only.
	Schedule string `yaml:"schedule"`
	// Timezone is an IANA zone for Schedule. Default UTC.
	Timezone string `yaml:"timezone"`
	// Source says what to read.
	Source Source `yaml:"source"`
	// Batch bounds each task's input.
	Batch Batch `yaml:"batch"`
	// Task is what runs for each batch.
	Task Task `yaml:"task"`
	// Retry is how often a failed batch's task runs again.
	Retry Retry `yaml:"retry"`
	// Overlap: skip (default) or buffer_one.
	Overlap string `yaml:"overlap"`
	// CatchupWindow: after downtime, a missed tick younger than this runs at
	// once; older ones are skipped. Default 1h; 0s never catches up.
	CatchupWindow *Duration `yaml:"catchup_window"`
	// DeadLetter records batches that failed every attempt. Optional: without
	// it a failing batch stops the connector's cursor until it succeeds.
	// Cron connectors only; streams use on_failure.
	DeadLetter *DeadLetter `yaml:"dead_letter"`

	// Mode of a stream connector: inline (default) or staged.
	Mode string `yaml:"mode"`
	// Staging is where staged batches are written.
	Staging *DeadLetter `yaml:"staging"`
	// OnFailure says what a stream connector does with a batch that fails
	// every attempt.
	OnFailure *OnFailure `yaml:"on_failure"`

	// streamSections are the source sections of source stream and queue kinds, by
	// kind name, as written (each kind decodes its own).
	streamSections map[string]*yaml.Node
}

// OnFailure is a stream connector's failure policy.
type OnFailure struct {
	// Bisect splits a failing batch to isolate the failing records. Default true.
	Bisect *bool `yaml:"bisect"`
	// DeadLetter receives the records that still fail.
	DeadLetter *StreamDeadLetter `yaml:"dead_letter"`
}

// StreamDeadLetter is a Kafka topic or an S3 prefix.
type StreamDeadLetter struct {
	Kafka *struct {
		Topic string `yaml:"topic"`
	} `yaml:"kafka"`
	S3 *DeadLetterS3 `yaml:"s3"`
}

// KafkaSource is a topic to consume, one durable consumer per partition.
type KafkaSource struct {
	Brokers []string `yaml:"brokers"`
	Topic   string   `yaml:"topic"`
	// Group mirrors checkpoints as committed offsets. Default
	// bacalhau-connect-<name>.
	Group string `yaml:"group"`
	// Start: earliest (default), latest, timestamp or offsets.
	Start        string          `yaml:"start"`
	StartTime    *time.Time      `yaml:"start_time"`
	StartOffsets map[int32]int64 `yaml:"start_offsets"`
	// OnOffsetOutOfRange: earliest (default) or fail, when retention deleted
	// the checkpoint's offset.
	OnOffsetOutOfRange string `yaml:"on_offset_out_of_range"`
	TLS                *struct {
		CAFile   string `yaml:"ca_file"`
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	} `yaml:"tls"`
	// SASL credentials by reference: names of environment variables the
	// worker reads. A password in the spec is an unknown field.
	SASL *struct {
		Mechanism   string `yaml:"mechanism"`
		UsernameEnv string `yaml:"username_env"`
		PasswordEnv string `yaml:"password_env"`
	} `yaml:"sasl"`
}

// Source is the connector's input.
type Source struct {
	S3    *S3Source    `yaml:"s3"`
	Kafka *KafkaSource `yaml:"kafka"`
	SQS   *SQSSource   `yaml:"sqs"`
	SNS   *SNSSource   `yaml:"sns"`
	// Kinesis is a stream to consume, one durable consumer per shard.
	Kinesis *KinesisSource `yaml:"kinesis"`
}

// KinesisSource is a Kinesis stream: one durable consumer per shard,
// following split/merge lineage.
type KinesisSource struct {
	// Stream is the stream's name or ARN.
	Stream   string `yaml:"stream"`
	Region   string `yaml:"region"`
	Endpoint string `yaml:"endpoint"`
	// Start: trim_horizon (default), latest or at_timestamp (StartTime).
	Start     string     `yaml:"start"`
	StartTime *time.Time `yaml:"start_time"`
}

// SQSSource is a queue to poll.
type SQSSource struct {
	// Queue is the queue's name or URL.
	Queue    string `yaml:"queue"`
	Region   string `yaml:"region"`
	Endpoint string `yaml:"endpoint"`
	// VisibilityTimeout asked for on receive, kept up while the task runs.
	// Default 30s.
	VisibilityTimeout *Duration `yaml:"visibility_timeout"`
}

// SNSSource is a topic, read through an SQS queue the connector subscribes
// to it (created, or adopted when it exists; never deleted).
type SNSSource struct {
	TopicARN string `yaml:"topic_arn"`
	// Queue names the managed queue. Default connect-<name>.
	Queue    string `yaml:"queue"`
	Region   string `yaml:"region"`
	Endpoint string `yaml:"endpoint"`
	// RawDelivery (default true) delivers bare messages, no SNS envelope.
	RawDelivery *bool `yaml:"raw_delivery"`
	// FilterPolicy is an SNS filter policy as JSON, optional.
	FilterPolicy string `yaml:"filter_policy"`
	// Envelope hands the task SNS's JSON envelope rather than the message
	// (only meaningful with raw_delivery: false).
	Envelope bool `yaml:"envelope"`
	// VisibilityTimeout as for sqs. Default 30s.
	VisibilityTimeout *Duration `yaml:"visibility_timeout"`
}

// S3Source scans objects under a prefix.
type S3Source struct {
	Bucket   string `yaml:"bucket"`
	Prefix   string `yaml:"prefix"`
	Region   string `yaml:"region"`
	Endpoint string `yaml:"endpoint"`
	// StartAfter skips keys up to and including this one at first start.
	StartAfter string `yaml:"start_after"`
	// StartTime skips objects last modified before this time at first start.
	StartTime *time.Time `yaml:"start_time"`
	// Lookback is how late an object may arrive (by LastModified, behind
	// the newest one processed) and still be found if its key sorts before
	// the cursor. Default 1h.
	Lookback *Duration `yaml:"lookback"`
}

// Batch bounds one task's input. A field left out takes its default; a
// value written must be in its range (an explicit 0 is refused, not read as
// the default).
type Batch struct {
	// MaxObjects per task. Default 100, at most 1000.
	MaxObjects *int `yaml:"max_objects"`
	// MaxFolderEntries bounds the entries (objects and subfolders) of any
	// one folder of a task's /inputs: a batch is cut before a folder would
	// pass it. Default 256 for WASM tasks (Bacalhau v1.7's WASM executor
	// lists larger folders of inputs wrongly), no bound for other engines;
	// 1 to 1000. Cron connectors only.
	MaxFolderEntries *int `yaml:"max_folder_entries"`
	// MaxBytes per task ("64MiB", "1GB" or a number of bytes). Default 256MiB.
	// An object larger than this runs alone.
	MaxBytes *ByteSize `yaml:"max_bytes"`
	// Concurrency is how many batches of one tick run at once. Default 4,
	// at most 32; the shared budget still caps jobs in flight overall.
	// Cron connectors only.
	Concurrency *int `yaml:"concurrency"`
	// MaxRecords per task of a stream connector. Default 1000.
	MaxRecords *int `yaml:"max_records"`
	// MaxInFlight is how many batches of one Kafka partition run at once.
	// Default 2, at most 16; 1 runs a partition's batches one after another.
	MaxInFlight *int `yaml:"max_in_flight"`
	// MaxWait is how long a stream batch waits to fill up. Default 5s.
	MaxWait *Duration `yaml:"max_wait"`
	// MaxMessages per task of a queue connector (received 10 at a time).
	// Default 10, at most 2000 (workflows.MaxQueueMessages).
	MaxMessages *int `yaml:"max_messages"`
}

// Task is what runs for each batch.
type Task struct {
	// Template is the path of a Bacalhau job YAML, relative to the spec file.
	Template string `yaml:"template"`
	// Vars fill the template's {{.NAME}} placeholders.
	Vars map[string]string `yaml:"vars"`
	// Input is how tasks receive the batch's objects.
	Input TaskInput `yaml:"input"`
	// QueueTimeout bounds waiting for a node. Default: template's, else 10m.
	QueueTimeout *Duration `yaml:"queue_timeout"`
	// ExecutionTimeout bounds the task's run. Default: template's, else 5m.
	ExecutionTimeout *Duration `yaml:"execution_timeout"`
}

// TaskInput is how a task receives its objects.
type TaskInput struct {
	// Delivery: presigned (default) or s3.
	Delivery string `yaml:"delivery"`
	// URLTTL is how long presigned capability URLs live. Default: queue +
	// execution timeout + 10m.
	URLTTL *Duration `yaml:"url_ttl"`
}

// Retry is a task retry policy.
type Retry struct {
	// MaxAttempts per batch. Default 3.
	MaxAttempts *int `yaml:"max_attempts"`
	// InitialInterval before the second attempt. Default 5s.
	InitialInterval *Duration `yaml:"initial_interval"`
	// MaxInterval caps the backoff. Default 5m.
	MaxInterval *Duration `yaml:"max_interval"`
	// MaxRecordAge (stream connectors): a failing batch whose oldest record
	// is older than this stops retrying and goes to bisection and the dead
	// letter at once. Default: no limit.
	MaxRecordAge *Duration `yaml:"max_record_age"`
}

// DeadLetter is where failed batches are recorded.
type DeadLetter struct {
	S3 *DeadLetterS3 `yaml:"s3"`
}

// DeadLetterS3 writes one JSON manifest per failed batch under Prefix.
type DeadLetterS3 struct {
	Bucket   string `yaml:"bucket"`
	Prefix   string `yaml:"prefix"`
	Region   string `yaml:"region"`
	Endpoint string `yaml:"endpoint"`
}

// Duration is a time.Duration written as "90s", "5m", "1h30m".
type Duration struct{ time.Duration }

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as 30s, 5m or 1h", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s, 5m or 1h", n.Line, s)
	}
	d.Duration = v
	return nil
}

// ByteSize is a size written as 1048576, "64KiB", "256MiB", "1GB".
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1},
}

// ParseByteSize reads a size such as "64MiB".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil {
				return 0, fmt.Errorf("%q is not a size such as 64MiB", s)
			}
			return ByteSize(n * float64(u.mult)), nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size such as 64MiB or a number of bytes", s)
	}
	return ByteSize(n), nil
}

// UnmarshalYAML reads a number of bytes or a size with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a size such as 64MiB", n.Line)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*b = v
	return nil
}
