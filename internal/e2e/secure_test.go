package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/internal/cli"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestSecuredConnectionsAndThePayloadCodec runs a Kafka connector the way a
// secured production cluster does: the worker and the starter reach
// Temporal over mTLS and the Bacalhau API over TLS with an API key, and
// every payload in history is AES-GCM encrypted. Neither the records nor the
// spec can be read from `temporal workflow show` without the codec server;
// with it (and its token), they can.
func TestSecuredConnectionsAndThePayloadCodec(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const name, topic, dlq = "e2e-secure", "secure-events", "secure-dlq"
	const bacalhauKey, codecToken = "bacalhau-api-key-for-tests", "codec-token-for-tests"
	const recordCanary, specCanary = "CANARY-REC", "-reject=BADREC"
	queue := "e2e-" + t.Name()

	pki, err := testenv.NewPKI(dir)
	require.NoError(t, err)
	tp, err := testenv.StartTLSProxy(env.Temporal.HostPort(), pki.ServerTLS(true, "h2"))
	require.NoError(t, err)
	defer func() { _ = tp.Close() }()

	target, err := url.Parse(env.Bacalhau.Address())
	require.NoError(t, err)
	var authorized, unauthorized atomic.Int64
	forward := httputil.NewSingleHostReverseProxy(target)
	bs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+bacalhauKey {
			unauthorized.Add(1)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		authorized.Add(1)
		forward.ServeHTTP(w, r)
	}))
	bs.TLS = pki.ServerTLS(false)
	bs.StartTLS()
	defer bs.Close()
	bu, err := url.Parse(bs.URL)
	require.NoError(t, err)

	key := make([]byte, 32)
	_, err = rand.Read(key)
	require.NoError(t, err)
	noteSecret("the codec key", base64.StdEncoding.EncodeToString(key))
	noteSecret("the Bacalhau API key", bacalhauKey)
	noteSecret("the codec server token", codecToken)
	noteRecord("the secured test's records", recordCanary)
	keyFile := filepath.Join(dir, "codec.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))

	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: 1, dlq: 1}})
	require.NoError(t, err)
	defer k.Stop()
	kc, err := k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer kc.Close()
	for i := 0; i < 30; i++ {
		line := fmt.Sprintf("%s-%02d %s", recordCanary, i, nginxLine(i))
		if i == 12 {
			line = "BADREC " + line
		}
		produce(t, kc, topic, 0, line)
	}

	gw, err := testenv.FreeAddr()
	require.NoError(t, err)
	w, err := env.StartWorkerProcess(ctx, testenv.WorkerProcessOptions{
		TaskQueue: queue, GatewayListen: gw, GatewaySecret: strings.Repeat("s", 32), Log: filepath.Join(dir, "worker.log"),
		Args: []string{"-temporal-address", tp.Addr(), "-tls-ca-path", pki.CAFile,
			"-tls-cert-path", pki.ClientCertFile, "-tls-key-path", pki.ClientKeyFile,
			"-bacalhau-host", "127.0.0.1", "-bacalhau-port", bu.Port(), "-bacalhau-tls", "true", "-bacalhau-ca-cert", pki.CAFile},
		Env: []string{"BACALHAU_API_KEY=" + bacalhauKey, "CONNECT_CODEC_KEY_FILE=" + keyFile},
	})
	require.NoError(t, err)
	defer w.Kill()

	secure := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		cmd := cli.NewRootCommand(&out, &errOut)
		cmd.SetArgs(append(args, "--temporal-address", tp.Addr(), "--tls-ca-path", pki.CAFile,
			"--tls-cert-path", pki.ClientCertFile, "--tls-key-path", pki.ClientKeyFile,
			"--codec-key-file", keyFile, "--task-queue", queue))
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}
	spec := kafkaSpecFile(t, name, k.Brokers()[0], topic, `batch: {max_records: 10, max_wait: 1s}
retry: {max_attempts: 2, initial_interval: 1s}
on_failure:
  dead_letter: {kafka: {topic: `+dlq+`}}
`, specCanary)
	out, err := secure("apply", "-f", spec)
	require.NoError(t, err, out)
	defer func() { _, _ = secure("delete", name) }()

	var st workflows.KafkaConnectorStatus
	require.NoError(t, testenv.Eventually(3*time.Minute, func() error {
		out, err := secure("describe", name, "-o", "json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if st.Records != 29 || st.DeadLettered != 1 {
			return fmt.Errorf("records %d, dead-lettered %d", st.Records, st.DeadLettered)
		}
		return nil
	}), "worker log: %s", filepath.Join(dir, "worker.log"))
	assert.Positive(t, tp.Verified(), "Temporal connections presented the client certificate")
	assert.Positive(t, authorized.Load(), "Bacalhau API calls carried the API key over TLS")
	assert.Zero(t, unauthorized.Load())

	// Without the key, a client sees only sealed payloads.
	_, err = starter(t, queue, "describe", name)
	require.Error(t, err, "the plain dev server address, no codec key")
	assert.Contains(t, err.Error(), "--codec-key-file")

	partition := workflows.PartitionWorkflowID(name, topic, 0)
	temporal := func(args ...string) string {
		out, err := temporalCLI(append(args, "-o", "json")...)
		require.NoError(t, err)
		return out
	}
	encrypted := base64.StdEncoding.EncodeToString([]byte("binary/encrypted"))
	for _, id := range []string{workflows.KafkaWorkflowID(name), partition} {
		raw := temporal("workflow", "show", "--workflow-id", id)
		assert.Contains(t, raw, encrypted, "%s: payloads are sealed", id)
		h := payloadText(raw)
		assert.NotContains(t, h, recordCanary, "%s: no record in plain history", id)
		assert.NotContains(t, h, specCanary, "%s: no spec in plain history", id)
	}

	// The codec server opens them for the token holder.
	bin, err := env.WorkerBinary(ctx)
	require.NoError(t, err)
	codecAddr, err := testenv.FreeAddr()
	require.NoError(t, err)
	cs := exec.Command(bin, "codec-server", "-listen", codecAddr, "-codec-key-file", keyFile)
	cs.Env = append(os.Environ(), "CONNECT_CODEC_AUTH_TOKEN="+codecToken)
	cs.Stdout, cs.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cs.Start())
	defer func() { _ = cs.Process.Kill(); _ = cs.Wait() }()
	require.NoError(t, testenv.Eventually(10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", codecAddr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err
	}))
	decoded := payloadText(temporal("workflow", "show", "--workflow-id", workflows.KafkaWorkflowID(name),
		"--codec-endpoint", "http://"+codecAddr, "--codec-auth", "Bearer "+codecToken))
	assert.Contains(t, decoded, specCanary, "the codec server decodes the connector's input (its spec)")
	assert.NotContains(t, decoded, recordCanary, "even decoded, no record: reports and dead-letter inputs name jobs, not task output")
	raw, _ := temporalCLI("workflow", "show", "--workflow-id", workflows.KafkaWorkflowID(name), "-o", "json",
		"--codec-endpoint", "http://"+codecAddr, "--codec-auth", "Bearer wrong")
	assert.NotContains(t, payloadText(raw), specCanary, "a wrong token decodes nothing")
}
