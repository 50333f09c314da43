package e2e

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/bacalhau-connect/bacalhau-connect/internal/cli"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// rpcCounter counts the Temporal calls of a starter command by method
// name (the part after the last '/').
type rpcCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (r *rpcCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	r.mu.Lock()
	r.calls[path.Base(method)]++
	r.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

// counted runs the starter and returns its output and the Temporal calls
// it made, by method.
func counted(t *testing.T, queue string, args ...string) (string, map[string]int, error) {
	t.Helper()
	r := &rpcCounter{calls: map[string]int{}}
	var out, errOut bytes.Buffer
	cmd := cli.NewRootCommand(&out, &errOut, cli.WithInterceptor(r.intercept))
	cmd.SetArgs(append(args, "--temporal-address", env.Temporal.HostPort(), "--task-queue", queue))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), r.calls, err
}

// TestOneNameIsOneConnector applies a name under a second kind (refused,
// naming the first) and checks that describe, reset and delete find the
// connector's kind with one visibility query and no probing.
func TestOneNameIsOneConnector(t *testing.T) {
	runsAlongside(t)
	queue := startWorker(t)
	const name = "e2e-one-name"
	createBucket(t, name)
	_, err := starter(t, queue, "apply", "-f", specFile(t, name, name, "in/", "@every 1h", ""))
	require.NoError(t, err)
	defer func() { _, _ = starter(t, queue, "delete", name) }()

	// The same name as a Kafka connector is refused before anything starts.
	kafka := kafkaSpecFile(t, name, "127.0.0.1:1", "no-such-topic", "")
	for _, args := range [][]string{{"apply", "-f", kafka}, {"apply", "-f", kafka, "--diff"}} {
		_, err = starter(t, queue, args...)
		require.Error(t, err, "%v", args)
		assert.Contains(t, err.Error(), "connector "+name+" already runs as a cron connector (workflow "+workflows.CronWorkflowID(name)+")")
		assert.Contains(t, err.Error(), "starter delete "+name)
	}
	_, err = env.Client.DescribeWorkflow(context.Background(), workflows.KafkaWorkflowID(name), "")
	require.Error(t, err, "no Kafka connector started")

	// Once visibility shows the connector, each verb finds its kind with one
	// ListWorkflowExecutions and no DescribeWorkflowExecution probes.
	waitListed(t, fmt.Sprintf("ConnectorName='%s'", name), workflows.CronWorkflowID(name))
	out, calls, err := counted(t, queue, "describe", name)
	require.NoError(t, err)
	assert.Contains(t, out, "schedule    @every 1h")
	assert.Equal(t, 1, calls["ListWorkflowExecutions"], "describe: %v", calls)
	assert.Zero(t, calls["DescribeWorkflowExecution"], "describe: %v", calls)
	assert.Equal(t, 1, calls["QueryWorkflow"], "describe: %v", calls)

	_, err = starter(t, queue, "pause", name)
	require.NoError(t, err)
	require.NoError(t, testenv.Eventually(10*time.Second, func() error {
		_, calls, err = counted(t, queue, "reset", name, "--to", "key=in/b")
		return err
	}))
	assert.Equal(t, 1, calls["ListWorkflowExecutions"], "reset: %v", calls)
	assert.Zero(t, calls["DescribeWorkflowExecution"], "reset: %v", calls)
	assert.Equal(t, "in/b", cronStatus(t, name).Cursor.Key)

	_, calls, err = counted(t, queue, "delete", name)
	require.NoError(t, err)
	assert.Equal(t, 1, calls["ListWorkflowExecutions"], "delete: %v", calls)
	assert.Zero(t, calls["DescribeWorkflowExecution"], "delete: %v", calls)
	assert.Equal(t, 1, calls["RequestCancelWorkflowExecution"], "delete: %v", calls)

	// A name that runs nowhere is not found, after the one query and the
	// look-up by workflow ID that covers visibility's lag.
	_, calls, err = counted(t, queue, "describe", name+"-missing")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connector "+name+"-missing: not found")
	assert.Equal(t, 1, calls["ListWorkflowExecutions"], "describe of a missing name: %v", calls)
}

// TestOneNameIsOneConnectorWithoutTheSearchAttributes runs apply's refusal
// and delete in a namespace where ConnectorName is not registered: the
// starter starts connectors without the attributes and finds them with the
// query by workflow ID.
func TestOneNameIsOneConnectorWithoutTheSearchAttributes(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const ns, name = "e2e-no-attributes", "e2e-bare"
	_, err := env.Client.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)})
	require.NoError(t, err)
	queue := "e2e-no-attributes" // no worker: apply and delete need none
	var stderr string
	require.NoError(t, testenv.Eventually(60*time.Second, func() error {
		_, stderr, err = starterStreams(t, queue, "apply", "-f", specFile(t, name, name, "in/", "@every 1h", ""), "--namespace", ns)
		return err
	}), "the new namespace becomes usable")
	assert.Contains(t, stderr, "not registered in namespace "+ns)

	_, err = starter(t, queue, "apply", "-f", kafkaSpecFile(t, name, "127.0.0.1:1", "no-such-topic", ""), "--namespace", ns)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connector "+name+" already runs as a cron connector")

	// Once visibility has it, the query without the attribute finds it:
	// the first query is refused for naming ConnectorName, the second
	// (by workflow ID) finds the connector.
	require.NoError(t, testenv.Eventually(20*time.Second, func() error {
		raw, err := temporalCLI("workflow", "list", "--namespace", ns, "--query", "WorkflowId='"+workflows.CronWorkflowID(name)+"'", "-o", "json")
		if err == nil && !strings.Contains(raw, workflows.CronWorkflowID(name)) {
			err = fmt.Errorf("not listed yet: %s", raw)
		}
		return err
	}))
	_, calls, err := counted(t, queue, "delete", name, "--namespace", ns)
	require.NoError(t, err)
	assert.Equal(t, 2, calls["ListWorkflowExecutions"], "delete: %v", calls)
	assert.Zero(t, calls["DescribeWorkflowExecution"], "delete: %v", calls)
	assert.Equal(t, 1, calls["RequestCancelWorkflowExecution"], "delete: %v", calls)
}
