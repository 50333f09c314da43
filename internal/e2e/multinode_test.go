package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/testenv"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestKafkaOnThreeComputeNodesAndTwoWorkersSurvivesANodeAndAWorkerKill:
// a Bacalhau network of an orchestrator and three compute nodes (each a
// process, 1 CPU: two 500m tasks at once), two worker processes on one task
// queue, a Kafka connector of 12 partitions whose tasks take 2 s. Jobs run
// on all three nodes (Bacalhau's execution records say where); a compute
// node SIGKILLed while it runs a task is counted gone by the budget within
// a minute (the size follows the network: 9 → 6), its task's job is
// stopped and the batch runs again under its identity on another node; a
// worker SIGKILLed mid-run leaves the other to finish; the killed node,
// started again, raises the budget back to 9. Every record is in
// exactly one successful task and no batch identity has two successful
// jobs.
func TestKafkaOnThreeComputeNodesAndTwoWorkersSurvivesANodeAndAWorkerKill(t *testing.T) {
	runsAlongside(t)
	ctx := context.Background()
	const topic, name, partitions, firstWave, secondWave = "multinode-events", "e2e-multinode", 12, 1200, 600
	queue := "e2e-multinode"

	net, err := devstack.StartNetwork(ctx, devstack.NetworkOptions{Command: []string{os.Args[0]},
		Dir: filepath.Join(env.Dir, "multinode"), ComputeNodes: 3, CPU: "1", DisconnectTimeout: 10 * time.Second})
	require.NoError(t, err)
	defer net.Stop()
	api, err := url.Parse(net.Address())
	require.NoError(t, err)

	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Topics: map[string]int32{topic: partitions}})
	require.NoError(t, err)
	defer k.Stop()
	c, err := k.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer c.Close()
	produce := func(from, n int) {
		recs := make([]*kgo.Record, 0, n)
		for i := from; i < from+n; i++ {
			recs = append(recs, &kgo.Record{Partition: int32(i % partitions), Value: []byte(nginxLine(i))})
		}
		require.NoError(t, c.ProduceSync(ctx, recs...).FirstErr())
	}

	secret := make([]byte, 24)
	_, _ = crand.Read(secret)
	workers := make([]*testenv.WorkerProcess, 2)
	for i := range workers {
		gw, err := testenv.FreeAddr()
		require.NoError(t, err)
		workers[i], err = env.StartWorkerProcess(ctx, testenv.WorkerProcessOptions{TaskQueue: queue, GatewayListen: gw,
			GatewaySecret: hex.EncodeToString(secret), Log: filepath.Join(env.Dir, fmt.Sprintf("worker-multinode-%d.log", i+1)),
			Args: []string{"-bacalhau-host", api.Hostname(), "-bacalhau-port", api.Port()}})
		require.NoError(t, err)
		defer workers[i].Kill()
	}

	produce(0, firstWave)
	deleteConnector := applyConnectors(t, queue, map[string]string{
		name: kafkaSpecFile(t, name, k.Brokers()[0], topic, "batch: {max_records: 50, max_wait: 1s}\n", "-delay=2s"),
	})
	defer func() { deleteConnector(); waitClosed(t, workflows.KafkaWorkflowID(name)) }()

	// The budget follows the network: three nodes of two tasks, 9 leases.
	st := waitBudget(t, queue, 3, time.Minute)
	assert.Equal(t, 9, st.Size)
	assert.True(t, st.FollowsNetwork)

	// Run until every node has completed a task and compute-3 runs one
	// now, then kill compute-3 mid-task.
	victim := "compute-3"
	var before map[string]int
	require.NoError(t, testenv.Eventually(3*time.Minute, func() error {
		done, running := executionsByNode(t, net, name)
		before = done
		for _, id := range []string{"compute-1", "compute-2", "compute-3"} {
			if done[id] == 0 {
				return fmt.Errorf("no task completed on %s yet (%v)", id, done)
			}
		}
		if running[victim] == 0 {
			return fmt.Errorf("nothing running on %s now", victim)
		}
		return nil
	}))
	t.Logf("tasks completed per node before the kill: %v", before)
	nodes := net.Compute()
	killedAt := time.Now()
	nodes[2].Kill()

	// Within a minute the budget counts two nodes: 4 tasks at once, 6 leases.
	st = waitBudget(t, queue, 2, time.Minute)
	t.Logf("budget followed the network %s after the kill: size %d, %d nodes", time.Since(killedAt).Round(time.Second), st.Size, st.Network.ComputeNodes)
	assert.Equal(t, 6, st.Size)
	out, err := starter(t, queue, "budget", "status")
	require.NoError(t, err)
	assert.Contains(t, out, "network: 2 compute nodes (compute-1 1 CPU, compute-2 1 CPU), 4 tasks at once")
	assert.Contains(t, out, "the size follows it")

	// More records, and one worker killed while they run.
	produce(firstWave, secondWave)
	require.NoError(t, testenv.Eventually(time.Minute, func() error {
		if _, running := executionsByNode(t, net, name); running["compute-1"]+running["compute-2"] == 0 {
			return fmt.Errorf("no task of the second wave running yet")
		}
		return nil
	}))
	workers[0].Kill()

	per := int64((firstWave + secondWave) / partitions)
	want := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		want[p] = per
	}
	waitCheckpoints(t, name, topic, want, 5*time.Minute)

	// compute-3 comes back with its state: the budget follows it up again,
	// and the results it published before the kill (Bacalhau's local
	// publisher serves them from the node) can be read for the ledger.
	require.NoError(t, net.Restart(ctx, nodes[2]))
	st = waitBudget(t, queue, 3, time.Minute)
	assert.Equal(t, 9, st.Size, "a node that joins raises the budget")

	seen, completed := kafkaLedgerAt(t, net.Address(), name)
	assert.Len(t, seen, firstWave+secondWave, "no record lost")
	for key, n := range seen {
		assert.Equal(t, 1, n, "record %s in exactly one successful task", key)
	}
	perBatch := map[string]int{}
	lost := 0
	for _, j := range jobsWithLabelAt(t, net.Address(), tasktemplate.LabelConnector+"="+name) {
		switch {
		case j.State.StateType == models.JobStateTypeCompleted:
			perBatch[j.Labels[tasktemplate.LabelBatch]]++
		case j.State.StateType == models.JobStateTypeStopped && strings.Contains(j.State.Message, "compute node lost"):
			lost++
		}
	}
	for batch, n := range perBatch {
		assert.Equal(t, 1, n, "batch %s: one successful job", batch)
	}
	assert.GreaterOrEqual(t, lost, 1, "the task running on the killed node was stopped and its batch ran again")
	done, _ := executionsByNode(t, net, name)
	t.Logf("%d records in %d successful jobs; %d job(s) stopped for the lost node; completed per node: %v", len(seen), completed, lost, done)
	for _, id := range []string{"compute-1", "compute-2", "compute-3"} {
		assert.Positive(t, done[id], "jobs ran on %s", id)
	}
	recordHistory(t, workflows.BudgetWorkflowIDFor(queue), "budget-follows-network")
}

// waitBudget waits until the task queue's budget has measured nodes
// compute nodes and returns its status.
func waitBudget(t *testing.T, queue string, nodes int, timeout time.Duration) workflows.BudgetStatus {
	t.Helper()
	var st workflows.BudgetStatus
	require.NoError(t, testenv.Eventually(timeout, func() error {
		v, err := env.Client.QueryWorkflow(context.Background(), workflows.BudgetWorkflowIDFor(queue), "", workflows.QueryBudgetStatus)
		if err != nil {
			return err
		}
		st = workflows.BudgetStatus{}
		if err := v.Get(&st); err != nil {
			return err
		}
		if st.Network == nil || st.Network.ComputeNodes != nodes {
			return fmt.Errorf("budget measured %+v, want %d nodes", st.Network, nodes)
		}
		return nil
	}))
	return st
}

// executionsByNode counts the connector's executions per compute node, from
// Bacalhau's execution records: completed ones and running ones.
func executionsByNode(t *testing.T, net *devstack.Network, connector string) (completed, running map[string]int) {
	t.Helper()
	completed, running = map[string]int{}, map[string]int{}
	api := net.Client().Jobs()
	for _, j := range jobsWithLabelAt(t, net.Address(), tasktemplate.LabelConnector+"="+connector) {
		resp, err := api.Executions(context.Background(), &apimodels.ListJobExecutionsRequest{JobID: j.ID})
		require.NoError(t, err)
		for _, e := range resp.Items {
			switch {
			case e.ComputeState.StateType == models.ExecutionStateCompleted:
				completed[e.NodeID]++
			case slices.Contains([]models.ExecutionStateType{models.ExecutionStateBidAccepted, models.ExecutionStateRunning}, e.ComputeState.StateType):
				running[e.NodeID]++
			}
		}
	}
	return completed, running
}
