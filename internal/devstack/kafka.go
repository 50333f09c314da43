package devstack

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaOptions configures the Kafka stand-in.
type KafkaOptions struct {
	// Port of the (single) broker. Default: a free port.
	Port int
	// Topics are created up front with their partition counts; kfake creates
	// no topic on first use, as a well-run cluster would not.
	Topics map[string]int32
}

// Kafka is franz-go's kfake: a real Kafka-protocol broker in this process
// (produce, fetch, groups, commits, CreatePartitions, DeleteRecords), on
// 127.0.0.1. Third-party clients such as kcat work against it.
type Kafka struct {
	cluster *kfake.Cluster
}

// StartKafka starts the broker and creates opts.Topics.
func StartKafka(ctx context.Context, opts KafkaOptions) (*Kafka, error) {
	port, err := portOr(opts.Port)
	if err != nil {
		return nil, err
	}
	c, err := kfake.NewCluster(kfake.Ports(port))
	if err != nil {
		return nil, fmt.Errorf("kafka: starting kfake on port %d: %w", port, err)
	}
	k := &Kafka{cluster: c}
	for topic, partitions := range opts.Topics {
		if err := k.CreateTopic(ctx, topic, partitions); err != nil {
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
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Brokers()...)}, opts...)...)
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
