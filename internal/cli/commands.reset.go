package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/internal/kinds"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func newResetCommand(g *globals) *cobra.Command {
	var to string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "reset NAME --to earliest|latest|TIME|PARTITION=OFFSET,...|key=KEY",
		Short: "Move a paused connector's position: Kafka offsets, Kinesis positions, S3 cursor (then resume it)",
		Long: `Move the position of a paused connector, then resume it to go on from there.

Kafka: every partition's checkpoint moves to the earliest retained offset, to
the end (latest), to the first offset at or after an RFC 3339 time, or to
explicit offsets (partitions not listed keep theirs). The consumer group
mirrors the new checkpoints at once.
Kinesis: the open shards move to TRIM_HORIZON (earliest), the time of the
reset (latest) or a time.
Cron (S3 cursor): earliest processes every object under the prefix again,
latest skips what was last modified before now, a time reprocesses what was
last modified at or after it, key=KEY processes the keys after KEY. The
spec's start_time still applies.

Kafka and Kinesis connectors pass the reset on to their partition or shard
consumers: reset waits until every one has applied it, printing progress
to stderr, and then prints the new positions (--timeout bounds the wait).

The connector must be paused, so no batch is in flight while its position
moves. Queue connectors have no position (a message is deleted once done).`,
		Example: `  starter pause web-events
  starter reset web-events --to earliest
  starter reset web-events --to 0=1200,1=980
  starter reset nightly-logs --to key=logs/2026-11-01/
  starter resume web-events`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			req, err := parseReset(to)
			if err != nil {
				return err
			}
			// The ID lets the starter see each consumer apply this reset.
			req.ID = "reset-" + time.Now().UTC().Format("20060102T150405.000000000")
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			found, err := g.kinds.Find(cmd.Context(), c, name)
			if err != nil {
				return err
			}
			k := found.Kind
			if k.Reset.Style == kinds.ResetNone {
				return fmt.Errorf("reset: connector %s is a %s connector; %s", name, k.Name, k.Reset.Why)
			}
			if req.To == workflows.StartKey && k.Reset.Style != kinds.ResetCursor {
				return fmt.Errorf("reset: --to key=KEY is for connectors with an S3 cursor (%s); connector %s is a %s connector (Kafka takes PARTITION=OFFSET,...)",
					strings.Join(g.kinds.Serving(func(k *kinds.Kind) bool { return k.Reset.Style == kinds.ResetCursor }), ", "), name, k.Name)
			}
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
				WorkflowID: found.WorkflowID, UpdateName: workflows.UpdateReset,
				Args: []interface{}{req}, WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			if err != nil {
				return kinds.ConnectorError(name, "reset", err)
			}
			if k.Reset.Style == kinds.ResetCursor {
				var cursor string
				if err := h.Get(cmd.Context(), &cursor); err != nil {
					return kinds.ConnectorError(name, "reset", err)
				}
				return g.print(map[string]any{"name": name, "kind": k.Name, "result": "reset", "to": to, "cursor": cursor},
					fmt.Sprintf("connector %s: S3 cursor reset: next ticks process %s; resume it to go on\n", name, cursor))
			}
			var n int
			if err := h.Get(cmd.Context(), &n); err != nil {
				return kinds.ConnectorError(name, "reset", err)
			}
			positions, err := g.waitReset(cmd, c, found, req.ID, n, wait)
			if err != nil {
				return err
			}
			unit := k.Reset.Unit
			return g.print(map[string]any{"name": name, "kind": k.Name, "result": "reset", unit: n, "to": to, "positions": positions},
				fmt.Sprintf("connector %s: %d %s reset to %s (%s); resume it to go on\n", name, n, unit, to, strings.Join(positions, ", ")))
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "earliest, latest, an RFC 3339 time, PARTITION=OFFSET[,PARTITION=OFFSET...] (Kafka) or key=KEY (cron)")
	cmd.Flags().DurationVar(&wait, "timeout", 2*time.Minute, "how long to wait for every partition or shard to apply the reset")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// parseReset reads --to.
func parseReset(to string) (workflows.ResetRequest, error) {
	switch to {
	case workflows.StartEarliest, workflows.StartLatest:
		return workflows.ResetRequest{To: to}, nil
	}
	if t, err := time.Parse(time.RFC3339, to); err == nil {
		return workflows.ResetRequest{To: workflows.StartTimestamp, Time: t}, nil
	}
	if key, ok := strings.CutPrefix(to, "key="); ok {
		if key == "" {
			return workflows.ResetRequest{}, errors.New("--to key=KEY: the key is empty; name the S3 key to start after, e.g. key=logs/2026-11-01/")
		}
		return workflows.ResetRequest{To: workflows.StartKey, Key: key}, nil
	}
	req := workflows.ResetRequest{To: workflows.StartOffsets, Offsets: map[int32]int64{}}
	for _, kv := range strings.Split(to, ",") {
		p, o, ok := strings.Cut(strings.TrimSpace(kv), "=")
		pi, perr := strconv.ParseInt(p, 10, 32)
		oi, oerr := strconv.ParseInt(o, 10, 64)
		if !ok || perr != nil || oerr != nil || pi < 0 || oi < 0 {
			return req, fmt.Errorf("--to: %q is not earliest, latest, an RFC 3339 time or PARTITION=OFFSET pairs such as 0=1200,1=980 (Kafka) or key=KEY (cron)", to)
		}
		req.Offsets[int32(pi)] = oi
	}
	return req, nil
}

// resetProgressEvery is how often reset checks its consumers.
const resetProgressEvery = time.Second

// waitReset waits until the n partition or shard consumers of a connector
// have applied the reset called id, printing "[i/n]" progress to stderr,
// and returns what moved (the kind's Reset.Progress: "P=OFFSET" per Kafka
// partition, the Kinesis shard IDs, each reading from the position when
// resumed). On timeout it names the consumers still waiting and their last
// error.
func (g *globals) waitReset(cmd *cobra.Command, c client.Client, found kinds.Running, id string, n int, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	last := -1
	name := found.Name
	for {
		applied, waiting, err := found.Kind.Reset.Progress(cmd.Context(), c, name, id)
		if err != nil {
			return nil, err
		}
		if len(applied) != last {
			fmt.Fprintf(g.stderr, "[%d/%d] consumers of %s applied the reset\n", len(applied), n, name)
			last = len(applied)
		}
		if len(applied) >= n {
			return applied, nil
		}
		if time.Now().After(deadline) {
			return applied, fmt.Errorf("reset %s: %d of %d consumers applied it within %s; still waiting: %s (starter describe %s shows them)",
				name, len(applied), n, timeout, strings.Join(waiting, "; "), name)
		}
		select {
		case <-cmd.Context().Done():
			return applied, cmd.Context().Err()
		case <-time.After(resetProgressEvery):
		}
	}
}
