// Package pubsubsource reads a Google Cloud Pub/Sub subscription as a
// source.Queue, with unary Pull, ModifyAckDeadline and Acknowledge: each
// step explicit, no streaming pull holding messages the engine has not
// asked for. A message's lease is its ack deadline; Release sets it to 0
// (a nack), and the subscription's dead-letter policy counts deliveries.
package pubsubsource

import (
	"context"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bacalhau-connect/bacalhau-connect/source"
)

// Config names the subscription.
type Config struct {
	// Project is the Google Cloud project ID.
	Project string
	// Subscription is the subscription's ID or its full name
	// (projects/P/subscriptions/S).
	Subscription string
	// Endpoint, when set, is an emulator's host:port, reached over
	// plaintext gRPC without credentials; empty: Google Cloud with the
	// standard credentials chain.
	Endpoint string
}

// maxLease is the longest ack deadline Pub/Sub takes.
const maxLease = 600 * time.Second

// Source is a subscription as a source.Queue.
type Source struct {
	client *pubsub.Client
	sub    string
}

var _ source.Queue = (*Source)(nil)

// Open makes the client; Close releases it.
func Open(ctx context.Context, cfg Config) (*Source, error) {
	var opts []option.ClientOption
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())), option.WithTelemetryDisabled())
	}
	c, err := pubsub.NewClient(ctx, cfg.Project, opts...)
	if err != nil {
		return nil, fmt.Errorf("pubsub: client for project %s: %w", cfg.Project, err)
	}
	sub := cfg.Subscription
	if !strings.HasPrefix(sub, "projects/") {
		sub = fmt.Sprintf("projects/%s/subscriptions/%s", cfg.Project, sub)
	}
	return &Source{client: c, sub: sub}, nil
}

// Close closes the client.
func (s *Source) Close() error { return s.client.Close() }

// Receive pulls until it has messages or wait has passed, then leases what
// it got for lease.
func (s *Source) Receive(ctx context.Context, max int, lease, wait time.Duration) ([]source.Message, error) {
	deadline := time.Now().Add(wait)
	var out []source.Message
	for {
		res, err := s.client.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: s.sub, MaxMessages: int32(max - len(out))})
		if err != nil {
			return out, fmt.Errorf("pubsub: pulling %s: %w", s.sub, err)
		}
		for _, m := range res.ReceivedMessages {
			out = append(out, source.Message{ID: m.GetMessage().GetMessageId(), Handle: m.GetAckId(), Body: m.GetMessage().GetData(),
				Attributes: m.GetMessage().GetAttributes(), OrderingKey: m.GetMessage().GetOrderingKey(),
				Deliveries: int(m.GetDeliveryAttempt()), Published: m.GetMessage().GetPublishTime().AsTime()})
		}
		if len(out) > 0 || !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	handles := make([]string, len(out))
	for i, m := range out {
		handles[i] = m.Handle
	}
	if err := s.Extend(ctx, handles, lease); err != nil {
		return out, err
	}
	return out, nil
}

// Extend sets the messages' ack deadline to lease from now (at most 600 s).
func (s *Source) Extend(ctx context.Context, handles []string, lease time.Duration) error {
	return s.modify(ctx, handles, min(lease, maxLease), "extending")
}

// Ack acknowledges the messages.
func (s *Source) Ack(ctx context.Context, handles []string) error {
	if len(handles) == 0 {
		return nil
	}
	if err := s.client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: s.sub, AckIds: handles}); err != nil {
		return fmt.Errorf("pubsub: acknowledging %d message(s) of %s: %w", len(handles), s.sub, err)
	}
	return nil
}

// Release nacks the messages: ack deadline 0, delivered again at once.
func (s *Source) Release(ctx context.Context, handles []string) error {
	return s.modify(ctx, handles, 0, "releasing")
}

func (s *Source) modify(ctx context.Context, handles []string, lease time.Duration, what string) error {
	if len(handles) == 0 {
		return nil
	}
	err := s.client.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{
		Subscription: s.sub, AckIds: handles, AckDeadlineSeconds: int32(lease / time.Second)})
	if err != nil {
		return fmt.Errorf("pubsub: %s %d message(s) of %s: %w", what, len(handles), s.sub, err)
	}
	return nil
}
