package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/natssource"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// natsKind names the NATS kind's workflows.
var natsKind = spec.SourceKindOf(natssource.Kind())

// natsStack is the NATS stand-in with one stream, and the nats CLI (a
// third-party client) to publish with.
type natsStack struct {
	url, cli string
	js       jetstream.JetStream
}

func startNATS(t *testing.T, stream string, subjects ...string) natsStack {
	t.Helper()
	n, err := devstack.StartNATS(devstack.NATSOptions{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	nc, err := nats.Connect(n.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: stream, Subjects: subjects, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	cli := filepath.Join(env.Root, "bin", "nats")
	_, err = os.Stat(cli)
	require.NoError(t, err, "the nats CLI: run make bin/nats")
	return natsStack{url: n.URL(), cli: cli, js: js}
}

// publish sends count messages to subject with the nats CLI, through
// JetStream (each acknowledged): body is a Go template of the CLI
// ({{Count}} numbers them from 1).
func (s natsStack) publish(t *testing.T, subject, body string, count int) {
	t.Helper()
	out, err := exec.Command(s.cli, "pub", subject, body, "--count", fmt.Sprint(count), "--jetstream", "--quiet", "--server", s.url).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// stored reads every message the stream holds, by "SUBJECT/SEQUENCE".
func (s natsStack) stored(t *testing.T, stream string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := s.js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	out := map[string]string{}
	for uint64(len(out)) < info.State.Msgs {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			require.NoError(t, err)
			out[fmt.Sprintf("%s/%d", m.Subject(), meta.Sequence.Stream)] = string(m.Data())
		}
		require.NoError(t, batch.Error())
	}
	return out
}

// natsStatus queries a NATS connector's status.
func natsStatus(t *testing.T, name string) workflows.SourceConnectorStatus {
	t.Helper()
	v, err := env.Client.QueryWorkflow(context.Background(), natsKind.WorkflowID(name), "", workflows.QuerySourceStatus)
	require.NoError(t, err)
	var st workflows.SourceConnectorStatus
	require.NoError(t, v.Get(&st))
	return st
}

func unitSummary(st workflows.SourceConnectorStatus) string {
	var parts []string
	for _, u := range st.Units {
		parts = append(parts, fmt.Sprintf("%s %s %d records, checkpoint %d, lag %d, error %q", u.Unit, u.Phase, u.Records, u.Checkpoint, u.Lag, u.LastError))
	}
	return strings.Join(parts, "; ")
}

// sourceLedger is a source stream connector's recordLedger.
func sourceLedger(t *testing.T, connector string) []recordRun {
	return recordLedger(t, connector, "source_records")
}

// TestNATSTenThousandMessagesThroughThreeKillNines is the NATS kind's
// acceptance run: 10,000 messages published by the nats CLI over four
// subjects, and one poison message, while the worker process is killed
// with SIGKILL at three random points. The ledger from the task outputs
// shows every message processed by exactly one successful task, each
// subject in order and one successful job per batch identity; the poison
// message is bisected to the S3 dead letter, alone; every subject's lag
// ends at 0.
func TestNATSTenThousandMessagesThroughThreeKillNines(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const stream, name, queue, bucket = "WEB", "e2e-nats", "e2e-nats-big", "e2e-nats-dlq"
	subjects := []string{"web.eu", "web.us", "web.ap", "web.sa"}
	n := startNATS(t, stream, "web.>")
	createBucket(t, bucket)
	round := func(r int) {
		for _, s := range subjects {
			// JSON access log lines the task parses; the path names the
			// subject, the round and the message.
			n.publish(t, s, fmt.Sprintf(`{"status":200,"bytes":%d,"path":"/%s/%d/{{Count}}"}`, r, s, r), 625)
		}
	}
	round(1)

	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	secret := make([]byte, 24)
	_, _ = crand.Read(secret)
	wopts := testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw, GatewaySecret: hex.EncodeToString(secret),
		Log: filepath.Join(env.Dir, "worker-nats.log")}
	w, err := env.StartWorkerProcess(ctx, wopts)
	require.NoError(t, err)
	defer func() { w.Kill() }()

	spec := connectorSpecFile(t, name, "nats", fmt.Sprintf("  nats: {url: %q, stream: %s}", n.url, stream),
		fmt.Sprintf(`batch: {max_records: 1000, max_wait: 1s}
retry: {max_attempts: 2, initial_interval: 1s}
on_failure:
  dead_letter: {s3: {bucket: %s, prefix: dlq/, endpoint: %q, region: %s}}
`, bucket, env.S3.Endpoint(), env.S3.Region()), "-reject=POISON")
	o, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, o)
	defer func() { _, _ = starter(t, queue, "delete", name) }()

	rnd := rand.New(rand.NewPCG(2026, 12))
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(1500+rnd.IntN(3000)) * time.Millisecond)
		w.Kill()
		t.Logf("worker killed (%d of 3)", i+1)
		round(i + 2)
		if i == 0 {
			poison := `POISON {"status":500,"bytes":1,"path":"/poison"}`
			noteRecord("the NATS poison message", poison)
			n.publish(t, "web.eu", poison, 1)
		}
		w, err = env.StartWorkerProcess(ctx, wopts)
		require.NoError(t, err)
	}
	sent := n.stored(t, stream)
	require.Len(t, sent, 10001)

	require.NoError(t, testenv.Eventually(4*time.Minute, func() error {
		st := natsStatus(t, name)
		if st.Records < 10000 || st.DeadLettered < 1 || st.Lag > 0 {
			return fmt.Errorf("%d of 10000 records, %d dead-lettered, lag %d (%s); units: %s", st.Records, st.DeadLettered, st.Lag, st.LastError, unitSummary(st))
		}
		return nil
	}))
	st := natsStatus(t, name)
	assert.EqualValues(t, 10000, st.Records, "no message counted twice")
	assert.EqualValues(t, 1, st.DeadLettered)
	assert.Zero(t, st.Lag, "every subject caught up")
	require.Len(t, st.Units, len(subjects))
	for _, u := range st.Units {
		assert.Zero(t, u.Lag, "subject %s: lag", u.Unit)
		t.Logf("subject %s: %s, %d records in %d batches, checkpoint %d", u.Unit, u.Phase, u.Records, u.Batches, u.Checkpoint)
	}

	// Exactly once, per-subject order, one successful job per batch identity.
	runs := sourceLedger(t, name)
	seen := map[string]int{}
	perBatch := map[string]int{}
	lastPos := map[string]int64{}
	for _, r := range runs {
		perBatch[r.batch]++
		for _, id := range r.records {
			seen[id]++
			body, ok := sent[id]
			require.True(t, ok, "message %s was published", id)
			assert.False(t, strings.HasPrefix(body, "POISON"), "the poison message never passes")
			subject, pos, _ := strings.Cut(id, "/")
			var p int64
			_, err := fmt.Sscan(pos, &p)
			require.NoError(t, err)
			if last, ok := lastPos[subject]; ok && p <= last {
				t.Errorf("subject %s: message %d processed after %d (job %s)", subject, p, last, r.job)
			}
			lastPos[subject] = p
		}
	}
	assert.Len(t, seen, 10000, "every message processed")
	for id, c := range seen {
		if c != 1 {
			assert.Equal(t, 1, c, "message %s in exactly one successful task", id)
		}
	}
	for batch, c := range perBatch {
		assert.Equal(t, 1, c, "batch %s has one successful job", batch)
	}
	t.Logf("%d messages in %d successful jobs", len(seen), len(runs))

	// The dead letter holds the poison message with its error, nothing else.
	keys := listKeys(t, bucket, "dlq/")
	require.Len(t, keys, 1)
	obj, err := env.S3.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(keys[0])})
	require.NoError(t, err)
	raw, err := io.ReadAll(obj.Body)
	require.NoError(t, err)
	var doc struct {
		Kind, Unit, Error string
		Records           []struct {
			Unit     string `json:"unit"`
			Position int64  `json:"position"`
			Value    string `json:"value"`
		}
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	assert.Equal(t, "nats", doc.Kind)
	assert.Equal(t, "web.eu", doc.Unit)
	require.Len(t, doc.Records, 1)
	assert.True(t, strings.HasPrefix(doc.Records[0].Value, "POISON "))
	assert.True(t, strings.HasPrefix(sent[fmt.Sprintf("web.eu/%d", doc.Records[0].Position)], "POISON "), "the dead letter names the poison's position")
	assert.Contains(t, doc.Error, "cannot process record: ", "the dead letter carries the task's stderr, read from Bacalhau")
	recordHistory(t, natsKind.UnitWorkflowID(name, "web.eu"), "nats-subject")
}
