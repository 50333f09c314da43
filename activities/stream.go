package activities

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/activity"

	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
)

// Kafka holds the Kafka administration activities. Clients are made per
// call (connections to loopback or a nearby cluster are cheap; sharing them
// across partitions is future work for very many consumers).
type Kafka struct{}

// NewKafka returns the Kafka activities.
func NewKafka() *Kafka { return &Kafka{} }

func admin(brokers []string) (*kadm.Client, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: client: %w", err)
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// TopicRef names a topic on a cluster.
type TopicRef struct {
	Brokers []string
	Topic   string
}

// Partitions lists a topic's partitions, sorted.
func (k *Kafka) Partitions(ctx context.Context, in TopicRef) ([]int32, error) {
	adm, done, err := admin(in.Brokers)
	if err != nil {
		return nil, err
	}
	defer done()
	td, err := adm.ListTopics(ctx, in.Topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: listing topic %s: %w", in.Topic, err)
	}
	t, ok := td[in.Topic]
	if !ok || t.Err != nil {
		return nil, nonRetryable("TopicNotFound", t.Err, "kafka: topic %s not found on %v", in.Topic, in.Brokers)
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
	adm, done, err := admin(in.Brokers)
	if err != nil {
		return 0, err
	}
	defer done()
	var offs kadm.ListedOffsets
	switch in.Start {
	case "offsets":
		return in.Offset, nil
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
	adm, done, err := admin(in.Brokers)
	if err != nil {
		return err
	}
	defer done()
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

// StreamSubmitInput reads the next batch of a partition and submits it.
type StreamSubmitInput struct {
	Read      KafkaRead
	Connector string
	Attempt   int
	Template  string
	// QueueTimeout and ExecutionTimeout bound the job.
	QueueTimeout, ExecutionTimeout time.Duration
}

// StreamBatch is a submitted batch: offsets and the job, never records.
type StreamBatch struct {
	JobID                          string
	First, Last                    int64
	Count                          int
	Bytes, Skipped                 int64
	Reused                         bool
	QueueTimeout, ExecutionTimeout time.Duration
}

// Job meta keys recording a stream batch's offsets.
const (
	MetaFirst = "connect.first"
	MetaLast  = "connect.last"
	MetaCount = "connect.count"
)

// StreamBatchID is a stream batch's identity: topic, partition and the
// checkpoint it starts from.
func StreamBatchID(topic string, partition int32, from int64) string {
	return topic + "/" + strconv.Itoa(int(partition)) + "@" + strconv.FormatInt(from, 10)
}

// ReadAndSubmit reads a partition from its checkpoint and submits the batch
// as one job carrying the records inline (JSON lines at
// /inputs/batch.jsonl). It returns offsets, counts and the job ID only: the
// records never enter workflow history. Idempotent: when a job for this
// batch identity and attempt exists, it is returned with the offsets
// recorded on it, so a retry after a crash never makes a bigger batch or a
// second job. A batch with Count 0 means nothing arrived within MaxWait.
func (b *Bacalhau) ReadAndSubmit(ctx context.Context, in StreamSubmitInput) (*StreamBatch, error) {
	id := StreamBatchID(in.Read.Topic, in.Read.Partition, in.Read.From)
	key := tasktemplate.Key(in.Connector, id, in.Attempt)
	existing, err := b.FindJob(ctx, key)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		sb := &StreamBatch{JobID: existing.ID, Reused: true, QueueTimeout: in.QueueTimeout, ExecutionTimeout: in.ExecutionTimeout}
		sb.First, _ = strconv.ParseInt(existing.Meta[MetaFirst], 10, 64)
		sb.Last, _ = strconv.ParseInt(existing.Meta[MetaLast], 10, 64)
		sb.Count, _ = strconv.Atoi(existing.Meta[MetaCount])
		sb.QueueTimeout, sb.ExecutionTimeout = tasktemplate.Timeouts(existing)
		return sb, nil
	}
	activity.RecordHeartbeat(ctx, "reading")
	batch, err := ReadPartition(ctx, in.Read)
	if err != nil {
		return nil, err
	}
	if batch.Count == 0 {
		return &StreamBatch{First: -1, Last: in.Read.From - 1}, nil
	}
	job, err := tasktemplate.Build(in.Template, tasktemplate.Batch{
		Connector: in.Connector, ID: id, Attempt: in.Attempt,
		Inputs: []tasktemplate.Input{{Target: "/inputs/batch.jsonl", Inline: batch.Lines}},
		Meta: map[string]string{
			MetaFirst: strconv.FormatInt(batch.First, 10),
			MetaLast:  strconv.FormatInt(batch.Last, 10),
			MetaCount: strconv.Itoa(batch.Count),
		},
		Labels:       map[string]string{"connect-kind": "kafka"},
		QueueTimeout: in.QueueTimeout, ExecutionTimeout: in.ExecutionTimeout,
	})
	if err != nil {
		return nil, nonRetryable(ErrTypeInvalidTask, err, "batch %s: %v", id, err)
	}
	resp, err := b.jobs.Put(ctx, &apimodels.PutJobRequest{Job: job})
	if err != nil {
		return nil, classify("submitting batch "+id, err)
	}
	q, e := tasktemplate.Timeouts(job)
	return &StreamBatch{JobID: resp.JobID, First: batch.First, Last: batch.Last, Count: batch.Count,
		Bytes: batch.Bytes, Skipped: batch.Skipped, QueueTimeout: q, ExecutionTimeout: e}, nil
}

// WaitInput asks whether a partition has records at or after From.
type WaitInput struct {
	TopicRef
	Partition int32
	From      int64
	// Timeout bounds the wait. Default 30 s.
	Timeout time.Duration
}

// WaitForRecords long-polls a partition's end offset, heartbeating, until
// records exist at or after From (true) or Timeout passes (false). Idle
// consumers wait here, holding no lease from the budget.
func (k *Kafka) WaitForRecords(ctx context.Context, in WaitInput) (bool, error) {
	if in.Timeout <= 0 {
		in.Timeout = 30 * time.Second
	}
	adm, done, err := admin(in.Brokers)
	if err != nil {
		return false, err
	}
	defer done()
	deadline := time.Now().Add(in.Timeout)
	for {
		ends, err := adm.ListEndOffsets(ctx, in.Topic)
		if err == nil {
			if o, ok := ends.Lookup(in.Topic, in.Partition); ok && o.Err == nil && o.Offset > in.From {
				return true, nil
			}
		}
		activity.RecordHeartbeat(ctx, in.From)
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
