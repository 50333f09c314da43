package workerapp

import (
	"context"
	"time"

	"go.temporal.io/sdk/interceptor"
)

// quietHeartbeats is a worker interceptor that keeps an activity attempt's
// heartbeats from the server until the attempt has run half its heartbeat
// timeout. Every heartbeat that reaches the server is a billable Temporal
// action, and the SDK sends an attempt's first heartbeat at once: without
// this, an activity that heartbeats in its loop costs one action even when
// it ends in a second. A stuck worker is still found: the first heartbeat
// leaves well inside the timeout, and after it the SDK's own throttle (0.8 x
// the timeout) applies. Heartbeat details are dropped while quiet: the
// queue batch activities that carry a submitted batch in them
// (RunMessages, SourceQueueBatch) record it again with every later
// heartbeat, and a retry that finds none receives again, its redelivered
// messages finding their job by its labels. A cancellation reaches
// the activity with its first heartbeat, no later than before (the SDK's
// throttle held it as long). Activities without a heartbeat timeout are
// left as they are.
type quietHeartbeats struct {
	interceptor.WorkerInterceptorBase
}

// InterceptActivity is called once per activity attempt.
func (*quietHeartbeats) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &quietInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}}
}

type quietInbound struct {
	interceptor.ActivityInboundInterceptorBase
}

func (i *quietInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	return i.Next.Init(&quietOutbound{ActivityOutboundInterceptorBase: interceptor.ActivityOutboundInterceptorBase{Next: outbound}, started: time.Now()})
}

type quietOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	// started is when this attempt began on this worker (the worker's own
	// clock: no skew with the server matters).
	started time.Time
}

func (o *quietOutbound) RecordHeartbeat(ctx context.Context, details ...any) {
	if timeout := o.Next.GetInfo(ctx).HeartbeatTimeout; timeout > 0 && time.Since(o.started) < timeout/2 {
		return
	}
	o.Next.RecordHeartbeat(ctx, details...)
}
