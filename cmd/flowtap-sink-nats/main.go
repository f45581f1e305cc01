// SPDX-License-Identifier: Apache-2.0

// Command flowtap-sink-nats is the NATS (JetStream) sink plugin: the
// flowtap host starts it for a pipeline whose sink is "nats". It is not
// meant to be run by hand. See sinks/nats for its configuration.
package main

import "github.com/flowtap/flowtap/sinks"

func main() { sinks.Serve("nats") }
