package spec

import (
	"net"
	"regexp"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// Defaults of a Kafka connector.
const (
	DefaultMaxRecords     = 1000
	MaxMaxRecords         = 100000
	DefaultMaxWait        = 5 * time.Second
	DefaultInlineMaxBytes = 256 << 10
	DefaultStagedMaxBytes = 64 << 20
)

var (
	topicRE  = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	envVarRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// resolveKafka checks and resolves a Kafka connector's fields.
func (s *Spec) resolveKafka(dir string, add addFunc) *workflows.KafkaConfig {
	cfg := &workflows.KafkaConfig{Name: s.Name}
	src := s.Source.Kafka
	if src == nil {
		add("source.kafka", "required: brokers and topic to consume")
		src = &KafkaSource{}
	}
	if len(src.Brokers) == 0 {
		add("source.kafka.brokers", "required: seed brokers as host:port, e.g. [kafka-1:9092]")
	}
	for i, b := range src.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			add("source.kafka.brokers", "%q (item %d) is not host:port", b, i)
		}
	}
	switch {
	case src.Topic == "":
		add("source.kafka.topic", "required: the topic to consume")
	case !topicRE.MatchString(src.Topic):
		add("source.kafka.topic", "%q is not a valid topic name (letters, digits, '.', '_', '-')", src.Topic)
	}
	cfg.Brokers, cfg.Topic, cfg.Group = src.Brokers, src.Topic, src.Group
	if cfg.Group == "" {
		cfg.Group = "bacalhau-connect-" + s.Name
	}

	cfg.Start = src.Start
	if cfg.Start == "" {
		cfg.Start = workflows.StartEarliest
	}
	switch cfg.Start {
	case workflows.StartEarliest, workflows.StartLatest:
		if src.StartTime != nil || len(src.StartOffsets) > 0 {
			add("source.kafka.start", "%s takes neither start_time nor start_offsets", cfg.Start)
		}
	case workflows.StartTimestamp:
		if src.StartTime == nil {
			add("source.kafka.start_time", "required with start: timestamp (RFC 3339)")
		} else {
			cfg.StartTime = src.StartTime.UTC()
		}
	case workflows.StartOffsets:
		if len(src.StartOffsets) == 0 {
			add("source.kafka.start_offsets", "required with start: offsets, e.g. {0: 1200, 1: 980}")
		}
		for p, o := range src.StartOffsets {
			if p < 0 || o < 0 {
				add("source.kafka.start_offsets", "partition %d offset %d: both must be >= 0", p, o)
			}
		}
		cfg.StartOffsets = src.StartOffsets
	default:
		add("source.kafka.start", "unknown %q: use earliest, latest, timestamp or offsets", src.Start)
	}
	cfg.OnOffsetOutOfRange = src.OnOffsetOutOfRange
	if cfg.OnOffsetOutOfRange == "" {
		cfg.OnOffsetOutOfRange = workflows.StartEarliest
	}
	if cfg.OnOffsetOutOfRange != workflows.StartEarliest && cfg.OnOffsetOutOfRange != "fail" {
		add("source.kafka.on_offset_out_of_range", "unknown %q: use earliest (resume at the oldest retained record) or fail", src.OnOffsetOutOfRange)
	}
	if t := src.TLS; t != nil {
		if (t.CertFile == "") != (t.KeyFile == "") {
			add("source.kafka.tls", "cert_file and key_file go together")
		}
		cfg.TLS = &workflows.KafkaTLS{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
	}
	if a := src.SASL; a != nil {
		switch a.Mechanism {
		case "plain", "scram-sha-256", "scram-sha-512":
		default:
			add("source.kafka.sasl.mechanism", "unknown %q: use plain, scram-sha-256 or scram-sha-512", a.Mechanism)
		}
		for path, v := range map[string]string{"source.kafka.sasl.username_env": a.UsernameEnv, "source.kafka.sasl.password_env": a.PasswordEnv} {
			if !envVarRE.MatchString(v) {
				add(path, "%q: name the worker's environment variable that holds it (credentials never go in a spec)", v)
			}
		}
		cfg.SASL = &workflows.KafkaSASL{Mechanism: a.Mechanism, UsernameEnv: a.UsernameEnv, PasswordEnv: a.PasswordEnv}
	}

	cfg.Mode = s.Mode
	if cfg.Mode == "" {
		cfg.Mode = workflows.ModeInline
	}
	cfg.MaxRecords = s.Batch.MaxRecords
	switch {
	case cfg.MaxRecords == 0:
		cfg.MaxRecords = DefaultMaxRecords
	case cfg.MaxRecords < 0 || cfg.MaxRecords > MaxMaxRecords:
		add("batch.max_records", "%d: use 1 to %d", cfg.MaxRecords, MaxMaxRecords)
	}
	cfg.MaxWait = dur(s.Batch.MaxWait, DefaultMaxWait)
	if cfg.MaxWait <= 0 {
		add("batch.max_wait", "%s: use a positive duration such as 5s", cfg.MaxWait)
	}
	cfg.MaxBytes = int64(s.Batch.MaxBytes)
	switch cfg.Mode {
	case workflows.ModeInline:
		if cfg.MaxBytes == 0 {
			cfg.MaxBytes = DefaultInlineMaxBytes
		}
		if cfg.MaxBytes > workflows.MaxInlineBatchBytes {
			add("batch.max_bytes", "%d is over %d, the most an inline batch can carry under Bacalhau's 1 MiB message limit: lower it or use mode: staged",
				cfg.MaxBytes, workflows.MaxInlineBatchBytes)
		}
		if s.Staging != nil {
			add("staging", "only for mode: staged")
		}
	case workflows.ModeStaged:
		if cfg.MaxBytes == 0 {
			cfg.MaxBytes = DefaultStagedMaxBytes
		}
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
	if cfg.MaxBytes < 0 {
		add("batch.max_bytes", "%d is negative", cfg.MaxBytes)
	}

	cfg.TaskConfig = s.resolveTask(dir, add)
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
				if !topicRE.MatchString(dl.Kafka.Topic) {
					add("on_failure.dead_letter.kafka.topic", "%q is not a valid topic name", dl.Kafka.Topic)
				} else if dl.Kafka.Topic == cfg.Topic {
					add("on_failure.dead_letter.kafka.topic", "must differ from the source topic %q", cfg.Topic)
				}
				cfg.DeadLetterTopic = dl.Kafka.Topic
			case dl.S3 != nil:
				if dl.S3.Bucket == "" {
					add("on_failure.dead_letter.s3.bucket", "required: the bucket for dead-lettered records")
				}
				checkEndpoint(add, "on_failure.dead_letter.s3.endpoint", dl.S3.Endpoint)
				cfg.DeadLetterS3 = &workflows.S3Location{Bucket: dl.S3.Bucket, Prefix: dl.S3.Prefix, Region: dl.S3.Region, Endpoint: dl.S3.Endpoint}
			default:
				add("on_failure.dead_letter", "set kafka: {topic: …} or s3: {bucket: …}")
			}
		}
	}
	return cfg
}
