package activities

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	clientv2 "github.com/bacalhau-project/bacalhau/pkg/publicapi/client/v2"
	"github.com/vincent-petithory/dataurl"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
)

// TailBytes is how much of a task's stdout and stderr Output and the
// dead-letter activities read.
const TailBytes = 2048

// jobsAPI is the part of the Bacalhau jobs API these activities use.
type jobsAPI interface {
	Put(ctx context.Context, r *apimodels.PutJobRequest) (*apimodels.PutJobResponse, error)
	Get(ctx context.Context, r *apimodels.GetJobRequest) (*apimodels.GetJobResponse, error)
	List(ctx context.Context, r *apimodels.ListJobsRequest) (*apimodels.ListJobsResponse, error)
	Executions(ctx context.Context, r *apimodels.ListJobExecutionsRequest) (*apimodels.ListJobExecutionsResponse, error)
	Results(ctx context.Context, r *apimodels.ListJobResultsRequest) (*apimodels.ListJobResultsResponse, error)
	Stop(ctx context.Context, r *apimodels.StopJobRequest) (*apimodels.StopJobResponse, error)
}

// nodesAPI is the part of the Bacalhau nodes API these activities use.
type nodesAPI interface {
	List(ctx context.Context, r *apimodels.ListNodesRequest) (*apimodels.ListNodesResponse, error)
}

// URLMinter mints capability URLs for S3 objects (the worker's input
// gateway, inputgateway.Gateway).
type URLMinter interface {
	URL(ref inputgateway.ObjectRef, connector string, ttl time.Duration) (string, error)
}

// Bacalhau runs tasks on a Bacalhau cluster. Create it with NewBacalhau.
type Bacalhau struct {
	jobs   jobsAPI
	nodes  nodesAPI
	http   *http.Client
	minter URLMinter
	// pollMin and pollMax bound Await's polling interval.
	pollMin, pollMax time.Duration
	// health caches the connected compute nodes for node-loss checks.
	health *nodeHealth
}

// NewBacalhau returns the Bacalhau activities for the API at address
// (e.g. http://127.0.0.1:1234), with the client options given (TLS, API
// key). minter may be nil when no task reads S3 objects through the
// gateway.
func NewBacalhau(address string, minter URLMinter, opts ...clientv2.OptionFn) *Bacalhau {
	api := clientv2.New(address, opts...)
	return &Bacalhau{
		jobs:    api.Jobs(),
		nodes:   api.Nodes(),
		minter:  minter,
		http:    &http.Client{Timeout: 2 * time.Minute},
		pollMin: 50 * time.Millisecond,
		pollMax: 2 * time.Second,
		health:  &nodeHealth{},
	}
}

// SubmitInput is one batch to run: a job template plus what the batch adds.
type SubmitInput struct {
	// Template is a Bacalhau job YAML, placeholders already rendered.
	Template string
	// Batch names the batch (its identity makes Submit idempotent) and holds
	// its inputs, env, labels and timeouts.
	Batch tasktemplate.Batch
	// Objects are S3 objects the task reads, delivered as Delivery says;
	// Submit turns them into inputs when (and only when) it submits.
	Objects []ObjectInput `json:",omitempty"`
	// Delivery of Objects: DeliveryGateway (default) or DeliveryS3.
	Delivery string `json:",omitempty"`
	// Looked: the caller looked the batch identity up just before (or
	// knows no job exists under it): Submit does not look again.
	Looked bool `json:",omitempty"`
	// Unseen: the workflow dispatches this identity for the first time, so
	// the activity's first attempt submits without looking it up (an
	// attempt runs at most once); a retried attempt looks.
	Unseen bool `json:",omitempty"`
	// URLTTL is how long gateway URLs stay valid. Default: the job's queue
	// and execution timeouts plus 10 min, so queueing and Bacalhau's own
	// retry of a failed execution fit.
	URLTTL time.Duration `json:",omitempty"`
}

// ObjectInput is an S3 object the task sees at Target.
type ObjectInput struct {
	Target string
	Object inputgateway.ObjectRef
}

// Object deliveries.
const (
	// DeliveryGateway hands the task capability URLs from the worker's input
	// gateway: compute nodes need no AWS keys.
	DeliveryGateway = "gateway"
	// DeliveryS3 uses Bacalhau's s3 input source: compute nodes read with
	// their own credentials.
	DeliveryS3 = "s3"
)

// SubmitResult names the job that runs the batch.
type SubmitResult struct {
	JobID string
	// Reused is true when a job for this batch identity already existed.
	Reused bool
	// QueueTimeout and ExecutionTimeout are the bounds the job carries.
	QueueTimeout, ExecutionTimeout time.Duration
}

// Submit builds the batch's job and submits it unless a job with the same
// batch identity exists, in which case it returns that job. Invalid
// templates and oversized jobs fail with ErrTypeInvalidTask before anything
// is sent.
func (b *Bacalhau) Submit(ctx context.Context, in SubmitInput) (*SubmitResult, error) {
	// Check the template before anything else, with placeholder URLs.
	job, err := tasktemplate.Build(in.Template, withObjects(in, func(inputgateway.ObjectRef) string { return "http://gateway.invalid/x" }))
	if err != nil {
		return nil, nonRetryable(ErrTypeInvalidTask, err, "invalid task: %v", err)
	}
	queue, exec := tasktemplate.Timeouts(job)
	key := job.Labels[tasktemplate.LabelBatch]
	var existing *models.Job
	if !in.Looked && !(in.Unseen && activity.GetInfo(ctx).Attempt == 1) {
		ns := ""
		if in.Batch.Indexed {
			ns = job.Namespace // where Build put it
		}
		if existing, err = b.FindJob(ctx, key, ns); err != nil {
			return nil, err
		}
	}
	if existing != nil {
		activity.GetLogger(ctx).Info("Reusing job for batch", "JobID", existing.ID, "BatchKey", key)
		return &SubmitResult{JobID: existing.ID, Reused: true, QueueTimeout: queue, ExecutionTimeout: exec}, nil
	}
	if len(in.Objects) > 0 && in.Delivery != DeliveryS3 {
		// Fresh capability URLs for every submission.
		if b.minter == nil {
			return nil, nonRetryable(ErrTypeInvalidTask, nil, "task reads S3 objects through the input gateway, but this worker runs none (set -gateway-listen and -gateway-url)")
		}
		ttl := in.URLTTL
		if ttl <= 0 {
			ttl = queue + exec + 10*time.Minute
		}
		var mintErr error
		batch := withObjects(in, func(ref inputgateway.ObjectRef) string {
			u, err := b.minter.URL(ref, in.Batch.Connector, ttl)
			mintErr = errors.Join(mintErr, err)
			return u
		})
		if mintErr != nil {
			return nil, nonRetryable(ErrTypeInvalidTask, mintErr, "minting input URLs: %v", mintErr)
		}
		if job, err = tasktemplate.Build(in.Template, batch); err != nil {
			return nil, nonRetryable(ErrTypeInvalidTask, err, "invalid task: %v", err)
		}
	}
	resp, err := b.jobs.Put(ctx, &apimodels.PutJobRequest{Job: job})
	if err != nil {
		return nil, classify("submitting job "+job.Name, err)
	}
	activity.GetLogger(ctx).Info("Submitted job", "JobID", resp.JobID, "BatchKey", key)
	return &SubmitResult{JobID: resp.JobID, QueueTimeout: queue, ExecutionTimeout: exec}, nil
}

// withObjects returns the batch with in.Objects added as inputs: s3 input
// sources for DeliveryS3, else URLs from url.
func withObjects(in SubmitInput, url func(inputgateway.ObjectRef) string) tasktemplate.Batch {
	batch := in.Batch
	if len(in.Objects) == 0 {
		return batch
	}
	batch.Inputs = append([]tasktemplate.Input(nil), batch.Inputs...)
	for _, o := range in.Objects {
		if in.Delivery == DeliveryS3 {
			batch.Inputs = append(batch.Inputs, tasktemplate.Input{Target: o.Target, S3: &tasktemplate.S3Object{
				Bucket: o.Object.Bucket, Key: o.Object.Key, Region: o.Object.Region, Endpoint: o.Object.Endpoint}})
			continue
		}
		batch.Inputs = append(batch.Inputs, tasktemplate.Input{Target: o.Target, URL: url(o.Object)})
	}
	return batch
}

// FindJob returns the job labelled with batch key in namespace ns ("":
// every namespace), or nil when there is none. Bacalhau reads the
// namespace's jobs through its index; without one, every job it keeps.
func (b *Bacalhau) FindJob(ctx context.Context, key, ns string) (*models.Job, error) {
	jobs, err := b.listJobs(ctx, ns, tasktemplate.LabelBatch+"="+key)
	if err != nil {
		return nil, err
	}
	// A job stopped because its compute node was lost never ran the batch
	// to its end: the batch runs again under the same identity.
	jobs = slices.DeleteFunc(jobs, stoppedForLostNode)
	if len(jobs) == 0 {
		return nil, nil
	}
	// The oldest one is the original; later ones could only come from a race
	// outside this activity's control.
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].CreateTime < jobs[j].CreateTime })
	return jobs[0], nil
}

// ListJobs lists every job matching a label selector such as "k=v,k2=v2".
func (b *Bacalhau) ListJobs(ctx context.Context, selector string) ([]*models.Job, error) {
	return b.listJobs(ctx, "", selector)
}

// listJobs lists the jobs matching selector in namespace ns ("": all).
func (b *Bacalhau) listJobs(ctx context.Context, ns, selector string) ([]*models.Job, error) {
	sel, err := labels.ParseToRequirements(selector)
	if err != nil {
		return nil, nonRetryable(ErrTypeInvalidTask, err, "label selector %q: %v", selector, err)
	}
	var out []*models.Job
	req := &apimodels.ListJobsRequest{Labels: sel}
	req.Namespace, req.Limit = ns, 100
	for {
		resp, err := b.jobs.List(ctx, req)
		if err != nil {
			return nil, classify("listing jobs by "+selector, err)
		}
		out = append(out, resp.Items...)
		// Bacalhau returns a NextToken even on the last page: stop on an
		// empty page, and on a token that does not move.
		if resp.NextToken == "" || len(resp.Items) == 0 || resp.NextToken == req.NextToken {
			return out, nil
		}
		req.NextToken = resp.NextToken
	}
}

// AwaitInput names the job to wait for.
type AwaitInput struct {
	JobID string
	// PendingTimeout fails the wait when the job is still Pending (accepted
	// but never scheduled) this long after its creation. Default 2 min.
	PendingTimeout time.Duration
	// Carry rides along in the heartbeat details (AwaitProgress.Carry), so
	// a retried attempt of an activity that awaits inside can resume (it
	// is not part of the input: an activity sets it).
	Carry any `json:"-"`
}

// AwaitResult is the job's end state. It names the task's output by size,
// never by content: a task's stdout and stderr may quote the records it
// read, and activity results are workflow history (DESIGN.md §2.4). Read
// the output with `bacalhau job logs JOB`, or with Output where history may
// hold it (one-off runs).
type AwaitResult struct {
	JobID       string
	ExecutionID string
	ExitCode    int
	// StdoutBytes and StderrBytes are the sizes of the output Bacalhau
	// kept (it truncates each to 2 KB).
	StdoutBytes int `json:",omitempty"`
	StderrBytes int `json:",omitempty"`
}

// AwaitProgress is what Await heartbeats.
type AwaitProgress struct {
	JobID string
	State string
	Polls int
	// Carry is AwaitInput.Carry.
	Carry any `json:",omitempty"`
}

// Await waits for a job to end. It returns the completed execution when the
// task exited 0. It fails with ErrTypeTaskFailed (non-zero exit or a failed
// job; details: TaskFailure), ErrTypeNoCapacity, ErrTypeInputUnavailable, ErrTypeJobStopped or
// ErrTypePendingTimeout, all non-retryable; API errors stay retryable.
// Neither its result nor its errors quote the task's output (see
// AwaitResult): a failure names the job, the exit code and the size of
// stderr.
//
// When the activity is cancelled it stops the job before returning. When its
// worker stops or its deadline passes it leaves the job running, so the
// next attempt picks the same job up again.
func (b *Bacalhau) Await(ctx context.Context, in AwaitInput) (*AwaitResult, error) {
	return b.await(ctx, in, nil)
}

// errLeft is await's error when leave closed before the job ended.
var errLeft = errors.New("left the job running")

// await is Await that also returns errLeft, leaving the job running, once
// leave is closed (nil: never).
func (b *Bacalhau) await(ctx context.Context, in AwaitInput, leave <-chan struct{}) (*AwaitResult, error) {
	if in.PendingTimeout <= 0 {
		in.PendingTimeout = 2 * time.Minute
	}
	progress := AwaitProgress{JobID: in.JobID, Carry: in.Carry}
	start := time.Now()
	nodesChecked := start
	// checkNodes stops a job whose every unfinished execution sits on a
	// lost compute node (at most every nodeCheckEvery) and returns the
	// retryable error that reruns its batch; nil otherwise.
	checkNodes := func(jobID string) error {
		if time.Since(nodesChecked) < nodeCheckEvery {
			return nil
		}
		nodesChecked = time.Now()
		if lost := b.lostNodes(ctx, jobID); lost != nil {
			return b.nodeLost(ctx, jobID, lost)
		}
		return nil
	}
	var lastErr error
	for {
		resp, err := b.jobs.Get(ctx, &apimodels.GetJobRequest{JobID: in.JobID})
		progress.Polls++
		if err != nil {
			lastErr = classify("getting job "+in.JobID, err)
			var appErr interface{ NonRetryable() bool }
			if errors.As(lastErr, &appErr) && appErr.NonRetryable() {
				return nil, lastErr
			}
			progress.State = "unknown: " + err.Error()
		} else {
			lastErr = nil
			job := resp.Job
			progress.State = job.State.StateType.String()
			switch job.State.StateType {
			case models.JobStateTypeCompleted:
				return b.completed(ctx, job)
			case models.JobStateTypeFailed:
				return nil, b.failed(ctx, job)
			case models.JobStateTypeStopped:
				// A job this activity stopped itself (and then crashed before
				// reporting) keeps its original verdict on the retry.
				switch {
				case strings.Contains(job.State.Message, stopExecutionsFailed):
					return nil, b.failed(ctx, job)
				case strings.Contains(job.State.Message, stopPendingDeadline):
					return nil, nonRetryable(ErrTypePendingTimeout, nil, "job %s was stopped: still Pending past its deadline", job.ID)
				case stoppedForLostNode(job):
					// Awaited again by job ID (a standalone Await, a queue
					// batch resumed from its heartbeat): a failed task the
					// workflow runs again, as it does other failures.
					return nil, nonRetryable(ErrTypeTaskFailed, nil, "job %s was stopped: its compute node was lost mid-task", job.ID)
				}
				return nil, nonRetryable(ErrTypeJobStopped, nil, "job %s was stopped: %s", job.ID, job.State.Message)
			case models.JobStateTypeRunning:
				if err := checkNodes(job.ID); err != nil {
					return nil, err
				}
			case models.JobStateTypeQueued, models.JobStateTypePending:
				if err := b.failedWhileWaiting(ctx, job); err != nil {
					return nil, err
				}
				// A job placed on a node that died before it ran (from the
				// capacity the node last reported) would wait out the
				// pending deadline and cost a task retry: rerun it now.
				if err := checkNodes(job.ID); err != nil {
					return nil, err
				}
				if age := time.Since(time.Unix(0, job.CreateTime)); job.State.StateType == models.JobStateTypePending && age > in.PendingTimeout {
					b.stop(ctx, job.ID, stopPendingDeadline)
					return nil, nonRetryable(ErrTypePendingTimeout, nil,
						"job %s still Pending %s after submission (deadline %s): Bacalhau accepted it but never scheduled it "+
							"(no compute node connected, or a job over the NATS message limit is blocking the node); the job was stopped",
						job.ID, age.Round(time.Second), in.PendingTimeout)
				}
			}
		}
		activity.RecordHeartbeat(ctx, progress)
		select {
		case <-ctx.Done():
			return nil, b.abandon(ctx, in.JobID, lastErr)
		case <-leave:
			return nil, errLeft
		case <-time.After(b.pollDelay(time.Since(start))):
		}
	}
}

// Reasons Await stops jobs with; a retried Await recognises them.
const (
	stopExecutionsFailed = "bacalhau-connect: executions failed; no node will run it again"
	stopPendingDeadline  = "bacalhau-connect: pending past deadline"
)

// waitingFailures is how many failed executions make a waiting job a failed
// task. Measured on v1.7.0: Bacalhau runs a failed execution once more on
// the same node, then leaves the job Pending with both executions failed
// until its queue timeout, although no node will take it again.
const waitingFailures = 2

// failedWhileWaiting ends the wait for a job that is Pending or Queued
// again after its executions failed: it stops the job and reports the task
// failure now instead of at the queue timeout. It returns nil when the job
// is merely waiting to be scheduled.
func (b *Bacalhau) failedWhileWaiting(ctx context.Context, job *models.Job) error {
	execs, err := b.executions(ctx, job.ID)
	if err != nil {
		return nil // keep polling; the next poll looks again
	}
	failed := 0
	for _, e := range execs {
		if !e.IsTerminalState() {
			return nil
		}
		if e.ComputeState.StateType == models.ExecutionStateFailed {
			failed++
		}
	}
	if failed < waitingFailures {
		return nil
	}
	b.stop(ctx, job.ID, stopExecutionsFailed)
	err = b.failed(ctx, job)
	return err
}

// pollDelay spaces polls at about 5 % of the time waited so far, within
// [pollMin, pollMax]: a short task is seen finishing within ~pollMin, a long
// one costs few requests.
func (b *Bacalhau) pollDelay(waited time.Duration) time.Duration {
	return min(max(waited/20, b.pollMin), b.pollMax)
}

// abandon ends an Await whose context is done: a cancellation stops the job;
// a worker stop or a deadline leaves it for the next attempt.
func (b *Bacalhau) abandon(ctx context.Context, jobID string, lastErr error) error {
	select {
	case <-activity.GetWorkerStopChannel(ctx):
		return fmt.Errorf("worker stopping; job %s left running for the next attempt: %w", jobID, ctx.Err())
	default:
	}
	if isCancel(ctx) {
		b.stop(ctx, jobID, "cancelled by bacalhau-connect")
		return fmt.Errorf("awaiting job %s: cancelled; job stopped: %w", jobID, ctx.Err())
	}
	if lastErr != nil {
		return fmt.Errorf("awaiting job %s: %w (last error: %v)", jobID, ctx.Err(), lastErr)
	}
	return fmt.Errorf("awaiting job %s: %w", jobID, ctx.Err())
}

// stop stops a job on a context of its own: the caller's may be done.
func (b *Bacalhau) stop(ctx context.Context, jobID, reason string) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := b.jobs.Stop(sctx, &apimodels.StopJobRequest{JobID: jobID, Reason: reason}); err != nil {
		activity.GetLogger(ctx).Warn("Stopping job failed", "JobID", jobID, "Error", err)
	}
}

// StopJob stops a job. Stopping an ended job is not an error.
func (b *Bacalhau) StopJob(ctx context.Context, jobID string) error {
	resp, err := b.jobs.Get(ctx, &apimodels.GetJobRequest{JobID: jobID})
	if err != nil {
		return classify("getting job "+jobID, err)
	}
	if resp.Job.IsTerminal() {
		return nil
	}
	if _, err := b.jobs.Stop(ctx, &apimodels.StopJobRequest{JobID: jobID, Reason: "stopped by bacalhau-connect"}); err != nil {
		return classify("stopping job "+jobID, err)
	}
	return nil
}

func (b *Bacalhau) executions(ctx context.Context, jobID string) ([]*models.Execution, error) {
	resp, err := b.jobs.Executions(ctx, &apimodels.ListJobExecutionsRequest{JobID: jobID})
	if err != nil {
		return nil, classify("listing executions of job "+jobID, err)
	}
	execs := resp.Items
	// Latest first.
	sort.Slice(execs, func(i, j int) bool { return execs[i].ModifyTime > execs[j].ModifyTime })
	return execs, nil
}

func (b *Bacalhau) completed(ctx context.Context, job *models.Job) (*AwaitResult, error) {
	execs, err := b.executions(ctx, job.ID)
	if err != nil {
		return nil, err
	}
	for _, e := range execs {
		if e.ComputeState.StateType != models.ExecutionStateCompleted {
			continue
		}
		res := &AwaitResult{JobID: job.ID, ExecutionID: e.ID}
		stderrCut := false
		if out := e.RunOutput; out != nil {
			res.ExitCode = out.ExitCode
			res.StdoutBytes, res.StderrBytes = len(out.STDOUT), len(out.STDERR)
			stderrCut = out.StderrTruncated
		}
		if res.ExitCode != 0 {
			msg := fmt.Sprintf("task of job %s exited %d", job.ID, res.ExitCode)
			return nil, temporal.NewNonRetryableApplicationError(msg+" "+outputHint(job.ID, res.StderrBytes, stderrCut), ErrTypeTaskFailed, nil,
				TaskFailure{JobID: job.ID, ExitCode: res.ExitCode, Message: msg, StderrBytes: res.StderrBytes})
		}
		return res, nil
	}
	return nil, fmt.Errorf("job %s is completed but lists no completed execution yet", job.ID)
}

// inlineInput returns the data of a job's inline input at target.
func (b *Bacalhau) inlineInput(ctx context.Context, jobID, target string) ([]byte, error) {
	resp, err := b.jobs.Get(ctx, &apimodels.GetJobRequest{JobID: jobID})
	if err != nil {
		return nil, classify("reading job "+jobID, err)
	}
	for _, t := range resp.Job.Tasks {
		for _, in := range t.InputSources {
			if in.Target != target || in.Source == nil || in.Source.Type != models.StorageSourceInline {
				continue
			}
			u, _ := in.Source.Params["URL"].(string)
			d, err := dataurl.DecodeString(u)
			if err != nil {
				return nil, nonRetryable(ErrTypeInvalidTask, err, "job %s: inline input %s: %v", jobID, target, err)
			}
			return d.Data, nil
		}
	}
	return nil, nonRetryable(ErrTypeInvalidTask, nil, "job %s has no inline input at %s", jobID, target)
}

// exitedZero reports whether a completed job's task exited 0.
func (b *Bacalhau) exitedZero(ctx context.Context, job *models.Job) (bool, error) {
	execs, err := b.executions(ctx, job.ID)
	if err != nil {
		return false, err
	}
	for _, e := range execs {
		if e.ComputeState.StateType == models.ExecutionStateCompleted {
			return e.RunOutput == nil || e.RunOutput.ExitCode == 0, nil
		}
	}
	return false, nil
}

func (b *Bacalhau) failed(ctx context.Context, job *models.Job) error {
	f := TaskFailure{JobID: job.ID, ExitCode: -1, Message: job.State.Message}
	stderrCut := false
	// placed: a node took an execution (it failed, or has an output, maybe
	// empty); taskRan: an execution ran the task itself; fetchFailed: one
	// failed fetching an input that may come back.
	placed, taskRan, fetchFailed := false, false, false
	if execs, err := b.executions(ctx, job.ID); err == nil {
		var msgs []string
		for _, e := range execs {
			placed = placed || e.ComputeState.StateType == models.ExecutionStateFailed || e.RunOutput != nil
			// Bacalhau fills an empty RunOutput for executions that never
			// ran the task.
			taskRan = taskRan || (e.RunOutput != nil && (e.RunOutput.ExitCode != 0 || e.RunOutput.STDOUT != "" || e.RunOutput.STDERR != ""))
			fetchFailed = fetchFailed || inputUnavailable(e.ComputeState.Message)
			if e.RunOutput != nil {
				if f.StderrBytes == 0 {
					f.StderrBytes, stderrCut = len(e.RunOutput.STDERR), e.RunOutput.StderrTruncated
					f.ExitCode = e.RunOutput.ExitCode
				}
				if e.RunOutput.ErrorMsg != "" {
					msgs = append(msgs, e.RunOutput.ErrorMsg)
				}
			}
			if e.ComputeState.Message != "" {
				msgs = append(msgs, e.ComputeState.Message)
			}
		}
		if len(msgs) > 0 {
			f.Message = strings.TrimSpace(f.Message + " (" + strings.Join(slices.Compact(msgs), "; ") + ")")
		}
	}
	// "not enough nodes" also ends jobs whose executions failed on every node;
	// only a job no node ever took is a capacity problem.
	if !placed && strings.Contains(strings.ToLower(job.State.Message), "not enough nodes") {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("job %s found no node with capacity before its queue timeout: %s", job.ID, f.Message),
			ErrTypeNoCapacity, nil, f)
	}
	if fetchFailed && !taskRan {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("job %s could not fetch its inputs (the task never ran; the batch runs again): %s", job.ID, f.Message),
			ErrTypeInputUnavailable, nil, f)
	}
	msg := fmt.Sprintf("job %s failed: %s", job.ID, f.Message)
	if f.StderrBytes > 0 {
		msg += " " + outputHint(job.ID, f.StderrBytes, stderrCut)
	}
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeTaskFailed, nil, f)
}

// inputUnavailable tells whether an execution's failure message says the
// node could not fetch the task's inputs for a reason that may pass (a
// store down, a connection refused or reset, a timeout, an expired URL),
// rather than because an object is gone (no such key or bucket, not
// found). Bacalhau v1.7 fails such executions while it sizes the job
// ("calculating resource usage of job: failed to fetch s3 input: …") or
// prepares its inputs ("preparing arguments: …").
func inputUnavailable(msg string) bool {
	m := strings.ToLower(msg)
	if !strings.Contains(m, "failed to fetch") && !strings.Contains(m, "preparing arguments") && !strings.Contains(m, "calculating resource usage") {
		return false
	}
	for _, gone := range []string{"nosuchkey", "nosuchbucket", "not found", "notfound", "404", "does not exist"} {
		if strings.Contains(m, gone) {
			return false
		}
	}
	return true
}

// outputHint says how much a task wrote to stderr and where to read it,
// without quoting it: "(stderr 57 bytes: bacalhau job logs j-1)".
func outputHint(jobID string, stderrBytes int, truncated bool) string {
	if stderrBytes == 0 {
		return "(no stderr)"
	}
	more := ""
	if truncated {
		more = "+"
	}
	return fmt.Sprintf("(stderr %d%s bytes: bacalhau job logs %s)", stderrBytes, more, jobID)
}

// Output is a finished task's stdout and stderr (their last TailBytes each).
type Output struct {
	JobID      string
	StdoutTail string
	StderrTail string
}

// Output reads a finished job's stdout and stderr: from its published
// results when there are some (complete output), else from Bacalhau's run
// output (truncated to 2 KB). Only RunTask calls it, and only for one-off
// runs that ask for their output (RunTaskInput.Output, starter run-task):
// its result enters workflow history, and a connector's task output may
// quote records. Connectors' dead-letter activities read the stderr tail
// themselves (stderrTail) and never return it.
func (b *Bacalhau) Output(ctx context.Context, jobID string) (*Output, error) {
	if _, files, err := b.results(ctx, jobID); err == nil {
		return &Output{JobID: jobID, StdoutTail: tail(string(files["stdout"])), StderrTail: tail(string(files["stderr"]))}, nil
	}
	execs, err := b.executions(ctx, jobID)
	if err != nil {
		return nil, err
	}
	out := &Output{JobID: jobID}
	for _, e := range execs { // latest first
		if e.RunOutput != nil && (e.RunOutput.STDOUT != "" || e.RunOutput.STDERR != "") {
			out.StdoutTail, out.StderrTail = tail(e.RunOutput.STDOUT), tail(e.RunOutput.STDERR)
			break
		}
	}
	return out, nil
}

// stderrTail returns the stderr tail of the latest of a job's executions
// that wrote some, or "" when none did or Bacalhau cannot say. It is for
// activities that put the task's error where records may go (dead
// letters); they must not return it to a workflow.
func (b *Bacalhau) stderrTail(ctx context.Context, jobID string) string {
	if b == nil || jobID == "" {
		return ""
	}
	execs, err := b.executions(ctx, jobID)
	if err != nil {
		activity.GetLogger(ctx).Warn("Reading the task's stderr failed", "JobID", jobID, "Error", err)
		return ""
	}
	for _, e := range execs { // latest first
		if e.RunOutput != nil && e.RunOutput.STDERR != "" {
			return tail(e.RunOutput.STDERR)
		}
	}
	return ""
}

// deadLetterError is the error a dead-letter record carries: the
// workflow's payload-free message, then the stderr tail of the last failed
// job, read from Bacalhau here (the record's own place, not history).
func (b *Bacalhau) deadLetterError(ctx context.Context, msg string, jobIDs []string) string {
	if len(jobIDs) == 0 {
		return msg
	}
	last := jobIDs[len(jobIDs)-1]
	if t := strings.TrimSpace(b.stderrTail(ctx, last)); t != "" {
		return msg + "; stderr of job " + last + ": " + t
	}
	return msg
}

// Results is what a finished job left behind: exit code, output sizes and
// published files, never the output itself (see AwaitResult; Output reads
// it).
type Results struct {
	JobID    string
	ExitCode int
	// StdoutBytes and StderrBytes are the sizes of the complete output.
	StdoutBytes int64 `json:",omitempty"`
	StderrBytes int64 `json:",omitempty"`
	// ResultURL is where the publisher put the outputs (local publisher: a
	// tar.gz over HTTP). Fetch it with FetchPublished.
	ResultURL string
	// Outputs lists the published files (path inside the archive and size).
	Outputs []OutputFile
}

// OutputFile is one published file.
type OutputFile struct {
	Path string
	Size int64
}

// Results reads the published results of a completed job: exit code, output
// sizes and the list of output files.
func (b *Bacalhau) Results(ctx context.Context, jobID string) (*Results, error) {
	res, _, err := b.results(ctx, jobID)
	return res, err
}

// results reads a completed job's published results and returns its files too.
func (b *Bacalhau) results(ctx context.Context, jobID string) (*Results, map[string][]byte, error) {
	resp, err := b.jobs.Results(ctx, &apimodels.ListJobResultsRequest{JobID: jobID})
	if err != nil {
		return nil, nil, classify("listing results of job "+jobID, err)
	}
	res := &Results{JobID: jobID}
	for _, item := range resp.Items {
		if u, ok := item.Params["URL"].(string); ok && u != "" {
			res.ResultURL = u
			break
		}
	}
	if res.ResultURL == "" {
		return nil, nil, nonRetryable(ErrTypeInvalidTask, nil,
			"job %s published no downloadable result; use the local publisher (Publisher: {Type: local}) or one with a URL", jobID)
	}
	files, err := FetchPublished(ctx, b.http, res.ResultURL, 64<<20)
	if err != nil {
		return nil, nil, err
	}
	res.ExitCode = -1
	if code, ok := files["exitCode"]; ok {
		_, _ = fmt.Sscan(string(code), &res.ExitCode)
	}
	res.StdoutBytes, res.StderrBytes = int64(len(files["stdout"])), int64(len(files["stderr"]))
	for name, data := range files {
		if strings.HasPrefix(name, "outputs/") {
			res.Outputs = append(res.Outputs, OutputFile{Path: name, Size: int64(len(data))})
		}
	}
	sort.Slice(res.Outputs, func(i, j int) bool { return res.Outputs[i].Path < res.Outputs[j].Path })
	return res, files, nil
}

// FetchPublished downloads a result archive (tar.gz) and returns its regular
// files by path ("exitCode", "stdout", "stderr", "outputs/summary.json", ...).
// It refuses archives whose content exceeds maxBytes.
func FetchPublished(ctx context.Context, hc *http.Client, url string, maxBytes int64) (map[string][]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching results %s: %w", url, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching results %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching results %s: %s", url, resp.Status)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading results %s: %w", url, err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading results %s: %w", url, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		total += h.Size
		if total > maxBytes {
			return nil, fmt.Errorf("results %s exceed %d bytes", url, maxBytes)
		}
		data, err := io.ReadAll(io.LimitReader(tr, math.MaxInt32))
		if err != nil {
			return nil, fmt.Errorf("reading results %s: %w", url, err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = data
	}
}

func tail(s string) string {
	if len(s) <= TailBytes {
		return s
	}
	return s[len(s)-TailBytes:]
}

// LastLine is the last non-empty line of s (a stderr tail, say).
func LastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
