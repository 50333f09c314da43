package inputgateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// PathPrefix is where capability URLs live on the gateway.
const PathPrefix = "/v1/objects/"

// ClientFactory returns the S3 client for an endpoint ("" for AWS) and
// region, holding the worker's own credentials.
type ClientFactory func(ctx context.Context, endpoint, region string) (*s3.Client, error)

// DefaultClientFactory builds clients from the standard AWS configuration
// chain (AWS_ACCESS_KEY_ID…, shared config, instance roles), path-style for
// custom endpoints.
func DefaultClientFactory(ctx context.Context, endpoint, region string) (*s3.Client, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if region != "" {
			o.Region = region
		}
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// Gateway mints capability URLs and serves them.
type Gateway struct {
	signer     *Signer
	publicURL  string
	factory    ClientFactory
	presignTTL time.Duration

	mu      sync.Mutex
	clients map[string]*s3.Client
}

// Options configures a Gateway.
type Options struct {
	// Secret signs tokens; replicas that answer the same URLs share it.
	Secret []byte
	// PublicURL is the base URL compute nodes reach the gateway at, e.g.
	// http://10.0.0.5:8470. Required.
	PublicURL string
	// Clients makes S3 clients. Default DefaultClientFactory.
	Clients ClientFactory
	// PresignTTL is how long the presigned URL a GET redirects to lives.
	// Default 5 min: it is used at once.
	PresignTTL time.Duration
}

// New returns a Gateway.
func New(opts Options) (*Gateway, error) {
	signer, err := NewSigner(opts.Secret)
	if err != nil {
		return nil, err
	}
	if opts.PublicURL == "" {
		return nil, errors.New("gateway: PublicURL is required (the address compute nodes reach the worker's gateway at)")
	}
	if opts.Clients == nil {
		opts.Clients = DefaultClientFactory
	}
	if opts.PresignTTL <= 0 {
		opts.PresignTTL = 5 * time.Minute
	}
	return &Gateway{signer: signer, publicURL: strings.TrimRight(opts.PublicURL, "/"), factory: opts.Clients,
		presignTTL: opts.PresignTTL, clients: map[string]*s3.Client{}}, nil
}

// URL mints a capability URL for ref, valid for ttl.
func (g *Gateway) URL(ref ObjectRef, connector string, ttl time.Duration) (string, error) {
	tok, err := g.signer.Token(ref, connector, ttl)
	if err != nil {
		return "", err
	}
	return g.publicURL + PathPrefix + tok, nil
}

func (g *Gateway) client(ctx context.Context, endpoint, region string) (*s3.Client, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := endpoint + "|" + region
	if c, ok := g.clients[k]; ok {
		return c, nil
	}
	c, err := g.factory(ctx, endpoint, region)
	if err != nil {
		return nil, err
	}
	g.clients[k] = c
	return c, nil
}

// ServeHTTP answers HEAD and GET on capability URLs.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodHead && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: capability URLs answer GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	claims, err := g.signer.Verify(tok)
	if err != nil {
		http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	c, err := g.client(r.Context(), claims.Endpoint, claims.Region)
	if err != nil {
		http.Error(w, "gateway: "+err.Error(), http.StatusBadGateway)
		return
	}
	in := &s3.HeadObjectInput{Bucket: aws.String(claims.Bucket), Key: aws.String(claims.Key)}
	if r.Method == http.MethodHead {
		head, err := c.HeadObject(r.Context(), in)
		if err != nil {
			s3Error(w, claims, err)
			return
		}
		if head.ContentLength != nil {
			w.Header().Set("Content-Length", strconv.FormatInt(*head.ContentLength, 10))
		}
		if head.ContentType != nil {
			w.Header().Set("Content-Type", *head.ContentType)
		}
		if head.ETag != nil {
			w.Header().Set("ETag", *head.ETag)
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	req, err := s3.NewPresignClient(c).PresignGetObject(r.Context(),
		&s3.GetObjectInput{Bucket: aws.String(claims.Bucket), Key: aws.String(claims.Key)},
		s3.WithPresignExpires(g.presignTTL))
	if err != nil {
		http.Error(w, "gateway: presigning: "+err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, req.URL, http.StatusTemporaryRedirect)
}

func s3Error(w http.ResponseWriter, c *Claims, err error) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NotFound", "NoSuchKey", "NoSuchBucket":
			http.Error(w, fmt.Sprintf("not found: s3://%s/%s", c.Bucket, c.Key), http.StatusNotFound)
			return
		}
	}
	http.Error(w, fmt.Sprintf("gateway: s3://%s/%s: %v", c.Bucket, c.Key, err), http.StatusBadGateway)
}
