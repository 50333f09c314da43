// Package codec encrypts what bacalhau-connect puts in Temporal history:
// an AES-256-GCM PayloadCodec (key by reference, from a file) and the codec
// server the Temporal UI and CLI call to show plain values to the users
// allowed to see them, as Temporal documents for payload codecs.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// Metadata of an encrypted payload.
const (
	// Encoding marks a payload this codec encrypted.
	Encoding = "binary/encrypted"
	// MetadataKeyID names the key that encrypted a payload (a fingerprint,
	// not the key).
	MetadataKeyID = "encryption-key-id"
	// KeySize is the AES-256 key size in bytes.
	KeySize = 32
)

// AESGCM is a converter.PayloadCodec that seals each payload (its metadata
// and data) with AES-256-GCM under a random nonce.
type AESGCM struct {
	keyID string
	aead  cipher.AEAD
}

var _ converter.PayloadCodec = (*AESGCM)(nil)

// New returns the codec for a 32-byte key.
func New(key []byte) (*AESGCM, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("codec key: %d bytes; AES-256 needs %d (make one with: head -c 32 /dev/urandom | base64)", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("codec key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("codec key: %w", err)
	}
	sum := sha256.Sum256(append([]byte("bacalhau-connect codec key id\x00"), key...))
	return &AESGCM{keyID: hex.EncodeToString(sum[:6]), aead: aead}, nil
}

// LoadKeyFile reads a key file: 32 bytes base64 (standard or URL), hex, or
// raw. Surrounding white space is ignored.
func LoadKeyFile(path string) (*AESGCM, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("codec key file: %w", err)
	}
	key, err := parseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("codec key file %s: %w", path, err)
	}
	return New(key)
}

func parseKey(raw []byte) ([]byte, error) {
	if len(raw) == KeySize {
		return raw, nil
	}
	text := strings.TrimSpace(string(raw))
	for _, dec := range []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	} {
		if key, err := dec(text); err == nil && len(key) == KeySize {
			return key, nil
		}
	}
	return nil, fmt.Errorf("not a %d-byte key in base64, hex or raw bytes (make one with: head -c 32 /dev/urandom | base64)", KeySize)
}

// KeyID is the key's fingerprint, recorded on every payload it seals.
func (c *AESGCM) KeyID() string { return c.keyID }

// Encode seals every payload.
func (c *AESGCM) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := p.Marshal()
		if err != nil {
			return nil, fmt.Errorf("codec: marshalling payload: %w", err)
		}
		nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plain)+c.aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("codec: nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(Encoding),
				MetadataKeyID:              []byte(c.keyID),
			},
			Data: c.aead.Seal(nonce, nonce, plain, nil),
		}
	}
	return out, nil
}

// Decode opens the payloads this codec sealed and passes others through.
func (c *AESGCM) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			out[i] = p
			continue
		}
		if id := string(p.GetMetadata()[MetadataKeyID]); id != c.keyID {
			return nil, fmt.Errorf("codec: payload sealed with key %s, this worker has key %s (CONNECT_CODEC_KEY_FILE must hold the same key everywhere)", id, c.keyID)
		}
		data := p.GetData()
		if len(data) < c.aead.NonceSize() {
			return nil, errors.New("codec: encrypted payload shorter than its nonce")
		}
		plain, err := c.aead.Open(nil, data[:c.aead.NonceSize()], data[c.aead.NonceSize():], nil)
		if err != nil {
			return nil, fmt.Errorf("codec: opening payload: %w", err)
		}
		var dec commonpb.Payload
		if err := dec.Unmarshal(plain); err != nil {
			return nil, fmt.Errorf("codec: decoding payload: %w", err)
		}
		out[i] = &dec
	}
	return out, nil
}
