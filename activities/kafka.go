package activities

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaRead asks for the next records of one partition.
type KafkaRead struct {
	KafkaCluster
	Topic     string
	Partition int32
	// From is the checkpoint: the first offset not yet processed.
	From int64
	// MaxRecords and MaxBytes (of the encoded batch) bound the batch;
	// MaxWait bounds how long it waits to fill up.
	MaxRecords int
	MaxBytes   int64
	MaxWait    time.Duration
	// OnOutOfRange is "earliest" (resume at the oldest retained record when
	// retention deleted From) or "fail".
	OnOutOfRange string
	// Until, when >= 0, is the last offset the batch may hold: a retried
	// batch re-reads exactly the offsets it first held.
	Until int64
	// WaitSince, when set, is when the previous batch's read closed: no
	// record after it can have waited longer, so once records are read the
	// batch closes at WaitSince + MaxWait (at once when that has passed,
	// with every record already there up to the limits). Zero: the batch
	// fills for MaxWait from the read's start.
	WaitSince time.Time `json:",omitzero"`
}

// KafkaBatch is what a read found. Lines is the batch as JSON lines, for the
// task; it never goes into workflow history.
type KafkaBatch struct {
	First, Last int64
	Count       int
	Bytes       int64
	// Skipped counts offsets between From and First that retention deleted
	// before they were read (only with OnOutOfRange earliest).
	Skipped int64
	// Oversize is set when one record alone exceeds MaxBytes: it travels alone.
	Oversize bool
	Lines    []byte `json:"-"`
	// ReachedUntil is set when the read covered its whole range: with
	// Until >= 0, it read offset Until or saw a later one.
	ReachedUntil bool
	// FirstTime is the first record's timestamp.
	FirstTime time.Time
	// End is the partition's high watermark as the fetches reported it.
	End int64
	// Records are the records read, for dead letters.
	Records []*kgo.Record `json:"-"`
}

// kafkaLine is one record as the task sees it.
type kafkaLine struct {
	Partition   int32     `json:"partition"`
	Offset      int64     `json:"offset"`
	Timestamp   time.Time `json:"timestamp"`
	Key         string    `json:"key,omitempty"`
	KeyBase64   string    `json:"key_base64,omitempty"`
	Value       *string   `json:"value,omitempty"`
	ValueBase64 string    `json:"value_base64,omitempty"`
}

// EncodeRecord is a record's JSON line (with its newline): key and value
// as text when they are UTF-8, else base64 (key_base64, value_base64), so
// the task gets back their exact bytes.
func EncodeRecord(r *kgo.Record) ([]byte, error) {
	l := kafkaLine{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC()}
	if utf8.Valid(r.Key) {
		l.Key = string(r.Key)
	} else {
		l.KeyBase64 = base64.StdEncoding.EncodeToString(r.Key)
	}
	if utf8.Valid(r.Value) {
		v := string(r.Value)
		l.Value = &v
	} else {
		l.ValueBase64 = base64.StdEncoding.EncodeToString(r.Value)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ErrOffsetOutOfRange: the checkpoint's offset is gone (retention) and the
// connector's policy is to fail rather than skip.
var ErrOffsetOutOfRange = errors.New("checkpoint offset deleted by retention")

// ReadPartition reads records of one partition from in.From until the batch
// limits or MaxWait, in offset order, and encodes them as JSON lines. It
// returns an empty batch (Count 0) when nothing arrived within MaxWait.
func ReadPartition(ctx context.Context, in KafkaRead, opts ...kgo.Opt) (*KafkaBatch, error) {
	if in.MaxRecords <= 0 || in.MaxBytes <= 0 || in.MaxWait <= 0 {
		return nil, nonRetryable(ErrTypeInvalidTask, nil, "kafka read: MaxRecords, MaxBytes and MaxWait must be positive")
	}
	reset := kgo.NewOffset().AtStart()
	if in.OnOutOfRange == "fail" {
		reset = kgo.NoResetOffset()
	}
	base, err := in.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(append(base,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{in.Topic: {in.Partition: kgo.NewOffset().At(in.From)}}),
		kgo.ConsumeResetOffset(reset),
		kgo.FetchMaxWait(min(in.MaxWait, time.Second)),
	), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: client for %s/%d: %w", in.Topic, in.Partition, err)
	}
	defer cl.Close()

	batch := &KafkaBatch{First: -1, Last: -1}
	// An empty read waits MaxWait for its first record; once it holds
	// records it closes at fill (WaitSince + MaxWait when sooner), but goes
	// on reading, up to the limits, while the partition is known to hold
	// records past the last one read (they come back without waiting).
	empty := time.Now().Add(in.MaxWait)
	fill := empty
	if !in.WaitSince.IsZero() && in.WaitSince.Add(in.MaxWait).Before(fill) {
		fill = in.WaitSince.Add(in.MaxWait)
	}
	more := false
	for batch.Count < in.MaxRecords && (in.Until < 0 || batch.Last < in.Until) {
		deadline := empty
		if batch.Count > 0 {
			deadline = fill
		}
		if !time.Now().Before(deadline) {
			if !more {
				break
			}
			deadline = time.Now().Add(readAhead)
		}
		pctx, cancel := context.WithDeadline(ctx, deadline)
		fetches := cl.PollRecords(pctx, in.MaxRecords-batch.Count)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var fetchErr error
		fetches.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				fetchErr = errors.Join(fetchErr, err)
			}
		})
		if fetchErr != nil {
			if errors.Is(fetchErr, kerr.OffsetOutOfRange) {
				return nil, nonRetryable(ErrTypeOffsetOutOfRange, fetchErr,
					"kafka %s/%d: %v at offset %d; on_offset_out_of_range is fail (set earliest to resume at the oldest retained record)",
					in.Topic, in.Partition, ErrOffsetOutOfRange, in.From)
			}
			return nil, fmt.Errorf("kafka %s/%d: fetching: %w", in.Topic, in.Partition, fetchErr)
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) { batch.End = max(batch.End, p.HighWatermark) })
		full, before := false, batch.Count
		fetches.EachRecord(func(r *kgo.Record) {
			if in.Until >= 0 && r.Offset > in.Until {
				full, batch.ReachedUntil = true, true
				return
			}
			if full {
				return
			}
			line, err := EncodeRecord(r)
			if err != nil {
				return
			}
			size := int64(len(line))
			if batch.Count > 0 && batch.Bytes+size > in.MaxBytes {
				full = true
				return
			}
			if batch.Count == 0 {
				batch.First = r.Offset
				batch.FirstTime = r.Timestamp
				batch.Skipped = max(0, r.Offset-in.From)
				batch.Oversize = size > in.MaxBytes
			}
			batch.Last = r.Offset
			batch.Count++
			batch.Bytes += size
			batch.Lines = append(batch.Lines, line...)
			batch.Records = append(batch.Records, r)
			if in.Until >= 0 && r.Offset == in.Until {
				batch.ReachedUntil = true
			}
			if batch.Oversize {
				full = true
			}
		})
		if full {
			break
		}
		more = batch.Count > before && batch.End > batch.Last+1
	}
	return batch, nil
}

// readAhead bounds one more fetch of records a partition is known to hold
// after a read's fill deadline passed: they come back at once.
const readAhead = 250 * time.Millisecond
