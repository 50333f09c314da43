// Package pubsubsource reads a Google Cloud Pub/Sub subscription as a
// source.Queue, with unary Pull, ModifyAckDeadline and Acknowledge: each
// step explicit, no streaming pull holding messages the engine has not
// asked for. A message's lease is its ack deadline; Release sets it to 0
// (a nack), and the subscription's dead-letter policy counts deliveries.
package pubsubsource

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/bacalhau-connect/bacalhau-connect/source"
)

// Config is the pubsub kind's source section: the pull subscription a
// connector reads.
type Config struct {
	// Project is the Google Cloud project ID, such as shop-prod.
	Project string `yaml:"project" json:",omitempty"`
	// Subscription is the pull subscription's ID, or its full name
	// (projects/P/subscriptions/S). Its dead-letter policy, if any, moves
	// a message the task keeps failing on to its dead-letter topic after
	// max_delivery_attempts; with message ordering on, messages of one
	// ordering key reach tasks in publish order.
	Subscription string `yaml:"subscription" json:",omitempty"`
	// Endpoint, when set, is an emulator's host:port, reached over
	// plaintext gRPC without credentials; empty: Google Cloud, with the
	// worker's Application Default Credentials.
	Endpoint string `yaml:"endpoint" json:",omitempty"`
	// AckDeadline is how long a pulled message stays leased between two
	// extensions while its task runs: 10s to 600s, default 60s. A worker
	// that dies lets its messages go back to the subscription after it.
	AckDeadline *Duration `yaml:"ack_deadline" json:",omitempty"`
}

// Duration is a duration written as Go writes one (90s, 5m).
type Duration struct{ time.Duration }

// UnmarshalYAML reads a duration such as 90s.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("%q is not a duration: write one such as 60s or 5m", n.Value)
	}
	d.Duration = v
	return nil
}

// Kind is the pubsub connector kind: a pull subscription's messages in
// batches, acked after their task succeeded.
func Kind() source.QueueKind {
	return source.QueueKind{Name: "pubsub", NewConfig: func() source.QueueConfig { return &Config{} }, Open: OpenQueue,
		ConnectorType: "PubSubConnector", IDPrefix: "pubsub-"}
}

// Ack deadlines the section takes.
const (
	DefaultAckDeadline = 60 * time.Second
	MinAckDeadline     = 10 * time.Second
)

var (
	projectRE      = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	subscriptionRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.~+%-]{2,254}$`)
	fullNameRE     = regexp.MustCompile(`^projects/([^/]+)/subscriptions/([^/]+)$`)
	endpointRE     = regexp.MustCompile(`^(\[[0-9a-fA-F:]+\]|[^\s:/\[\]]+):[0-9]{1,5}$`)
)

// ProjectPattern, SubscriptionPattern and EndpointPattern are what Check
// takes (for the JSON Schema).
var (
	ProjectPattern      = projectRE.String()
	SubscriptionPattern = subscriptionRE.String()
	EndpointPattern     = endpointRE.String()
)

// Check checks the section (source.QueueConfig).
func (c *Config) Check() []source.Problem {
	var ps []source.Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, source.Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !projectRE.MatchString(c.Project) {
		add("project", "%q: use the project ID (6-30 lowercase letters, digits and '-', starting with a letter), such as shop-prod", c.Project)
	}
	sub := c.Subscription
	if m := fullNameRE.FindStringSubmatch(sub); m != nil {
		if m[1] != c.Project {
			add("subscription", "%q names project %s, not %s: write the subscription's ID, or its full name in this project", sub, m[1], c.Project)
		}
		sub = m[2]
	}
	if !subscriptionRE.MatchString(sub) {
		add("subscription", "%q: use the subscription's ID (3-255 letters, digits and - _ . ~ + %%, starting with a letter) or projects/P/subscriptions/ID", c.Subscription)
	}
	if c.Endpoint != "" && !endpointRE.MatchString(c.Endpoint) {
		add("endpoint", "%q: use an emulator's host:port such as localhost:8085 (leave it out for Google Cloud)", c.Endpoint)
	}
	if d := c.Lease(); d < MinAckDeadline || d > maxLease {
		add("ack_deadline", "%s: use %s to %s (Pub/Sub's limits)", d, MinAckDeadline, maxLease)
	}
	return ps
}

// Describe says what the connector reads.
func (c *Config) Describe() string {
	return "subscription " + c.subscriptionName()
}

// Lease is the ack deadline asked for while a task runs.
func (c *Config) Lease() time.Duration {
	if c.AckDeadline == nil {
		return DefaultAckDeadline
	}
	return c.AckDeadline.Duration
}

func (c *Config) subscriptionName() string {
	if strings.HasPrefix(c.Subscription, "projects/") {
		return c.Subscription
	}
	return fmt.Sprintf("projects/%s/subscriptions/%s", c.Project, c.Subscription)
}

// ErrTypeSubscriptionNotFound is the non-retryable error type of a
// subscription that does not exist.
const ErrTypeSubscriptionNotFound = "PubSubSubscriptionNotFound"

// OpenQueue opens the subscription a connector's configuration names
// (source.QueueOpener) and checks that it exists: a missing one is a
// non-retryable PubSubSubscriptionNotFound error.
func OpenQueue(ctx context.Context, raw json.RawMessage) (source.Queue, error) {
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, temporal.NewNonRetryableApplicationError("pubsub: the connector's configuration: "+err.Error(), "InvalidConfig", err)
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	_, err = s.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: s.sub})
	if status.Code(err) == codes.NotFound {
		_ = s.Close()
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"pubsub: subscription %s does not exist at %s: create it (with its dead-letter policy) or fix source.pubsub.subscription", s.sub, endpointOr(cfg.Endpoint)),
			ErrTypeSubscriptionNotFound, err)
	}
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("pubsub: looking up subscription %s: %w", s.sub, err)
	}
	return s, nil
}

func endpointOr(e string) string {
	if e == "" {
		return "Google Cloud"
	}
	return e
}

// pollPause is the pause between two pulls that found nothing.
const pollPause = 200 * time.Millisecond

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
	return &Source{client: c, sub: cfg.subscriptionName()}, nil
}

// Close closes the client.
func (s *Source) Close() error { return s.client.Close() }

// Receive pulls until it has messages or wait has passed, then leases what
// it got for lease.
func (s *Source) Receive(ctx context.Context, limit int, lease, wait time.Duration) ([]source.Message, error) {
	deadline := time.Now().Add(wait)
	var out []source.Message
	for {
		// A pull waits on the server while the subscription is empty (an
		// emulator answers at once): bound it by what is left of wait.
		pctx, cancel := context.WithTimeout(ctx, max(time.Until(deadline), time.Second))
		res, err := s.client.SubscriptionAdminClient.Pull(pctx, &pubsubpb.PullRequest{Subscription: s.sub, MaxMessages: int32(limit - len(out))})
		cancel()
		if status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil {
			res, err = &pubsubpb.PullResponse{}, nil
		}
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
		select {
		case <-ctx.Done():
		case <-time.After(min(pollPause, time.Until(deadline))):
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
