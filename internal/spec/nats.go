package spec

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/bacalhau-connect/bacalhau-connect/internal/natssource"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

var (
	natsStreamRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	natsSubjectRE = regexp.MustCompile(`^[^\s.]+(\.[^\s.]+)*$`)
)

// natsSchemes are the URL schemes nats.go connects with.
var natsSchemes = []string{"nats", "tls", "ws", "wss"}

// resolveNATS checks and resolves a NATS JetStream connector's fields;
// batch, mode, staging, max_record_age and on_failure are the stream
// connectors' (dead letters to S3).
func (s *Spec) resolveNATS(dir string, add addFunc) *workflows.SourceStreamConfig {
	cfg := &workflows.SourceStreamConfig{Name: s.Name, SourceKind: workflows.NATSKind}
	src := s.Source.NATS
	if src == nil {
		add("source.nats", "required: the server, stream and subjects to consume")
		src = &NATSSource{}
	}
	switch u, err := url.Parse(src.URL); {
	case src.URL == "":
		add("source.nats.url", "required: the NATS server, such as nats://127.0.0.1:4222")
	case err != nil || !slices.Contains(natsSchemes, u.Scheme) || u.Host == "":
		add("source.nats.url", "%q is not a NATS URL: use nats://HOST:PORT (or tls://, ws://, wss://)", src.URL)
	case u.User != nil:
		add("source.nats.url", "credentials do not belong in the spec (it is kept in workflow history): give the worker its NATS credentials")
	}
	switch {
	case src.Stream == "":
		add("source.nats.stream", "required: a JetStream stream name such as WEB")
	case !natsStreamRE.MatchString(src.Stream):
		add("source.nats.stream", "%q is not a stream name (letters, digits, '_' and '-')", src.Stream)
	}
	for i, subj := range src.Subjects {
		switch {
		case !natsSubjectRE.MatchString(subj):
			add("source.nats.subjects", "%q (item %d) is not a subject (dot-separated tokens without spaces, such as web.eu)", subj, i)
		case slices.Contains(src.Subjects[:i], subj):
			add("source.nats.subjects", "%q (item %d) is listed twice", subj, i)
		}
	}
	cfg.Start = src.Start
	if cfg.Start == "" {
		cfg.Start = workflows.StartEarliest
	}
	switch cfg.Start {
	case workflows.StartEarliest, workflows.StartLatest:
		if src.StartTime != nil {
			add("source.nats.start_time", "only with start: timestamp")
		}
	case workflows.StartTimestamp:
		if src.StartTime == nil {
			add("source.nats.start_time", "required with start: timestamp (RFC 3339)")
		} else {
			cfg.StartTime = src.StartTime.UTC()
		}
	default:
		add("source.nats.start", "unknown %q: use earliest (the oldest message held), latest or timestamp", src.Start)
	}
	raw, err := json.Marshal(natssource.Config{URL: src.URL, Stream: src.Stream, Subjects: src.Subjects})
	if err != nil {
		add("source.nats", "%v", err)
	}
	cfg.Source = raw
	cfg.Describe = "stream " + src.Stream + " at " + src.URL
	if len(src.Subjects) > 0 {
		cfg.Describe += " (subjects " + strings.Join(src.Subjects, ", ") + ")"
	}
	cfg.StreamBatching = s.resolveStream(add)
	cfg.TaskConfig = s.resolveTask(dir, add)
	return cfg
}
