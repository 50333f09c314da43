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
	DefaultMaxInFlight    = 2
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

	cfg.StreamBatching = s.resolveStream(add)
	cfg.MaxInFlight = DefaultMaxInFlight
	if n := s.Batch.MaxInFlight; n != nil {
		cfg.MaxInFlight = *n
		if *n < 1 || *n > workflows.MaxMaxInFlight {
			add("batch.max_in_flight", "%d: use 1 to %d (1 runs a partition's batches one after another)", *n, workflows.MaxMaxInFlight)
		}
	}
	cfg.TaskConfig = s.resolveTask(dir, add)
	if dl := s.OnFailure; dl != nil && dl.DeadLetter != nil && dl.DeadLetter.Kafka != nil && dl.DeadLetter.S3 == nil {
		if !topicRE.MatchString(dl.DeadLetter.Kafka.Topic) {
			add("on_failure.dead_letter.kafka.topic", "%q is not a valid topic name", dl.DeadLetter.Kafka.Topic)
		} else if dl.DeadLetter.Kafka.Topic == cfg.Topic {
			add("on_failure.dead_letter.kafka.topic", "must differ from the source topic %q", cfg.Topic)
		}
		cfg.DeadLetterTopic = dl.DeadLetter.Kafka.Topic
	}
	return cfg
}
