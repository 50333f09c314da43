package activities

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// Temporal holds the activities that talk to Temporal itself.
type Temporal struct {
	client client.Client
}

// NewTemporal returns the Temporal activities using c.
func NewTemporal(c client.Client) *Temporal { return &Temporal{client: c} }

// SignalWithStartInput names a workflow to signal, started first when it is
// not running. Workflows pass their own constants, so this package does not
// depend on workflows/.
type SignalWithStartInput struct {
	WorkflowID   string
	WorkflowType string
	TaskQueue    string
	SignalName   string
	Signal       any
	// Input is the workflow's argument when it has to be started.
	Input any
}

// SignalWithStart sends a signal to a workflow, starting it if needed. It is
// idempotent as long as the receiving workflow handles duplicate signals.
func (t *Temporal) SignalWithStart(ctx context.Context, in SignalWithStartInput) error {
	_, err := t.client.SignalWithStartWorkflow(ctx, in.WorkflowID, in.SignalName, in.Signal,
		client.StartWorkflowOptions{
			ID:                       in.WorkflowID,
			TaskQueue:                in.TaskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		}, in.WorkflowType, in.Input)
	if err != nil {
		return fmt.Errorf("signal %s to workflow %s: %w", in.SignalName, in.WorkflowID, err)
	}
	return nil
}
