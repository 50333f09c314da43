package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/activity"

	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
)

// Kafka holds the Kafka stream activities: partition discovery, start
// positions, reading and submitting batches, mirroring checkpoints to the
// consumer group, and dead letters. Clients are shared (KafkaClients).
// Create it with NewKafka.
type Kafka struct {
	clients  *KafkaClients
	bacalhau *Bacalhau
	s3       inputgateway.ClientFactory
}

// NewKafka returns the Kafka activities. b submits the batches; s3 makes the
// clients that write staged batches and dead letters (nil: the standard AWS
// chain); clients nil makes a private set.
func NewKafka(clients *KafkaClients, b *Bacalhau, s3 inputgateway.ClientFactory) *Kafka {
	if clients == nil {
		clients = NewKafkaClients()
	}
	if s3 == nil {
		s3 = inputgateway.DefaultClientFactory
	}
	return &Kafka{clients: clients, bacalhau: b, s3: s3}
}

// TopicRef names a topic on a cluster.
type TopicRef struct {
	KafkaCluster
	Topic string
}

// Partitions lists a topic's partitions, sorted.
func (k *Kafka) Partitions(ctx context.Context, in TopicRef) ([]int32, error) {
	adm, err := k.clients.admin(in.KafkaCluster)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second) // fail fast: discovery runs again soon
	defer cancel()
	td, err := adm.ListTopics(lctx, in.Topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: listing topic %s: %w", in.Topic, err)
	}
	t, ok := td[in.Topic]
	if !ok || t.Err != nil {
		return nil, nonRetryable(ErrTypeKafkaTopicNotFound, t.Err, "kafka: topic %s not found on %v", in.Topic, in.Brokers)
	}
	var ps []int32
	for p := range t.Partitions {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps, nil
}

// StartInput resolves a partition's first checkpoint.
type StartInput struct {
	TopicRef
	Partition int32
	// Start: earliest, latest, timestamp or offsets.
	Start     string
	StartTime time.Time
	Offset    int64
}

// ResolveStart turns a start position into a concrete offset once, so the
// checkpoint is an offset from the first batch on.
func (k *Kafka) ResolveStart(ctx context.Context, in StartInput) (int64, error) {
	if in.Start == "offsets" {
		return in.Offset, nil
	}
	adm, err := k.clients.admin(in.KafkaCluster)
	if err != nil {
		return 0, err
	}
	var offs kadm.ListedOffsets
	switch in.Start {
	case "latest":
		offs, err = adm.ListEndOffsets(ctx, in.Topic)
	case "timestamp":
		offs, err = adm.ListOffsetsAfterMilli(ctx, in.StartTime.UnixMilli(), in.Topic)
	default:
		offs, err = adm.ListStartOffsets(ctx, in.Topic)
	}
	if err != nil {
		return 0, fmt.Errorf("kafka: listing offsets of %s: %w", in.Topic, err)
	}
	o, ok := offs.Lookup(in.Topic, in.Partition)
	if !ok || o.Err != nil {
		return 0, fmt.Errorf("kafka: no offset for %s/%d: %v", in.Topic, in.Partition, o.Err)
	}
	return o.Offset, nil
}

// Offsets are a partition's retained range: Start is the oldest offset,
// End the next one to be written.
type Offsets struct {
	Start, End int64
}

// PartitionOffsets lists the retained range of every partition of a topic
// (for status and lag).
func (k *Kafka) PartitionOffsets(ctx context.Context, in TopicRef) (map[int32]Offsets, error) {
	adm, err := k.clients.admin(in.KafkaCluster)
	if err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, in.Topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: listing offsets of %s: %w", in.Topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, in.Topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: listing offsets of %s: %w", in.Topic, err)
	}
	out := map[int32]Offsets{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			s, _ := starts.Lookup(in.Topic, o.Partition)
			out[o.Partition] = Offsets{Start: s.Offset, End: o.Offset}
		}
	})
	return out, nil
}

// CommitInput mirrors a checkpoint into a consumer group.
type CommitInput struct {
	TopicRef
	Group     string
	Partition int32
	// Offset is the checkpoint: the next offset to process.
	Offset int64
}

// CommitOffset commits the checkpoint to the consumer group, so Kafka
// tooling (kcat -Q, kafka-consumer-groups) shows the connector's lag. The
// checkpoint itself lives in the workflow; the group only mirrors it.
func (k *Kafka) CommitOffset(ctx context.Context, in CommitInput) error {
	adm, err := k.clients.admin(in.KafkaCluster)
	if err != nil {
		return err
	}
	var offs kadm.Offsets
	offs.AddOffset(in.Topic, in.Partition, in.Offset, -1)
	resp, err := adm.CommitOffsets(ctx, in.Group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("kafka: committing %s/%d=%d for group %s: %w", in.Topic, in.Partition, in.Offset, in.Group, err)
	}
	return nil
}

// WaitInput asks whether a partition has records at or after From.
type WaitInput struct {
	TopicRef
	Partition int32
	From      int64
	// Timeout bounds the wait. Default 30 s.
	Timeout time.Duration
	// Group, when set, first mirrors From (the checkpoint) into the
	// consumer group: a consumer that went idle commits its last batch
	// here, at no extra activity.
	Group string `json:",omitempty"`
}

// WaitForRecords long-polls a partition's end offset, heartbeating, until
// records exist at or after From (true) or Timeout passes (false). Idle
// consumers wait here, holding no lease from the budget; all idle consumers
// of a topic share one poller.
func (k *Kafka) WaitForRecords(ctx context.Context, in WaitInput) (bool, error) {
	if in.Timeout <= 0 {
		in.Timeout = 30 * time.Second
	}
	k.mirror(ctx, CommitInput{TopicRef: in.TopicRef, Group: in.Group, Partition: in.Partition, Offset: in.From})
	return k.clients.waitForEnd(ctx, in.KafkaCluster, in.Topic, in.Partition, in.From, in.Timeout,
		func() { activity.RecordHeartbeat(ctx, in.From) })
}

// S3Prefix is a bucket prefix on an S3 endpoint (staging, dead letters).
type S3Prefix struct {
	Bucket, Prefix, Region, Endpoint string `json:",omitempty"`
}

// StreamSubmitInput reads the next batch of a partition and submits it.
type StreamSubmitInput struct {
	Read KafkaRead
	// BatchID is the batch identity; empty means StreamBatchID of the read.
	BatchID string `json:",omitempty"`
	// StreamJob is how the batch runs (fields promoted, also in JSON).
	StreamJob
}

// StreamJob is how a stream batch (Kafka or Kinesis) runs as a job.
type StreamJob struct {
	Connector string
	Attempt   int
	Template  string
	// QueueTimeout and ExecutionTimeout bound the job.
	QueueTimeout, ExecutionTimeout time.Duration
	// Staging, when set, receives the batch as one object that the task
	// reads through the worker's input gateway (mode staged); else the
	// records travel inline in the job.
	Staging *S3Prefix     `json:",omitempty"`
	URLTTL  time.Duration `json:",omitempty"`
	// Epoch tells the consumer's batches apart from those of an earlier
	// consumer of the same name (deleted and applied again) and from those
	// before a reset of its position: records read again run again instead
	// of finding the jobs that ran them before. Empty for consumers from
	// before epochs.
	Epoch string `json:",omitempty"`
	// Unseen: the consumer knows no job exists under this batch's identity
	// (it dispatches records no run has dispatched before), so the
	// activity's first attempt submits without looking the identity up; a
	// retried attempt always looks.
	Unseen bool `json:",omitempty"`
	// Indexed: the batch's job runs in a namespace of its own, where a
	// lookup finds it without reading every job (tasktemplate.Batch.Indexed).
	// Set for the identities of consumers started (or reset) since jobs
	// are indexed; older identities keep the label lookup that finds the
	// jobs they submitted before.
	Indexed bool `json:",omitempty"`
}

// findEarlier returns the job an earlier attempt (or an earlier run)
// submitted under the batch identity id, or nil. It asks Bacalhau (in the
// identity's namespace when indexed; a label lookup reads every job it
// keeps, v1.7), unless the batch is unseen and this is the activity's
// first attempt: no job can exist then.
func findEarlier(ctx context.Context, b *Bacalhau, j StreamJob, id string) (*models.Job, error) {
	if j.Unseen && activity.GetInfo(ctx).Attempt == 1 {
		return nil, nil
	}
	key := tasktemplate.Key(j.Connector, tasktemplate.EpochID(id, j.Epoch), j.Attempt)
	return b.FindJob(ctx, key, tasktemplate.LookupNamespace(j.Template, key, j.Indexed))
}

// submittedStream is what submitStream did with a batch.
type submittedStream struct {
	res       *SubmitResult
	stagedKey string
	// rejected says why the batch could not go as one inline job.
	rejected string
}

// submitStream runs one stream batch as a job: inline (JSON lines at
// /inputs/batch.jsonl) or staged (one object under job.Staging, at key
// stagedName below the prefix, read through the input gateway). A batch
// too large for an inline job is rejected (no job), not an error: the
// consumer bisects it or dead-letters it. what names the batch's records
// in that message.
func submitStream(ctx context.Context, b *Bacalhau, s3f inputgateway.ClientFactory, job StreamJob, batch tasktemplate.Batch, lines []byte, stagedName, what string) (*submittedStream, error) {
	batch.Connector, batch.Attempt, batch.Epoch, batch.Indexed = job.Connector, job.Attempt, job.Epoch, job.Indexed
	batch.QueueTimeout, batch.ExecutionTimeout = job.QueueTimeout, job.ExecutionTimeout
	// The caller looked the identity up (or knows it unseen) just before.
	sub := SubmitInput{Template: job.Template, URLTTL: job.URLTTL, Batch: batch, Looked: true}
	out := &submittedStream{}
	if st := job.Staging; st != nil {
		activity.RecordHeartbeat(ctx, "staging")
		out.stagedKey = st.Prefix + stagedName
		if err := putObject(ctx, s3f, st, out.stagedKey, "application/x-ndjson", lines); err != nil {
			return nil, fmt.Errorf("staging batch %s: %w", batch.ID, err)
		}
		sub.Objects = []ObjectInput{{Target: BatchInputTarget, Object: inputgateway.ObjectRef{
			Bucket: st.Bucket, Key: out.stagedKey, Region: st.Region, Endpoint: st.Endpoint}}}
	} else {
		sub.Batch.Inputs = []tasktemplate.Input{{Target: BatchInputTarget, Inline: lines}}
	}
	res, err := b.Submit(ctx, sub)
	var tooBig *tasktemplate.Error
	if errors.As(err, &tooBig) && tooBig.Field == "job size" {
		out.rejected = fmt.Sprintf("%s (%d bytes) do not fit in one inline job: %v; use mode: staged for such records", what, len(lines), tooBig)
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	out.res = res
	return out, nil
}

// SubmittedKafkaBatch is a submitted Kafka batch: offsets and the job, never records.
type SubmittedKafkaBatch struct {
	JobID                          string
	First, Last                    int64
	Count                          int
	Bytes, Skipped                 int64
	Reused                         bool
	QueueTimeout, ExecutionTimeout time.Duration
	// StagedKey is the staged object's key (mode staged).
	StagedKey string `json:",omitempty"`
	// End is the partition's end offset (high watermark) seen by the read.
	End int64 `json:",omitempty"`
	// FirstTime is the first record's timestamp (zero when reused).
	FirstTime time.Time `json:",omitempty"`
	// RangeDone is set when a read with an Until covered its whole range;
	// an empty batch without it means the records could not be read (yet).
	RangeDone bool `json:",omitempty"`
	// Rejected says why the batch could not be submitted at all (a record
	// too large for an inline job): no job ran; bisection or the dead
	// letter takes over.
	Rejected string `json:",omitempty"`
	// BatchID is the batch identity the job was found or submitted under.
	BatchID string `json:",omitempty"`
	// ReadClosed is when the read closed (zero when the job was found):
	// the records after Last arrived later.
	ReadClosed time.Time `json:",omitzero"`
	// Unseen: no job existed under the batch's identity when it was read
	// (its records had never been dispatched under it): the consumer may
	// submit the batches after it without looking them up.
	Unseen bool `json:",omitempty"`
	// Awaiting is set by RunBatch (KafkaBatchInput.ReturnWhenDue) when it
	// returned with the job still running because records past the batch
	// had waited MaxWait: the consumer awaits the job in a batch of its
	// own (the same BatchID) while the next batch runs.
	Awaiting bool `json:",omitempty"`
}

// Job meta keys recording a stream batch's offsets.
const (
	MetaFirst = "connect.first"
	MetaLast  = "connect.last"
	MetaCount = "connect.count"
	// MetaFirstTime is the first record's timestamp (RFC 3339).
	MetaFirstTime = "connect.first-time"
	// MetaRangeDone records that the batch covered its whole range.
	MetaRangeDone = "connect.range-done"
)

// BatchInputTarget is where the task finds a stream batch (JSON lines).
const BatchInputTarget = "/inputs/batch.jsonl"

// StreamBatchID is a stream batch's identity: topic, partition and the
// checkpoint it starts from.
func StreamBatchID(topic string, partition int32, from int64) string {
	return topic + "/" + strconv.Itoa(int(partition)) + "@" + strconv.FormatInt(from, 10)
}

// StreamRangeID is the identity of a part of a batch cut by bisection: the
// offsets from..until of a partition.
func StreamRangeID(topic string, partition int32, from, until int64) string {
	return StreamBatchID(topic, partition, from) + ".." + strconv.FormatInt(until, 10)
}

// ReadAndSubmit reads a partition from its checkpoint and submits the batch
// as one job: inline (JSON lines at /inputs/batch.jsonl inside the job) or
// staged (one S3 object the task reads through the input gateway). It
// returns offsets, counts and the job ID only: the records never enter
// workflow history. Idempotent: when a job for this batch identity and
// attempt exists, it is returned with the offsets recorded on it, so a retry
// after a crash never makes a bigger batch or a second job. A batch with
// Count 0 means nothing arrived within MaxWait.
func (k *Kafka) ReadAndSubmit(ctx context.Context, in StreamSubmitInput) (*SubmittedKafkaBatch, error) {
	id := in.BatchID
	if id == "" {
		id = StreamBatchID(in.Read.Topic, in.Read.Partition, in.Read.From)
	}
	existing, err := findEarlier(ctx, k.bacalhau, in.StreamJob, id)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		sb := &SubmittedKafkaBatch{JobID: existing.ID, Reused: true, BatchID: id}
		sb.First, _ = strconv.ParseInt(existing.Meta[MetaFirst], 10, 64)
		sb.Last, _ = strconv.ParseInt(existing.Meta[MetaLast], 10, 64)
		sb.Count, _ = strconv.Atoi(existing.Meta[MetaCount])
		sb.RangeDone = existing.Meta[MetaRangeDone] == "true"
		sb.FirstTime, _ = time.Parse(time.RFC3339Nano, existing.Meta[MetaFirstTime])
		sb.QueueTimeout, sb.ExecutionTimeout = tasktemplate.Timeouts(existing)
		return sb, nil
	}
	activity.RecordHeartbeat(ctx, "reading")
	batch, err := ReadPartition(ctx, in.Read)
	if err != nil {
		return nil, err
	}
	closed := time.Now()
	if batch.Count == 0 {
		return &SubmittedKafkaBatch{First: -1, Last: in.Read.From - 1, RangeDone: batch.ReachedUntil, End: batch.End, ReadClosed: closed, Unseen: true}, nil
	}
	meta := map[string]string{
		MetaFirst:     strconv.FormatInt(batch.First, 10),
		MetaLast:      strconv.FormatInt(batch.Last, 10),
		MetaCount:     strconv.Itoa(batch.Count),
		MetaRangeDone: strconv.FormatBool(batch.ReachedUntil),
		MetaFirstTime: batch.FirstTime.UTC().Format(time.RFC3339Nano),
	}
	sub, err := submitStream(ctx, k.bacalhau, k.s3, in.StreamJob, tasktemplate.Batch{ID: id, Meta: meta, Labels: map[string]string{"connect-kind": "kafka"}},
		batch.Lines, fmt.Sprintf("%s/%s/%d/%020d-%020d.jsonl", in.Connector, in.Read.Topic, in.Read.Partition, batch.First, batch.Last),
		fmt.Sprintf("offsets %d..%d", batch.First, batch.Last))
	if err != nil {
		return nil, err
	}
	out := &SubmittedKafkaBatch{First: batch.First, Last: batch.Last, Count: batch.Count, Bytes: batch.Bytes, Skipped: batch.Skipped,
		StagedKey: sub.stagedKey, End: batch.End, RangeDone: batch.ReachedUntil, FirstTime: batch.FirstTime, Rejected: sub.rejected,
		BatchID: id, ReadClosed: closed, Unseen: true}
	if sub.res != nil {
		out.JobID, out.Reused, out.QueueTimeout, out.ExecutionTimeout = sub.res.JobID, sub.res.Reused, sub.res.QueueTimeout, sub.res.ExecutionTimeout
	}
	return out, nil
}

func putObject(ctx context.Context, s3f inputgateway.ClientFactory, at *S3Prefix, key, contentType string, body []byte) error {
	c, err := s3f(ctx, at.Endpoint, at.Region)
	if err != nil {
		return err
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(at.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), ContentType: aws.String(contentType)}); err != nil {
		return fmt.Errorf("writing s3://%s/%s: %w", at.Bucket, key, err)
	}
	return nil
}

// deadLetterDocument writes a range's records (JSON lines) as one JSON
// document {…fields, "records": […]} at key under the prefix, and says
// where it went.
func deadLetterDocument(ctx context.Context, s3f inputgateway.ClientFactory, at *S3Prefix, key string, fields map[string]any, lines []byte) (string, error) {
	doc := map[string]any{"records": json.RawMessage("[" + string(bytes.Join(bytes.Split(bytes.TrimSpace(lines), []byte("\n")), []byte(","))) + "]")}
	for k, v := range fields {
		doc[k] = v
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return "", fmt.Errorf("dead letter: %w", err)
	}
	key = at.Prefix + key
	if err := putObject(ctx, s3f, at, key, "application/json", raw); err != nil {
		return "", fmt.Errorf("dead letter: %w", err)
	}
	return "s3://" + at.Bucket + "/" + key, nil
}

// DeadLetterRecordsInput sends the records of one range of a partition,
// which failed every attempt, to a dead-letter topic or S3 prefix.
type DeadLetterRecordsInput struct {
	// Read names the partition and the range (From..Until).
	Read      KafkaRead
	Connector string
	// Error is the workflow's payload-free message (job, exit code); the
	// activity adds the stderr tail of the last of JobIDs, read from
	// Bacalhau, to the dead letter's error.
	Error  string
	JobIDs []string `json:",omitempty"`
	// Topic or S3 receives the records.
	Topic string    `json:",omitempty"`
	S3    *S3Prefix `json:",omitempty"`
}

// DeadLettered says where dead-lettered records went.
type DeadLettered struct {
	Count int
	// Where is topic name or s3://bucket/key.
	Where string
}

// Dead-letter record headers (Kafka) and document fields (S3).
const (
	HeaderConnector = "connect-connector"
	HeaderSource    = "connect-source"
	HeaderError     = "connect-error"
	HeaderJobs      = "connect-jobs"
)

// DeadLetterRecords reads the range again and writes its records to the
// dead-letter topic (same key and value, with headers naming the connector,
// the source topic/partition@offset, the error with the last job's stderr
// tail, and the jobs) or as one JSON
// document to the S3 prefix. Writing twice (a retry after a crash) may
// repeat a record in a topic; the S3 document is simply rewritten.
func (k *Kafka) DeadLetterRecords(ctx context.Context, in DeadLetterRecordsInput) (*DeadLettered, error) {
	read := in.Read
	read.MaxRecords = int(read.Until-read.From) + 1
	read.MaxBytes = 1 << 40
	if read.MaxWait <= 0 {
		read.MaxWait = 5 * time.Second
	}
	batch, err := ReadPartition(ctx, read)
	if err != nil {
		return nil, err
	}
	if !batch.ReachedUntil {
		// Never move past records not read: retry (brokers slow or down).
		return nil, fmt.Errorf("dead letter: read %d records of %s/%d offsets %d..%d before the wait ended; retrying",
			batch.Count, read.Topic, read.Partition, read.From, read.Until)
	}
	// The error gains the task's stderr here, where the records go too;
	// the workflow's input held only the job IDs and a payload-free message.
	errText := k.bacalhau.deadLetterError(ctx, in.Error, in.JobIDs)
	jobs := ""
	for i, j := range in.JobIDs {
		if i > 0 {
			jobs += ","
		}
		jobs += j
	}
	if in.S3 != nil {
		where, err := deadLetterDocument(ctx, k.s3, in.S3, fmt.Sprintf("%s/%s/%d/%020d-%020d.json", in.Connector, read.Topic, read.Partition, read.From, read.Until),
			map[string]any{"connector": in.Connector, "topic": read.Topic, "partition": read.Partition,
				"first": read.From, "last": read.Until, "error": errText, "jobs": in.JobIDs}, batch.Lines)
		if err != nil {
			return nil, err
		}
		return &DeadLettered{Count: batch.Count, Where: where}, nil
	}
	cl, err := k.clients.client(in.Read.KafkaCluster)
	if err != nil {
		return nil, err
	}
	recs := make([]*kgo.Record, 0, len(batch.Records))
	for _, r := range batch.Records {
		recs = append(recs, &kgo.Record{Topic: in.Topic, Key: r.Key, Value: r.Value, Headers: append(append([]kgo.RecordHeader(nil), r.Headers...),
			kgo.RecordHeader{Key: HeaderConnector, Value: []byte(in.Connector)},
			kgo.RecordHeader{Key: HeaderSource, Value: []byte(StreamBatchID(r.Topic, r.Partition, r.Offset))},
			kgo.RecordHeader{Key: HeaderError, Value: []byte(errText)},
			kgo.RecordHeader{Key: HeaderJobs, Value: []byte(jobs)},
		)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		if errors.Is(err, kerr.MessageTooLarge) {
			// Retried: the records wait (nothing is dropped) until the
			// topic takes them or the spec names an S3 dead letter.
			return nil, fmt.Errorf("dead letter to topic %s: a record is larger than the topic accepts (%w): raise the topic's max.message.bytes, or use on_failure.dead_letter.s3", in.Topic, err)
		}
		return nil, fmt.Errorf("dead letter to topic %s: %w", in.Topic, err)
	}
	return &DeadLettered{Count: len(recs), Where: in.Topic}, nil
}
