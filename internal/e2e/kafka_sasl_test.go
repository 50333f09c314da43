package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// A Kafka connector reads a SCRAM-SHA-512 broker with credentials named by
// environment variable: every record is processed once, and the password
// is one of the secrets the history scan (TestMain) looks for in every
// history the suite leaves.
func TestKafkaSASLCredentialsByReference(t *testing.T) {
	ctx := context.Background()
	const topic, name = "sasl-events", "e2e-kafka-sasl"
	secret := make([]byte, 12)
	_, err := rand.Read(secret)
	require.NoError(t, err)
	password := "sasl-" + hex.EncodeToString(secret)
	noteSecret("Kafka SASL password", password)
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{
		SASL:   &devstack.KafkaUser{Mechanism: "SCRAM-SHA-512", User: "connect", Password: password},
		Topics: map[string]int32{topic: 2},
	})
	require.NoError(t, err)
	defer k.Stop()
	// The in-process worker reads the credentials from its environment.
	t.Setenv("E2E_KAFKA_USER", "connect")
	t.Setenv("E2E_KAFKA_PASSWORD", password)

	c, err := k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	for i := 0; i < 40; i++ {
		produce(t, c, topic, int32(i%2), nginxLine(i))
	}
	queue := startWorker(t)
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "task.yaml")
	require.NoError(t, os.WriteFile(tmpl, []byte(sampleTemplate(t)), 0o644))
	spec := filepath.Join(dir, name+".yaml")
	require.NoError(t, os.WriteFile(spec, []byte(strings.Join([]string{
		"name: " + name,
		"kind: kafka",
		"source:",
		"  kafka:",
		"    brokers: [" + k.Brokers()[0] + "]",
		"    topic: " + topic,
		"    sasl: {mechanism: scram-sha-512, username_env: E2E_KAFKA_USER, password_env: E2E_KAFKA_PASSWORD}",
		"batch: {max_records: 10, max_wait: 1s}",
		"task:",
		"  template: task.yaml",
		"  execution_timeout: 1m",
		"",
	}, "\n")), 0o644))
	out, err := starter(t, queue, "apply", "-f", spec)
	require.NoError(t, err, out)
	defer func() { _, _ = starter(t, queue, "delete", name) }()

	waitCheckpoints(t, name, topic, map[int32]int64{0: 20, 1: 20}, 2*time.Minute)
	seen, _ := kafkaLedger(t, name)
	assert.Len(t, seen, 40)
	for key, n := range seen {
		assert.Equal(t, 1, n, key)
	}
	assert.NotContains(t, out, password)
}
