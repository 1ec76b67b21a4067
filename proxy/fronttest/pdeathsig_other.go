//go:build !linux

package fronttest

import "os/exec"

// setParentDeathSignal does nothing outside Linux: a front proxy whose test
// process died without its cleanups stays until killed by hand.
func setParentDeathSignal(cmd *exec.Cmd) {}
