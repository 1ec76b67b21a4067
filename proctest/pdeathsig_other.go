//go:build !linux

package proctest

import "os/exec"

// setParentDeathSignal does nothing outside Linux: a process whose test
// process died without its cleanups stays until killed by hand.
func setParentDeathSignal(cmd *exec.Cmd) {}
