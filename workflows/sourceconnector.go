package workflows

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// SourceConnectorInput starts (or continues) a source stream connector.
type SourceConnectorInput struct {
	Config SourceStreamConfig
	// Started lists the units whose consumers run already.
	Started []string `json:",omitempty"`
	// Paused is carried across continue-as-new.
	Paused bool `json:",omitempty"`
	// Reports are the units' last status reports.
	Reports []SourceUnitStatus `json:",omitempty"`
	// StartedAt is the connector's first start (start latest reads what
	// was stored after it, in every unit, found now or later).
	StartedAt time.Time `json:",omitzero"`
}

// SourceConnectorStatus answers the status query on the connector: its
// state and the last report of every unit's consumer.
type SourceConnectorStatus struct {
	Name     string
	Kind     string
	Describe string `json:",omitempty"`
	Mode     string
	Paused   bool
	// Started lists the units with a consumer.
	Started []string
	// Units holds each consumer's last report, by unit.
	Units []SourceUnitStatus
	// Totals over the units.
	Records, Batches, DeadLettered int64
	Lag                            uint64
	// LastError is the connector's own last problem (unit discovery).
	LastError string `json:",omitempty"`
}

// sourceUnitRecheck is how often the connector looks for new units.
const sourceUnitRecheck = time.Minute

// SourceStreamConnector runs one SourceStreamConsumer child per unit of
// its source (a NATS subject), IDs from connector and unit, and looks for
// new units every minute, starting consumers for them without a restart.
// It fans out pause, resume, reset and spec updates to the consumers and
// aggregates their status reports for its status query. Children are
// abandoned on continue-as-new and cancelled when the connector is
// cancelled (starter delete). Every source stream kind runs this function
// under its own workflow type (SourceKind).
func SourceStreamConnector(ctx workflow.Context, in SourceConnectorInput) error {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError("invalid "+cfg.Kind+" config: "+err.Error(), "InvalidConfig", nil)
	}
	started := append([]string(nil), in.Started...)
	paused := in.Paused
	startedAt := in.StartedAt
	if startedAt.IsZero() {
		startedAt = workflow.Now(ctx)
	}
	lastError := ""
	reports := map[string]SourceUnitStatus{}
	for _, r := range in.Reports {
		reports[r.Unit] = r
	}
	tell := func(c streamControl[SourceStreamConfig]) {
		for _, u := range started {
			// Fire and forget, in order: a consumer that is gone has nothing to do.
			workflow.SignalExternalWorkflow(ctx, cfg.UnitWorkflowID(cfg.Name, u), "", SignalUnitControl, c)
		}
	}
	if err := workflow.SetQueryHandler(ctx, QueryConfig, func() (SourceStreamConfig, error) { return cfg, nil }); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QuerySourceStatus, func() (SourceConnectorStatus, error) {
		st := SourceConnectorStatus{Name: cfg.Name, Kind: cfg.Kind, Describe: cfg.Describe, Mode: cfg.Mode, Paused: paused,
			Started: started, LastError: lastError}
		for _, u := range started {
			r, ok := reports[u]
			if !ok {
				r = SourceUnitStatus{Unit: u, Phase: "starting"}
			}
			st.Units = append(st.Units, r)
			st.Records += r.Records
			st.Batches += r.Batches
			st.DeadLettered += r.DeadLettered
			st.Lag += r.Lag
		}
		return st, nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateSpec, func(ctx workflow.Context, next SourceStreamConfig) (string, error) {
		cfg = next
		tell(streamControl[SourceStreamConfig]{Op: ControlConfig, Config: &next})
		return "updated", nil
	}, workflow.UpdateHandlerOptions{Validator: func(next SourceStreamConfig) error {
		if err := next.Validate(); err != nil {
			return err
		}
		if next.Name != cfg.Name || next.SourceKind != cfg.SourceKind {
			return fmt.Errorf("name and kind cannot change (%s, %s): delete the connector and apply a new one", cfg.Name, cfg.Kind)
		}
		if !bytes.Equal(next.Source, cfg.Source) {
			return fmt.Errorf("source.%s cannot change (%s): the checkpoints are positions in it; delete the connector and apply a new one", cfg.Kind, cfg.Describe)
		}
		return nil
	}}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateReset, func(ctx workflow.Context, r ResetRequest) (int, error) {
		tell(streamControl[SourceStreamConfig]{Op: ControlReset, Reset: &r})
		return len(started), nil
	}, workflow.UpdateHandlerOptions{Validator: func(r ResetRequest) error {
		if !paused {
			return errors.New("reset needs a paused connector: pause it, reset, then resume")
		}
		if r.To == StartOffsets {
			return fmt.Errorf("reset to offsets is for Kafka: a %s connector resets to earliest, latest or a timestamp", cfg.Kind)
		}
		return r.Validate()
	}}); err != nil {
		return err
	}

	statusCh := workflow.GetSignalChannel(ctx, SignalUnitStatus)
	pauseCh := workflow.GetSignalChannel(ctx, SignalPause)
	resumeCh := workflow.GetSignalChannel(ctx, SignalResume)
	var s *activities.SourceStreams
	// Discovery runs every minute anyway: an outage shows in the status
	// instead of behind long retries.
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	for rounds := 0; ; rounds++ {
		var units []string
		if err := workflow.ExecuteActivity(actx, s.SourceUnits, cfg.ref()).Get(ctx, &units); err != nil {
			var appErr *temporal.ApplicationError
			if len(started) == 0 && errors.As(err, &appErr) && appErr.NonRetryable() {
				// Most likely a typo in the spec: fail loudly.
				return fmt.Errorf("listing the units of %s: %w", cfg.Describe, err)
			}
			// The source is down or went away: the consumers keep their
			// checkpoints and wait; say so and look again.
			lastError = fmt.Sprintf("listing the units of %s: %v", cfg.Describe, err)
			workflow.GetLogger(ctx).Warn("Listing units failed; consumers keep their checkpoints", "Error", err)
		} else {
			lastError = ""
		}
		var fresh []string
		var starting []workflow.ChildWorkflowFuture
		for _, u := range units {
			if slices.Contains(started, u) || slices.Contains(fresh, u) {
				continue
			}
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
				WorkflowID:        cfg.UnitWorkflowID(cfg.Name, u),
				ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
			})
			f := workflow.ExecuteChildWorkflow(cctx, cfg.ConsumerType, SourceConsumerInput{Config: cfg, Unit: u, StartedAt: startedAt,
				State: StreamState[uint64, uint64]{Paused: paused, Epoch: consumerEpoch(ctx), Indexed: true}})
			fresh, starting = append(fresh, u), append(starting, f)
		}
		// All started in one workflow task: many units take one round trip.
		for i, f := range starting {
			if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
				var already *temporal.ChildWorkflowExecutionAlreadyStartedError
				if !errors.As(err, &already) {
					return fmt.Errorf("starting the consumer of %s: %w", fresh[i], err)
				}
			}
			started = append(started, fresh[i])
			workflow.GetLogger(ctx).Info("Unit consumer started", "Unit", fresh[i])
		}

		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		recheck := false
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(workflow.NewTimer(timerCtx, sourceUnitRecheck), func(workflow.Future) { recheck = true })
		sel.AddReceive(statusCh, func(c workflow.ReceiveChannel, _ bool) {
			var r SourceUnitStatus
			c.Receive(ctx, &r)
			reports[r.Unit] = newerReport(reports[r.Unit], r, func(p SourceUnitStatus) (time.Time, int64) { return p.Reported, p.Seq })
		})
		sel.AddReceive(pauseCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			paused = true
			tell(streamControl[SourceStreamConfig]{Op: ControlPause})
			syncConnectorState(ctx, paused)
		})
		sel.AddReceive(resumeCh, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			paused = false
			tell(streamControl[SourceStreamConfig]{Op: ControlResume})
			syncConnectorState(ctx, paused)
		})
		for !recheck && ctx.Err() == nil {
			sel.Select(ctx)
		}
		cancelTimer()
		if ctx.Err() != nil {
			dctx, cancel := workflow.NewDisconnectedContext(ctx)
			for _, u := range started {
				_ = workflow.RequestCancelExternalWorkflow(dctx, cfg.UnitWorkflowID(cfg.Name, u), "").Get(dctx, nil)
			}
			cancel()
			return temporal.NewCanceledError(cfg.Kind + " connector cancelled")
		}
		if rounds >= 500 || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			// Take in what arrived, so nothing is lost across continue-as-new.
			for sel.HasPending() {
				sel.Select(ctx)
			}
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			next := SourceConnectorInput{Config: cfg, Started: started, Paused: paused, StartedAt: startedAt}
			for _, u := range started {
				if r, ok := reports[u]; ok {
					next.Reports = append(next.Reports, r)
				}
			}
			return workflow.NewContinueAsNewError(ctx, cfg.ConnectorType, next)
		}
	}
}
