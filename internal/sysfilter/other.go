// SPDX-License-Identifier: Apache-2.0

//go:build !amd64 && !arm64

// Package sysfilter installs flowtap's seccomp filters; elsewhere than on
// amd64 and arm64, whose system call tables it knows, it installs none.
package sysfilter

import (
	"errors"
	"fmt"
)

// ErrUnavailable marks why a filter could not be installed.
var ErrUnavailable = errors.New("seccomp unavailable")

var errArch = fmt.Errorf("%w: flowtap knows the system calls of amd64 and arm64 only", ErrUnavailable)

// InstallThread installs nothing here.
func InstallThread([]uintptr) error { return errArch }

// InstallProcess installs nothing here.
func InstallProcess([]uintptr) error { return errArch }

// Plugin and Agent are empty here: there is no filter to put them in.
var Plugin, Agent []uintptr
