// Package client embeds the browser client module of this directory, so that
// the gateway's dev mode serves the very file that is published to npm.
package client

import _ "embed"

// Module is gateway-client.js, the ES module of this directory. Never modify
// it.
//
//go:embed gateway-client.js
var Module []byte
