package devstack

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/common/expfmt"
)

// metricAction is the dev server's counter of billable actions (what
// Temporal Cloud bills and rate-limits: workflow and activity starts,
// heartbeats that reach the server, signals, timers, queries, updates, ...),
// labelled by namespace and action_type.
const metricAction = "action"

// Actions counts billable Temporal actions by type (the metric's
// action_type label, e.g. grpc_RecordActivityTaskHeartbeat or
// command_ScheduleActivityTask).
type Actions map[string]int64

// Total is the sum over every action type.
func (a Actions) Total() int64 {
	var n int64
	for _, v := range a {
		n += v
	}
	return n
}

// Since is what was counted after earlier: a - earlier, by type (types that
// did not move are left out).
func (a Actions) Since(earlier Actions) Actions {
	d := Actions{}
	for t, v := range a {
		if n := v - earlier[t]; n != 0 {
			d[t] = n
		}
	}
	return d
}

// String lists the types in name order, e.g.
// "command_ScheduleActivityTask=4 grpc_SignalWorkflowExecution=1".
func (a Actions) String() string {
	var b strings.Builder
	for _, t := range slices.Sorted(maps.Keys(a)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", t, a[t])
	}
	return b.String()
}

// MetricsURL is the dev server's Prometheus endpoint, empty unless started
// with TemporalOptions.Metrics.
func (t *Temporal) MetricsURL() string { return t.metricsURL }

// Actions reads the billable actions counted so far in the server's
// namespace (the server's own system namespace is left out).
func (t *Temporal) Actions(ctx context.Context) (Actions, error) {
	if t.metricsURL == "" {
		return nil, fmt.Errorf("temporal: counting actions needs the dev server started with TemporalOptions.Metrics")
	}
	return ReadActions(ctx, t.metricsURL, t.namespace)
}

// ReadActions scrapes a Temporal server's Prometheus endpoint and returns
// the `action` counter of namespace by action type.
func ReadActions(ctx context.Context, metricsURL, namespace string) (Actions, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("temporal metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("temporal metrics: reading %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("temporal metrics: %s answered %s", metricsURL, resp.Status)
	}
	var parser expfmt.TextParser
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("temporal metrics: parsing %s: %w", metricsURL, err)
	}
	out := Actions{}
	fam, ok := families[metricAction]
	if !ok {
		return out, nil // nothing counted yet
	}
	for _, m := range fam.GetMetric() {
		var ns, typ string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "namespace":
				ns = l.GetValue()
			case "action_type":
				typ = l.GetValue()
			}
		}
		if ns != namespace {
			continue
		}
		v := m.GetCounter().GetValue()
		if m.GetCounter() == nil {
			v = m.GetUntyped().GetValue()
		}
		out[typ] += int64(v)
	}
	return out, nil
}
