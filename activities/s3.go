package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/activity"

	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
)

// S3 scans buckets and writes dead-letter manifests with the worker's own
// credentials. Create it with NewS3.
type S3 struct {
	clients inputgateway.ClientFactory
	// bacalhau reads failed tasks' stderr for dead-letter manifests.
	bacalhau *Bacalhau
}

// NewS3 returns the S3 activities; clients nil means the standard AWS
// chain; b (may be nil) reads failed tasks' stderr for dead letters.
func NewS3(clients inputgateway.ClientFactory, b *Bacalhau) *S3 {
	if clients == nil {
		clients = inputgateway.DefaultClientFactory
	}
	return &S3{clients: clients, bacalhau: b}
}

// Object is one listed S3 object: metadata only, never its content.
type Object struct {
	Key          string
	Size         int64
	LastModified time.Time
}

// DoneKey is an object already processed, kept while it is inside the
// cursor's look-back window.
type DoneKey struct {
	Key          string
	LastModified time.Time
}

// Cursor is a cron connector's durable position in a bucket prefix. See the
// docs/cron.md ("The S3 cursor") for why it is more than a StartAfter key.
type Cursor struct {
	// Key is the greatest key processed (or the spec's start_after).
	Key string `json:",omitempty"`
	// Time is the newest LastModified processed.
	Time time.Time `json:",omitempty"`
	// Done holds the keys processed whose LastModified is within the
	// look-back window behind Time, sorted by key.
	Done []DoneKey `json:",omitempty"`
	// NotBefore skips objects last modified before it (set by a reset to
	// latest or to a time).
	NotBefore time.Time `json:",omitempty"`
	// Floor is set when Done would outgrow MaxDoneKeys: the oldest entries
	// at or before Key leave Done, and objects at or before Key last
	// modified before Floor count as processed. It narrows the look-back
	// window for such bursts (docs/cron.md, "The S3 cursor").
	Floor time.Time `json:",omitempty"`
}

// MaxDoneKeys bounds Cursor.Done, which travels in workflow state and in
// every scan's input: 2,000 keys of 100 bytes are about 300 KB of JSON.
const MaxDoneKeys = 2000

// Advance records a processed batch that follows every batch before it:
// Key moves up to its last key. Done entries older than the window are
// dropped.
func (c Cursor) Advance(objs []Object, lookback time.Duration) Cursor {
	return c.record(objs, lookback, true)
}

// MarkDone records a processed batch while an earlier batch is unfinished
// (it failed and will run again): Key stays, and the batch's keys stay in
// Done, whatever their age, until Key passes them.
func (c Cursor) MarkDone(objs []Object, lookback time.Duration) Cursor {
	return c.record(objs, lookback, false)
}

func (c Cursor) record(objs []Object, lookback time.Duration, moveKey bool) Cursor {
	next := Cursor{Key: c.Key, Time: c.Time, Done: append([]DoneKey(nil), c.Done...), NotBefore: c.NotBefore, Floor: c.Floor}
	for _, o := range objs {
		if moveKey && o.Key > next.Key {
			next.Key = o.Key
		}
		if o.LastModified.After(next.Time) {
			next.Time = o.LastModified
		}
		next.Done = append(next.Done, DoneKey{Key: o.Key, LastModified: o.LastModified})
	}
	floor := next.Time.Add(-lookback)
	kept := next.Done[:0]
	for _, d := range next.Done {
		if !d.LastModified.Before(floor) || d.Key > next.Key {
			kept = append(kept, d)
		}
	}
	if len(kept) > MaxDoneKeys {
		kept, next.Floor = capDone(kept, next.Key, next.Floor)
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Key < kept[j].Key })
	next.Done = kept
	return next
}

// capDone drops the oldest entries at or before key (those after it must
// stay: an earlier batch failed) until at most MaxDoneKeys remain, with
// every entry as old as the newest dropped one, and returns the floor
// that keeps the dropped objects processed: just after their newest
// LastModified.
func capDone(done []DoneKey, key string, floor time.Time) ([]DoneKey, time.Time) {
	var old, rest []DoneKey
	for _, d := range done {
		if d.Key <= key {
			old = append(old, d)
		} else {
			rest = append(rest, d)
		}
	}
	drop := len(done) - MaxDoneKeys
	if drop <= 0 || len(old) == 0 {
		return done, floor
	}
	sort.Slice(old, func(i, j int) bool {
		if !old[i].LastModified.Equal(old[j].LastModified) {
			return old[i].LastModified.Before(old[j].LastModified)
		}
		return old[i].Key < old[j].Key
	})
	cut := old[min(drop, len(old))-1].LastModified
	if next := cut.Add(time.Nanosecond); next.After(floor) {
		floor = next
	}
	for _, d := range old {
		if !d.LastModified.Before(floor) {
			rest = append(rest, d)
		}
	}
	return rest, floor
}

// Candidate reports whether an object listed now is still to be processed:
// it is newer than the start time and the cursor's NotBefore, and either
// sorts after the cursor's key or arrived within the look-back window and
// is not done. Before anything was processed (Time zero) the key is a plain
// start-after key: nothing at or before it is a candidate.
func (c Cursor) Candidate(o Object, startTime time.Time, lookback time.Duration) bool {
	if !startTime.IsZero() && o.LastModified.Before(startTime) {
		return false
	}
	if !c.NotBefore.IsZero() && o.LastModified.Before(c.NotBefore) {
		return false
	}
	if o.Key > c.Key {
		return !c.isDone(o.Key)
	}
	if c.Time.IsZero() || o.LastModified.Before(c.Floor) {
		return false
	}
	return !o.LastModified.Before(c.Time.Add(-lookback)) && !c.isDone(o.Key)
}

func (c Cursor) isDone(key string) bool {
	i := sort.Search(len(c.Done), func(i int) bool { return c.Done[i].Key >= key })
	return i < len(c.Done) && c.Done[i].Key == key
}

// ScanInput asks for the next objects to process.
type ScanInput struct {
	Bucket, Prefix, Endpoint, Region string
	// Cursor and the rules it applies with. Ignored for a backfill.
	Cursor    Cursor
	StartTime time.Time
	Lookback  time.Duration
	// Backfill, when set, scans objects last modified in [From, To) with
	// keys after AfterKey instead of applying the cursor.
	Backfill *BackfillRange `json:",omitempty"`
	// MaxObjects and MaxBytes cut batches; MaxBatches bounds one answer.
	MaxObjects int
	MaxBytes   int64
	MaxBatches int
	// MaxFolderEntries, when positive, also cuts a batch before any folder
	// of its tasks' /inputs tree (the object keys' folders) would hold more
	// entries than this; see FolderEntries.
	MaxFolderEntries int `json:",omitempty"`
}

// BackfillRange is a time range to reprocess.
type BackfillRange struct {
	From, To time.Time
	AfterKey string `json:",omitempty"`
}

// ScanResult is the next batches, in key order.
type ScanResult struct {
	Batches [][]Object
	// More is true when candidates remain beyond these batches.
	More bool
	// Listed is how many objects the scan saw.
	Listed int
}

// maxScanResultBytes bounds the JSON of one scan's answer, which is
// workflow history: 20 batches of 1,000 objects with long keys would
// pass Temporal's 2 MB payload limit. A scan stops at a batch boundary
// once past it (More is set), always returning at least one batch.
const maxScanResultBytes = 512 << 10

// scanObjectJSONBytes is an object's JSON in a scan answer besides its key.
const scanObjectJSONBytes = 80

// Scan lists the prefix and cuts the objects still to process into batches
// of at most MaxObjects objects and MaxBytes bytes (an object larger than
// MaxBytes forms a batch alone) and, with MaxFolderEntries, at most that
// many entries in any folder of /inputs, up to MaxBatches batches and
// maxScanResultBytes of answer. It heartbeats once per listed page.
func (a *S3) Scan(ctx context.Context, in ScanInput) (*ScanResult, error) {
	c, err := a.clients(ctx, in.Endpoint, in.Region)
	if err != nil {
		return nil, err
	}
	if in.MaxObjects <= 0 || in.MaxBytes <= 0 || in.MaxBatches <= 0 {
		return nil, nonRetryable(ErrTypeInvalidTask, nil, "scan: MaxObjects, MaxBytes and MaxBatches must be positive")
	}
	res := &ScanResult{}
	var batch []Object
	var batchBytes int64
	folders := NewFolderEntries(in.MaxFolderEntries)
	resultBytes := 0
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(in.Bucket), Prefix: aws.String(in.Prefix)})
	pages := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", in.Bucket, in.Prefix, err)
		}
		pages++
		activity.RecordHeartbeat(ctx, pages)
		for _, o := range page.Contents {
			res.Listed++
			obj := Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified).UTC()}
			if strings.HasSuffix(obj.Key, "/") {
				continue // folder marker
			}
			if !in.wanted(obj) {
				continue
			}
			if len(res.Batches) == in.MaxBatches {
				res.More = true
				return res, nil
			}
			if len(batch) > 0 && (len(batch) == in.MaxObjects || batchBytes+obj.Size > in.MaxBytes || !folders.Fits(obj.Key)) {
				res.Batches = append(res.Batches, batch)
				batch, batchBytes = nil, 0
				folders.Reset()
				if len(res.Batches) == in.MaxBatches || resultBytes >= maxScanResultBytes {
					res.More = true
					return res, nil
				}
			}
			batch = append(batch, obj)
			batchBytes += obj.Size
			folders.Add(obj.Key)
			resultBytes += len(obj.Key) + scanObjectJSONBytes
		}
	}
	if len(batch) > 0 {
		res.Batches = append(res.Batches, batch)
	}
	return res, nil
}

func (in ScanInput) wanted(o Object) bool {
	if b := in.Backfill; b != nil {
		return o.Key > b.AfterKey && !o.LastModified.Before(b.From) && o.LastModified.Before(b.To)
	}
	return in.Cursor.Candidate(o, in.StartTime, in.Lookback)
}

// DeadLetterInput records a batch that failed every attempt.
type DeadLetterInput struct {
	Bucket, Prefix, Endpoint, Region string
	Connector, BatchID               string
	Source                           string
	Objects                          []Object
	// Error is the workflow's payload-free message; the manifest's error
	// adds the stderr tail of the last of JobIDs, read from Bacalhau.
	Error  string
	JobIDs []string `json:",omitempty"`
}

// WriteDeadLetter writes the batch's manifest (objects, error with the last
// failed job's stderr tail, jobs) as JSON to <prefix><batch>.json and
// returns the key. Rewriting it is harmless.
func (a *S3) WriteDeadLetter(ctx context.Context, in DeadLetterInput) (string, error) {
	c, err := a.clients(ctx, in.Endpoint, in.Region)
	if err != nil {
		return "", err
	}
	body, err := json.MarshalIndent(map[string]any{
		"connector": in.Connector, "batch": in.BatchID, "source": in.Source,
		"objects": in.Objects, "error": a.bacalhau.deadLetterError(ctx, in.Error, in.JobIDs), "jobs": in.JobIDs,
	}, "", "  ")
	if err != nil {
		return "", err
	}
	key := in.Prefix + in.BatchID + ".json"
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(in.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json")}); err != nil {
		return "", fmt.Errorf("writing dead letter s3://%s/%s: %w", in.Bucket, key, err)
	}
	return key, nil
}
