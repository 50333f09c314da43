// Package natssource reads NATS JetStream streams as a source.Stream. Each
// unit is one subject of the stream, read in stream sequence order with a
// subject filter: per-subject order is kept and subjects run side by side,
// as Kafka partitions do. Positions are stream sequence numbers, so a
// range of positions holds only the subject's records in it, and the same
// range reads the same records again once the stream has passed its end.
// Reads use ephemeral ordered consumers; nothing is acknowledged: the
// checkpoint is the reader's (in Temporal history).
package natssource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.temporal.io/sdk/temporal"

	"github.com/bacalhau-connect/bacalhau-connect/source"
)

// Config names what to read: the spec's source.nats section.
type Config struct {
	// URL is the NATS server, such as nats://127.0.0.1:4222. Credentials
	// do not belong here (the spec is in workflow history).
	URL string `yaml:"url"`
	// Stream is the JetStream stream's name.
	Stream string `yaml:"stream"`
	// Subjects are the subjects to consume, one consumer each, in order
	// within each; leave it out for every subject the stream holds
	// messages on (new subjects are found within a minute).
	Subjects []string `yaml:"subjects"`
	// Start: earliest (default), latest or timestamp (StartTime).
	Start     string     `yaml:"start" json:",omitempty"`
	StartTime *time.Time `yaml:"start_time" json:",omitempty"`
}

// Kind is the nats connector kind: one consumer per subject of a
// JetStream stream, checkpoints as stream sequence numbers.
func Kind() source.StreamKind {
	return source.StreamKind{Name: "nats", Units: "subjects", NewConfig: func() source.StreamConfig { return &Config{} }, Open: OpenStream,
		ConnectorType: "NATSConnector", ConsumerType: "NATSStreamConsumer", IDPrefix: "nats-"}
}

var (
	streamRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	subjectRE = regexp.MustCompile(`^[^\s.]+(\.[^\s.]+)*$`)
	// schemes are the URL schemes nats.go connects with.
	schemes = []string{"nats", "tls", "ws", "wss"}
)

// StreamPattern and SubjectPattern are the stream names and subjects
// Check takes (for the JSON Schema).
var (
	StreamPattern  = streamRE.String()
	SubjectPattern = subjectRE.String()
)

// Start positions of the spec.
const (
	StartEarliest  = "earliest"
	StartLatest    = "latest"
	StartTimestamp = "timestamp"
)

// Check checks the section (source.StreamConfig).
func (c *Config) Check() []source.Problem {
	var ps []source.Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, source.Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	switch u, err := url.Parse(c.URL); {
	case c.URL == "":
		add("url", "required: the NATS server, such as nats://127.0.0.1:4222")
	case err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "":
		add("url", "%q is not a NATS URL: use nats://HOST:PORT (or tls://, ws://, wss://)", c.URL)
	case u.User != nil:
		add("url", "credentials do not belong in the spec (it is kept in workflow history): give the worker its NATS credentials")
	}
	switch {
	case c.Stream == "":
		add("stream", "required: a JetStream stream name such as WEB")
	case !streamRE.MatchString(c.Stream):
		add("stream", "%q is not a stream name (letters, digits, '_' and '-')", c.Stream)
	}
	for i, subj := range c.Subjects {
		switch {
		case !subjectRE.MatchString(subj):
			add("subjects", "%q (item %d) is not a subject (dot-separated tokens without spaces, such as web.eu)", subj, i)
		case slices.Contains(c.Subjects[:i], subj):
			add("subjects", "%q (item %d) is listed twice", subj, i)
		}
	}
	switch c.Start {
	case "", StartEarliest, StartLatest:
		if c.StartTime != nil {
			add("start_time", "only with start: timestamp")
		}
	case StartTimestamp:
		if c.StartTime == nil {
			add("start_time", "required with start: timestamp (RFC 3339)")
		}
	default:
		add("start", "unknown %q: use earliest (the oldest message held), latest or timestamp", c.Start)
	}
	return ps
}

// Describe says what the connector reads.
func (c *Config) Describe() string {
	d := "stream " + c.Stream + " at " + c.URL
	if len(c.Subjects) > 0 {
		d += " (subjects " + strings.Join(c.Subjects, ", ") + ")"
	}
	return d
}

// StartAt is where a subject without a checkpoint starts.
func (c *Config) StartAt() source.StartAt {
	switch {
	case c.Start == StartLatest:
		return source.Latest
	case c.Start == StartTimestamp && c.StartTime != nil:
		return source.At(c.StartTime.UTC())
	}
	return source.Earliest
}

// ErrTypeStreamNotFound is the error type of Open when the stream does not
// exist (not retried).
const ErrTypeStreamNotFound = "NATSStreamNotFound"

// Source is a JetStream stream as a source.Stream.
type Source struct {
	cfg    Config
	nc     *nats.Conn
	stream jetstream.Stream
}

var _ source.Stream = (*Source)(nil)

// Open connects to the server and finds the stream; Close releases the
// connection.
func Open(ctx context.Context, cfg Config) (*Source, error) {
	// The worker keeps a source open for as long as it runs: reconnect
	// for ever rather than give the connection up after a server restart.
	nc, err := nats.Connect(cfg.URL, nats.Name("bacalhau-connect"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("nats: connecting to %s: %w", cfg.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	st, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			// A typo in the spec, most likely: no retry mends it.
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("nats: stream %s not found at %s", cfg.Stream, cfg.URL), ErrTypeStreamNotFound, err)
		}
		return nil, fmt.Errorf("nats: stream %s at %s: %w", cfg.Stream, cfg.URL, err)
	}
	return &Source{cfg: cfg, nc: nc, stream: st}, nil
}

// OpenStream is the source.StreamOpener of the nats kind: config is a
// Config as JSON.
func OpenStream(ctx context.Context, config json.RawMessage) (source.Stream, error) {
	var cfg Config
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, temporal.NewNonRetryableApplicationError("nats: decoding the source configuration: "+err.Error(), "InvalidConfig", err)
	}
	return Open(ctx, cfg)
}

// Close closes the connection.
func (s *Source) Close() { s.nc.Close() }

// Units are the configured subjects, or the stream's subjects that hold
// messages, sorted.
func (s *Source) Units(ctx context.Context) ([]string, error) {
	if len(s.cfg.Subjects) > 0 {
		return slices.Clone(s.cfg.Subjects), nil
	}
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return nil, fmt.Errorf("nats: stream %s: %w", s.cfg.Stream, err)
	}
	var units []string
	for subject := range info.State.Subjects {
		units = append(units, subject)
	}
	slices.Sort(units)
	return units, nil
}

// Start resolves at for a subject: earliest is its first message still
// held, latest the stream's next sequence, a time the first message stored
// at or after it (the next sequence when there is none).
func (s *Source) Start(ctx context.Context, unit string, at source.StartAt) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("nats: stream %s: %w", s.cfg.Stream, err)
	}
	next := info.State.LastSeq + 1
	switch at.From {
	case source.Latest.From:
		return next, nil
	case source.Earliest.From:
		m, err := s.stream.GetMsg(ctx, max(info.State.FirstSeq, 1), jetstream.WithGetMsgSubject(unit))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return next, nil
		}
		if err != nil {
			return 0, fmt.Errorf("nats: first message of %s: %w", unit, err)
		}
		return m.Sequence, nil
	case "time":
		t := at.Time
		c, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{unit},
			DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t})
		if err != nil {
			return 0, fmt.Errorf("nats: reading %s from %s: %w", unit, t.Format(time.RFC3339), err)
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("nats: %w", err)
		}
		if ci.NumPending == 0 {
			return next, nil
		}
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return 0, fmt.Errorf("nats: first message of %s from %s: %w", unit, t.Format(time.RFC3339), err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return 0, fmt.Errorf("nats: %w", err)
		}
		return meta.Sequence.Stream, nil
	}
	return 0, fmt.Errorf("nats: unknown start %q: use earliest, latest or a time", at.From)
}

// Read reads the subject's messages from sequence from on (see
// source.Stream). What is already there is fetched at once; only then does
// an unbounded read wait, up to lim.MaxWait, for more to fill the batch. A
// bounded range whose end the stream has passed never waits: its messages
// are all there.
func (s *Source) Read(ctx context.Context, unit string, from, until uint64, lim source.Limits) (source.Records, error) {
	var out source.Records
	if until > 0 && until < from {
		out.Covered = true
		return out, nil
	}
	complete := false
	if until > 0 {
		info, err := s.stream.Info(ctx)
		if err != nil {
			return out, fmt.Errorf("nats: stream %s: %w", s.cfg.Stream, err)
		}
		complete = info.State.LastSeq >= until
	}
	c, err := s.consumer(ctx, unit, from)
	if err != nil {
		return out, err
	}
	deadline := time.Now().Add(lim.MaxWait)
	var bytes int64
	for len(out.Items) < lim.MaxRecords {
		ci, err := c.Info(ctx)
		if err != nil {
			return out, fmt.Errorf("nats: reading %s from %d: %w", unit, from, err)
		}
		n, wait := lim.MaxRecords-len(out.Items), time.Until(deadline)
		switch {
		case ci.NumPending > 0:
			n, wait = int(min(uint64(n), ci.NumPending)), 10*time.Second // there: only the round trip
		case complete || wait < time.Millisecond:
			// Complete: the stream passed until and nothing of the subject is
			// left after what was read, so the range is read.
			out.Covered = complete
			return out, nil
		}
		batch, err := c.Fetch(n, jetstream.FetchMaxWait(wait))
		if err != nil {
			return out, fmt.Errorf("nats: reading %s from %d: %w", unit, from, err)
		}
		stop := false
		for m := range batch.Messages() {
			if stop {
				continue // drain what the fetch holds
			}
			meta, err := m.Metadata()
			if err != nil {
				return out, fmt.Errorf("nats: %w", err)
			}
			r := source.Record{Position: meta.Sequence.Stream, Key: m.Subject(), Value: m.Data(), Time: meta.Timestamp, Headers: firstValues(m.Headers())}
			if until > 0 && r.Position > until {
				out.Backlog, out.Covered, stop = true, true, true
				continue
			}
			if len(out.Items) > 0 && bytes+r.Size() > lim.MaxBytes {
				out.Backlog, stop = true, true
				continue
			}
			out.Items = append(out.Items, r)
			bytes += r.Size()
			out.Backlog = meta.NumPending > 0
			if until > 0 && r.Position >= until {
				out.Covered, stop = true, true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return out, fmt.Errorf("nats: reading %s from %d: %w", unit, from, err)
		}
		if stop {
			break
		}
	}
	return out, nil
}

// Wait waits for a message of the subject at or after sequence from.
func (s *Source) Wait(ctx context.Context, unit string, from uint64, timeout time.Duration) (bool, error) {
	c, err := s.consumer(ctx, unit, from)
	if err != nil {
		return false, err
	}
	_, err = c.Next(jetstream.FetchMaxWait(timeout))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, nats.ErrTimeout):
		return false, nil
	}
	return false, fmt.Errorf("nats: waiting on %s from %d: %w", unit, from, err)
}

// Pending counts the subject's messages at or after sequence from.
func (s *Source) Pending(ctx context.Context, unit string, from uint64) (uint64, error) {
	c, err := s.consumer(ctx, unit, from)
	if err != nil {
		return 0, err
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("nats: pending on %s: %w", unit, err)
	}
	return ci.NumPending, nil
}

// consumer is an ephemeral ordered consumer of the subject from sequence
// from.
func (s *Source) consumer(ctx context.Context, unit string, from uint64) (jetstream.Consumer, error) {
	c, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{unit},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(from, 1)})
	if err != nil {
		return nil, fmt.Errorf("nats: reading %s from %d: %w", unit, from, err)
	}
	return c, nil
}

func firstValues(h nats.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}
