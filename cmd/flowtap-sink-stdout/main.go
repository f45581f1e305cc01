// SPDX-License-Identifier: Apache-2.0

// Command flowtap-sink-stdout is the stdout sink plugin: the flowtap host
// starts it for a pipeline whose sink is "stdout". It is not meant to be run
// by hand. See sinks/stdout for its configuration and output.
package main

import "github.com/flowtap/flowtap/sinks"

func main() { sinks.Serve("stdout") }
