package devstack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// KafkaOptions configures the Kafka stand-in.
type KafkaOptions struct {
	// Port of the (single) broker. Default: a free port.
	Port int
	// Topics are created up front with their partition counts; kfake creates
	// no topic on first use, as a well-run cluster would not.
	Topics map[string]int32
	// DataDir, when set, persists the broker's logs, topics and group
	// offsets there, so a broker restarted on it (same Port) resumes.
	DataDir string
	// SASL, when set, makes the broker require SASL with this superuser
	// (Mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512).
	SASL *KafkaUser
}

// KafkaUser is a SASL user of the stand-in.
type KafkaUser struct {
	Mechanism, User, Password string
}

// Kafka is franz-go's kfake: a real Kafka-protocol broker in this process
// (produce, fetch, groups, commits, CreatePartitions, DeleteRecords), on
// 127.0.0.1. Third-party clients such as kcat work against it.
type Kafka struct {
	cluster *kfake.Cluster
	user    *KafkaUser
}

// StartKafka starts the broker and creates opts.Topics.
func StartKafka(ctx context.Context, opts KafkaOptions) (*Kafka, error) {
	port, err := portOr(opts.Port)
	if err != nil {
		return nil, err
	}
	kopts := []kfake.Opt{kfake.Ports(port)}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir), kfake.SyncWrites())
	}
	if u := opts.SASL; u != nil {
		kopts = append(kopts, kfake.EnableSASL(), kfake.Superuser(u.Mechanism, u.User, u.Password))
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: starting kfake on port %d: %w", port, err)
	}
	k := &Kafka{cluster: c, user: opts.SASL}
	for topic, partitions := range opts.Topics {
		if err := k.CreateTopic(ctx, topic, partitions); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			k.Stop()
			return nil, err
		}
	}
	return k, nil
}

// Brokers are the seed addresses (host:port).
func (k *Kafka) Brokers() []string { return k.cluster.ListenAddrs() }

// Client returns a franz-go client for the broker; close it when done.
func (k *Kafka) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{kgo.SeedBrokers(k.Brokers()...)}
	if u := k.user; u != nil {
		switch u.Mechanism {
		case "PLAIN":
			base = append(base, kgo.SASL(plain.Auth{User: u.User, Pass: u.Password}.AsMechanism()))
		case "SCRAM-SHA-512":
			base = append(base, kgo.SASL(scram.Auth{User: u.User, Pass: u.Password}.AsSha512Mechanism()))
		default:
			base = append(base, kgo.SASL(scram.Auth{User: u.User, Pass: u.Password}.AsSha256Mechanism()))
		}
	}
	c, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: client: %w", err)
	}
	return c, nil
}

// CreateTopic creates a topic with the given partitions.
func (k *Kafka) CreateTopic(ctx context.Context, topic string, partitions int32) error {
	c, err := k.Client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(c).CreateTopic(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("kafka: creating topic %s: %w", topic, err)
	}
	return nil
}

// Stop closes the broker.
func (k *Kafka) Stop() { k.cluster.Close() }
