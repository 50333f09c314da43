package activities_test

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

func startKinesis(t *testing.T) *devstack.Kinesis {
	t.Helper()
	k, err := devstack.StartKinesis(context.Background(), devstack.KinesisOptions{StandinsDir: "../internal/devstack/standins"})
	require.NoError(t, err)
	t.Cleanup(k.Stop)
	return k
}

func putRecords(t *testing.T, c *kinesis.Client, stream string, from, n int) []string {
	t.Helper()
	var seqs []string
	for i := from; i < from+n; i++ {
		out, err := c.PutRecord(context.Background(), &kinesis.PutRecordInput{StreamName: aws.String(stream),
			PartitionKey: aws.String("k"), Data: []byte(fmt.Sprintf("record %d", i))})
		require.NoError(t, err)
		seqs = append(seqs, aws.ToString(out.SequenceNumber))
	}
	return seqs
}

func TestReadShardBatchesRangesAndTheEndOfASplitShard(t *testing.T) {
	ctx := context.Background()
	k := startKinesis(t)
	require.NoError(t, k.CreateStream(ctx, "reads", 1))
	c := k.Client()
	seqs := putRecords(t, c, "reads", 0, 25)
	ref := activities.KinesisStreamRef{Stream: "reads", Endpoint: k.Endpoint(), Region: k.Region()}
	shard := "shardId-000000000000"
	read := activities.ShardRead{KinesisStreamRef: ref, Shard: shard, MaxRecords: 10, MaxBytes: 1 << 20, MaxWait: time.Second}

	b, err := activities.ReadShard(ctx, c, read, nil)
	require.NoError(t, err)
	assert.Equal(t, 10, b.Count)
	assert.Equal(t, seqs[0], b.First)
	assert.Equal(t, seqs[4], b.Mid, "the last of the first half")
	assert.Equal(t, seqs[9], b.Last)
	assert.Contains(t, string(b.Lines), `"sequence_number":"`+seqs[0]+`"`)
	assert.Contains(t, string(b.Lines), `"value":"record 0"`)
	assert.False(t, b.ShardEnd)

	// After the checkpoint, up to an Until: exactly that range.
	read.After, read.Until = seqs[9], seqs[14]
	b, err = activities.ReadShard(ctx, c, read, nil)
	require.NoError(t, err)
	assert.Equal(t, 5, b.Count)
	assert.Equal(t, seqs[10], b.First)
	assert.True(t, b.ReachedUntil)

	// Split the open shard: the parent is closed, read to its end it
	// reports ShardEnd; ListShards gives the children their parent.
	desc, err := c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("reads")})
	require.NoError(t, err)
	hashEnd, ok := new(big.Int).SetString(aws.ToString(desc.StreamDescription.Shards[0].HashKeyRange.EndingHashKey), 10)
	require.True(t, ok)
	_, err = c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("reads"), ShardToSplit: aws.String(shard),
		NewStartingHashKey: aws.String(new(big.Int).Div(hashEnd, big.NewInt(2)).String())})
	require.NoError(t, err)
	require.NoError(t, k.WaitActive(ctx, "reads"))

	kin := activities.NewKinesis(nil, devstack.KinesisClient, nil)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(kin)
	v, err := env.ExecuteActivity(kin.ListShards, ref)
	require.NoError(t, err)
	var shards []activities.Shard
	require.NoError(t, v.Get(&shards))
	require.Len(t, shards, 3)
	assert.True(t, shards[0].Closed)
	assert.Equal(t, shard, shards[1].Parent)
	assert.Equal(t, shard, shards[2].Parent)

	read.After, read.Until, read.MaxRecords = seqs[14], "", 100
	b, err = activities.ReadShard(ctx, c, read, nil)
	require.NoError(t, err)
	assert.Equal(t, 10, b.Count, "the rest of the parent")
	b, err = activities.ReadShard(ctx, c, activities.ShardRead{KinesisStreamRef: ref, Shard: shard,
		ShardPosition: activities.ShardPosition{After: seqs[24]}, MaxRecords: 10, MaxBytes: 1 << 20, MaxWait: 5 * time.Second}, nil)
	require.NoError(t, err)
	assert.Zero(t, b.Count)
	assert.True(t, b.ShardEnd, "a closed shard read to its end")

	v, err = env.ExecuteActivity(kin.WaitForShardRecords, activities.WaitShardInput{KinesisStreamRef: ref, Shard: shard,
		ShardPosition: activities.ShardPosition{After: seqs[24]}, Timeout: 5 * time.Second})
	require.NoError(t, err)
	var w activities.ShardWait
	require.NoError(t, v.Get(&w))
	assert.True(t, w.ShardEnd)
	assert.False(t, w.Has)
}

func TestListShardsNamesAMissingStream(t *testing.T) {
	k := startKinesis(t)
	kin := activities.NewKinesis(nil, devstack.KinesisClient, nil)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(kin)
	_, err := env.ExecuteActivity(kin.ListShards, activities.KinesisStreamRef{Stream: "nope", Endpoint: k.Endpoint()})
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, activities.ErrTypeKinesisStreamNotFound, appErr.Type())
	assert.True(t, strings.Contains(err.Error(), "stream nope not found"), err.Error())
	assert.True(t, appErr.NonRetryable())
}

// TestWatchShardsWakesOnRecordsOnTheEndOfAClosedShardAndOnNewShards: the
// Kinesis idle watcher returns nothing while its idle shard has nothing
// after its position (and consumes nothing: the record that arrives next
// is seen), the shard as soon as a record arrives, a closed shard read to
// its end, and new shards the connector does not know.
func TestWatchShardsWakesOnRecordsOnTheEndOfAClosedShardAndOnNewShards(t *testing.T) {
	ctx := context.Background()
	k := startKinesis(t)
	require.NoError(t, k.CreateStream(ctx, "watched", 1))
	c := k.Client()
	seqs := putRecords(t, c, "watched", 0, 3)
	ref := activities.KinesisStreamRef{Stream: "watched", Endpoint: k.Endpoint(), Region: k.Region()}
	shard := "shardId-000000000000"
	kin := activities.NewKinesis(nil, devstack.KinesisClient, nil)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(kin)
	watch := func(in activities.WatchShardsInput) activities.ShardsWatched {
		t.Helper()
		v, err := env.ExecuteActivity(kin.WatchShards, in)
		require.NoError(t, err)
		var got activities.ShardsWatched
		require.NoError(t, v.Get(&got))
		return got
	}
	idle := []activities.ShardAt{{Shard: shard, ShardPosition: activities.ShardPosition{After: seqs[2]}}}

	got := watch(activities.WatchShardsInput{KinesisStreamRef: ref, Idle: idle, Known: []string{shard}, Timeout: 3 * time.Second})
	assert.Equal(t, activities.ShardsWatched{}, got, "nothing after the idle position: the watch times out")

	go func() {
		time.Sleep(500 * time.Millisecond)
		putRecords(t, c, "watched", 3, 1)
	}()
	got = watch(activities.WatchShardsInput{KinesisStreamRef: ref, Idle: idle, Known: []string{shard}, Timeout: time.Minute})
	assert.Equal(t, activities.ShardsWatched{Ready: []string{shard}}, got, "the record that arrived")

	// Split the shard: the parent, idle at its last record, is closed and
	// read to its end; the children are new shards.
	desc, err := c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("watched")})
	require.NoError(t, err)
	hashEnd, ok := new(big.Int).SetString(aws.ToString(desc.StreamDescription.Shards[0].HashKeyRange.EndingHashKey), 10)
	require.True(t, ok)
	_, err = c.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("watched"), ShardToSplit: aws.String(shard),
		NewStartingHashKey: aws.String(new(big.Int).Div(hashEnd, big.NewInt(2)).String())})
	require.NoError(t, err)
	require.NoError(t, k.WaitActive(ctx, "watched"))
	v, err := env.ExecuteActivity(kin.ListShards, ref)
	require.NoError(t, err)
	var shards []activities.Shard
	require.NoError(t, v.Get(&shards))
	require.Len(t, shards, 3)
	all := []string{shards[0].ID, shards[1].ID, shards[2].ID}
	last, err := c.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: mustIterator(t, c, shard, seqs[2])})
	require.NoError(t, err)
	require.Len(t, last.Records, 1)
	atEnd := []activities.ShardAt{{Shard: shard, ShardPosition: activities.ShardPosition{After: aws.ToString(last.Records[0].SequenceNumber)}}}
	got = watch(activities.WatchShardsInput{KinesisStreamRef: ref, Idle: atEnd, Known: all, Timeout: time.Minute})
	assert.Equal(t, activities.ShardsWatched{Ready: []string{shard}}, got, "a closed shard read to its end wakes its consumer (to finish)")

	got = watch(activities.WatchShardsInput{KinesisStreamRef: ref, Known: []string{shard}, Timeout: time.Minute, ListEvery: time.Second})
	assert.Equal(t, activities.ShardsWatched{NewShards: true}, got, "the children are new")
}

func mustIterator(t *testing.T, c *kinesis.Client, shard, after string) *string {
	t.Helper()
	out, err := c.GetShardIterator(context.Background(), &kinesis.GetShardIteratorInput{StreamName: aws.String("watched"), ShardId: aws.String(shard),
		ShardIteratorType: ktypes.ShardIteratorTypeAfterSequenceNumber, StartingSequenceNumber: aws.String(after)})
	require.NoError(t, err)
	return out.ShardIterator
}
