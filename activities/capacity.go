package activities

import (
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	"go.temporal.io/sdk/activity"
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
	// Nodes are the connected compute nodes, by ID.
	Nodes []NodeCapacity `json:",omitempty"`
}

// NodeCapacity is one connected compute node's share of Capacity.
type NodeCapacity struct {
	ID string
	// CPU is the cores the node offers to tasks.
	CPU float64
	// RunAtOnce is how many default-sized tasks it runs at the same time.
	RunAtOnce int
}

// Same tells whether two measurements found the same nodes offering the
// same capacity.
func (c *Capacity) Same(o *Capacity) bool {
	if c == nil || o == nil {
		return c == o
	}
	return c.RunAtOnce == o.RunAtOnce && slices.Equal(c.Nodes, o.Nodes)
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
		cpu := n.Info.ComputeNodeInfo.MaxCapacity.CPU
		at := int(math.Floor(cpu/taskCPU + 1e-9))
		c.ComputeNodes++
		c.RunAtOnce += at
		c.Nodes = append(c.Nodes, NodeCapacity{ID: n.Info.ID(), CPU: cpu, RunAtOnce: at})
	}
	slices.SortFunc(c.Nodes, func(a, b NodeCapacity) int { return strings.Compare(a.ID, b.ID) })
	c.SuggestedBudget = max(1, int(math.Ceil(1.5*float64(c.RunAtOnce))))
	return c, nil
}

// WatchCapacityInput is what the budget knows of the network.
type WatchCapacityInput struct {
	// Known is the last measurement (nil: none yet).
	Known *Capacity
	// TaskCPU: see Capacity. 0: DefaultTaskCPU.
	TaskCPU float64
	// Every spaces the measurements. Default 5 s.
	Every time.Duration
}

// WatchCapacity measures the network every in.Every and returns the first
// measurement that differs from in.Known: a compute node joined, left or
// changed its capacity. It heartbeats while nothing changes, and keeps
// going through failed measurements (Bacalhau unreachable: the budget
// keeps its size meanwhile); it returns an error only when cancelled.
func (b *Bacalhau) WatchCapacity(ctx context.Context, in WatchCapacityInput) (*Capacity, error) {
	if in.Every <= 0 {
		in.Every = 5 * time.Second
	}
	for {
		c, err := b.Capacity(ctx, in.TaskCPU)
		switch {
		case err == nil && !c.Same(in.Known):
			return c, nil
		case err != nil:
			activity.GetLogger(ctx).Warn("Measuring Bacalhau capacity failed; the budget keeps its size", "Error", err)
			activity.RecordHeartbeat(ctx, err.Error())
		default:
			activity.RecordHeartbeat(ctx, nil)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(in.Every):
		}
	}
}
