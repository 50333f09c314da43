package activities

import (
	"context"
	"math"

	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
)

// DefaultTaskCPU is the CPU a batch task gets when its template sets none
// (Bacalhau's JobDefaults.Batch.Task.Resources.CPU, 500m).
const DefaultTaskCPU = 0.5

// Capacity is what the connected compute nodes advertise.
type Capacity struct {
	ComputeNodes int
	// RunAtOnce is how many default-sized tasks the nodes run at the same time.
	RunAtOnce int
	// SuggestedBudget is about 1.5 × RunAtOnce: enough to keep nodes busy
	// while results are read, without piling jobs into Bacalhau's queue.
	SuggestedBudget int
}

// Capacity reads the connected compute nodes' capacity and suggests an
// in-flight job budget, assuming tasks of taskCPU cores (DefaultTaskCPU when 0).
func (b *Bacalhau) Capacity(ctx context.Context, taskCPU float64) (*Capacity, error) {
	if taskCPU <= 0 {
		taskCPU = DefaultTaskCPU
	}
	resp, err := b.nodes.List(ctx, &apimodels.ListNodesRequest{})
	if err != nil {
		return nil, classify("listing nodes", err)
	}
	c := &Capacity{}
	for _, n := range resp.Nodes {
		if !n.Info.IsComputeNode() || !n.IsConnected() || n.Info.ComputeNodeInfo.MaxCapacity.CPU <= 0 {
			continue
		}
		c.ComputeNodes++
		c.RunAtOnce += int(math.Floor(n.Info.ComputeNodeInfo.MaxCapacity.CPU/taskCPU + 1e-9))
	}
	c.SuggestedBudget = max(1, int(math.Ceil(1.5*float64(c.RunAtOnce))))
	return c, nil
}
