package activities

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	"go.temporal.io/sdk/activity"
)

// Bacalhau v1.7 does not reschedule a running execution whose compute
// node died: the orchestrator marks the node disconnected after its
// heartbeat timeout, but it evaluates the job again only at the
// execution's timeout. Await therefore watches the nodes of the jobs it
// waits for: when every unfinished execution of a job sits on a node the
// orchestrator no longer counts connected, it stops the job (reason
// stopNodeLost) and fails with a retryable error. The retried activity
// looks its batch identity up, FindJob passes over the job stopped for a
// lost node, and the batch runs again as a new job under the same
// identity: the records are neither lost nor counted twice (the lost
// execution never completed), and no retry of the batch's own is spent.

// stopNodeLost is the reason Await stops a job whose node is gone.
const stopNodeLost = "bacalhau-connect: compute node lost; the batch runs again under its identity"

// nodeCheckEvery spaces one job's node checks (one executions request,
// plus the worker's shared node listing).
const nodeCheckEvery = 5 * time.Second

// nodeListTTL is how long the worker reuses a node listing.
const nodeListTTL = 3 * time.Second

// nodeHealth caches which compute nodes the orchestrator counts connected,
// for every await of the worker.
type nodeHealth struct {
	mu        sync.Mutex
	at        time.Time
	connected map[string]bool
}

// connectedNodes returns the IDs of connected compute nodes, listing them
// at most every nodeListTTL.
func (b *Bacalhau) connectedNodes(ctx context.Context) (map[string]bool, error) {
	h := b.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.connected != nil && time.Since(h.at) < nodeListTTL {
		return h.connected, nil
	}
	resp, err := b.nodes.List(ctx, &apimodels.ListNodesRequest{})
	if err != nil {
		return nil, classify("listing nodes", err)
	}
	connected := map[string]bool{}
	for _, n := range resp.Nodes {
		if n.Info.IsComputeNode() && n.IsConnected() {
			connected[n.Info.ID()] = true
		}
	}
	h.connected, h.at = connected, time.Now()
	return connected, nil
}

// lostNodes returns the nodes of job's unfinished executions when every
// one of them is gone, else nil. A job with no unfinished execution is
// not lost (it waits to be scheduled, or has ended).
func (b *Bacalhau) lostNodes(ctx context.Context, jobID string) []string {
	execs, err := b.executions(ctx, jobID)
	if err != nil {
		return nil // the next check looks again
	}
	var nodes []string
	for _, e := range execs {
		if e.IsTerminalState() {
			continue
		}
		nodes = append(nodes, e.NodeID)
	}
	if len(nodes) == 0 {
		return nil
	}
	connected, err := b.connectedNodes(ctx)
	if err != nil {
		return nil
	}
	for _, n := range nodes {
		if connected[n] {
			return nil
		}
	}
	return nodes
}

// nodeLost stops a job whose executions' nodes are gone and returns the
// retryable error that makes the activity run its batch again.
func (b *Bacalhau) nodeLost(ctx context.Context, jobID string, nodes []string) error {
	activity.GetLogger(ctx).Warn("Compute node lost mid-task; stopping the job so the batch runs again",
		"JobID", jobID, "Nodes", strings.Join(nodes, ","))
	b.stop(ctx, jobID, stopNodeLost)
	return fmt.Errorf("job %s: compute node %s lost mid-task; job stopped, the batch runs again under its identity",
		jobID, strings.Join(nodes, ","))
}

// stoppedForLostNode tells whether Await stopped job because its node was
// lost: such a job does not stand for its batch identity any more.
func stoppedForLostNode(job *models.Job) bool {
	return job.State.StateType == models.JobStateTypeStopped && strings.Contains(job.State.Message, stopNodeLost)
}
