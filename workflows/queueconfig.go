package workflows

import (
	"errors"
	"fmt"
	"time"
)

// QueueConfig is an SQS (or SNS-via-SQS) queue connector's resolved
// configuration, as `starter apply` produces it from a spec. It holds no
// secrets: AWS credentials come from the worker's standard chain.
type QueueConfig struct {
	Name string
	// Kind is sqs or sns.
	Kind string
	// Queue is the queue's name or URL (for sns: the managed queue's name).
	Queue            string
	Region, Endpoint string
	// VisibilityTimeout is asked for on receive and kept up while the
	// task runs (extended by heartbeat-driven calls).
	VisibilityTimeout time.Duration
	// MaxMessages and MaxWait bound one batch (receives of up to 10 each).
	MaxMessages int
	MaxWait     time.Duration
	// Concurrency is how many batches run at once (FIFO queues keep
	// per-group order: SQS hands out a group only when none of its
	// messages is in flight).
	Concurrency int
	// TaskConfig is what runs per batch (fields promoted). Retry does not
	// apply: a failed batch's messages reappear and the queue's redrive
	// policy counts receives.
	TaskConfig
	// SNS, for kind sns, is the topic the managed queue subscribes to.
	SNS *SNSSubscription `json:",omitempty"`
}

// SNSSubscription is the managed subscription of an sns connector.
type SNSSubscription struct {
	TopicARN string
	// RawDelivery asks SNS to deliver the bare message (no envelope).
	RawDelivery bool
	// FilterPolicy is an SNS filter policy (JSON), optional.
	FilterPolicy string `json:",omitempty"`
	// Envelope hands the task SNS's JSON envelope instead of the message.
	Envelope bool `json:",omitempty"`
}

// Queue connector kinds and limits.
const (
	KindSQS = "sqs"
	KindSNS = "sns"
	// MaxQueueMessages bounds one batch. Receipt handles (up to about
	// 1 KiB each on AWS) travel through the batch's activity payloads, so
	// 2,000 keeps each payload well under Temporal's 2 MiB blob limit; an
	// inline batch is cut by bytes (512 KiB) before that anyway.
	MaxQueueMessages = 2000
	// MaxQueueConcurrency bounds batches in flight per connector.
	MaxQueueConcurrency = 64
)

// Validate checks what a running connector relies on; internal/spec's
// validation is a superset, with YAML paths.
func (c QueueConfig) Validate() error {
	var errs []error
	if c.Name == "" || c.Queue == "" {
		errs = append(errs, errors.New("name and the queue are required"))
	}
	if c.Kind != KindSQS && c.Kind != KindSNS {
		errs = append(errs, fmt.Errorf("kind: %q is not sqs or sns", c.Kind))
	}
	if c.Kind == KindSNS && (c.SNS == nil || c.SNS.TopicARN == "") {
		errs = append(errs, errors.New("source.sns.topic_arn: required"))
	}
	if c.MaxMessages < 1 || c.MaxMessages > MaxQueueMessages || c.MaxWait <= 0 {
		errs = append(errs, fmt.Errorf("batch: max_messages must be 1 to %d and max_wait positive", MaxQueueMessages))
	}
	if c.VisibilityTimeout < time.Second || c.VisibilityTimeout > 12*time.Hour {
		errs = append(errs, errors.New("visibility_timeout: use 1s to 12h"))
	}
	if c.Concurrency < 1 || c.Concurrency > MaxQueueConcurrency {
		errs = append(errs, fmt.Errorf("batch.concurrency: use 1 to %d", MaxQueueConcurrency))
	}
	if c.Template == "" {
		errs = append(errs, errors.New("task.template: required"))
	}
	return errors.Join(errs...)
}
