package proctest

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel kill the process if the test
// process dies without running its cleanups (a panic, a timeout, SIGKILL).
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
