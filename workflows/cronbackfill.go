package workflows

import (
	"fmt"
	"strconv"

	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// CronBackfillInput is one backfill of a cron connector.
type CronBackfillInput struct {
	Config CronConfig
	Range  BackfillRequest
	Seq    int
	// AfterKey resumes a backfill across continue-as-new.
	AfterKey string          `json:",omitempty"`
	Done     *BackfillResult `json:",omitempty"`
	// Rewound is CronState.Rewound for the backfill's runs.
	Rewound bool `json:",omitempty"`
}

// BackfillResult counts what a backfill processed.
type BackfillResult struct {
	Batches, Objects, DeadLettered int
}

// BackfillProgress answers QueryBackfillProgress: the counts so far and
// the last key processed.
type BackfillProgress struct {
	BackfillResult
	LastKey string `json:",omitempty"`
}

// CronBackfill processes the objects of a connector's prefix last modified
// in [From, To), in key order, beside the live schedule: it never reads or
// moves the connector's cursor, and its batches have identities of their
// own ("bf<seq>-…"), so its jobs never collide with the schedule's.
func CronBackfill(ctx workflow.Context, in CronBackfillInput) (*BackfillResult, error) {
	cfg := in.Config
	done := in.Done
	if done == nil {
		done = &BackfillResult{}
	}
	var s3 *activities.S3
	sctx := scanOptions(ctx)
	round := "bf" + strconv.Itoa(in.Seq)
	after := in.AfterKey
	rewound := in.Rewound || rewoundRun(ctx)
	runner := &cronRunner{rewound: rewound} // this run's batch runner
	defer runner.releaseAll(ctx)
	// Progress so far, for `starter backfill --wait` (no command: recorded
	// histories replay unchanged).
	if err := workflow.SetQueryHandler(ctx, QueryBackfillProgress, func() (BackfillProgress, error) {
		return BackfillProgress{BackfillResult: *done, LastKey: after}, nil
	}); err != nil {
		return nil, err
	}
	for {
		var scan activities.ScanResult
		if err := workflow.ExecuteActivity(sctx, s3.Scan, activities.ScanInput{
			Bucket: cfg.Source.Bucket, Prefix: cfg.Source.Prefix, Endpoint: cfg.Source.Endpoint, Region: cfg.Source.Region,
			Backfill:   &activities.BackfillRange{From: in.Range.From, To: in.Range.To, AfterKey: after},
			MaxObjects: cfg.MaxObjects, MaxBytes: cfg.MaxBytes, MaxBatches: scanBatches, MaxFolderEntries: cfg.MaxFolderEntries,
		}).Get(ctx, &scan); err != nil {
			return done, fmt.Errorf("backfill scan: %w", err)
		}
		for _, batch := range scan.Batches {
			rec, err := runBatch(ctx, cfg, runner, batch, round)
			if err != nil {
				return done, err
			}
			after = rec.LastKey
			done.Batches++
			done.Objects += rec.Objects
			if rec.Outcome == "dead-lettered" {
				done.DeadLettered++
			}
		}
		if !scan.More {
			return done, nil
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return nil, workflow.NewContinueAsNewError(ctx, CronBackfill, CronBackfillInput{Config: cfg, Range: in.Range, Seq: in.Seq, AfterKey: after, Done: done,
				Rewound: rewound})
		}
	}
}
