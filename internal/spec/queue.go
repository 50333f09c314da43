package spec

import (
	"encoding/json"
	"regexp"
	"strings"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// Defaults of a queue (sqs, sns) connector.
const (
	DefaultMaxMessages       = 10
	DefaultQueueMaxWait      = 5 * time.Second
	DefaultVisibilityTimeout = 30 * time.Second
	DefaultQueueConcurrency  = 1
)

var (
	queueNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,80}(\.fifo)?$`)
	topicARNRE  = regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[a-zA-Z0-9_-]{1,256}(\.fifo)?$`)
)

// resolveQueue checks and resolves an sqs or sns connector's fields.
func (s *Spec) resolveQueue(dir string, add addFunc) *workflows.QueueConfig {
	cfg := &workflows.QueueConfig{Name: s.Name, Kind: s.Kind}
	var visibility *Duration
	switch s.Kind {
	case KindSQS:
		src := s.Source.SQS
		if src == nil {
			add("source.sqs", "required: the queue to poll (name or URL)")
			src = &SQSSource{}
		}
		switch {
		case src.Queue == "":
			add("source.sqs.queue", "required: a queue name such as orders or its URL")
		case strings.HasPrefix(src.Queue, "http://") || strings.HasPrefix(src.Queue, "https://"):
			checkEndpoint(add, "source.sqs.queue", src.Queue)
		case !queueNameRE.MatchString(src.Queue):
			add("source.sqs.queue", "%q is not a queue name (1-80 letters, digits, '-', '_', optional .fifo) or URL", src.Queue)
		}
		checkEndpoint(add, "source.sqs.endpoint", src.Endpoint)
		cfg.Queue, cfg.Region, cfg.Endpoint, visibility = src.Queue, src.Region, src.Endpoint, src.VisibilityTimeout
	case KindSNS:
		src := s.Source.SNS
		if src == nil {
			add("source.sns", "required: topic_arn, and optionally the managed queue's name")
			src = &SNSSource{}
		}
		if !topicARNRE.MatchString(src.TopicARN) {
			add("source.sns.topic_arn", "%q: use a topic ARN such as arn:aws:sns:us-east-1:123456789012:events", src.TopicARN)
		}
		queue := src.Queue
		if queue == "" {
			queue = "connect-" + s.Name
			if strings.HasSuffix(src.TopicARN, ".fifo") {
				queue += ".fifo"
			}
		}
		if !queueNameRE.MatchString(queue) {
			add("source.sns.queue", "%q is not a queue name (1-80 letters, digits, '-', '_', optional .fifo)", queue)
		}
		if src.FilterPolicy != "" && !json.Valid([]byte(src.FilterPolicy)) {
			add("source.sns.filter_policy", "not valid JSON: write the policy as a JSON object, e.g. '{\"type\": [\"order\"]}'")
		}
		raw := src.RawDelivery == nil || *src.RawDelivery
		if src.Envelope && raw {
			add("source.sns.envelope", "needs raw_delivery: false (raw delivery has no envelope)")
		}
		checkEndpoint(add, "source.sns.endpoint", src.Endpoint)
		cfg.Queue, cfg.Region, cfg.Endpoint, visibility = queue, src.Region, src.Endpoint, src.VisibilityTimeout
		cfg.SNS = &workflows.SNSSubscription{TopicARN: src.TopicARN, RawDelivery: raw, FilterPolicy: src.FilterPolicy, Envelope: src.Envelope}
	}
	cfg.VisibilityTimeout = dur(visibility, DefaultVisibilityTimeout)
	if cfg.VisibilityTimeout < time.Second || cfg.VisibilityTimeout > 12*time.Hour {
		add("source."+s.Kind+".visibility_timeout", "%s: use 1s to 12h (SQS's limits)", cfg.VisibilityTimeout)
	}
	cfg.MaxMessages = intInRange(add, "batch.max_messages", s.Batch.MaxMessages, DefaultMaxMessages, 1, workflows.MaxQueueMessages)
	cfg.MaxWait = dur(s.Batch.MaxWait, DefaultQueueMaxWait)
	if cfg.MaxWait <= 0 {
		add("batch.max_wait", "%s: use a positive duration such as 5s", cfg.MaxWait)
	}
	cfg.Concurrency = intInRange(add, "batch.concurrency", s.Batch.Concurrency, DefaultQueueConcurrency, 1, workflows.MaxQueueConcurrency)
	if r := s.Retry; r.MaxAttempts != nil || r.InitialInterval != nil || r.MaxInterval != nil {
		add("retry", "queue connectors do not retry tasks themselves: a failed batch's messages reappear and the queue's redrive policy (maxReceiveCount) moves poison messages to its DLQ; remove retry")
	}
	cfg.TaskConfig = s.resolveTask(dir, add)
	return cfg
}
