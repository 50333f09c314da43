package source

import (
	"context"
	"encoding/json"
	"time"
)

// Stream is a stream source: ordered units of ordered records. Every method
// may be called concurrently, for different units, from activities;
// errors are retried by Temporal unless they are temporal non-retryable
// application errors (a stream that does not exist, a configuration that
// cannot work).
type Stream interface {
	// Units lists the units the connector consumes (partitions, shards,
	// subjects), in a stable order.
	Units(ctx context.Context) ([]string, error)
	// Start resolves where a unit starts: the position of its first
	// record at or after at (Earliest, Latest or a time).
	Start(ctx context.Context, unit string, at StartAt) (uint64, error)
	// Read reads the records of unit from position from on, up to and
	// including until (0: no bound), within lim. It returns when it has
	// lim.MaxRecords records, when the next record would pass
	// lim.MaxBytes, when the next record is past until, or when lim.MaxWait
	// has passed since it started (with what it has, maybe nothing).
	// Reading the same bounded range again returns the same records.
	Read(ctx context.Context, unit string, from, until uint64, lim Limits) (Records, error)
	// Wait returns true as soon as a record at or after position from
	// exists in unit, false when timeout passes first.
	Wait(ctx context.Context, unit string, from uint64, timeout time.Duration) (bool, error)
	// Pending counts the records of unit at or after position from: the
	// lag of a reader whose next position is from.
	Pending(ctx context.Context, unit string, from uint64) (uint64, error)
}

// StartAt names where a unit starts: Earliest, Latest, or At a time.
type StartAt struct {
	// From is "earliest", "latest" or "time".
	From string
	// Time is the time of From "time": the first record stored at or
	// after it.
	Time time.Time
}

// Start positions.
var (
	// Earliest is the first record the unit still holds.
	Earliest = StartAt{From: "earliest"}
	// Latest is the first record stored after the start.
	Latest = StartAt{From: "latest"}
)

// At starts at the first record stored at or after t.
func At(t time.Time) StartAt { return StartAt{From: "time", Time: t} }

// Limits bound one read.
type Limits struct {
	// MaxRecords is the most records a read returns (>= 1).
	MaxRecords int
	// MaxBytes bounds the records' values and keys together; a single
	// record larger than it is returned alone.
	MaxBytes int64
	// MaxWait is how long a read waits for records to fill it.
	MaxWait time.Duration
}

// Records are what a read returns.
type Records struct {
	// Items are the records, in position order.
	Items []Record
	// Backlog: more records were there past the last one returned.
	Backlog bool
	// Covered (a bounded read): every record of the range [from, until]
	// is in Items; false when a limit stopped the read short of until.
	// The engine reads the rest of a range that is not covered.
	Covered bool
}

// StreamOpener opens a Stream from a connector's source configuration, as
// its kind decoded and validated it from the spec and stored it in the
// connector's workflow input (JSON). A worker opens each configuration
// once and keeps it open, so an opener may connect. The configuration
// must not hold secrets (it is in workflow history): it names where the
// worker finds them (a file, an environment variable).
type StreamOpener func(ctx context.Context, config json.RawMessage) (Stream, error)

// Record is one record of a unit.
type Record struct {
	// Position orders the unit's records (a Kafka offset, a JetStream
	// stream sequence).
	Position uint64
	// Key is the record's key or subject, if it has one.
	Key string
	// Value is the record's payload.
	Value []byte
	// Time is when the source stored it.
	Time time.Time
	// Headers are the record's headers, if any (first value of each).
	Headers map[string]string
}

// Size is what a record counts against Limits.MaxBytes.
func (r Record) Size() int64 { return int64(len(r.Key) + len(r.Value)) }
