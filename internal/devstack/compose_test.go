package devstack_test

import (
	"os"
	"slices"
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
// search attributes, and the worker serves metrics beyond loopback for
// Prometheus.
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
			Profiles []string `yaml:"profiles"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	for _, name := range []string{"temporal", "temporal-ui", "bacalhau-orchestrator", "bacalhau-compute", "kafka", "localstack", "worker", "prometheus"} {
		require.Contains(t, compose.Services, name)
	}
	for _, name := range []string{"temporal", "bacalhau-orchestrator", "bacalhau-compute", "kafka", "localstack", "worker"} {
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
	assert.Contains(t, compose.Services["bacalhau-compute"].Command, "Compute.Orchestrators=bacalhau-orchestrator:4222")
	assert.Contains(t, compose.Services["kafka"].Environment["KAFKA_PROCESS_ROLES"], "controller", "KRaft, no ZooKeeper")
	assert.Equal(t, []string{"metrics"}, compose.Services["prometheus"].Profiles)
	cmd := compose.Services["temporal"].Command
	for name, typ := range workflows.SearchAttributeTypes() {
		assert.True(t, slices.Contains(cmd, name+"="+typ), "temporal registers search attribute %s", name)
	}
	prom, err := os.ReadFile("../../deploy/prometheus.yml")
	require.NoError(t, err)
	assert.Contains(t, string(prom), "worker:9464")
}
