//go:build !unix

package plugins

import "os/exec"

// killGroup: without process groups, cancelling kills the process only.
func killGroup(cmd *exec.Cmd) {}
