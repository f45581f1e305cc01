// SPDX-License-Identifier: Apache-2.0

// Command flowtap-sink-webhook is the webhook sink plugin: the flowtap
// host starts it for a pipeline whose sink is "webhook". It is not meant
// to be run by hand. See sinks/webhook for its configuration.
package main

import "github.com/flowtap/flowtap/sinks"

func main() { sinks.Serve("webhook") }
