package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// markRE finds record marks in any text: the dead letters' documents,
// records and messages quote the records they hold.
var markRE = regexp.MustCompile(`/chaos/[a-z]+/[0-9]{5}`)

// line is record i of kind: one nginx log line whose path is its mark;
// tag (POISON, SLOW or empty) goes in the user agent.
func line(kind string, i int, tag string) string {
	return fmt.Sprintf(`10.0.0.%d - - [27/Nov/2026:10:00:00 +0000] "GET %s HTTP/1.1" 200 %d "-" "chaos %s"`,
		i%250, mark(kind, i), 100+i, tag)
}

func mark(kind string, i int) string { return fmt.Sprintf("/chaos/%s/%05d", kind, i) }

// kind is one connector kind under test: its spec, how records go into its
// source and where its dead letters are read back.
type kind struct {
	name, connector string
	spec            string
	// produce puts records in the source in order and returns how many went
	// in; the rest wait for the next wave (the source is never down while
	// produce runs).
	produce func(ctx context.Context, lines []string, first int) (int, error)
	// deadLetters returns the marks in the dead-letter destination.
	deadLetters func(ctx context.Context) (map[string]bool, error)
	// mates is how many healthy records may be dead-lettered with each
	// poison or slow one: batch mates, where the kind does not bisect.
	mates int
	// deadErrors, when set, returns the dead letters' errors, logged when
	// more healthy records were dead-lettered than mates allows.
	deadErrors func(ctx context.Context) ([]string, error)

	// mu is held (read) while producing and (write) while the source is down.
	mu sync.RWMutex
}

// each puts lines in order with put and returns how many went in.
func each(lines []string, put func(i int, line string) error) (int, error) {
	for i, l := range lines {
		if err := put(i, l); err != nil {
			return i, err
		}
	}
	return len(lines), nil
}

// putObjects puts each line as an object of its own.
func putObjects(ctx context.Context, c *s3.Client, bucket, prefix string, lines []string, first int) (int, error) {
	return each(lines, func(i int, l string) error {
		key := fmt.Sprintf("%s%05d.log", prefix, first+i)
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: strings.NewReader(l + "\n")}); err != nil {
			return fmt.Errorf("putting %s: %w", key, err)
		}
		return nil
	})
}

// s3Marks reads every object under bucket/prefix and returns the marks in them.
func s3Marks(ctx context.Context, c *s3.Client, bucket, prefix string) (map[string]bool, error) {
	found := map[string]bool{}
	err := eachObject(ctx, c, bucket, prefix, func(raw []byte) {
		for _, m := range markRE.FindAllString(string(raw), -1) {
			found[m] = true
		}
	})
	return found, err
}

// eachObject calls fn with the contents of every object under bucket/prefix.
func eachObject(ctx context.Context, c *s3.Client, bucket, prefix string, fn func([]byte)) error {
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key})
			if err != nil {
				return err
			}
			raw, err := io.ReadAll(out.Body)
			_ = out.Body.Close()
			if err != nil {
				return err
			}
			fn(raw)
		}
	}
	return nil
}

// cronKeyRE finds the object keys a cron dead-letter manifest lists.
var cronKeyRE = regexp.MustCompile(`in/([0-9]{5})\.log`)

// cronDeadLetters returns the marks of the objects the cron connector's
// dead-letter manifests list.
func cronDeadLetters(ctx context.Context, c *s3.Client) (map[string]bool, error) {
	found := map[string]bool{}
	err := eachObject(ctx, c, "chaos-dlq", "cron/", func(raw []byte) {
		for _, m := range cronKeyRE.FindAllStringSubmatch(string(raw), -1) {
			n, _ := strconv.Atoi(m[1])
			found[mark("cron", n)] = true
		}
	})
	return found, err
}

// cronDeadLetterErrors returns the errors of the cron connector's
// dead-letter manifests, one per manifest, for a failure's report.
func cronDeadLetterErrors(ctx context.Context, c *s3.Client) ([]string, error) {
	var errs []string
	err := eachObject(ctx, c, "chaos-dlq", "cron/", func(raw []byte) {
		var m struct{ Error string }
		if json.Unmarshal(raw, &m) == nil {
			errs = append(errs, m.Error)
		}
	})
	return errs, err
}

// kafkaMarks reads a topic from its start to its end and returns the marks
// in its records' values and headers.
func kafkaMarks(ctx context.Context, newClient func(...kgo.Opt) (*kgo.Client, error), topic string) (map[string]bool, error) {
	c, err := newClient(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	found := map[string]bool{}
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		fs := c.PollFetches(pctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			var b bytes.Buffer
			b.Write(r.Value)
			for _, h := range r.Headers {
				b.Write(h.Value)
			}
			for _, m := range markRE.FindAllString(b.String(), -1) {
				found[m] = true
			}
		})
		if n == 0 {
			if err := fs.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return nil, err
			}
			return found, nil
		}
	}
}

// queueMarks receives and deletes every message of a dead-letter queue,
// adding their marks to into (the test owns the queue).
func queueMarks(ctx context.Context, c *sqs.Client, url string, into map[string]bool) error {
	for {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
		if err != nil {
			return err
		}
		if len(out.Messages) == 0 {
			return nil
		}
		for _, m := range out.Messages {
			for _, k := range markRE.FindAllString(aws.ToString(m.Body), -1) {
				into[k] = true
			}
			if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return err
			}
		}
	}
}

// putKinesis puts records one by one, each with its own partition key.
func putKinesis(ctx context.Context, c *kinesis.Client, stream string, lines []string, first int) (int, error) {
	return each(lines, func(i int, l string) error {
		_, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream),
			PartitionKey: aws.String(fmt.Sprint(first + i)), Data: []byte(l)})
		return err
	})
}

// createNATSStream creates a JetStream stream on a file store.
func createNATSStream(ctx context.Context, url, stream, subjects string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subjects}, Storage: jetstream.FileStorage})
	return err
}

// publishNATS publishes each line through JetStream (acknowledged), to
// subjects chaos.a and chaos.b in turn, on a connection of its own (the
// server may have been restarted since the last wave).
func publishNATS(ctx context.Context, url string, lines []string, first int) (int, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	return each(lines, func(i int, l string) error {
		_, err := js.Publish(ctx, []string{"chaos.a", "chaos.b"}[(first+i)%2], []byte(l))
		return err
	})
}

// createPubSub creates topic name and its subscription name-sub (ack
// deadline 10 s, dead letters to name-dlq after 5 deliveries), and
// name-dlq with subscription name-dlq-sub to read them.
func createPubSub(ctx context.Context, c *pubsub.Client, name string) error {
	const prefix = "projects/connect-chaos/"
	topic, dlq := prefix+"topics/"+name, prefix+"topics/"+name+"-dlq"
	for _, t := range []string{topic, dlq} {
		if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: t}); err != nil {
			return err
		}
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: prefix + "subscriptions/" + name + "-sub",
		Topic: topic, AckDeadlineSeconds: 10, DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dlq, MaxDeliveryAttempts: 5}}); err != nil {
		return err
	}
	_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: prefix + "subscriptions/" + name + "-dlq-sub",
		Topic: dlq, AckDeadlineSeconds: 60})
	return err
}

// publishPubSub publishes the lines to topic name in one request.
func publishPubSub(ctx context.Context, c *pubsub.Client, name string, lines []string) (int, error) {
	msgs := make([]*pubsubpb.PubsubMessage, len(lines))
	for i, l := range lines {
		msgs[i] = &pubsubpb.PubsubMessage{Data: []byte(l)}
	}
	if _, err := c.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{Topic: "projects/connect-chaos/topics/" + name, Messages: msgs}); err != nil {
		return 0, err
	}
	return len(lines), nil
}

// pubsubMarks pulls the dead-letter subscription, acking what it reads,
// and adds the marks of its messages to into.
func pubsubMarks(ctx context.Context, c *pubsub.Client, sub string, into map[string]bool) error {
	name := "projects/connect-chaos/subscriptions/" + sub
	for {
		res, err := c.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: name, MaxMessages: 100})
		if err != nil {
			return err
		}
		if len(res.ReceivedMessages) == 0 {
			return nil
		}
		var acks []string
		for _, m := range res.ReceivedMessages {
			for _, k := range markRE.FindAllString(string(m.GetMessage().GetData()), -1) {
				into[k] = true
			}
			acks = append(acks, m.AckId)
		}
		if err := c.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: name, AckIds: acks}); err != nil {
			return err
		}
	}
}
