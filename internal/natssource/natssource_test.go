package natssource

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

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/source"
)

// stack is the NATS stand-in with stream WEB (subjects web.>), and the
// nats CLI to publish with.
type stack struct {
	url, cli string
}

func newStack(t *testing.T) stack {
	t.Helper()
	n, err := devstack.StartNATS(devstack.NATSOptions{DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	nc, err := nats.Connect(n.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "WEB", Subjects: []string{"web.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	cli, err := filepath.Abs("../../bin/nats")
	require.NoError(t, err)
	_, err = os.Stat(cli)
	require.NoError(t, err, "the nats CLI: run make bin/nats")
	return stack{url: n.URL(), cli: cli}
}

// publish sends count messages "<subject> <tag>-<i>" (i from 1) to subject
// with the nats CLI, through JetStream.
func (s stack) publish(t *testing.T, subject, tag string, count int) {
	t.Helper()
	out, err := exec.Command(s.cli, "pub", subject, subject+" "+tag+"-{{Count}}", "--count", fmt.Sprint(count),
		"--jetstream", "--quiet", "--server", s.url).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

func open(t *testing.T, s stack, subjects ...string) *Source {
	t.Helper()
	src, err := Open(context.Background(), Config{URL: s.url, Stream: "WEB", Subjects: subjects})
	require.NoError(t, err)
	t.Cleanup(src.Close)
	return src
}

// values are the records' values as strings.
func values(rs []source.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Value))
	}
	return out
}

// TestSubjectsReadInOrderByRange publishes three subjects interleaved (5
// rounds of 5 messages each) and reads each subject in ranges: every
// message once, in order, with increasing stream sequences; the same
// bounded range reads the same records again, without waiting; a size
// bound cuts a read; pending counts what is left.
func TestSubjectsReadInOrderByRange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newStack(t)
	subjects := []string{"web.a", "web.b", "web.c"}
	var want = map[string][]string{}
	for round := range 5 {
		for _, subject := range subjects {
			s.publish(t, subject, fmt.Sprint("r", round), 5)
			for i := 1; i <= 5; i++ {
				want[subject] = append(want[subject], fmt.Sprintf("%s r%d-%d", subject, round, i))
			}
		}
	}
	src := open(t, s)
	units, err := src.Units(ctx)
	require.NoError(t, err)
	assert.Equal(t, subjects, units, "every subject with messages, sorted")

	lim := source.Limits{MaxRecords: 7, MaxBytes: 1 << 20, MaxWait: 300 * time.Millisecond}
	for _, unit := range units {
		from, err := src.Start(ctx, unit, source.Earliest)
		require.NoError(t, err)
		pending, err := src.Pending(ctx, unit, from)
		require.NoError(t, err)
		assert.Equal(t, uint64(25), pending, unit)
		var got []source.Record
		for {
			rs, err := src.Read(ctx, unit, from, 0, lim)
			require.NoError(t, err)
			require.LessOrEqual(t, len(rs.Items), 7)
			if len(rs.Items) == 0 {
				break
			}
			assert.Equal(t, len(got)+len(rs.Items) < 25, rs.Backlog, "%s: backlog after %d", unit, len(got)+len(rs.Items))
			got = append(got, rs.Items...)
			from = rs.Items[len(rs.Items)-1].Position + 1
		}
		assert.Equal(t, want[unit], values(got), "%s: every message once, in order", unit)
		for i := 1; i < len(got); i++ {
			assert.Greater(t, got[i].Position, got[i-1].Position)
			assert.Equal(t, unit, got[i].Key)
		}
		pending, err = src.Pending(ctx, unit, from)
		require.NoError(t, err)
		assert.Zero(t, pending, unit)

		// A bounded range reads the same records again; the stream has
		// passed its end, so neither read waits (a 1-hour MaxWait would
		// run past the context's deadline).
		first, last := got[3].Position, got[12].Position
		slow := source.Limits{MaxRecords: 100, MaxBytes: 1 << 20, MaxWait: time.Hour}
		a, err := src.Read(ctx, unit, first, last, slow)
		require.NoError(t, err)
		b, err := src.Read(ctx, unit, first, last, slow)
		require.NoError(t, err)
		assert.Equal(t, values(got[3:13]), values(a.Items), "%s: the range's records", unit)
		assert.Equal(t, a.Items, b.Items, "%s: the same range, the same records", unit)
		assert.True(t, a.Backlog, "records past the range")
		assert.True(t, a.Covered, "%s: the whole range read", unit)

		// A range a record limit stops short of is not covered; the rest
		// of it is, and a range between two records holds none, covered.
		part, err := src.Read(ctx, unit, first, last, source.Limits{MaxRecords: 4, MaxBytes: 1 << 20, MaxWait: time.Hour})
		require.NoError(t, err)
		assert.Len(t, part.Items, 4)
		assert.False(t, part.Covered, "%s: a limit stopped the read", unit)
		rest, err := src.Read(ctx, unit, part.Items[3].Position+1, last, slow)
		require.NoError(t, err)
		assert.Equal(t, values(got[7:13]), values(rest.Items))
		assert.True(t, rest.Covered)
		if gap := got[4].Position - got[3].Position; gap > 1 {
			none, err := src.Read(ctx, unit, got[3].Position+1, got[4].Position-1, slow)
			require.NoError(t, err)
			assert.Empty(t, none.Items, "%s: other subjects' sequences", unit)
			assert.True(t, none.Covered)
		}

		// A size bound: two records' worth.
		small := source.Limits{MaxRecords: 100, MaxBytes: got[0].Size() * 2, MaxWait: time.Second}
		c, err := src.Read(ctx, unit, got[0].Position, 0, small)
		require.NoError(t, err)
		assert.Len(t, c.Items, 2)
		assert.True(t, c.Backlog)
	}
}

// TestStartWaitAndLatest resolves earliest, latest and a time, and waits
// for records after the end: false until one is published.
func TestStartWaitAndLatest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := newStack(t)
	s.publish(t, "web.a", "old", 3)
	s.publish(t, "web.b", "other", 2)
	time.Sleep(20 * time.Millisecond) // stored times are the server's clock: keep the two sets apart
	mark := time.Now()
	s.publish(t, "web.a", "new", 2)
	src := open(t, s, "web.a")

	units, err := src.Units(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"web.a"}, units, "the configured subjects")
	earliest, err := src.Start(ctx, "web.a", source.Earliest)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), earliest)
	at, err := src.Start(ctx, "web.a", source.At(mark))
	require.NoError(t, err)
	assert.Equal(t, uint64(6), at, "the first web.a message stored after the mark (web.b holds 4 and 5)")
	latest, err := src.Start(ctx, "web.a", source.Latest)
	require.NoError(t, err)
	assert.Equal(t, uint64(8), latest)
	after, err := src.Start(ctx, "web.a", source.At(time.Now().Add(time.Hour)))
	require.NoError(t, err)
	assert.Equal(t, latest, after, "a time after every message: the next sequence")

	has, err := src.Wait(ctx, "web.a", latest, 300*time.Millisecond)
	require.NoError(t, err)
	assert.False(t, has, "nothing after the end")
	has, err = src.Wait(ctx, "web.a", at, time.Second)
	require.NoError(t, err)
	assert.True(t, has)
	s.publish(t, "web.b", "elsewhere", 1)
	has, err = src.Wait(ctx, "web.a", latest, 300*time.Millisecond)
	require.NoError(t, err)
	assert.False(t, has, "another subject's message does not count")
	s.publish(t, "web.a", "later", 1)
	has, err = src.Wait(ctx, "web.a", latest, 5*time.Second)
	require.NoError(t, err)
	assert.True(t, has)
}
