package activities

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.temporal.io/sdk/activity"
)

// PartitionAt is an idle partition and the checkpoint it waits at; or,
// with Observe, a paused partition and its end offset as last known.
type PartitionAt struct {
	Partition int32
	From      int64
	// Observe: the partition is paused; the watcher reports its end offset
	// when it moved past From (Watched.Ends), so its lag stays true.
	Observe bool `json:",omitempty"`
}

// WatchInput asks the watcher of a connector's topic to wait until one of
// its idle partitions has records, or the topic has more partitions than
// Known.
type WatchInput struct {
	TopicRef
	// Group, when set, first receives the idle partitions' checkpoints
	// (the consumers went idle without committing their last batch).
	Group string `json:",omitempty"`
	Idle  []PartitionAt
	// Known is how many partitions the connector runs consumers for.
	Known int
	// Timeout bounds the wait (the connector then starts another).
	Timeout time.Duration
	// ObserveEvery is how long the watcher gathers moved ends of observed
	// (paused) partitions before it returns them (default 15 s): a paused
	// connector's lag stays true at a few actions a minute.
	ObserveEvery time.Duration `json:",omitempty"`
}

// Watched is what the watcher saw: the idle partitions with records past
// their checkpoint, the partition count when it grew, or why it could not
// tell (Problem, after the brokers failed to answer for watchFailing).
type Watched struct {
	Ready      []int32 `json:",omitempty"`
	Partitions int     `json:",omitempty"`
	Problem    string  `json:",omitempty"`
	// Ends are the observed partitions whose end moved (From: the end).
	Ends []PartitionAt `json:",omitempty"`
}

// defaultObserveEvery is WatchInput.ObserveEvery's default.
const defaultObserveEvery = 15 * time.Second

// watchFailing is how long end-offset polls may fail before the watcher
// returns the problem for its connector's status.
const watchFailing = 10 * time.Second

// WatchPartitions is the idle watcher of one Kafka connector: a single
// heartbeating long poll of the topic's end offsets (one ListOffsets
// request per poll for every partition, shared with the worker's other
// waiters) that returns as soon as an idle partition has records past its
// checkpoint or new partitions appear. Idle consumers wait for the
// connector's wake signal instead of polling themselves, so an idle
// connector costs this activity's heartbeats, whatever its partition count.
func (k *Kafka) WatchPartitions(ctx context.Context, in WatchInput) (*Watched, error) {
	if in.Timeout <= 0 {
		in.Timeout = 10 * time.Minute
	}
	if in.ObserveEvery <= 0 {
		in.ObserveEvery = defaultObserveEvery
	}
	start := time.Now()
	adm, err := k.clients.admin(in.KafkaCluster)
	if err != nil {
		return nil, err
	}
	if in.Group != "" && len(in.Idle) > 0 {
		var offs kadm.Offsets
		for _, p := range in.Idle {
			if !p.Observe {
				offs.AddOffset(in.Topic, p.Partition, p.From, -1)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := adm.CommitOffsets(cctx, in.Group, offs)
		cancel()
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			// The group only mirrors the checkpoints: the next batch or watch mirrors them.
			activity.GetLogger(ctx).Warn("Mirroring idle checkpoints to the group failed", "Error", err)
		}
	}
	key := in.key() + "|" + in.Topic
	w := k.clients.watch(adm, key, in.Topic)
	defer k.clients.unwatch(key, w)
	deadline := time.NewTimer(in.Timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ends, changed, failing, lastErr := w.ends, w.changed, w.failing, w.lastErr
		w.mu.Unlock()
		var out Watched
		for _, p := range in.Idle {
			end, ok := ends[p.Partition]
			switch {
			case !ok || end <= p.From:
			case p.Observe:
				out.Ends = append(out.Ends, PartitionAt{Partition: p.Partition, From: end})
			default:
				out.Ready = append(out.Ready, p.Partition)
			}
		}
		if len(ends) > in.Known {
			out.Partitions = len(ends)
		}
		if !failing.IsZero() && time.Since(failing) > watchFailing {
			out.Problem = fmt.Sprintf("kafka: listing end offsets of %s: %v", in.Topic, lastErr)
		}
		if len(out.Ready) > 0 || out.Partitions > 0 || out.Problem != "" || len(out.Ends) > 0 && time.Since(start) >= in.ObserveEvery {
			return &out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return &Watched{}, nil
		case <-changed:
			activity.RecordHeartbeat(ctx, len(in.Idle))
		}
	}
}
