//go:build !linux

package redistest

import "os/exec"

// setParentDeathSignal does nothing outside Linux: a redis-server whose test
// process died without its cleanups stays until killed by hand.
func setParentDeathSignal(cmd *exec.Cmd) {}
