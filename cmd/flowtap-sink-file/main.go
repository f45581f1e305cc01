// SPDX-License-Identifier: Apache-2.0

// Command flowtap-sink-file is the file sink plugin: the flowtap host
// starts it for a pipeline whose sink is "file". It is not meant to be run
// by hand. See sinks/file for its configuration.
package main

import "github.com/flowtap/flowtap/sinks"

func main() { sinks.Serve("file") }
