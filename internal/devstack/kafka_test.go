package devstack

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafkaStandIn shows what the connectors rely on: partitions created up
// front and raised later, produce and fetch from Go, and kcat (Debian's, as
// users run it) producing to and reading metadata from the same broker.
func TestKafkaStandIn(t *testing.T) {
	ctx := context.Background()
	k, err := StartKafka(ctx, KafkaOptions{Topics: map[string]int32{"logs": 8}})
	require.NoError(t, err)
	defer k.Stop()

	c, err := k.Client(kgo.DefaultProduceTopic("logs"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	for p := int32(0); p < 8; p++ {
		for i := 0; i < 5; i++ {
			rec := &kgo.Record{Partition: p, Value: []byte("go-" + strconv.Itoa(int(p)) + "-" + strconv.Itoa(i))}
			require.NoError(t, c.ProduceSync(ctx, rec).FirstErr())
		}
	}

	kcat, err := exec.LookPath("kcat")
	require.NoError(t, err, "kcat is a test dependency: make tools (or apt-get install kcat) installs it")
	produce := exec.Command(kcat, "-b", k.Brokers()[0], "-t", "logs", "-p", "3", "-P")
	produce.Stdin = strings.NewReader("kcat-1\nkcat-2\n")
	out, err := produce.CombinedOutput()
	require.NoError(t, err, string(out))
	out, err = exec.Command(kcat, "-b", k.Brokers()[0], "-L", "-t", "logs").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "8 partitions")

	adm := kadm.NewClient(c)
	ends, err := adm.ListEndOffsets(ctx, "logs")
	require.NoError(t, err)
	end, ok := ends.Lookup("logs", 3)
	require.True(t, ok)
	assert.Equal(t, int64(7), end.Offset, "5 records from Go, 2 from kcat")

	_, err = adm.CreatePartitions(ctx, 4, "logs")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		td, err := adm.ListTopics(ctx, "logs")
		return err == nil && len(td["logs"].Partitions) == 12
	}, 5*time.Second, 100*time.Millisecond)

	// Read partition 3 back in order.
	r, err := k.Client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"logs": {3: kgo.NewOffset().AtStart()}}))
	require.NoError(t, err)
	defer r.Close()
	var got []string
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for len(got) < 7 && fctx.Err() == nil {
		r.PollFetches(fctx).EachRecord(func(rec *kgo.Record) { got = append(got, string(rec.Value)) })
	}
	assert.Equal(t, []string{"go-3-0", "go-3-1", "go-3-2", "go-3-3", "go-3-4", "kcat-1", "kcat-2"}, got)
}
