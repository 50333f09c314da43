package spec

import (
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// resolveStream checks and resolves what the stream connectors (kafka,
// kinesis) share: batch limits, mode and staging, max_record_age and
// on_failure (bisect, dead_letter.s3; a dead_letter.kafka topic is the
// caller's to check and keep).
func (s *Spec) resolveStream(add addFunc) workflows.StreamBatching {
	var cfg workflows.StreamBatching
	cfg.Mode = s.Mode
	if cfg.Mode == "" {
		cfg.Mode = workflows.ModeInline
	}
	cfg.MaxRecords = intInRange(add, "batch.max_records", s.Batch.MaxRecords, DefaultMaxRecords, 1, MaxMaxRecords)
	cfg.MaxWait = dur(s.Batch.MaxWait, DefaultMaxWait)
	if cfg.MaxWait <= 0 {
		add("batch.max_wait", "%s: use a positive duration such as 5s", cfg.MaxWait)
	}
	switch cfg.Mode {
	case workflows.ModeInline:
		cfg.MaxBytes = sizeOrDefault(s.Batch.MaxBytes, DefaultInlineMaxBytes)
		if cfg.MaxBytes > workflows.MaxInlineBatchBytes {
			add("batch.max_bytes", "%d is over %d, the most an inline batch can carry under Bacalhau's 1 MiB message limit: lower it or use mode: staged",
				cfg.MaxBytes, workflows.MaxInlineBatchBytes)
		}
		if s.Staging != nil {
			add("staging", "only for mode: staged")
		}
	case workflows.ModeStaged:
		cfg.MaxBytes = sizeOrDefault(s.Batch.MaxBytes, DefaultStagedMaxBytes)
		switch {
		case s.Staging == nil || s.Staging.S3 == nil:
			add("staging.s3", "required with mode: staged: the bucket and prefix batches are written to")
		case s.Staging.S3.Bucket == "":
			add("staging.s3.bucket", "required: the bucket staged batches are written to")
		default:
			checkEndpoint(add, "staging.s3.endpoint", s.Staging.S3.Endpoint)
			st := s.Staging.S3
			cfg.Staging = &workflows.S3Location{Bucket: st.Bucket, Prefix: st.Prefix, Region: st.Region, Endpoint: st.Endpoint}
		}
	default:
		add("mode", "unknown %q: use inline (the batch travels in the job) or staged (written to S3 first)", s.Mode)
	}
	if cfg.MaxBytes <= 0 {
		add("batch.max_bytes", "%d: use a positive size such as 256KiB (leave it out for the mode's default)", cfg.MaxBytes)
	}
	if a := s.Retry.MaxRecordAge; a != nil {
		cfg.MaxRecordAge = a.Duration
		if cfg.MaxRecordAge <= 0 {
			add("retry.max_record_age", "%s: use a positive duration such as 1h, or leave it out for no limit", cfg.MaxRecordAge)
		}
	}

	cfg.Bisect = true
	if f := s.OnFailure; f != nil {
		if f.Bisect != nil {
			cfg.Bisect = *f.Bisect
		}
		if dl := f.DeadLetter; dl != nil {
			switch {
			case dl.Kafka != nil && dl.S3 != nil:
				add("on_failure.dead_letter", "set kafka or s3, not both")
			case dl.Kafka != nil:
				if s.Kind != KindKafka {
					add("on_failure.dead_letter.kafka", "a Kafka dead-letter topic is for kind kafka: use s3: {bucket: …}")
				}
			case dl.S3 != nil:
				if dl.S3.Bucket == "" {
					add("on_failure.dead_letter.s3.bucket", "required: the bucket for dead-lettered records")
				}
				checkEndpoint(add, "on_failure.dead_letter.s3.endpoint", dl.S3.Endpoint)
				cfg.DeadLetterS3 = &workflows.S3Location{Bucket: dl.S3.Bucket, Prefix: dl.S3.Prefix, Region: dl.S3.Region, Endpoint: dl.S3.Endpoint}
			case s.Kind == KindKafka:
				add("on_failure.dead_letter", "set kafka: {topic: …} or s3: {bucket: …}")
			default:
				add("on_failure.dead_letter", "set s3: {bucket: …}")
			}
		}
	}
	return cfg
}
