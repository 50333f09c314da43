package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// queueStatus queries a queue connector's status.
func (g *globals) queueStatus(cmd *cobra.Command, c client.Client, name string) (*workflows.QueueStatus, error) {
	return queryStatus[workflows.QueueStatus](cmd, c, name, workflows.QueueWorkflowID(name), workflows.QueryQueueStatus)
}

func queueState(st *workflows.QueueStatus) string {
	switch {
	case st.Paused:
		return "paused"
	case st.InFlight > 0:
		return "running"
	default:
		return "polling"
	}
}

func queueRow(st *workflows.QueueStatus) connectorRow {
	return connectorRow{Name: st.Name, Kind: st.Kind, State: queueState(st), Position: st.URL,
		Processed: st.Counters.Deleted, LastJob: st.LastJob, LastError: st.LastError}
}

// describeQueue renders a queue connector's status.
func describeQueue(st *workflows.QueueStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connector   %s (workflow %s), kind %s\nstate       %s, %d batch(es) in flight\nqueue       %s\n",
		st.Name, workflows.QueueWorkflowID(st.Name), st.Kind, queueState(st), st.InFlight, st.URL)
	if s := st.SNS; s != nil {
		fmt.Fprintf(&b, "sns         subscription %s (queue %s by this connector)\n", s.SubscriptionARN, map[bool]string{true: "created", false: "adopted"}[s.Created])
	}
	k := st.Counters
	fmt.Fprintf(&b, "counters    %d batches, %d messages, %d deleted, %d released (failed or reported), %d duplicates deleted, %d failed batches\n",
		k.Batches, k.Messages, k.Deleted, k.Released, k.Duplicates, k.FailedBatches)
	if st.LastJob != "" {
		fmt.Fprintf(&b, "last job    %s\n", st.LastJob)
	}
	if st.LastError != "" {
		fmt.Fprintf(&b, "last error  %s\n", st.LastError)
	}
	return b.String()
}
