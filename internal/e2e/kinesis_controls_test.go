package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestKinesisBehindStaysTrueWhilePaused: records put to a paused Kinesis
// shard show in how far it is behind (describe, list and the
// connect_shard_millis_behind gauge, which agree), growing while they
// wait; reset --to latest while paused brings it back to 0, and after
// resume the skipped records never run. (The stand-in, kinesalite,
// reports MillisBehindLatest 0 for open shards, so the behind shown while
// paused is the connector's own: the oldest waiting record's arrival.)
func TestKinesisBehindStaysTrueWhilePaused(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const stream, name, queue = "e2e-paused-clicks", "e2e-kinesis-paused", "e2e-kinesis-paused"
	const shard = "shardId-000000000000"
	k := startKinesis(t)
	require.NoError(t, k.CreateStream(ctx, stream, 1))

	base := startMetricsWorker(t, queue, "worker-kinesis-paused.log")
	gauge := func() (float64, bool) {
		m := scrape(t, base+"/metrics", `connector="`+name+`"`, `shard="`+shard+`"`)
		v, ok := m[workflows.MetricShardBehind]
		return v, ok
	}

	spec := connectorSpecFile(t, name, "kinesis", fmt.Sprintf("  kinesis: {stream: %s, endpoint: %q}", stream, k.Endpoint()),
		"batch: {max_records: 100, max_wait: 1s}\n")
	out, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, out)
	defer func() { _, _ = starter(t, queue, "delete", name); waitClosed(t, workflows.KinesisWorkflowID(name)) }()
	first := putKinesis(t, k, stream, 0, 3, 1)
	waitShardRecords(t, name, 3)

	_, err = starter(t, queue, "pause", name)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		if st := shardStatus(t, name, shard); st.Phase != "paused" {
			return fmt.Errorf("shard %s", st.Phase)
		}
		return nil
	}))
	assert.Zero(t, kinesisStatus(t, name).Behind(time.Now()), "nothing waits yet")
	put := time.Now()
	waiting := putKinesis(t, k, stream, 100, 5, 1)

	// The watcher sees the oldest waiting record within its 15-s gathering.
	var st workflows.KinesisConnectorStatus
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		st = kinesisStatus(t, name)
		if len(st.Shards) != 1 || st.Shards[0].BehindSince.IsZero() {
			return fmt.Errorf("no waiting record seen yet: %+v", st.Shards)
		}
		return nil
	}))
	since := st.Shards[0].BehindSince
	assert.WithinDuration(t, put, since, 5*time.Second, "the oldest waiting record's arrival")
	assert.Equal(t, int64(3), st.Records, "nothing ran while paused")
	now := time.Now()
	behind := st.Behind(now)
	assert.Greater(t, behind, time.Duration(0))
	row := listRow(t, queue, "json", name)
	assert.InDelta(t, behind.Milliseconds(), row.BehindMillis, float64(5*time.Second/time.Millisecond), "list agrees with describe")
	described, err := starter(t, queue, "describe", name)
	require.NoError(t, err)
	assert.Regexp(t, `totals .*, behind ([1-9][0-9]*s|[0-9]+m)`, described, "describe shows the shard behind")
	require.NoError(t, testenv.Eventually(10*time.Second, func() error { // tally reports every second
		if v, ok := gauge(); !ok || v <= 0 {
			return fmt.Errorf("gauge %v (served %v): want the shard behind", v, ok)
		}
		return nil
	}))

	// It keeps growing while the records wait: describe at query time,
	// the gauge at the watcher's one-minute refresh.
	require.NoError(t, testenv.Eventually(2*time.Minute, func() error {
		if v, _ := gauge(); v < float64((time.Since(since)-45*time.Second).Milliseconds()) || v < 30_000 {
			return fmt.Errorf("gauge %v ms, waited %s", v, time.Since(since))
		}
		return nil
	}))
	assert.Greater(t, kinesisStatus(t, name).Behind(time.Now()), 30*time.Second)

	// Reset to latest while paused skips the waiting records: 0 behind.
	_, err = starter(t, queue, "reset", name, "--to", "latest")
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(30*time.Second, func() error {
		st := kinesisStatus(t, name)
		if b := st.Behind(time.Now()); b != 0 {
			return fmt.Errorf("behind %s after the reset", b)
		}
		if v, _ := gauge(); v != 0 {
			return fmt.Errorf("gauge %v after the reset", v)
		}
		return nil
	}))
	assert.Zero(t, listRow(t, queue, "json", name).BehindMillis)

	// Resume: new records run; the skipped ones never do.
	time.Sleep(time.Second) // the reset's timestamp is before the next put
	_, err = starter(t, queue, "resume", name)
	require.NoError(t, err)
	later := putKinesis(t, k, stream, 200, 2, 1)
	waitShardRecords(t, name, 5)
	var ran []string
	for _, r := range kinesisLedger(t, name) {
		ran = append(ran, r.records...)
	}
	for rec := range first {
		assert.Contains(t, ran, rec)
	}
	for rec := range later {
		assert.Contains(t, ran, rec)
	}
	for rec := range waiting {
		assert.False(t, slices.Contains(ran, rec), "skipped by the reset: %s", rec)
	}
	assert.Len(t, ran, 5)
	recordHistory(t, workflows.KinesisWorkflowID(name), "kinesis-connector-controls")
	recordHistory(t, workflows.ShardWorkflowID(name, shard), "kinesis-shard-controls")
}

// waitShardRecords waits until a Kinesis connector has processed n records.
func waitShardRecords(t *testing.T, name string, n int64) {
	t.Helper()
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		if st := kinesisStatus(t, name); st.Records < n {
			return fmt.Errorf("%d of %d records (%s)", st.Records, n, shardSummary(st))
		}
		return nil
	}))
}
