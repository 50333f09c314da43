package main

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// takeTerminal makes connect-dev the terminal's foreground process group
// when it was started in the foreground group of a terminal it does not
// lead (as `make dev` starts it), and returns what gives the terminal
// back. Ctrl-C then interrupts connect-dev (and the stack it started),
// which stops cleanly and exits 0, and not the make that waits for it:
// GNU make, when it gets a SIGINT, re-raises it once its recipe is done,
// so `make dev` would end "interrupted" (130) even after a clean stop.
// Elsewhere (no terminal, started in the background, or already leading
// its process group as a shell starts it) it changes nothing.
func takeTerminal() (giveBack func()) {
	nothing := func() {}
	fd := int(os.Stdin.Fd())
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || fg != unix.Getpgrp() || unix.Getpgrp() == unix.Getpid() {
		return nothing
	}
	// A process group that is not in the foreground may set the
	// terminal's foreground group only while ignoring SIGTTOU.
	signal.Ignore(syscall.SIGTTOU)
	if err := unix.Setpgid(0, 0); err != nil {
		return nothing
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, unix.Getpid()); err != nil {
		_ = unix.Setpgid(0, fg)
		return nothing
	}
	// Ctrl-Z would stop connect-dev while make, which the shell waits
	// for, runs on: nothing would hold the terminal. It is ignored.
	signal.Ignore(syscall.SIGTSTP)
	return func() { _ = unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, fg) }
}
