// SPDX-License-Identifier: Apache-2.0

package nats

// For the package's external tests (package nats_test), which may import
// configs, which imports this package through the sinks' registry.
var BuildNATSServer = buildNATSServer

// FleetDir is the fleet example's directory.
const FleetDir = fleetDir
