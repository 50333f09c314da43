package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.temporal.io/sdk/activity"
)

// ShardAt is an idle shard and the position its consumer waits at or,
// with Observe, a paused shard and its checkpoint.
type ShardAt struct {
	Shard string
	ShardPosition
	// Observe: the shard is paused; the watcher reports how far behind it
	// is (ShardsWatched.Behind) instead of waking it.
	Observe bool `json:",omitempty"`
	// BehindSince (with Observe) is the arrival time of the oldest record
	// waiting after the position, as last known (zero: none known).
	BehindSince time.Time `json:",omitempty"`
}

// WatchShardsInput asks the watcher of a connector's stream to wait until
// one of its idle shards has records (or is closed and read to its end),
// or the stream has a shard the connector does not know.
type WatchShardsInput struct {
	KinesisStreamRef
	Idle []ShardAt
	// Known are the IDs of the shards the connector knows.
	Known []string
	// Timeout bounds the wait (the connector then starts another).
	Timeout time.Duration
	// ListEvery is how often the shards are listed (0: every 10 s).
	ListEvery time.Duration `json:",omitempty"`
	// ObserveEvery is how long the watcher gathers what it learns of
	// observed (paused) shards before it returns (0: 15 s); RefreshEvery
	// is how often it returns while one of them is behind, so its
	// millis-behind gauge keeps moving (0: 1 minute).
	ObserveEvery time.Duration `json:",omitempty"`
	RefreshEvery time.Duration `json:",omitempty"`
}

// ShardsWatched is what the shard watcher saw: the idle shards with
// records past their position or at their end, whether the stream has new
// shards, or why it could not tell (Problem, after Kinesis failed to
// answer for watchFailing).
type ShardsWatched struct {
	Ready     []string `json:",omitempty"`
	NewShards bool     `json:",omitempty"`
	Problem   string   `json:",omitempty"`
	// Behind are the observed shards (at the positions they were observed
	// at) with the arrival time of their oldest waiting record (zero:
	// none waits), when one changed or one is behind.
	Behind []ShardAt `json:",omitempty"`
}

// Shard watcher pacing: each idle shard is polled once per
// shardWatchPoll (GetRecords of one record: 4 reads a second, within
// Kinesis' 5 per shard; the shard's consumer reads only once woken, when
// the watcher no longer polls it; a throttled poll is simply skipped), by
// at most shardWatchPollers requests at once; the
// shard list is read once per shardWatchList (WatchShardsInput.ListEvery).
const (
	shardWatchPoll    = 250 * time.Millisecond
	shardWatchPollers = 16
	shardWatchList    = 10 * time.Second
)

// WatchShards is the idle watcher of one Kinesis connector: a single
// heartbeating activity that polls its idle shards' tips (GetRecords of
// one record after each one's position; an iterator is kept between
// polls, so a poll that finds nothing consumes nothing) and lists the
// stream's shards, and returns as soon as an idle shard has records or is
// closed and fully read, or a shard appears. Idle consumers wait for the
// connector's wake signal instead of polling themselves, so an idle
// connector costs this activity's heartbeats, whatever its shard count.
func (k *Kinesis) WatchShards(ctx context.Context, in WatchShardsInput) (*ShardsWatched, error) {
	if in.Timeout <= 0 {
		in.Timeout = 10 * time.Minute
	}
	c, err := k.client(ctx, in.KinesisStreamRef)
	if err != nil {
		return nil, err
	}
	if in.ListEvery <= 0 {
		in.ListEvery = shardWatchList
	}
	if in.ObserveEvery <= 0 {
		in.ObserveEvery = defaultObserveEvery
	}
	if in.RefreshEvery <= 0 {
		in.RefreshEvery = time.Minute
	}
	start := time.Now()
	deadline := start.Add(in.Timeout)
	nextList := start.Add(in.ListEvery)
	iters := make([]*string, len(in.Idle))
	// observed: what is known of each observed shard; settled: its oldest
	// waiting record is known (it cannot change while the shard is
	// paused) or the shard is closed and read to its end.
	observed := make([]time.Time, len(in.Idle))
	settled := make([]bool, len(in.Idle))
	for i, s := range in.Idle {
		observed[i], settled[i] = s.BehindSince, !s.BehindSince.IsZero()
	}
	var failing time.Time
	for {
		var (
			mu      sync.Mutex
			ready   []string
			lastErr error
			wg      sync.WaitGroup
			slots   = make(chan struct{}, shardWatchPollers)
		)
		for i, s := range in.Idle {
			if settled[i] {
				continue
			}
			wg.Add(1)
			slots <- struct{}{}
			go func() {
				defer func() { <-slots; wg.Done() }()
				has, arrived, next, err := pollShardTip(ctx, c, in.KinesisStreamRef, s, iters[i])
				mu.Lock()
				defer mu.Unlock()
				iters[i] = next
				switch {
				case err != nil:
					lastErr = err
				case has && s.Observe:
					observed[i], settled[i] = arrived, true
				case has:
					ready = append(ready, s.Shard)
				}
			}()
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out := ShardsWatched{Ready: ready}
		slices.Sort(out.Ready)
		changed, behind := false, false
		for i, s := range in.Idle {
			if s.Observe {
				changed = changed || !observed[i].Equal(s.BehindSince)
				behind = behind || !observed[i].IsZero()
			}
		}
		if changed && time.Since(start) >= in.ObserveEvery || behind && time.Since(start) >= in.RefreshEvery {
			for i, s := range in.Idle {
				if s.Observe {
					s.BehindSince = observed[i]
					out.Behind = append(out.Behind, s)
				}
			}
		}
		if time.Now().After(nextList) {
			nextList = time.Now().Add(in.ListEvery)
			listed, err := k.ListShards(ctx, in.KinesisStreamRef)
			if err != nil {
				lastErr = err
			}
			for _, s := range listed {
				if !slices.Contains(in.Known, s.ID) {
					out.NewShards = true
				}
			}
		}
		if lastErr == nil {
			failing = time.Time{}
		} else if failing.IsZero() {
			failing = time.Now()
		}
		if !failing.IsZero() && time.Since(failing) > watchFailing {
			out.Problem = fmt.Sprintf("kinesis: watching %s: %v", in.name(), lastErr)
		}
		if len(out.Ready) > 0 || out.NewShards || out.Problem != "" || len(out.Behind) > 0 {
			return &out, nil
		}
		if time.Now().After(deadline) {
			return &ShardsWatched{}, nil
		}
		activity.RecordHeartbeat(ctx, len(in.Idle))
		if !sleepCtx(ctx, shardWatchPoll) {
			return nil, ctx.Err()
		}
	}
}

// pollShardTip tells whether a shard has a record after s's position (and
// when the first of them arrived), or is closed and read to its end (has,
// with a zero arrival), from iter (nil: a new iterator). It returns the
// iterator to poll with next (nil: make a new one).
func pollShardTip(ctx context.Context, c *kinesis.Client, ref KinesisStreamRef, s ShardAt, iter *string) (has bool, arrived time.Time, next *string, err error) {
	if iter == nil {
		if iter, err = shardIterator(ctx, c, ref, s.Shard, s.ShardPosition); err != nil {
			return false, time.Time{}, nil, err
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.GetRecords(pctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1)})
	var throttled *ktypes.ProvisionedThroughputExceededException
	var expired *ktypes.ExpiredIteratorException
	switch {
	case errors.As(err, &throttled):
		return false, time.Time{}, iter, nil // poll again next round
	case errors.As(err, &expired):
		return false, time.Time{}, nil, nil
	case err != nil:
		return false, time.Time{}, nil, fmt.Errorf("polling %s: %w", s.Shard, err)
	case len(resp.Records) > 0:
		return true, aws.ToTime(resp.Records[0].ApproximateArrivalTimestamp).UTC(), nil, nil
	case resp.NextShardIterator == nil:
		return true, time.Time{}, nil, nil // closed and read to its end: its consumer finishes
	}
	// Nothing was consumed: the same position continues.
	return false, time.Time{}, resp.NextShardIterator, nil
}
