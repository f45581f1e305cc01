// SPDX-License-Identifier: Apache-2.0

// Command netclient is the program the container identity tests run in a
// container: it connects to ADDR COUNT times, a fifth of a second apart,
// writes a few bytes each time and closes, then exits. It is built static
// (CGO_ENABLED=0) and is the only file of its image.
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: netclient ADDR COUNT")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil || n < 1 || n > 1000 {
		fmt.Fprintln(os.Stderr, "netclient: COUNT must be 1 to 1000")
		os.Exit(2)
	}
	for i := range n {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		c, err := net.DialTimeout("tcp", os.Args[1], 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "netclient:", err)
			os.Exit(1)
		}
		c.Write([]byte("hello"))
		c.Close()
	}
}
