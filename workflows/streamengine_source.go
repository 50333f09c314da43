package workflows

import (
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// SourceConsumerInput starts (or continues) the stream engine's consumer
// of one unit of a source stream. Positions are the source's: the
// checkpoint is the next position to read, a range's Until the last
// position it holds.
type SourceConsumerInput struct {
	Config SourceStreamConfig
	Unit   string
	State  StreamState[uint64, uint64]
	// Begun: the checkpoint holds a position (else the spec's start is
	// resolved first). StartedAt is the connector's first start (start
	// latest reads what was stored after it).
	Begun     bool      `json:",omitempty"`
	StartedAt time.Time `json:",omitzero"`
	// Pending is the unit's lag as last seen.
	Pending uint64 `json:",omitempty"`
}

// SourceUnitStatus answers the status query of a source unit's consumer
// and is what it reports to its connector.
type SourceUnitStatus struct {
	Unit string
	// Checkpoint is the next position to read (0 before the start is
	// resolved); Lag counts the unit's records at or after it, as last
	// seen.
	Checkpoint     uint64 `json:",omitempty"`
	Lag            uint64 `json:",omitempty"`
	Batches        int64
	Records        int64
	DeadLettered   int64           `json:",omitempty"`
	Bisecting      []PositionRange `json:",omitempty"`
	Paused         bool            `json:",omitempty"`
	LastJob        string          `json:",omitempty"`
	LastError      string          `json:",omitempty"`
	LastDeadLetter string          `json:",omitempty"`
	// LastReset is the ID of the last reset this consumer applied.
	LastReset string `json:",omitempty"`
	Phase     string
	// Reported and Seq order the consumer's reports.
	Reported time.Time `json:",omitzero"`
	Seq      int64     `json:",omitempty"`
}

// PositionRange is a range of a unit's positions still to run (bisection).
type PositionRange struct {
	From, Until uint64
}

// SourceStreamConsumer consumes one unit of a source stream on the stream
// engine: the Kafka consumer's loop and invariants (see
// KafkaStreamConsumer) over the source's activities (SourceRunBatch and
// the rest), one batch in flight.
func SourceStreamConsumer(ctx workflow.Context, in SourceConsumerInput) error {
	u := &sourceUnit{cfg: in.Config, name: in.Unit, begun: in.Begun, startedAt: in.StartedAt, pending: in.Pending}
	return runStream[SourceStreamConfig, uint64, uint64](ctx, u, in.State)
}

// sourceUnit is a unit of a source.Stream as a stream engine source.
type sourceUnit struct {
	cfg       SourceStreamConfig
	name      string
	begun     bool
	startedAt time.Time
	// pending is the unit's lag as last seen.
	pending uint64
	// s names the activities (nil receiver: methods as names).
	s *activities.SourceStreams
}

func (u *sourceUnit) kind() string                   { return u.cfg.Kind }
func (u *sourceUnit) unit() string                   { return "unit " + u.name }
func (u *sourceUnit) setConfig(c SourceStreamConfig) { u.cfg = c }
func (u *sourceUnit) controlSignal() string          { return SignalUnitControl }
func (u *sourceUnit) watched() bool                  { return false }

func (u *sourceUnit) settings() streamSettings {
	return streamSettings{Name: u.cfg.Name, StreamBatching: u.cfg.StreamBatching, TaskConfig: u.cfg.TaskConfig, HasDeadLetter: u.cfg.DeadLetterS3 != nil}
}

// begin resolves the spec's start (latest: what was stored after the
// connector first started).
func (u *sourceUnit) begin(ctx workflow.Context, st *StreamState[uint64, uint64]) error {
	if u.begun {
		return nil
	}
	in := activities.SourceStartInput{Source: u.cfg.ref(), Unit: u.name, From: u.cfg.Start, Time: u.cfg.StartTime}
	switch u.cfg.Start {
	case StartLatest:
		in.From, in.Time = "time", u.startedAt
	case StartTimestamp:
		in.From = "time"
	}
	if err := workflow.ExecuteActivity(shortOptions(ctx), u.s.SourceStart, in).Get(ctx, &st.Checkpoint); err != nil {
		return temporal.NewApplicationErrorWithCause("resolving the start of "+u.unit(), ErrTypeResolveStart, err)
	}
	u.begun = true
	return nil
}

func (u *sourceUnit) wait(ctx workflow.Context, from uint64) workflow.Future {
	return workflow.ExecuteActivity(ctx, u.s.SourceWait, activities.SourceWaitInput{Source: u.cfg.ref(), Unit: u.name, From: from, Timeout: streamWaitTimeout})
}

func (u *sourceUnit) waited(ctx workflow.Context, f workflow.Future) (has, end bool, err error) {
	err = f.Get(ctx, &has)
	if err == nil && !has {
		u.pending = 0 // nothing at or after the checkpoint
	}
	return has, false, err
}

func (u *sourceUnit) read(from, until uint64) activities.SourceRead {
	return activities.SourceRead{Source: u.cfg.ref(), Unit: u.name, From: from, Until: until,
		MaxRecords: u.cfg.MaxRecords, MaxBytes: u.cfg.MaxBytes, MaxWait: u.cfg.MaxWait}
}

func (u *sourceUnit) start(ctx workflow.Context, r streamRead[uint64, uint64]) workflow.Future {
	until := uint64(0)
	if r.Until != nil {
		until = *r.Until
	}
	in := activities.SourceBatchInput{Read: u.read(r.From, until), BatchID: r.BatchID, StreamJob: r.job(u.cfg.streamJob(r.Attempt))}
	return workflow.ExecuteActivity(batchRunOptions(ctx, u.cfg.StreamBatching, u.cfg.TaskConfig), u.s.SourceRunBatch, in)
}

func (u *sourceUnit) ran(ctx workflow.Context, f workflow.Future) (streamBatch[uint64], error) {
	var res activities.SourceBatchRun
	if err := f.Get(ctx, &res); err != nil {
		return streamBatch[uint64]{}, err
	}
	if res.Count > 0 && res.Failure == nil && res.Rejected == "" {
		u.pending = res.Pending
	}
	b := streamBatch[uint64]{JobID: res.JobID, First: res.First, Last: res.Last, Count: res.Count, RangeDone: res.RangeDone,
		Backlog: res.Backlog, FirstTime: res.FirstTime, Rejected: res.Rejected, Failure: res.Failure, ReadClosed: res.ReadClosed, Unseen: res.Unseen}
	b.Mid = b.First + (b.Last-b.First)/2
	return b, nil
}

// cut: the engine runs one batch of a unit at a time (a source's positions
// need not be dense, so a range cut ahead could hold nothing).
func (u *sourceUnit) cut(uint64, int) (uint64, bool) { return 0, false }

func (u *sourceUnit) after(s uint64) uint64                                 { return s + 1 }
func (u *sourceUnit) less(a, b uint64) bool                                 { return a < b }
func (u *sourceUnit) label(p uint64) string                                 { return strconv.FormatUint(p, 10) }
func (u *sourceUnit) mid(b streamBatch[uint64]) uint64                      { return b.Mid }
func (u *sourceUnit) paused(workflow.Context, *StreamState[uint64, uint64]) {}

func (u *sourceUnit) rangeID(r StreamRange[uint64, uint64]) string {
	return activities.SourceRangeID(u.name, r.From, r.Until)
}

func (u *sourceUnit) deadLetter(ctx workflow.Context, from, last uint64, errText string, jobs []string) (activities.DeadLettered, error) {
	in := activities.SourceDeadLetterInput{Read: u.read(from, last), Connector: u.cfg.Name, Error: errText, JobIDs: jobs, S3: s3Prefix(u.cfg.DeadLetterS3)}
	var res activities.DeadLettered
	err := workflow.ExecuteActivity(deadLetterOptions(ctx, u.cfg.MaxWait), u.s.SourceDeadLetter, in).Get(ctx, &res)
	return res, err
}

// reset moves the checkpoint to the unit's first record (earliest), its
// end (latest) or the first record stored at or after a time.
func (u *sourceUnit) reset(ctx workflow.Context, r ResetRequest, st *StreamState[uint64, uint64]) (bool, string, error) {
	in := activities.SourceStartInput{Source: u.cfg.ref(), Unit: u.name}
	switch r.To {
	case StartEarliest, StartLatest:
		in.From = r.To
	case StartTimestamp:
		in.From, in.Time = "time", r.Time
	default:
		return false, fmt.Sprintf("reset to %q is not supported for %s: use earliest, latest or timestamp", r.To, u.cfg.Kind), nil
	}
	var to uint64
	if err := workflow.ExecuteActivity(shortOptions(ctx), u.s.SourceStart, in).Get(ctx, &to); err != nil {
		return false, "", temporal.NewApplicationErrorWithCause(u.unit()+": resolving reset position "+r.To, ErrTypeResolveStart, err)
	}
	st.Checkpoint, u.begun = to, true
	var pending uint64
	if err := workflow.ExecuteActivity(shortOptions(ctx), u.s.SourcePending, activities.SourcePendingInput{Source: u.cfg.ref(), Unit: u.name, From: to}).Get(ctx, &pending); err == nil {
		u.pending = pending
	}
	return true, "", nil
}

func (u *sourceUnit) observe(m client.MetricsHandler, _ *StreamState[uint64, uint64]) {
	m.WithTags(map[string]string{"unit": u.name}).Gauge(MetricUnitLag).Update(float64(u.pending))
}

func (u *sourceUnit) status(st *StreamState[uint64, uint64], p streamProgress) any {
	s := SourceUnitStatus{Unit: u.name, Lag: u.pending, Batches: st.Batches, Records: st.Records, DeadLettered: st.DeadLettered,
		Paused: st.Paused, LastJob: p.LastJob, LastError: p.LastError, LastDeadLetter: p.LastDeadLetter, LastReset: p.LastReset,
		Phase: p.Phase, Reported: p.Reported, Seq: p.Seq}
	if u.begun {
		s.Checkpoint = st.Checkpoint
	}
	for _, r := range st.Ranges {
		if !r.Done {
			s.Bisecting = append(s.Bisecting, PositionRange{From: r.From, Until: r.Until})
		}
	}
	return s
}

func (u *sourceUnit) report(ctx workflow.Context, status any) workflow.Future {
	return workflow.SignalExternalWorkflow(ctx, u.cfg.WorkflowID(u.cfg.Name), "", SignalUnitStatus, status)
}

func (u *sourceUnit) continueAsNew(ctx workflow.Context, st StreamState[uint64, uint64]) error {
	return workflow.NewContinueAsNewError(ctx, u.cfg.ConsumerType, SourceConsumerInput{Config: u.cfg, Unit: u.name, State: st,
		Begun: u.begun, StartedAt: u.startedAt, Pending: u.pending})
}
