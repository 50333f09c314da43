package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestRoundTripHidesThePlainTextAndOpensIt(t *testing.T) {
	c, err := New(testKey(1))
	require.NoError(t, err)
	p, err := converter.GetDefaultDataConverter().ToPayload(map[string]string{"record": "CANARY-secret-line"})
	require.NoError(t, err)
	enc, err := c.Encode([]*commonpb.Payload{p})
	require.NoError(t, err)
	assert.NotContains(t, string(enc[0].Data), "CANARY")
	assert.Equal(t, Encoding, string(enc[0].Metadata[converter.MetadataEncoding]))
	assert.Equal(t, c.KeyID(), string(enc[0].Metadata[MetadataKeyID]))
	again, err := c.Encode([]*commonpb.Payload{p})
	require.NoError(t, err)
	assert.NotEqual(t, enc[0].Data, again[0].Data, "a fresh nonce each time")

	dec, err := c.Decode(enc)
	require.NoError(t, err)
	var back map[string]string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(dec[0], &back))
	assert.Equal(t, "CANARY-secret-line", back["record"])
}

func TestDecodeRefusesTamperingAndAnotherKeyAndPassesPlainPayloadsThrough(t *testing.T) {
	c, _ := New(testKey(1))
	other, _ := New(testKey(2))
	p, _ := converter.GetDefaultDataConverter().ToPayload("x")
	enc, err := c.Encode([]*commonpb.Payload{p})
	require.NoError(t, err)

	_, err = other.Decode(enc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sealed with key "+c.KeyID())

	tampered := &commonpb.Payload{Metadata: enc[0].Metadata, Data: append([]byte(nil), enc[0].Data...)}
	tampered.Data[len(tampered.Data)-1] ^= 1
	_, err = c.Decode([]*commonpb.Payload{tampered})
	require.Error(t, err)

	plain, err := c.Decode([]*commonpb.Payload{p})
	require.NoError(t, err)
	assert.Same(t, p, plain[0])
}

func TestLoadKeyFileAcceptsBase64HexAndRawAndNamesTheFix(t *testing.T) {
	dir := t.TempDir()
	want, _ := New(testKey(7))
	for name, content := range map[string][]byte{
		"b64": []byte(base64.StdEncoding.EncodeToString(testKey(7)) + "\n"),
		"hex": []byte(hex.EncodeToString(testKey(7))),
		"raw": testKey(7),
	} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, content, 0o600))
		c, err := LoadKeyFile(path)
		require.NoError(t, err, name)
		assert.Equal(t, want.KeyID(), c.KeyID(), name)
	}
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("c2hvcnQ="), 0o600))
	_, err := LoadKeyFile(short)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "head -c 32 /dev/urandom | base64")
	_, err = LoadKeyFile(filepath.Join(dir, "missing"))
	assert.ErrorContains(t, err, "codec key file")
}

func TestServerDecodesForTheTokenHolderOnlyAndAnswersCORS(t *testing.T) {
	c, _ := New(testKey(3))
	p, _ := converter.GetDefaultDataConverter().ToPayload("CANARY")
	enc, _ := c.Encode([]*commonpb.Payload{p})
	srv := httptest.NewServer(NewHandler(c, ServerOptions{AllowOrigins: []string{"http://ui.example"}, AuthToken: "tok"}))
	defer srv.Close()
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: enc})
	require.NoError(t, err)

	post := func(auth string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/default/decode", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Namespace", "default")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp := post("")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	_ = resp.Body.Close()
	resp = post("Bearer wrong")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	_ = resp.Body.Close()
	resp = post("Bearer tok")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	// The decoded payload's data is base64 JSON of "CANARY".
	assert.Contains(t, out.String(), base64.StdEncoding.EncodeToString([]byte(`"CANARY"`)))

	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/default/decode", nil)
	req.Header.Set("Origin", "http://ui.example")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, "http://ui.example", resp.Header.Get("Access-Control-Allow-Origin"))
	req.Header.Set("Origin", "http://evil.example")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), "an origin not allowed")
}
