// Package kinds is the registry of connector kinds. A Kind describes one
// kind end to end: its spec section, its workflow type and ID scheme, the
// workflows and activities a worker registers for it, its status query and
// how the starter renders that status, and which kind-specific verbs it
// serves. The worker (workerapp), every starter verb (internal/cli) and the
// local stack read a Registry: All is the built-in kinds, With adds source
// source kinds from other modules (a source.StreamKind or
// source.QueueKind each, which the registry turns into a Kind on the shared
// source stream or queue workflows; docs/write-a-source.md). docs/adding-a-kind.md walks through a kind of
// its own.
package kinds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/source"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// Kind is one connector kind.
type Kind struct {
	// Name is the kind as list, describe and errors show it: cron, kafka,
	// queue, kinesis.
	Name string
	// SpecKinds are the spec `kind:` values this kind serves (queue serves
	// sqs and sns).
	SpecKinds []string
	// WorkflowType is the registered name of the connector workflow.
	WorkflowType string
	// IDPrefix + connector name is the connector's workflow ID.
	IDPrefix string
	// Section returns the start of the connector a resolved spec
	// describes, or false when the spec is another kind's.
	Section func(r *spec.Resolved) (Start, bool)
	// Status queries a running connector's status and renders it.
	Status func(ctx context.Context, c client.Client, name string) (Status, error)
	// Register registers the kind's workflows and activities on a worker
	// (the shared ones — RunTask, Budget, Bacalhau, Temporal and S3
	// activities — are registered once by workerapp).
	Register func(r worker.Registry, d Deps)
	// ApplyNote, when set, is a warning apply prints before starting or
	// updating the connector ("" for none), such as a queue's risky
	// redrive policy.
	ApplyNote func(ctx context.Context, s Start) string
	// Trigger and Backfill say whether the kind serves those verbs.
	Trigger, Backfill bool
	// Reset says what `starter reset` does for this kind.
	Reset Reset
	// Stream, for a kind on the public source.Stream interface, opens its
	// source from a connector's configuration: the worker's SourceStreams
	// activities serve every such kind.
	Stream source.StreamOpener
	// Queue, for a kind on the public source.Queue interface, opens its
	// queue: the worker's SourceQueues activities serve every such kind.
	Queue source.QueueOpener
}

// Reset is how a kind takes `starter reset`.
type Reset struct {
	// Style is ResetNone, ResetCursor or ResetConsumers.
	Style ResetStyle
	// Why is the reason a ResetNone kind has no position to move.
	Why string
	// Unit names the consumers of a ResetConsumers kind: partitions, shards.
	Unit string
	// Progress (ResetConsumers) reports which consumers applied the reset
	// called id (their new positions) and which still wait (with their
	// last error).
	Progress func(ctx context.Context, c client.Client, name, id string) (applied, waiting []string, err error)
}

// ResetStyle is how a kind's reset Update answers.
type ResetStyle int

// Reset styles.
const (
	// ResetNone: the kind has no position (a queue deletes what it did).
	ResetNone ResetStyle = iota
	// ResetCursor: the connector moves one cursor and answers it (string).
	ResetCursor
	// ResetConsumers: the connector tells its n consumers (answer int);
	// the starter waits for each to apply it (Reset.Progress).
	ResetConsumers
)

// Start is how a connector of a resolved spec starts, or updates when it
// runs already.
type Start struct {
	// Name is the connector's name; Kind its spec kind (sqs, not queue).
	Name, Kind string
	// WorkflowID and WorkflowType start the connector workflow.
	WorkflowID, WorkflowType string
	// Source names what it reads (search attribute ConnectorSource).
	Source string
	// Input starts the workflow; Config is the update-spec argument.
	Input, Config any
	// Started is the line printed when the workflow started.
	Started string
}

// Options are the connector's workflow start options: ID, task queue, memo
// and the search attributes registered says exist.
func (s Start) Options(taskQueue string, registered func(string) bool) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{ID: s.WorkflowID, TaskQueue: taskQueue, WorkflowExecutionErrorWhenAlreadyStarted: true,
		Memo:                  map[string]any{"connector": s.Name, "kind": s.Kind, "source": s.Source},
		TypedSearchAttributes: workflows.ConnectorSearchAttributes(s.Name, s.Kind, s.Source, registered)}
}

// Status is a connector's status query answer, rendered.
type Status struct {
	// Value is the answer itself (-o json and -o yaml print it).
	Value any
	// Row is the connector's line in `starter list`.
	Row Row
	// Text is `starter describe`'s text.
	Text string
}

// Row is one line of `starter list`, whatever the kind.
type Row struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	State     string `json:"state"`
	Position  string `json:"position"`
	Processed int64  `json:"processed"`
	Lag       int64  `json:"lag"`
	// BehindMillis (Kinesis) is how far the furthest-behind shard is.
	BehindMillis int64  `json:"behind_ms,omitempty"`
	LastJob      string `json:"last_job,omitempty"`
	LastError    string `json:"last_error,omitempty"`
}

// Deps are what the kinds' activities are built from.
type Deps struct {
	// Bacalhau submits and awaits the tasks.
	Bacalhau *activities.Bacalhau
	// S3Clients makes S3 clients (scans, dead letters, staged batches).
	S3Clients inputgateway.ClientFactory
	// Kafka are the worker's shared Kafka clients (workerapp closes them).
	Kafka *activities.KafkaClients
	// QueueClients makes SQS and SNS clients (nil: the standard AWS chain).
	QueueClients activities.QueueClients
	// KinesisClients makes Kinesis clients (nil: the standard AWS chain).
	KinesisClients activities.KinesisClientFactory
}

// rendered is a status query's answer with its list row and describe text.
func rendered[T any](st *T, err error, row func(*T) Row, text func(*T) string) (Status, error) {
	if err != nil {
		return Status{}, err
	}
	return Status{Value: st, Row: row(st), Text: text(st)}, nil
}

// ID is the workflow ID of this kind's connector called name.
func (k *Kind) ID(name string) string { return k.IDPrefix + name }

// Registry is a set of connector kinds, in the order list and the docs
// present them: the worker, every starter verb and the local stack read
// one.
type Registry struct {
	kinds  []*Kind
	loader spec.Loader
	// types are the workflow types of the kinds' connectors and consumers.
	types []string
}

// All is the registry of the built-in kinds.
func All() Registry {
	r := Registry{kinds: []*Kind{cronKind(), kafkaKind(), queueKind(), kinesisKind()}}
	for _, k := range r.kinds {
		r.types = append(r.types, k.WorkflowType)
	}
	for _, k := range spec.BuiltinStreamKinds() {
		r.addStream(k)
	}
	for _, k := range spec.BuiltinQueueKinds() {
		r.addQueue(k)
	}
	return r
}

func (r *Registry) addStream(k source.StreamKind) {
	connector, consumer, _ := k.Types()
	r.kinds = append(r.kinds, sourceStreamKind(k))
	r.loader.StreamKinds = append(r.loader.StreamKinds, k)
	r.types = append(r.types, connector, consumer)
}

func (r *Registry) addQueue(k source.QueueKind) {
	r.kinds = append(r.kinds, sourceQueueKind(k))
	r.loader.QueueKinds = append(r.loader.QueueKinds, k)
	r.types = append(r.types, r.kinds[len(r.kinds)-1].WorkflowType)
}

// With is the built-in kinds and extra source kinds (from other modules):
// each a source.StreamKind or a source.QueueKind. A kind whose name,
// workflow types or ID prefix another kind has is refused.
func With(extra ...source.Kind) (Registry, error) {
	r := All()
	for _, k := range extra {
		var add *Kind
		var types []string
		switch k := k.(type) {
		case source.StreamKind:
			if err := k.Check(); err != nil {
				return Registry{}, err
			}
			connector, consumer, _ := k.Types()
			add, types = sourceStreamKind(k), []string{connector, consumer}
		case source.QueueKind:
			if err := k.Check(); err != nil {
				return Registry{}, err
			}
			add = sourceQueueKind(k)
			types = []string{add.WorkflowType}
		default:
			return Registry{}, fmt.Errorf("source kind %s: a %T is not a source.StreamKind or source.QueueKind", k.KindName(), k)
		}
		for _, t := range types {
			if slices.Contains(r.types, t) {
				return Registry{}, fmt.Errorf("source kind %s: workflow type %s is another kind's", add.Name, t)
			}
		}
		for _, have := range r.kinds {
			switch {
			case have.Name == add.Name || slices.Contains(have.SpecKinds, add.Name):
				return Registry{}, fmt.Errorf("source kind %s: a kind of that name exists", add.Name)
			case strings.HasPrefix(have.IDPrefix, add.IDPrefix) || strings.HasPrefix(add.IDPrefix, have.IDPrefix):
				return Registry{}, fmt.Errorf("source kind %s: ID prefix %q overlaps kind %s's %q", add.Name, add.IDPrefix, have.Name, have.IDPrefix)
			}
		}
		switch k := k.(type) {
		case source.StreamKind:
			r.addStream(k)
		case source.QueueKind:
			r.addQueue(k)
		}
	}
	return r, nil
}

// Kinds are the registry's kinds.
func (r Registry) Kinds() []*Kind { return r.kinds }

// Loader loads specs of the registry's kinds.
func (r Registry) Loader() spec.Loader { return r.loader }

// ForSpec is the kind of a resolved spec and its connector's start.
func (r Registry) ForSpec(res *spec.Resolved) (*Kind, Start, error) {
	for _, k := range r.kinds {
		if s, ok := k.Section(res); ok {
			return k, s, nil
		}
	}
	return nil, Start{}, fmt.Errorf("spec %s: no connector kind serves it (kinds: %s)", res.Spec.Name, strings.Join(r.Names(), ", "))
}

// ByWorkflowType is the kind whose connector workflow type is t.
func (r Registry) ByWorkflowType(t string) (*Kind, bool) {
	for _, k := range r.kinds {
		if k.WorkflowType == t {
			return k, true
		}
	}
	return nil, false
}

// Names are the kinds' names.
func (r Registry) Names() []string {
	var names []string
	for _, k := range r.kinds {
		names = append(names, k.Name)
	}
	return names
}

// WorkflowTypes are the connector workflow types of every kind.
func (r Registry) WorkflowTypes() []string {
	var types []string
	for _, k := range r.kinds {
		types = append(types, k.WorkflowType)
	}
	return types
}

// Serving are the names of the kinds for which serves is true.
func (r Registry) Serving(serves func(*Kind) bool) []string {
	var names []string
	for _, k := range r.kinds {
		if serves(k) {
			names = append(names, k.Name)
		}
	}
	return names
}

// Running is a running connector found by its name.
type Running struct {
	// Kind is its kind.
	Kind *Kind
	// Name and WorkflowID name it and its workflow.
	Name, WorkflowID string
}

// ErrNotFound is a name no running connector of any kind has.
var ErrNotFound = errors.New("not found (starter list shows the running ones)")

// Find finds the running connector called name, of whichever kind, with one
// visibility query: a running connector workflow whose ConnectorName search
// attribute is name, or whose ID is one of the kinds' IDs for name (a
// connector started where the attribute was not registered has only the
// ID). A namespace without the attribute gets the query without it. Two
// connectors of one name (from before apply refused that) are an error
// naming both.
//
// Visibility follows a start by a moment; a name visibility does not know
// yet is looked up by the kinds' workflow IDs (DescribeWorkflowExecution),
// so a verb right after apply still finds its connector.
func (r Registry) Find(ctx context.Context, c client.Client, name string) (Running, error) {
	if err := checkName(name); err != nil {
		return Running{}, err
	}
	found, err := r.list(ctx, c, r.query(name, true))
	if err != nil && isInvalidQuery(err) {
		found, err = r.list(ctx, c, r.query(name, false))
	}
	if err != nil {
		return Running{}, fmt.Errorf("finding connector %s: %w", name, err)
	}
	if len(found) == 0 {
		found = r.describe(ctx, c, name)
	}
	switch len(found) {
	case 0:
		return Running{}, fmt.Errorf("connector %s: %w", name, ErrNotFound)
	case 1:
		return found[0], nil
	}
	var both []string
	for _, r := range found {
		both = append(both, fmt.Sprintf("%s (workflow %s)", r.Kind.Name, r.WorkflowID))
	}
	return Running{}, fmt.Errorf("connector %s runs under %d kinds: %s; delete all but one with `temporal workflow cancel --workflow-id ID`",
		name, len(found), strings.Join(both, ", "))
}

// checkName refuses a name no spec can have, before it goes into a query.
func checkName(name string) error {
	if !spec.ValidName(name) {
		return fmt.Errorf("connector name %q: use lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit", name)
	}
	return nil
}

// query is the visibility query that finds a running connector called
// name (checked by checkName: nothing in it needs quoting).
func (r Registry) query(name string, byAttribute bool) string {
	var types, ids []string
	for _, k := range r.kinds {
		types = append(types, "'"+k.WorkflowType+"'")
		ids = append(ids, "'"+k.ID(name)+"'")
	}
	match := fmt.Sprintf("WorkflowId IN (%s)", strings.Join(ids, ", "))
	if byAttribute {
		match = fmt.Sprintf("(%s = '%s' OR %s)", workflows.SearchAttrConnectorName, name, match)
	}
	return fmt.Sprintf("ExecutionStatus = 'Running' AND WorkflowType IN (%s) AND %s", strings.Join(types, ", "), match)
}

// list runs one visibility query and returns the connectors it finds.
func (r Registry) list(ctx context.Context, c client.Client, q string) ([]Running, error) {
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q})
	if err != nil {
		return nil, err
	}
	var found []Running
	for _, e := range resp.Executions {
		k, ok := r.ByWorkflowType(e.GetType().GetName())
		if !ok {
			continue
		}
		id := e.GetExecution().GetWorkflowId()
		found = append(found, Running{Kind: k, Name: strings.TrimPrefix(id, k.IDPrefix), WorkflowID: id})
	}
	slices.SortFunc(found, func(a, b Running) int { return strings.Compare(a.WorkflowID, b.WorkflowID) })
	return found, nil
}

// describe looks a name up by the kinds' workflow IDs, for a connector
// visibility does not show yet.
func (r Registry) describe(ctx context.Context, c client.Client, name string) []Running {
	var found []Running
	for _, k := range r.kinds {
		d, err := c.DescribeWorkflow(ctx, k.ID(name), "")
		if err != nil || d.RawResponse == nil {
			continue
		}
		info := d.RawResponse.GetWorkflowExecutionInfo()
		if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || info.GetType().GetName() != k.WorkflowType {
			continue
		}
		found = append(found, Running{Kind: k, Name: name, WorkflowID: k.ID(name)})
	}
	return found
}

// isInvalidQuery is a visibility query the namespace refuses, such as one
// naming a search attribute it does not have.
func isInvalidQuery(err error) bool {
	var invalid *serviceerror.InvalidArgument
	return errors.As(err, &invalid)
}
