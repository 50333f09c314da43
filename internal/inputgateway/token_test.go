package inputgateway

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testSigner(t *testing.T, now time.Time) *Signer {
	t.Helper()
	s, err := NewSigner([]byte(strings.Repeat("k", 32)))
	require.NoError(t, err)
	s.now = func() time.Time { return now }
	return s
}

func TestTokenRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := testSigner(t, now)
	ref := ObjectRef{Bucket: "logs", Key: "nginx/2026/11/27/a b.log", Endpoint: "http://127.0.0.1:9000", Region: "us-east-1"}
	tok, err := s.Token(ref, "web", time.Hour)
	require.NoError(t, err)
	c, err := s.Verify(tok)
	require.NoError(t, err)
	assert.Equal(t, ref, c.ObjectRef)
	assert.Equal(t, "web", c.Connector)
	assert.Equal(t, now.Add(time.Hour).Unix(), c.Expires)
}

func TestVerifyRefusesExpiredTamperedAndMalformedTokens(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := testSigner(t, now)
	tok, err := s.Token(ObjectRef{Bucket: "logs", Key: "a.log"}, "web", time.Minute)
	require.NoError(t, err)

	later := testSigner(t, now.Add(2*time.Minute))
	_, err = later.Verify(tok)
	assert.True(t, errors.Is(err, ErrExpired), "got %v", err)
	assert.Contains(t, err.Error(), "2026-11-27T12:01:00Z")

	// Change the claims (another key) but keep the signature.
	p, sig, _ := strings.Cut(tok, ".")
	other, err := s.Token(ObjectRef{Bucket: "logs", Key: "secret.log"}, "web", time.Minute)
	require.NoError(t, err)
	p2, _, _ := strings.Cut(other, ".")
	_, err = s.Verify(p2 + "." + sig)
	assert.ErrorIs(t, err, ErrTampered)
	_, err = s.Verify(p + "." + sig[:len(sig)-2] + "AA")
	assert.ErrorIs(t, err, ErrTampered)

	other2, err := NewSigner([]byte(strings.Repeat("x", 32)))
	require.NoError(t, err)
	_, err = other2.Verify(tok)
	assert.ErrorIs(t, err, ErrTampered, "another secret")

	for _, bad := range []string{"", "nodot", ".", "a.!!!", "!!!.abc"} {
		_, err = s.Verify(bad)
		assert.Error(t, err, bad)
	}
}

func TestSignerNeedsALongSecret(t *testing.T) {
	_, err := NewSigner([]byte("short"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "at least 32")
}
