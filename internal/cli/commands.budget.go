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
		Short: "Show the budget's size, leases in flight and waiting",
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
			return g.print(st, fmt.Sprintf("size %d, in flight %d, waiting %d, high water %d, granted %d, expired %d\nholders: %s\n",
				st.Size, st.InFlight, st.Waiting, st.HighWater, st.Granted, st.Expired, strings.Join(st.Holders, ", ")))
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "resize SIZE",
		Short:   "Set how many Bacalhau jobs may be in flight at once",
		Example: "  starter budget resize 8",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			size, err := strconv.Atoi(args[0])
			if err != nil || size < 1 {
				return fmt.Errorf("SIZE: %q must be a whole number >= 1", args[0])
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
			return g.print(map[string]int{"size": got}, fmt.Sprintf("budget size is now %d\n", got))
		},
	})
	return cmd
}
