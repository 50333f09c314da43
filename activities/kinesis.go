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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.temporal.io/sdk/activity"

	"github.com/bacalhau-connect/bacalhau-connect/internal/awshttp"
	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
)

// KinesisClientFactory makes a Kinesis client for an endpoint ("" for AWS)
// and region.
type KinesisClientFactory func(ctx context.Context, endpoint, region string) (*kinesis.Client, error)

// DefaultKinesisClient uses the standard AWS configuration chain
// (environment, shared config, instance roles).
func DefaultKinesisClient(ctx context.Context, endpoint, region string) (*kinesis.Client, error) {
	opts := []func(*config.LoadOptions) error{}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	cfg.HTTPClient = awshttp.BufferedClient()
	return kinesis.NewFromConfig(cfg), nil
}

// Kinesis holds the Kinesis stream activities: shard discovery, waiting
// for records, reading and submitting batches, and dead letters. Create it
// with NewKinesis.
type Kinesis struct {
	clients  KinesisClientFactory
	bacalhau *Bacalhau
	s3       inputgateway.ClientFactory
	mu       sync.Mutex
	cache    map[string]*kinesis.Client
}

// NewKinesis returns the Kinesis activities; clients nil means the
// standard AWS chain, s3 nil likewise for staging and dead letters.
func NewKinesis(b *Bacalhau, clients KinesisClientFactory, s3 inputgateway.ClientFactory) *Kinesis {
	if clients == nil {
		clients = DefaultKinesisClient
	}
	if s3 == nil {
		s3 = inputgateway.DefaultClientFactory
	}
	return &Kinesis{clients: clients, bacalhau: b, s3: s3, cache: map[string]*kinesis.Client{}}
}

// KinesisStreamRef names a Kinesis stream.
type KinesisStreamRef struct {
	// Stream is the stream's name; StreamARN, when set, is used instead.
	Stream    string `json:",omitempty"`
	StreamARN string `json:",omitempty"`
	Region    string `json:",omitempty"`
	Endpoint  string `json:",omitempty"`
}

func (r KinesisStreamRef) name() string {
	if r.StreamARN != "" {
		return r.StreamARN
	}
	return r.Stream
}

func (k *Kinesis) client(ctx context.Context, r KinesisStreamRef) (*kinesis.Client, error) {
	key := r.Endpoint + "|" + r.Region
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.cache[key]; ok {
		return c, nil
	}
	c, err := k.clients(ctx, r.Endpoint, r.Region)
	if err != nil {
		return nil, fmt.Errorf("kinesis client: %w", err)
	}
	k.cache[key] = c
	return c, nil
}

// Shard is one shard as ListShards reports it, with its lineage.
type Shard struct {
	ID             string
	Parent         string `json:",omitempty"`
	AdjacentParent string `json:",omitempty"`
	// Closed is set when the shard has an ending sequence number (it was
	// split or merged): it takes no new records.
	Closed bool `json:",omitempty"`
}

// ListShards lists a stream's shards with their parents, in ListShards
// order (shard ID order). Lineage comes from here, never from GetRecords'
// ChildShards.
func (k *Kinesis) ListShards(ctx context.Context, in KinesisStreamRef) ([]Shard, error) {
	c, err := k.client(ctx, in)
	if err != nil {
		return nil, err
	}
	var out []Shard
	req := &kinesis.ListShardsInput{}
	if in.StreamARN != "" {
		req.StreamARN = aws.String(in.StreamARN)
	} else {
		req.StreamName = aws.String(in.Stream)
	}
	seen := map[string]bool{}
	for {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.ListShards(lctx, req)
		cancel()
		if err != nil {
			var nf *ktypes.ResourceNotFoundException
			if errors.As(err, &nf) {
				return nil, nonRetryable(ErrTypeKinesisStreamNotFound, err, "kinesis: stream %s not found at %s: check source.kinesis.stream, region and endpoint", in.name(), endpointOr(in.Endpoint))
			}
			return nil, fmt.Errorf("kinesis: listing shards of %s: %w", in.name(), err)
		}
		for _, s := range resp.Shards {
			id := aws.ToString(s.ShardId)
			if seen[id] {
				continue // a stand-in that ignores paging repeats shards
			}
			seen[id] = true
			sh := Shard{ID: id, Parent: aws.ToString(s.ParentShardId), AdjacentParent: aws.ToString(s.AdjacentParentShardId)}
			if s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
				sh.Closed = true
			}
			out = append(out, sh)
		}
		if resp.NextToken == nil || len(resp.Shards) == 0 {
			return out, nil
		}
		req = &kinesis.ListShardsInput{NextToken: resp.NextToken}
	}
}

// Kinesis start positions of a shard without a processed parent.
const (
	ShardStartTrimHorizon = "trim_horizon"
	ShardStartAtTimestamp = "at_timestamp"
)

// ShardPosition is where a shard's reading starts: after a sequence number
// (the checkpoint), else at the connector's start position.
type ShardPosition struct {
	// After is the last sequence number processed; "" means none yet.
	After string `json:",omitempty"`
	// Start (trim_horizon or at_timestamp) and StartTime apply when After
	// is "".
	Start     string    `json:",omitempty"`
	StartTime time.Time `json:",omitempty"`
}

// ShardRead reads one batch of a shard.
type ShardRead struct {
	KinesisStreamRef
	Shard string
	ShardPosition
	// Until, when set, is the last sequence number the batch may hold: a
	// retried or bisected batch re-reads exactly its records.
	Until string `json:",omitempty"`
	// MaxRecords, MaxBytes and MaxWait bound the batch.
	MaxRecords int
	MaxBytes   int64
	MaxWait    time.Duration
}

// ShardBatch is what a read found. Lines (the batch as JSON lines) never
// goes into workflow history.
type ShardBatch struct {
	// First, Mid and Last are sequence numbers: Mid is the last of the
	// batch's first half (where bisection splits it).
	First, Mid, Last string
	Count            int
	Bytes            int64
	// ShardEnd is set when the shard is closed and was read to its end.
	ShardEnd bool
	// ReachedUntil is set when a read with an Until covered its range.
	ReachedUntil bool
	FirstTime    time.Time
	// MillisBehind is how far the read was behind the shard's tip.
	MillisBehind int64
	Lines        []byte `json:"-"`
}

// kinesisLine is one record as the task sees it.
type kinesisLine struct {
	Shard       string    `json:"shard_id"`
	Sequence    string    `json:"sequence_number"`
	Key         string    `json:"partition_key"`
	Arrival     time.Time `json:"approximate_arrival"`
	Value       *string   `json:"value,omitempty"`
	ValueBase64 string    `json:"value_base64,omitempty"`
}

// SeqLess orders two Kinesis sequence numbers (decimal strings without
// leading zeros).
func SeqLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// ReadShard reads records of one shard after in.After (or from the start
// position) until the batch limits, Until, the end of a closed shard or
// MaxWait, in sequence order, and encodes them as JSON lines. It backs off
// on ProvisionedThroughputExceeded and renews an expired iterator from the
// last record read.
func ReadShard(ctx context.Context, c *kinesis.Client, in ShardRead, heartbeat func()) (*ShardBatch, error) {
	if in.MaxRecords <= 0 || in.MaxBytes <= 0 || in.MaxWait <= 0 {
		return nil, nonRetryable(ErrTypeInvalidTask, nil, "kinesis read: MaxRecords, MaxBytes and MaxWait must be positive")
	}
	out := &ShardBatch{}
	pos := in.ShardPosition
	iter, err := shardIterator(ctx, c, in.KinesisStreamRef, in.Shard, pos)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(in.MaxWait)
	var seqs []string
	backoff := 200 * time.Millisecond
	for iter != nil && out.Count < in.MaxRecords {
		if heartbeat != nil {
			heartbeat()
		}
		resp, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(int32(min(10000, in.MaxRecords-out.Count)))})
		var throttled *ktypes.ProvisionedThroughputExceededException
		var expired *ktypes.ExpiredIteratorException
		switch {
		case errors.As(err, &throttled):
			if !sleepCtx(ctx, backoff) {
				return nil, ctx.Err()
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		case errors.As(err, &expired):
			if iter, err = shardIterator(ctx, c, in.KinesisStreamRef, in.Shard, pos); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("kinesis: reading %s/%s: %w", in.name(), in.Shard, err)
		}
		out.MillisBehind = aws.ToInt64(resp.MillisBehindLatest)
		for _, r := range resp.Records {
			seq := aws.ToString(r.SequenceNumber)
			if in.Until != "" && SeqLess(in.Until, seq) {
				out.ReachedUntil = true
				return finishShardBatch(out, seqs), nil
			}
			line, err := encodeKinesisRecord(in.Shard, r)
			if err != nil {
				return nil, err
			}
			if out.Count > 0 && out.Bytes+int64(len(line)) > in.MaxBytes {
				return finishShardBatch(out, seqs), nil // the rest waits for the next batch
			}
			if out.Count == 0 {
				out.FirstTime = aws.ToTime(r.ApproximateArrivalTimestamp)
			}
			out.Lines = append(out.Lines, line...)
			out.Bytes += int64(len(line))
			out.Count++
			seqs = append(seqs, seq)
			pos = ShardPosition{After: seq}
			if seq == in.Until {
				out.ReachedUntil = true
				return finishShardBatch(out, seqs), nil
			}
			if out.Count >= in.MaxRecords || out.Bytes >= in.MaxBytes {
				return finishShardBatch(out, seqs), nil
			}
		}
		iter = resp.NextShardIterator
		if iter == nil {
			out.ShardEnd = true // closed and read to its end
			if in.Until != "" {
				out.ReachedUntil = true
			}
			break
		}
		if time.Now().After(deadline) {
			break
		}
		if len(resp.Records) == 0 {
			// At the tip: wait for more within MaxWait (GetRecords allows 5
			// calls per second per shard).
			if !sleepCtx(ctx, 250*time.Millisecond) {
				return nil, ctx.Err()
			}
		}
	}
	return finishShardBatch(out, seqs), nil
}

func finishShardBatch(b *ShardBatch, seqs []string) *ShardBatch {
	if len(seqs) > 0 {
		b.First, b.Last, b.Mid = seqs[0], seqs[len(seqs)-1], seqs[(len(seqs)-1)/2]
	}
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func shardIterator(ctx context.Context, c *kinesis.Client, ref KinesisStreamRef, shard string, pos ShardPosition) (*string, error) {
	req := &kinesis.GetShardIteratorInput{ShardId: aws.String(shard)}
	if ref.StreamARN != "" {
		req.StreamARN = aws.String(ref.StreamARN)
	} else {
		req.StreamName = aws.String(ref.Stream)
	}
	switch {
	case pos.After != "":
		req.ShardIteratorType = ktypes.ShardIteratorTypeAfterSequenceNumber
		req.StartingSequenceNumber = aws.String(pos.After)
	case pos.Start == ShardStartAtTimestamp:
		req.ShardIteratorType = ktypes.ShardIteratorTypeAtTimestamp
		req.Timestamp = aws.Time(pos.StartTime)
	default:
		req.ShardIteratorType = ktypes.ShardIteratorTypeTrimHorizon
	}
	resp, err := c.GetShardIterator(ctx, req)
	if err != nil {
		var nf *ktypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return nil, nonRetryable(ErrTypeKinesisStreamNotFound, err, "kinesis: shard %s of %s not found", shard, ref.name())
		}
		return nil, fmt.Errorf("kinesis: iterator for %s/%s: %w", ref.name(), shard, err)
	}
	return resp.ShardIterator, nil
}

func encodeKinesisRecord(shard string, r ktypes.Record) ([]byte, error) {
	l := kinesisLine{Shard: shard, Sequence: aws.ToString(r.SequenceNumber), Key: aws.ToString(r.PartitionKey),
		Arrival: aws.ToTime(r.ApproximateArrivalTimestamp).UTC()}
	if utf8.Valid(r.Data) {
		v := string(r.Data)
		l.Value = &v
	} else {
		l.ValueBase64 = base64.StdEncoding.EncodeToString(r.Data)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WaitShardInput asks whether a shard has records after a position.
type WaitShardInput struct {
	KinesisStreamRef
	Shard string
	ShardPosition
	// Timeout bounds the wait. Default 30 s.
	Timeout time.Duration
}

// ShardWait is what WaitForShardRecords saw.
type ShardWait struct {
	// Has: records exist after the position.
	Has bool `json:",omitempty"`
	// ShardEnd: the shard is closed and nothing is left after the position.
	ShardEnd bool `json:",omitempty"`
}

// WaitForShardRecords polls a shard (GetRecords, one record, once a
// second, heartbeating) until records exist after the position, the
// shard turns out closed and read to its end, or Timeout passes. Idle
// consumers wait here, holding no lease from the budget.
func (k *Kinesis) WaitForShardRecords(ctx context.Context, in WaitShardInput) (*ShardWait, error) {
	if in.Timeout <= 0 {
		in.Timeout = 30 * time.Second
	}
	c, err := k.client(ctx, in.KinesisStreamRef)
	if err != nil {
		return nil, err
	}
	iter, err := shardIterator(ctx, c, in.KinesisStreamRef, in.Shard, in.ShardPosition)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(in.Timeout)
	for time.Now().Before(deadline) {
		activity.RecordHeartbeat(ctx, in.After)
		resp, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1)})
		var throttled *ktypes.ProvisionedThroughputExceededException
		var expired *ktypes.ExpiredIteratorException
		switch {
		case errors.As(err, &throttled):
		case errors.As(err, &expired):
			if iter, err = shardIterator(ctx, c, in.KinesisStreamRef, in.Shard, in.ShardPosition); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, fmt.Errorf("kinesis: polling %s/%s: %w", in.name(), in.Shard, err)
		default:
			if len(resp.Records) > 0 {
				return &ShardWait{Has: true}, nil
			}
			if resp.NextShardIterator == nil {
				return &ShardWait{ShardEnd: true}, nil
			}
			// Nothing was consumed: the same position continues.
			iter = resp.NextShardIterator
		}
		if !sleepCtx(ctx, time.Second) {
			return nil, ctx.Err()
		}
	}
	return &ShardWait{}, nil
}

// ShardSubmitInput reads the next batch of a shard and submits it.
type ShardSubmitInput struct {
	Read ShardRead
	// BatchID is the batch identity; empty means ShardBatchID of the read.
	BatchID string `json:",omitempty"`
	StreamJob
}

// ShardBatchResult is a submitted shard batch: sequence numbers and the
// job, never records.
type ShardBatchResult struct {
	JobID                          string `json:",omitempty"`
	First, Mid, Last               string `json:",omitempty"`
	Count                          int
	Bytes                          int64     `json:",omitempty"`
	Reused                         bool      `json:",omitempty"`
	ShardEnd                       bool      `json:",omitempty"`
	RangeDone                      bool      `json:",omitempty"`
	FirstTime                      time.Time `json:",omitempty"`
	MillisBehind                   int64     `json:",omitempty"`
	QueueTimeout, ExecutionTimeout time.Duration
	// Rejected says why the batch could not be submitted (too large for an
	// inline job): no job ran; bisection or the dead letter takes over.
	Rejected string `json:",omitempty"`
	// Unseen: no job existed under the batch's identity (SubmittedKafkaBatch.Unseen).
	Unseen bool `json:",omitempty"`
}

// Job meta keys of a shard batch (besides MetaCount, MetaFirstTime,
// MetaRangeDone).
const (
	MetaFirstSeq = "connect.first-seq"
	MetaMidSeq   = "connect.mid-seq"
	MetaLastSeq  = "connect.last-seq"
	MetaShardEnd = "connect.shard-end"
)

// ShardBatchID is a shard batch's identity: stream, shard and the
// checkpoint it starts after ("start" before the first).
func ShardBatchID(stream, shard, after string) string {
	if after == "" {
		after = "start"
	}
	return stream + "/" + shard + "@" + after
}

// ShardRangeID is the identity of a part of a batch cut by bisection.
func ShardRangeID(stream, shard, after, until string) string {
	return ShardBatchID(stream, shard, after) + ".." + until
}

// ReadShardAndSubmit reads a shard after its checkpoint and submits the
// batch as one job, inline or staged, like the Kafka consumer's
// ReadAndSubmit: it returns sequence numbers, counts and the job ID only,
// and is idempotent (a job for this batch identity and attempt is returned
// with the sequence numbers recorded on it). Count 0 means nothing arrived
// within MaxWait (or, with ShardEnd, that the closed shard is done).
func (k *Kinesis) ReadShardAndSubmit(ctx context.Context, in ShardSubmitInput) (*ShardBatchResult, error) {
	id := in.BatchID
	if id == "" {
		id = ShardBatchID(in.Read.name(), in.Read.Shard, in.Read.After)
	}
	existing, err := findEarlier(ctx, k.bacalhau, in.StreamJob, id)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		m := existing.Meta
		out := &ShardBatchResult{JobID: existing.ID, Reused: true, First: m[MetaFirstSeq], Mid: m[MetaMidSeq], Last: m[MetaLastSeq],
			ShardEnd: m[MetaShardEnd] == "true", RangeDone: m[MetaRangeDone] == "true"}
		out.Count, _ = strconv.Atoi(m[MetaCount])
		out.FirstTime, _ = time.Parse(time.RFC3339Nano, m[MetaFirstTime])
		out.QueueTimeout, out.ExecutionTimeout = tasktemplate.Timeouts(existing)
		return out, nil
	}
	c, err := k.client(ctx, in.Read.KinesisStreamRef)
	if err != nil {
		return nil, err
	}
	batch, err := ReadShard(ctx, c, in.Read, func() { activity.RecordHeartbeat(ctx, "reading") })
	if err != nil {
		return nil, err
	}
	out := &ShardBatchResult{First: batch.First, Mid: batch.Mid, Last: batch.Last, Count: batch.Count, Bytes: batch.Bytes,
		ShardEnd: batch.ShardEnd, RangeDone: batch.ReachedUntil, FirstTime: batch.FirstTime, MillisBehind: batch.MillisBehind, Unseen: true}
	if batch.Count == 0 {
		return out, nil
	}
	meta := map[string]string{
		MetaFirstSeq: batch.First, MetaMidSeq: batch.Mid, MetaLastSeq: batch.Last,
		MetaCount:     strconv.Itoa(batch.Count),
		MetaShardEnd:  strconv.FormatBool(batch.ShardEnd),
		MetaRangeDone: strconv.FormatBool(batch.ReachedUntil),
		MetaFirstTime: batch.FirstTime.UTC().Format(time.RFC3339Nano),
	}
	sub, err := submitStream(ctx, k.bacalhau, k.s3, in.StreamJob, tasktemplate.Batch{ID: id, Meta: meta, Labels: map[string]string{"connect-kind": "kinesis"}},
		batch.Lines, fmt.Sprintf("%s/%s/%s/%s-%s.jsonl", in.Connector, in.Read.Stream, in.Read.Shard, batch.First, batch.Last),
		fmt.Sprintf("records %s..%s", batch.First, batch.Last))
	if err != nil {
		return nil, err
	}
	out.Rejected = sub.rejected
	if sub.res != nil {
		out.JobID, out.Reused, out.QueueTimeout, out.ExecutionTimeout = sub.res.JobID, sub.res.Reused, sub.res.QueueTimeout, sub.res.ExecutionTimeout
	}
	return out, nil
}

// DeadLetterShardInput sends the records of one range of a shard, which
// failed every attempt, to an S3 prefix.
type DeadLetterShardInput struct {
	// Read names the shard and the range (after ShardPosition, up to Until).
	Read      ShardRead
	Connector string
	// Error is the workflow's payload-free message; the document's error
	// adds the stderr tail of the last of JobIDs, read from Bacalhau.
	Error  string
	JobIDs []string `json:",omitempty"`
	S3     *S3Prefix
}

// DeadLetterShardRecords reads the range again and writes its records as
// one JSON document to the S3 prefix (rewritten, not repeated, on a retry),
// with the error and the last failed job's stderr tail.
func (k *Kinesis) DeadLetterShardRecords(ctx context.Context, in DeadLetterShardInput) (*DeadLettered, error) {
	c, err := k.client(ctx, in.Read.KinesisStreamRef)
	if err != nil {
		return nil, err
	}
	read := in.Read
	read.MaxRecords, read.MaxBytes = 1<<30, 1<<40
	if read.MaxWait <= 0 {
		read.MaxWait = 5 * time.Second
	}
	batch, err := ReadShard(ctx, c, read, func() { activity.RecordHeartbeat(ctx, "dead-lettering") })
	if err != nil {
		return nil, err
	}
	if !batch.ReachedUntil {
		return nil, fmt.Errorf("dead letter: read %d records of %s/%s up to %s before the wait ended; retrying", batch.Count, read.name(), read.Shard, read.Until)
	}
	where, err := deadLetterDocument(ctx, k.s3, in.S3, fmt.Sprintf("%s/%s/%s/%s-%s.json", in.Connector, read.Stream, read.Shard, batch.First, read.Until),
		map[string]any{"connector": in.Connector, "stream": read.name(), "shard": read.Shard,
			"first": batch.First, "last": read.Until, "error": k.bacalhau.deadLetterError(ctx, in.Error, in.JobIDs), "jobs": in.JobIDs}, batch.Lines)
	if err != nil {
		return nil, err
	}
	return &DeadLettered{Count: batch.Count, Where: where}, nil
}
