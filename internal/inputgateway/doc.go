// Package inputgateway lets Bacalhau tasks read S3 objects without holding
// AWS keys, through short-lived capability URLs served by the worker.
//
// Bacalhau's urlDownload input sends HEAD and then GET to the same URL, and S3
// signs the HTTP method, so a URL presigned for GET answers HEAD with 403 and
// can never be a task input by itself (DESIGN.md §3). The gateway bridges it:
//
//   - A capability URL carries its claims (bucket, key, endpoint, region,
//     connector, expiry) and an HMAC-SHA256 over them. It is stateless: any
//     worker replica holding the same secret answers it.
//   - HEAD is answered from the object's metadata (200 + Content-Length).
//   - GET is answered with 307 to a freshly presigned S3 GET URL, valid for a
//     short time, so the bytes flow from S3 to the compute node directly.
//   - An expired, tampered or malformed token gets 403 with the reason in
//     the body; a missing object gets 404.
//
// Tokens are minted at submission (activities), never in workflow code, and
// live for the job's queue and execution time plus retries; job specs that
// hold them are treated as credential-bearing.
package inputgateway
