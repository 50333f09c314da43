package spec

import (
	"regexp"
	"strings"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

var (
	streamNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)
	streamARNRE  = regexp.MustCompile(`^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/[a-zA-Z0-9_.-]{1,128}$`)
)

// resolveKinesis checks and resolves a Kinesis connector's fields; batch,
// mode, staging, max_record_age and on_failure are the Kafka connector's.
func (s *Spec) resolveKinesis(dir string, add addFunc) *workflows.KinesisConfig {
	cfg := &workflows.KinesisConfig{Name: s.Name}
	src := s.Source.Kinesis
	if src == nil {
		add("source.kinesis", "required: the stream to consume")
		src = &KinesisSource{}
	}
	switch {
	case src.Stream == "":
		add("source.kinesis.stream", "required: a stream name such as web-events or its ARN")
	case strings.HasPrefix(src.Stream, "arn:"):
		if !streamARNRE.MatchString(src.Stream) {
			add("source.kinesis.stream", "%q is not a stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)", src.Stream)
		}
		cfg.StreamARN = src.Stream
		cfg.Stream = src.Stream[strings.LastIndex(src.Stream, "/")+1:]
	case !streamNameRE.MatchString(src.Stream):
		add("source.kinesis.stream", "%q is not a stream name (1-128 letters, digits, '_', '.', '-') or ARN", src.Stream)
	default:
		cfg.Stream = src.Stream
	}
	checkEndpoint(add, "source.kinesis.endpoint", src.Endpoint)
	cfg.Region, cfg.Endpoint = src.Region, src.Endpoint
	cfg.Start = src.Start
	if cfg.Start == "" {
		cfg.Start = workflows.KinesisTrimHorizon
	}
	switch cfg.Start {
	case workflows.KinesisTrimHorizon, workflows.KinesisLatest:
		if src.StartTime != nil {
			add("source.kinesis.start_time", "only with start: at_timestamp")
		}
	case workflows.KinesisAtTimestamp:
		if src.StartTime == nil {
			add("source.kinesis.start_time", "required with start: at_timestamp (RFC 3339)")
		} else {
			cfg.StartTime = src.StartTime.UTC()
		}
	default:
		add("source.kinesis.start", "unknown %q: use trim_horizon (the oldest retained record), latest or at_timestamp", src.Start)
	}
	cfg.StreamBatching = s.resolveStream(add)
	cfg.TaskConfig = s.resolveTask(dir, add)
	return cfg
}
