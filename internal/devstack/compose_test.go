package devstack_test

import (
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// TestComposeFileWiresTheFullStack checks docker-compose.yml beyond
// `docker-compose config` (make test runs both; no Docker engine runs
// here): every part of the stack is there, the long-running ones have
// health checks the others wait on, Temporal registers the connectors'
// search attributes, the worker serves metrics beyond loopback for
// Prometheus, and the stack spans more than one of each kind of node: two
// compute nodes (each its own service, publishing results at its own
// address) and two worker replicas that can be scaled without clashing.
func TestComposeFileWiresTheFullStack(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	require.NoError(t, err)
	var compose struct {
		Services map[string]struct {
			Image       string         `yaml:"image"`
			Build       any            `yaml:"build"`
			Command     []string       `yaml:"command"`
			Environment map[string]any `yaml:"environment"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
			DependsOn map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Profiles      []string `yaml:"profiles"`
			Ports         []string `yaml:"ports"`
			Volumes       []string `yaml:"volumes"`
			ContainerName string   `yaml:"container_name"`
			Deploy        struct {
				Replicas int `yaml:"replicas"`
			} `yaml:"deploy"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	for _, name := range []string{"temporal", "temporal-ui", "bacalhau-orchestrator", "bacalhau-compute-1", "bacalhau-compute-2", "kafka", "localstack", "worker", "prometheus"} {
		_, ok := compose.Services[name]
		require.True(t, ok, "docker-compose.yml has service %s", name)
	}
	for _, name := range []string{"temporal", "bacalhau-orchestrator", "bacalhau-compute-1", "bacalhau-compute-2", "kafka", "localstack", "worker"} {
		require.NotNil(t, compose.Services[name].Healthcheck, "%s has a health check", name)
		assert.NotEmpty(t, compose.Services[name].Healthcheck.Test)
	}
	worker := compose.Services["worker"]
	assert.NotNil(t, worker.Build, "the worker is built from this repository")
	for _, dep := range []string{"temporal", "bacalhau-orchestrator", "kafka", "localstack"} {
		assert.Equal(t, "service_healthy", worker.DependsOn[dep].Condition, "the worker waits for %s", dep)
	}
	assert.Equal(t, []string{"CMD", "/usr/local/bin/worker", "healthcheck"}, worker.Healthcheck.Test)
	assert.Equal(t, "0.0.0.0:9464", worker.Environment["CONNECT_METRICS_LISTEN"])

	// Compute nodes: each its own service (not scaled), joined to the
	// orchestrator, its local publisher at its own container name.
	computes := 0
	for name, svc := range compose.Services {
		if !slices.Contains(svc.Command, "--compute") {
			continue
		}
		computes++
		assert.Contains(t, svc.Command, "Compute.Orchestrators=bacalhau-orchestrator:4222", name)
		assert.Contains(t, svc.Command, "Publishers.Types.Local.Address="+name, "%s publishes results at its own name", name)
		assert.True(t, slices.ContainsFunc(svc.Command, func(arg string) bool {
			return strings.HasPrefix(arg, "Publishers.Types.Local.Port=")
		}), "%s sets its local publisher's port", name)
		assert.LessOrEqual(t, svc.Deploy.Replicas, 1, "%s is not scaled: its publisher address names one container", name)
		assert.Equal(t, "service_healthy", svc.DependsOn["bacalhau-orchestrator"].Condition, name)
	}
	assert.Equal(t, 2, computes, "two compute nodes")

	// Workers: two replicas of one service, polling one task queue. The
	// gateway URL names the service (any replica), so they share a secret.
	assert.Equal(t, 2, worker.Deploy.Replicas, "two worker replicas")
	assert.Empty(t, worker.ContainerName, "a scaled service has no fixed container name")
	gwURL, _ := worker.Environment["CONNECT_GATEWAY_URL"].(string)
	gw, err := url.Parse(gwURL)
	require.NoError(t, err)
	assert.Equal(t, "worker", gw.Hostname(), "the gateway URL names the service, which resolves to any replica")
	secret, _ := worker.Environment["CONNECT_GATEWAY_SECRET"].(string)
	if def, ok := strings.CutPrefix(secret, "${CONNECT_GATEWAY_SECRET:-"); ok {
		secret = strings.TrimSuffix(def, "}")
	}
	assert.GreaterOrEqual(t, len(secret), 32, "the replicas share a gateway secret of at least 32 bytes")

	// Host ports and named volumes: no two services share one, and a
	// scaled service publishes no fixed host port (its replicas would clash).
	hostPorts := map[string]string{}
	volumes := map[string]string{}
	for name, svc := range compose.Services {
		for _, p := range svc.Ports {
			parts := strings.Split(p, ":")
			if len(parts) == 1 {
				continue // container port only: an ephemeral host port
			}
			host := parts[len(parts)-2]
			assert.LessOrEqual(t, svc.Deploy.Replicas, 1, "%s has %d replicas but publishes fixed host port %s", name, svc.Deploy.Replicas, host)
			assert.NotContains(t, hostPorts, host, "%s and %s both publish host port %s", name, hostPorts[host], host)
			hostPorts[host] = name
		}
		for _, v := range svc.Volumes {
			vol, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(vol, ".") || strings.HasPrefix(vol, "/") {
				continue // a bind mount: sharing one is fine
			}
			assert.NotContains(t, volumes, vol, "%s and %s share volume %s", name, volumes[vol], vol)
			volumes[vol] = name
		}
	}
	assert.Contains(t, compose.Services["kafka"].Environment["KAFKA_PROCESS_ROLES"], "controller", "KRaft, no ZooKeeper")
	assert.Equal(t, []string{"metrics"}, compose.Services["prometheus"].Profiles)
	cmd := compose.Services["temporal"].Command
	for name, typ := range workflows.SearchAttributeTypes() {
		assert.True(t, slices.Contains(cmd, name+"="+typ), "temporal registers search attribute %s", name)
	}
	prom, err := os.ReadFile("../../deploy/prometheus.yml")
	require.NoError(t, err)
	// Every replica, not whichever one the name answers with per scrape.
	assert.Contains(t, string(prom), "dns_sd_configs")
	assert.Contains(t, string(prom), `names: ["worker"]`)
	assert.Contains(t, string(prom), "port: 9464")
	assert.NotContains(t, string(prom), `"worker:9464"`)
}
