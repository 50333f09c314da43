package activities

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/source"
)

// SourceStreams holds the activities of the stream kinds written against
// the public source.Stream interface (NATS JetStream, and kinds from
// outside this repository): units, start positions, waits, batches and
// dead letters, for any of them. Create it with NewSourceStreams.
type SourceStreams struct {
	bacalhau *Bacalhau
	s3       inputgateway.ClientFactory
	streams  *openSources[source.Stream]
}

// NewSourceStreams returns the activities for the stream kinds openers
// names (kind → opener); s3 nil means the standard AWS chain for staging
// and dead letters.
func NewSourceStreams(b *Bacalhau, s3 inputgateway.ClientFactory, openers map[string]source.StreamOpener) *SourceStreams {
	if s3 == nil {
		s3 = inputgateway.DefaultClientFactory
	}
	open := map[string]func(context.Context, json.RawMessage) (source.Stream, error){}
	for kind, o := range openers {
		open[kind] = o
	}
	return &SourceStreams{bacalhau: b, s3: s3, streams: newOpenSources(open)}
}

// SourceRef names a connector's source: its kind and the configuration
// its kind decoded from the spec (JSON, no secrets).
type SourceRef struct {
	Kind   string
	Config json.RawMessage
}

// stream opens the source once per worker and keeps it.
func (s *SourceStreams) stream(ctx context.Context, ref SourceRef) (source.Stream, error) {
	return s.streams.get(ctx, ref)
}

// openSources opens each connector's source once per worker and keeps it.
type openSources[T any] struct {
	openers map[string]func(context.Context, json.RawMessage) (T, error)
	mu      sync.Mutex
	open    map[string]T
}

func newOpenSources[T any](openers map[string]func(context.Context, json.RawMessage) (T, error)) *openSources[T] {
	return &openSources[T]{openers: openers, open: map[string]T{}}
}

// get returns the source ref names, opening it the first time.
func (o *openSources[T]) get(ctx context.Context, ref SourceRef) (T, error) {
	var zero T
	key := ref.Kind + "\x00" + string(ref.Config)
	o.mu.Lock()
	defer o.mu.Unlock()
	if src, ok := o.open[key]; ok {
		return src, nil
	}
	open, ok := o.openers[ref.Kind]
	if !ok {
		return zero, nonRetryable(ErrTypeUnknownSource, nil, "no %s source on this worker: build the worker with that kind", ref.Kind)
	}
	src, err := open(ctx, ref.Config)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			return zero, err // its type and retry verdict stay as the source said
		}
		return zero, fmt.Errorf("opening the %s source: %w", ref.Kind, err)
	}
	o.open[key] = src
	return src, nil
}

// SourceUnits lists the source's units (subjects, partitions).
func (s *SourceStreams) SourceUnits(ctx context.Context, ref SourceRef) ([]string, error) {
	st, err := s.stream(ctx, ref)
	if err != nil {
		return nil, err
	}
	return st.Units(ctx)
}

// SourceStartInput resolves where a unit starts.
type SourceStartInput struct {
	Source SourceRef
	Unit   string
	// From is earliest, latest or time (Time).
	From string
	Time time.Time `json:",omitzero"`
}

// SourceStart resolves a unit's start position.
func (s *SourceStreams) SourceStart(ctx context.Context, in SourceStartInput) (uint64, error) {
	st, err := s.stream(ctx, in.Source)
	if err != nil {
		return 0, err
	}
	return st.Start(ctx, in.Unit, source.StartAt{From: in.From, Time: in.Time})
}

// SourceWaitInput long-polls a unit for records at or after From.
type SourceWaitInput struct {
	Source  SourceRef
	Unit    string
	From    uint64
	Timeout time.Duration
}

// SourceWait tells whether records arrived at or after From within Timeout.
func (s *SourceStreams) SourceWait(ctx context.Context, in SourceWaitInput) (bool, error) {
	st, err := s.stream(ctx, in.Source)
	if err != nil {
		return false, err
	}
	// Wait in steps, heartbeating between them: a worker that dies is
	// noticed within the heartbeat timeout, not the whole wait.
	deadline := time.Now().Add(in.Timeout)
	for {
		has, err := st.Wait(ctx, in.Unit, in.From, min(sourceWaitStep, max(time.Until(deadline), time.Millisecond)))
		if err != nil || has || time.Until(deadline) <= 0 {
			return has, err
		}
		activity.RecordHeartbeat(ctx, "waiting")
	}
}

// sourceWaitStep is one step of SourceWait, between heartbeats.
const sourceWaitStep = 10 * time.Second

// SourceRead is one read of a unit: from From up to Until (0: open),
// within the batch limits.
type SourceRead struct {
	Source SourceRef
	Unit   string
	From   uint64
	Until  uint64 `json:",omitempty"`
	// MaxRecords, MaxBytes and MaxWait bound the read.
	MaxRecords int
	MaxBytes   int64
	MaxWait    time.Duration
}

func (r SourceRead) limits() source.Limits {
	return source.Limits{MaxRecords: r.MaxRecords, MaxBytes: r.MaxBytes, MaxWait: r.MaxWait}
}

// SourceBatchInput runs one batch of a unit: read, submit, await.
type SourceBatchInput struct {
	Read SourceRead
	// BatchID is the batch identity; empty means SourceBatchID of the read.
	BatchID string `json:",omitempty"`
	StreamJob
}

// SourceBatchRun is a run batch of a source unit: positions, counts and
// the job, never records; Failure is set when the job failed.
type SourceBatchRun struct {
	JobID       string `json:",omitempty"`
	First, Last uint64
	Count       int
	Reused      bool `json:",omitempty"`
	// RangeDone: a bounded read covered its whole range.
	RangeDone bool `json:",omitempty"`
	// Backlog: records were waiting past the batch; Pending counts those
	// after Last (the unit's lag once the batch passes).
	Backlog   bool      `json:",omitempty"`
	Pending   uint64    `json:",omitempty"`
	FirstTime time.Time `json:",omitzero"`
	// Rejected says why the batch could not go as one inline job.
	Rejected string        `json:",omitempty"`
	Failure  *BatchFailure `json:",omitempty"`
	// Unseen: no job existed under the batch's identity.
	Unseen bool `json:",omitempty"`
	// ReadClosed is when the read closed (zero when the job was found).
	ReadClosed time.Time `json:",omitzero"`
}

// SourceBatchID is a source batch's identity: the unit and the position
// it reads from. The job's key adds the connector and its epoch.
func SourceBatchID(unit string, from uint64) string {
	return unit + "@" + strconv.FormatUint(from, 10)
}

// SourceRangeID is the identity of a bounded range of a unit.
func SourceRangeID(unit string, from, until uint64) string {
	return SourceBatchID(unit, from) + ".." + strconv.FormatUint(until, 10)
}

// sourceLine is one record as the task reads it.
type sourceLine struct {
	Unit        string            `json:"unit"`
	Position    uint64            `json:"position"`
	Key         string            `json:"key,omitempty"`
	Time        time.Time         `json:"timestamp"`
	Value       *string           `json:"value,omitempty"`
	ValueBase64 string            `json:"value_base64,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
}

// encodeSourceRecords writes records as the JSON lines a task reads:
// {"unit","position","key","timestamp","value" (or "value_base64" when
// not UTF-8),"headers"}.
func encodeSourceRecords(unit string, recs []source.Record) ([]byte, error) {
	var out []byte
	for _, r := range recs {
		l := sourceLine{Unit: unit, Position: r.Position, Key: r.Key, Time: r.Time.UTC(), Headers: r.Headers}
		if utf8.Valid(r.Value) {
			v := string(r.Value)
			l.Value = &v
		} else {
			l.ValueBase64 = base64.StdEncoding.EncodeToString(r.Value)
		}
		b, err := json.Marshal(l)
		if err != nil {
			return nil, fmt.Errorf("encoding %s@%d: %w", unit, r.Position, err)
		}
		out = append(append(out, b...), '\n')
	}
	return out, nil
}

// Job meta keys of a source batch (besides MetaCount, MetaFirstTime,
// MetaRangeDone): the first and last positions.
const (
	MetaFirstPosition = "connect.first-position"
	MetaLastPosition  = "connect.last-position"
)

// SourceRunBatch reads a unit from its checkpoint (or a range), submits the
// batch as one job (inline or staged) and awaits it, in one activity, like
// Kafka's RunBatch: idempotent by batch identity and attempt (a retry finds
// the job it submitted and awaits that one), records never in the result.
// Count 0 means nothing arrived within MaxWait, or, with RangeDone, that
// the range holds no record.
func (s *SourceStreams) SourceRunBatch(ctx context.Context, in SourceBatchInput) (*SourceBatchRun, error) {
	id := in.BatchID
	if id == "" {
		id = SourceBatchID(in.Read.Unit, in.Read.From)
	}
	existing, err := findEarlier(ctx, s.bacalhau, in.StreamJob, id)
	if err != nil {
		return nil, err
	}
	st, err := s.stream(ctx, in.Read.Source)
	if err != nil {
		return nil, err
	}
	var out *SourceBatchRun
	if existing != nil {
		m := existing.Meta
		out = &SourceBatchRun{JobID: existing.ID, Reused: true, RangeDone: m[MetaRangeDone] == "true"}
		out.First, _ = strconv.ParseUint(m[MetaFirstPosition], 10, 64)
		out.Last, _ = strconv.ParseUint(m[MetaLastPosition], 10, 64)
		out.Count, _ = strconv.Atoi(m[MetaCount])
		out.FirstTime, _ = time.Parse(time.RFC3339Nano, m[MetaFirstTime])
	} else {
		activity.RecordHeartbeat(ctx, "reading")
		recs, err := st.Read(ctx, in.Read.Unit, in.Read.From, in.Read.Until, in.Read.limits())
		if err != nil {
			return nil, err
		}
		out = &SourceBatchRun{Count: len(recs.Items), Backlog: recs.Backlog, RangeDone: in.Read.Until > 0 && recs.Covered,
			Unseen: true, ReadClosed: time.Now()}
		if out.Count == 0 {
			return out, nil
		}
		first, last := recs.Items[0], recs.Items[len(recs.Items)-1]
		out.First, out.Last, out.FirstTime = first.Position, last.Position, first.Time
		lines, err := encodeSourceRecords(in.Read.Unit, recs.Items)
		if err != nil {
			return nil, err
		}
		meta := map[string]string{
			MetaFirstPosition: strconv.FormatUint(out.First, 10),
			MetaLastPosition:  strconv.FormatUint(out.Last, 10),
			MetaCount:         strconv.Itoa(out.Count),
			MetaRangeDone:     strconv.FormatBool(out.RangeDone),
			MetaFirstTime:     out.FirstTime.UTC().Format(time.RFC3339Nano),
		}
		sub, err := submitStream(ctx, s.bacalhau, s.s3, in.StreamJob,
			tasktemplate.Batch{ID: id, Meta: meta, Labels: map[string]string{"connect-kind": in.Read.Source.Kind}},
			lines, fmt.Sprintf("%s/%s/%020d-%020d.jsonl", in.Connector, in.Read.Unit, out.First, out.Last),
			fmt.Sprintf("positions %d..%d", out.First, out.Last))
		if err != nil {
			return nil, err
		}
		out.Rejected = sub.rejected
		if sub.res != nil {
			out.JobID, out.Reused = sub.res.JobID, sub.res.Reused
		}
	}
	if out.JobID == "" {
		return out, nil
	}
	if out.Failure, err = s.bacalhau.awaitVerdict(ctx, out.JobID); err != nil {
		return nil, err
	}
	// The lag behind a batch that passed, for the status (a failed batch
	// runs again from its start; the consumer ignores its figure): a
	// failed count costs the status a figure, not the batch.
	if out.Failure != nil {
		return out, nil
	}
	if p, err := st.Pending(ctx, in.Read.Unit, out.Last+1); err == nil {
		out.Pending, out.Backlog = p, out.Backlog || p > 0
	}
	return out, nil
}

// SourcePendingInput asks how many records of a unit are at or after From.
type SourcePendingInput struct {
	Source SourceRef
	Unit   string
	From   uint64
}

// SourcePending counts a unit's records at or after From (its lag).
func (s *SourceStreams) SourcePending(ctx context.Context, in SourcePendingInput) (uint64, error) {
	st, err := s.stream(ctx, in.Source)
	if err != nil {
		return 0, err
	}
	return st.Pending(ctx, in.Unit, in.From)
}

// SourceDeadLetterInput sends the records of one range of a unit, which
// failed every attempt, to an S3 prefix.
type SourceDeadLetterInput struct {
	// Read names the unit and the range (From..Until).
	Read      SourceRead
	Connector string
	// Error is the workflow's payload-free message; the document's error
	// adds the stderr tail of the last of JobIDs, read from Bacalhau.
	Error  string
	JobIDs []string `json:",omitempty"`
	S3     *S3Prefix
}

// SourceDeadLetter reads the range again and writes its records as one
// JSON document to the S3 prefix (rewritten, not repeated, on a retry),
// with the error and the last failed job's stderr tail.
func (s *SourceStreams) SourceDeadLetter(ctx context.Context, in SourceDeadLetterInput) (*DeadLettered, error) {
	st, err := s.stream(ctx, in.Read.Source)
	if err != nil {
		return nil, err
	}
	read := in.Read
	lim := source.Limits{MaxRecords: 1 << 30, MaxBytes: 1 << 40, MaxWait: max(read.MaxWait, 5*time.Second)}
	recs, err := st.Read(ctx, read.Unit, read.From, read.Until, lim)
	if err != nil {
		return nil, err
	}
	if !recs.Covered {
		// Never move past records not read: retry.
		return nil, fmt.Errorf("dead letter: read %d records of %s %d..%d before the wait ended; retrying", len(recs.Items), read.Unit, read.From, read.Until)
	}
	lines, err := encodeSourceRecords(read.Unit, recs.Items)
	if err != nil {
		return nil, err
	}
	where, err := deadLetterDocument(ctx, s.s3, in.S3, fmt.Sprintf("%s/%s/%020d-%020d.json", in.Connector, read.Unit, read.From, read.Until),
		map[string]any{"connector": in.Connector, "kind": read.Source.Kind, "unit": read.Unit, "first": read.From, "last": read.Until,
			"error": s.bacalhau.deadLetterError(ctx, in.Error, in.JobIDs), "jobs": in.JobIDs}, lines)
	if err != nil {
		return nil, err
	}
	return &DeadLettered{Count: len(recs.Items), Where: where}, nil
}
