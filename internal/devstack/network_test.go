package devstack

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/bacalhau-project/bacalhau/pkg/publicapi/apimodels"
	"github.com/stretchr/testify/require"
)

// TestMain lets this test binary be a Bacalhau node of StartNetwork.
func TestMain(m *testing.M) {
	if IsNodeProcess() {
		os.Exit(NodeProcessMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func TestNetworkComputeNodesJoinAndAKilledOneLeaves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Bacalhau processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := StartNetwork(ctx, NetworkOptions{Command: []string{os.Args[0]}, Dir: t.TempDir(), ComputeNodes: 2, CPU: "1", DisconnectTimeout: 6 * time.Second})
	require.NoError(t, err)
	defer n.Stop()

	connected, err := n.ConnectedComputeNodes(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"compute-1", "compute-2"}, connected)
	resp, err := n.Client().Nodes().List(ctx, &apimodels.ListNodesRequest{})
	require.NoError(t, err)
	for _, node := range resp.Nodes {
		if node.Info.IsComputeNode() {
			require.InDelta(t, 1.0, node.Info.ComputeNodeInfo.MaxCapacity.CPU, 1e-9, "node %s offers the CPU it was given", node.Info.ID())
		}
	}

	n.Compute()[0].Kill()
	require.Eventually(t, func() bool {
		connected, err := n.ConnectedComputeNodes(ctx)
		return err == nil && len(connected) == 1 && connected[0] == "compute-2"
	}, 40*time.Second, 250*time.Millisecond, "the orchestrator counts the killed node gone")

	p, err := n.AddCompute(ctx)
	require.NoError(t, err)
	require.Equal(t, "compute-3", p.ID)
}
