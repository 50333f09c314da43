package activities

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// KafkaCluster says how to reach a Kafka cluster. It holds no secret: TLS
// material is named by file path and SASL credentials by the names of the
// worker's environment variables, read only when a client is made.
type KafkaCluster struct {
	Brokers []string
	TLS     *KafkaTLS  `json:",omitempty"`
	SASL    *KafkaSASL `json:",omitempty"`
}

// KafkaTLS names the PEM files of a TLS connection. CAFile empty uses the
// system roots; CertFile and KeyFile (together) add a client certificate.
type KafkaTLS struct {
	CAFile, CertFile, KeyFile string `json:",omitempty"`
}

// KafkaSASL names a mechanism (plain, scram-sha-256, scram-sha-512) and the
// environment variables of the worker that hold the credentials.
type KafkaSASL struct {
	Mechanism, UsernameEnv, PasswordEnv string
}

// key identifies a cluster connection for sharing clients.
func (c KafkaCluster) key() string {
	k := strings.Join(c.Brokers, ",")
	if c.TLS != nil {
		k += "|tls:" + c.TLS.CAFile + ":" + c.TLS.CertFile + ":" + c.TLS.KeyFile
	}
	if c.SASL != nil {
		k += "|sasl:" + c.SASL.Mechanism + ":" + c.SASL.UsernameEnv + ":" + c.SASL.PasswordEnv
	}
	return k
}

// MaxDeadLetterRecordBytes bounds one record the connector produces to a
// dead-letter topic (franz-go's default is Kafka's 1 MB): a record read
// from the source may be larger, and the dead-letter topic's own
// max.message.bytes decides; a refusal names it.
const MaxDeadLetterRecordBytes = 64 << 20

// Opts returns the franz-go options to reach the cluster: seed brokers, TLS
// and SASL. A missing credential variable or unreadable TLS file is a
// non-retryable error naming it.
func (c KafkaCluster) Opts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ProducerBatchMaxBytes(MaxDeadLetterRecordBytes)}
	if t := c.TLS; t != nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, nonRetryable(ErrTypeKafkaConfig, err, "kafka tls.ca_file: %v", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, nonRetryable(ErrTypeKafkaConfig, nil, "kafka tls.ca_file %s: no PEM certificate in it", t.CAFile)
			}
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, nonRetryable(ErrTypeKafkaConfig, err, "kafka tls.cert_file/key_file: %v", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s := c.SASL; s != nil {
		user, pass := os.Getenv(s.UsernameEnv), os.Getenv(s.PasswordEnv)
		if user == "" || pass == "" {
			return nil, nonRetryable(ErrTypeKafkaConfig, nil,
				"kafka sasl: the worker's environment variables %s and %s must both be set (the spec names them; the worker holds the credentials)",
				s.UsernameEnv, s.PasswordEnv)
		}
		switch s.Mechanism {
		case "plain":
			opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
		case "scram-sha-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
		case "scram-sha-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
		default:
			return nil, nonRetryable(ErrTypeKafkaConfig, nil, "kafka sasl.mechanism %q: use plain, scram-sha-256 or scram-sha-512", s.Mechanism)
		}
	}
	return opts, nil
}

// KafkaClients shares one client per cluster across every activity of a
// worker, and one end-offset watcher per topic across every idle partition
// consumer: a thousand idle consumers cost one ListOffsets request per poll
// interval, not a thousand. Create it with NewKafkaClients; Close it when
// the worker stops.
type KafkaClients struct {
	mu       sync.Mutex
	clients  map[string]*kgo.Client
	watchers map[string]*endWatcher
	// poll is how often a watcher asks for end offsets.
	poll time.Duration
}

// NewKafkaClients returns an empty set of shared clients.
func NewKafkaClients() *KafkaClients {
	return &KafkaClients{clients: map[string]*kgo.Client{}, watchers: map[string]*endWatcher{}, poll: 200 * time.Millisecond}
}

// admin returns the shared client of a cluster, as an admin client.
func (p *KafkaClients) admin(c KafkaCluster) (*kadm.Client, error) {
	cl, err := p.client(c)
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// client returns the shared client of a cluster.
func (p *KafkaClients) client(c KafkaCluster) (*kgo.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cl, ok := p.clients[c.key()]; ok {
		return cl, nil
	}
	opts, err := c.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: client for %v: %w", c.Brokers, err)
	}
	p.clients[c.key()] = cl
	return cl, nil
}

// Close closes every shared client.
func (p *KafkaClients) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, cl := range p.clients {
		cl.Close()
		delete(p.clients, k)
	}
}

// endWatcher polls one topic's end offsets while anyone waits on it.
type endWatcher struct {
	mu      sync.Mutex
	ends    map[int32]int64
	changed chan struct{} // closed after every poll
	users   int
	// failing is when polls began to fail (zero: the last poll answered);
	// lastErr is the last failure.
	failing time.Time
	lastErr error
}

// waitForEnd blocks until the end offset of topic/partition is above from
// (true), timeout passes (false) or ctx ends. beat is called after every
// poll, for heartbeats.
func (p *KafkaClients) waitForEnd(ctx context.Context, c KafkaCluster, topic string, partition int32, from int64, timeout time.Duration, beat func()) (bool, error) {
	_, ok, err := p.waitForEndOffset(ctx, c, topic, partition, from, timeout, beat)
	return ok, err
}

// waitForEndOffset is waitForEnd that also returns the end offset seen.
func (p *KafkaClients) waitForEndOffset(ctx context.Context, c KafkaCluster, topic string, partition int32, from int64, timeout time.Duration, beat func()) (int64, bool, error) {
	adm, err := p.admin(c)
	if err != nil {
		return 0, false, err
	}
	w := p.watch(adm, c.key()+"|"+topic, topic)
	defer p.unwatch(c.key()+"|"+topic, w)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		end, ok := w.ends[partition]
		changed := w.changed
		w.mu.Unlock()
		if ok && end > from {
			return end, true, nil
		}
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-deadline.C:
			return 0, false, nil
		case <-changed:
			beat()
		}
	}
}

func (p *KafkaClients) watch(adm *kadm.Client, key, topic string) *endWatcher {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.watchers[key]
	if !ok {
		w = &endWatcher{changed: make(chan struct{})}
		p.watchers[key] = w
		go p.pollEnds(adm, key, topic, w)
	}
	w.users++
	return w
}

func (p *KafkaClients) unwatch(key string, w *endWatcher) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.users--
}

// pollEnds refreshes a watcher's end offsets until nobody uses it.
func (p *KafkaClients) pollEnds(adm *kadm.Client, key, topic string, w *endWatcher) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		listed, err := adm.ListEndOffsets(ctx, topic)
		cancel()
		ends := map[int32]int64{}
		if err == nil {
			listed.Each(func(o kadm.ListedOffset) {
				if o.Err == nil {
					ends[o.Partition] = o.Offset
				}
			})
		}
		w.mu.Lock()
		if err == nil {
			w.ends, w.failing, w.lastErr = ends, time.Time{}, nil
		} else {
			if w.failing.IsZero() {
				w.failing = time.Now()
			}
			w.lastErr = err
		}
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()

		time.Sleep(p.poll)
		p.mu.Lock()
		if w.users == 0 {
			delete(p.watchers, key)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}
