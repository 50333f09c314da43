package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SubscribeInput sets up an sns connector's queue.
type SubscribeInput struct {
	// QueueRef names the managed queue (its name) and the endpoint.
	QueueRef
	Connector    string
	TopicARN     string
	RawDelivery  bool
	FilterPolicy string
}

// Subscribed is what EnsureSubscription set up.
type Subscribed struct {
	QueueURL, QueueARN, SubscriptionARN string
	// Created is true when the connector created the queue (else it adopted
	// an existing one, which it never deletes).
	Created bool
}

// TagManagedBy marks queues an sns connector created.
const TagManagedBy = "connect-managed-by"

// EnsureSubscription creates the connector's queue (or adopts an existing
// one of that name), lets the topic send to it when it created it, and
// subscribes it to the topic with the raw-delivery and filter-policy
// settings, reusing a subscription that exists. Idempotent.
func (q *Queue) EnsureSubscription(ctx context.Context, in SubscribeInput) (*Subscribed, error) {
	sq, sn, err := q.clients(ctx, in.Endpoint, in.Region)
	if err != nil {
		return nil, err
	}
	if _, err := sn.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(in.TopicARN)}); err != nil {
		var nf *snstypes.NotFoundException
		if errors.As(err, &nf) {
			return nil, nonRetryable(ErrTypeSNSTopicNotFound, err, "sns: topic %s does not exist at %s: fix source.sns.topic_arn", in.TopicARN, endpointOr(in.Endpoint))
		}
		return nil, fmt.Errorf("sns: reading topic %s: %w", in.TopicARN, err)
	}
	out := &Subscribed{}
	got, err := sq.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(in.Queue)})
	var missing *sqstypes.QueueDoesNotExist
	switch {
	case errors.As(err, &missing):
		attrs := map[string]string{}
		if strings.HasSuffix(in.Queue, ".fifo") {
			attrs[string(sqstypes.QueueAttributeNameFifoQueue)] = "true"
		}
		created, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(in.Queue), Attributes: attrs,
			Tags: map[string]string{TagManagedBy: in.Connector}})
		if err != nil {
			return nil, fmt.Errorf("sqs: creating queue %s: %w", in.Queue, err)
		}
		out.QueueURL, out.Created = aws.ToString(created.QueueUrl), true
	case err != nil:
		return nil, fmt.Errorf("sqs: looking up queue %s: %w", in.Queue, err)
	default:
		out.QueueURL = aws.ToString(got.QueueUrl)
	}
	attrs, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(out.QueueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return nil, fmt.Errorf("sqs: reading %s: %w", out.QueueURL, err)
	}
	out.QueueARN = attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	if out.Created {
		policy, _ := json.Marshal(map[string]any{
			"Version": "2012-10-17",
			"Statement": []any{map[string]any{
				"Effect": "Allow", "Principal": map[string]string{"Service": "sns.amazonaws.com"},
				"Action": "sqs:SendMessage", "Resource": out.QueueARN,
				"Condition": map[string]any{"ArnEquals": map[string]string{"aws:SourceArn": in.TopicARN}},
			}},
		})
		if _, err := sq.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(out.QueueURL),
			Attributes: map[string]string{string(sqstypes.QueueAttributeNamePolicy): string(policy)}}); err != nil {
			return nil, fmt.Errorf("sqs: letting %s send to %s: %w", in.TopicARN, in.Queue, err)
		}
	}
	subAttrs := map[string]string{"RawMessageDelivery": strconv.FormatBool(in.RawDelivery)}
	if in.FilterPolicy != "" {
		subAttrs["FilterPolicy"] = in.FilterPolicy
	}
	subs, err := sn.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(in.TopicARN)})
	if err != nil {
		return nil, fmt.Errorf("sns: listing subscriptions of %s: %w", in.TopicARN, err)
	}
	for _, s := range subs.Subscriptions {
		if aws.ToString(s.Protocol) == "sqs" && aws.ToString(s.Endpoint) == out.QueueARN {
			out.SubscriptionARN = aws.ToString(s.SubscriptionArn)
			for k, v := range subAttrs {
				if _, err := sn.SetSubscriptionAttributes(ctx, &sns.SetSubscriptionAttributesInput{SubscriptionArn: s.SubscriptionArn,
					AttributeName: aws.String(k), AttributeValue: aws.String(v)}); err != nil {
					return nil, fmt.Errorf("sns: updating subscription %s: %w", out.SubscriptionARN, err)
				}
			}
			return out, nil
		}
	}
	sub, err := sn.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(in.TopicARN), Protocol: aws.String("sqs"),
		Endpoint: aws.String(out.QueueARN), Attributes: subAttrs, ReturnSubscriptionArn: true})
	if err != nil {
		return nil, fmt.Errorf("sns: subscribing %s to %s: %w", in.Queue, in.TopicARN, err)
	}
	out.SubscriptionARN = aws.ToString(sub.SubscriptionArn)
	return out, nil
}
