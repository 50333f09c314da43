package inputgateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ObjectRef names an S3 object. Endpoint is empty for AWS itself.
type ObjectRef struct {
	Bucket   string `json:"b"`
	Key      string `json:"k"`
	Endpoint string `json:"e,omitempty"`
	Region   string `json:"r,omitempty"`
}

// Claims is what a capability URL grants.
type Claims struct {
	ObjectRef
	Connector string `json:"c"`
	Expires   int64  `json:"x"` // unix seconds
}

// Token errors; Verify wraps them with detail.
var (
	ErrMalformed = errors.New("malformed capability token")
	ErrTampered  = errors.New("capability token signature does not match")
	ErrExpired   = errors.New("capability token expired")
)

// MinSecretBytes is the shortest HMAC secret accepted.
const MinSecretBytes = 32

// Signer mints and verifies capability tokens with one secret.
type Signer struct {
	secret []byte
	now    func() time.Time
}

// NewSigner returns a Signer. Every replica that must answer the same URLs
// needs the same secret.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("gateway secret: %d bytes, need at least %d", len(secret), MinSecretBytes)
	}
	return &Signer{secret: append([]byte(nil), secret...), now: time.Now}, nil
}

var b64 = base64.RawURLEncoding

// Token returns a token for ref, valid for ttl.
func (s *Signer) Token(ref ObjectRef, connector string, ttl time.Duration) (string, error) {
	if ref.Bucket == "" || ref.Key == "" {
		return "", fmt.Errorf("capability token: bucket and key are required")
	}
	if ttl <= 0 {
		return "", fmt.Errorf("capability token: ttl must be positive, got %s", ttl)
	}
	payload, err := json.Marshal(Claims{ObjectRef: ref, Connector: connector, Expires: s.now().Add(ttl).Unix()})
	if err != nil {
		return "", fmt.Errorf("capability token: %w", err)
	}
	p := b64.EncodeToString(payload)
	return p + "." + b64.EncodeToString(s.mac(p)), nil
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Verify checks a token's signature and expiry and returns its claims.
func (s *Signer) Verify(token string) (*Claims, error) {
	p, sig, ok := strings.Cut(token, ".")
	if !ok || p == "" || sig == "" {
		return nil, ErrMalformed
	}
	got, err := b64.DecodeString(sig)
	if err != nil {
		return nil, ErrMalformed
	}
	if !hmac.Equal(got, s.mac(p)) {
		return nil, ErrTampered
	}
	raw, err := b64.DecodeString(p)
	if err != nil {
		return nil, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, ErrMalformed
	}
	if exp := time.Unix(c.Expires, 0); !s.now().Before(exp) {
		return nil, fmt.Errorf("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	return &c, nil
}
