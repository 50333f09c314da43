package devstack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNATSStandIn publishes to a JetStream stream over several subjects with
// the nats CLI, reads it back through a durable consumer in stream order,
// and finds the stream and the consumer's position again after a restart on
// the same store and port.
func TestNATSStandIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	n, err := StartNATS(NATSOptions{DataDir: dir})
	require.NoError(t, err)
	url := n.URL()

	js := jetStream(t, url)
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WEB", Subjects: []string{"web.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	// The nats CLI (a third-party client, make bin/nats) publishes 30
	// messages to each of three subjects through JetStream.
	for _, subject := range []string{"web.a", "web.b", "web.c"} {
		out, err := exec.CommandContext(ctx, natsCLI(t), "pub", subject, subject+" {{Count}}", "--count", "30", "--jetstream", "--quiet", "--server", url).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	info, err := s.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(90), info.State.Msgs)

	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "reader", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := c.Fetch(60, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	next := map[string]int{}
	var seq uint64
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		require.NoError(t, err)
		assert.Greater(t, meta.Sequence.Stream, seq, "stream order")
		seq = meta.Sequence.Stream
		assert.Equal(t, fmt.Sprintf("%s %d", m.Subject(), next[m.Subject()]+1), string(m.Data()), "per-subject order")
		next[m.Subject()]++
		require.NoError(t, m.DoubleAck(ctx), "ack confirmed by the server")
	}
	require.NoError(t, batch.Error())
	assert.Equal(t, uint64(60), seq)

	// A restart on the same store and port keeps the stream and where the
	// durable consumer is: 30 messages still pending.
	n.Stop()
	n, err = StartNATS(NATSOptions{DataDir: dir, Port: portOf(t, url)})
	require.NoError(t, err)
	defer n.Stop()
	js = jetStream(t, n.URL())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ci, err := js.Consumer(ctx, "WEB", "reader")
		if !assert.NoError(c, err) {
			return
		}
		got, err := ci.Info(ctx)
		if assert.NoError(c, err) {
			assert.Equal(c, uint64(30), got.NumPending, "pending after the restart")
			assert.Equal(c, uint64(60), got.AckFloor.Stream, "acknowledged before the restart")
		}
	}, 20*time.Second, 200*time.Millisecond, "the consumer resumes after 60 with 30 pending")
}

// natsCLI is the nats CLI that make bin/nats builds.
func natsCLI(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../bin/nats")
	require.NoError(t, err)
	_, err = os.Stat(p)
	require.NoError(t, err, "the nats CLI: run make bin/nats")
	return p
}

func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func portOf(t *testing.T, url string) int {
	t.Helper()
	var port int
	_, err := fmt.Sscanf(url, "nats://127.0.0.1:%d", &port)
	require.NoError(t, err)
	return port
}
