// Package adversarial holds the gateway's end-to-end attack suite: tests
// only. Each attack is a named table entry (the attack, the raw request, the
// status the gateway must answer, and what must not reach the upstreams),
// run against a real gateway (proxy.New with real keys and a real bbolt
// file, served by a net/http server on 127.0.0.1) in front of recording
// upstreams. Requests are written on raw TCP connections, so that what is
// sent is exactly what an attacker would send, not what Go's client would
// normalise it into.
//
// The package has no API. THREAT-MODEL.md at the repository root points at
// the tests here that prove each claim.
package adversarial
