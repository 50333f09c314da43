package testenv

import "github.com/bacalhau-connect/bacalhau-connect/internal/devstack"

// FaultProxy forwards TCP connections to its target and can be cut: Down
// resets every open connection and resets new ones until Up. Tests put it
// in front of a service that cannot be killed on its own (the in-process
// Bacalhau node's API). It is devstack's Proxy, which the S3 stand-in
// listens through.
type FaultProxy = devstack.Proxy

// StartFaultProxy listens on a free loopback port and forwards to target.
func StartFaultProxy(target string) (*FaultProxy, error) {
	return devstack.StartProxy("127.0.0.1:0", target)
}
