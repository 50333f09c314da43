package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func newBudgetCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "budget",
		Short: "Inspect or resize the shared in-flight Bacalhau job budget",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the budget's size, leases in flight and waiting, and the compute nodes it follows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.QueryWorkflow(cmd.Context(), workflows.BudgetWorkflowIDFor(g.taskQueue), "", workflows.QueryBudgetStatus)
			if err != nil {
				return fmt.Errorf("querying %s (it starts with the first task): %w", workflows.BudgetWorkflowIDFor(g.taskQueue), err)
			}
			var st workflows.BudgetStatus
			if err := v.Get(&st); err != nil {
				return err
			}
			return g.print(st, fmt.Sprintf("size %d, in flight %d, waiting %d, high water %d, granted %d, expired %d\nholders: %s\n%s",
				st.Size, st.InFlight, st.Waiting, st.HighWater, st.Granted, st.Expired, strings.Join(st.Holders, ", "), networkLine(st)))
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "resize SIZE|network",
		Short:   "Set how many Bacalhau jobs may be in flight at once, or follow the compute nodes' capacity again",
		Example: "  starter budget resize 8\n  starter budget resize network",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			size, err := strconv.Atoi(args[0])
			if args[0] == "network" {
				size, err = 0, nil
			} else if err != nil || size < 1 {
				return fmt.Errorf("SIZE: %q must be a whole number >= 1, or `network` to follow the compute nodes' capacity", args[0])
			}
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
				WorkflowID: workflows.BudgetWorkflowIDFor(g.taskQueue), UpdateName: workflows.UpdateBudgetResize,
				Args: []interface{}{size}, WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			if err != nil {
				return fmt.Errorf("resizing %s: %w", workflows.BudgetWorkflowIDFor(g.taskQueue), err)
			}
			var got int
			if err := h.Get(cmd.Context(), &got); err != nil {
				return fmt.Errorf("resizing %s: %w", workflows.BudgetWorkflowIDFor(g.taskQueue), err)
			}
			msg := fmt.Sprintf("budget size is now %d\n", got)
			if size == 0 {
				msg = fmt.Sprintf("budget size is now %d and follows the compute nodes' capacity\n", got)
			}
			return g.print(map[string]int{"size": got}, msg)
		},
	})
	return cmd
}

// networkLine describes the compute nodes the budget measured, e.g.
// "network: 3 compute nodes (compute-1 1 CPU, ...), 6 tasks at once, measured 12:00:05 UTC; the size follows it".
func networkLine(st workflows.BudgetStatus) string {
	follows := "the size is set (`starter budget resize network` follows the nodes again)"
	if st.FollowsNetwork {
		follows = "the size follows it"
	}
	if st.Network == nil {
		return "network: not measured; " + follows + "\n"
	}
	nodes := make([]string, 0, len(st.Network.Nodes))
	for _, n := range st.Network.Nodes {
		nodes = append(nodes, fmt.Sprintf("%s %g CPU", n.ID, n.CPU))
	}
	return fmt.Sprintf("network: %d compute nodes (%s), %d tasks at once, measured %s; %s\n",
		st.Network.ComputeNodes, strings.Join(nodes, ", "), st.Network.RunAtOnce, st.MeasuredAt.UTC().Format("15:04:05 MST"), follows)
}
