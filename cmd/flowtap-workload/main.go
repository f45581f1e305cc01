// SPDX-License-Identifier: Apache-2.0

// Command flowtap-workload performs a known TCP workload and reports
// exactly what it did, as the ground truth for flowtap's flow events. This
// file only parses flags; the work is in internal/workload (see its
// README).
//
//	flowtap-workload serve --listen 127.0.0.1:0 --listen [::1]:0 --closed 127.0.0.1:0
//	flowtap-workload run --ipv4 200 --ipv6 200 --refused-ipv4 20 > report.json
//	flowtap-workload run --plan plan.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flowtap/flowtap/internal/workload"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "run":
		err = run(ctx, os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "flowtap-workload: unknown mode %q\n", os.Args[1])
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "flowtap-workload:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: flowtap-workload serve|run [flags]   (-h after a mode lists its flags)
  serve  listen, print {"pid","comm","listeners","closed"} as one JSON line, answer
         connections until stdin closes, print a summary line
  run    make the planned connections and attempts, print the JSON report
`)
	os.Exit(2)
}

// endpoints is a repeatable ADDR:PORT[@NETNS] flag.
type endpoints []workload.Endpoint

func (e *endpoints) String() string { return fmt.Sprint(*e) }
func (e *endpoints) Set(s string) error {
	ep, err := workload.ParseEndpoint(s)
	if err != nil {
		return err
	}
	*e = append(*e, ep)
	return nil
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var cfg workload.ServeConfig
	listen, closed := (*endpoints)(&cfg.Listen), (*endpoints)(&cfg.Closed)
	fs.Var(listen, "listen", "`ADDR:PORT[@NETNS]` to accept connections on (port 0: any; repeatable; NETNS: a name under /run/netns or a path)")
	fs.Var(closed, "closed", "`ADDR:PORT[@NETNS]` to bind without listening, so attempts there are refused (repeatable)")
	fs.DurationVar(&cfg.IOTimeout, "io-timeout", 30*time.Second, "bound on each connection")
	lifetime := fs.Duration("max-lifetime", 10*time.Minute, "exit after this long even if stdin stays open")
	comm := fs.String("comm", "ftw-serve", "process name (comm) to take, at most 15 bytes")
	fs.Parse(args)
	if len(cfg.Listen)+len(cfg.Closed) == 0 {
		return errors.New("serve: give at least one --listen or --closed")
	}
	// Before stdin is read: SetComm may execute this program again.
	if err := workload.SetComm(*comm); err != nil {
		return err
	}
	return workload.ServeUntil(ctx, cfg, os.Stdin, os.Stdout, *lifetime)
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	planFile := fs.String("plan", "", "JSON plan file (- for stdin); flags given as well override it")
	serversFile := fs.String("servers", "", "file holding a serve process's first line (default: start a serve child)")
	reportFile := fs.String("report", "-", "where to write the JSON report")
	comm := fs.String("comm", "ftw-client", "process name (comm) to take, at most 15 bytes")

	p := workload.Plan{
		ConnectTimeout: workload.Duration(3 * time.Second),
		IOTimeout:      workload.Duration(10 * time.Second),
		MaxDuration:    workload.Duration(2 * time.Minute),
		Parallel:       4,
	}
	fs.IntVar(&p.IPv4, "ipv4", 0, "IPv4 loopback connections")
	fs.IntVar(&p.IPv6, "ipv6", 0, "IPv6 loopback connections")
	fs.IntVar(&p.IPv4Mapped, "ipv4-mapped", 0, "connections from an AF_INET6 socket to ::ffff:127.0.0.1")
	fs.IntVar(&p.DualStackV4, "dual-stack-v4", 0, "IPv4 connections to a [::] listener")
	fs.IntVar(&p.DualStackV6, "dual-stack-v6", 0, "IPv6 connections to a [::] listener")
	fs.IntVar(&p.RefusedIPv4, "refused-ipv4", 0, "attempts to a closed 127.0.0.1 port")
	fs.IntVar(&p.RefusedIPv6, "refused-ipv6", 0, "attempts to a closed ::1 port")
	fs.StringVar(&p.Netns.Client, "netns-client", "", "namespace the namespace connections start from")
	fs.StringVar(&p.Netns.Server, "netns-server", "", "namespace of the serve child's namespace listener (without --servers)")
	fs.TextVar(&p.Netns.ServerAddr, "netns-server-addr", netip.Addr{}, "address of the serve child's namespace listener (without --servers)")
	fs.IntVar(&p.Netns.Conns, "netns-conns", 0, "connections between the namespaces")
	fs.IntVar(&p.Netns.Refused, "netns-refused", 0, "attempts to a closed port in the server namespace")
	fs.TextVar(&p.Netns.TimeoutTarget, "timeout-target", netip.AddrPort{}, "`ADDR:PORT` whose SYNs are dropped inside the namespaces")
	fs.IntVar(&p.Netns.Timeouts, "timeouts", 0, "attempts to --timeout-target, from --netns-client")
	fs.Var(&p.ConnectTimeout, "connect-timeout", "bound on each connect; for timeouts, a little above flowtap's --syn-timeout")
	fs.Var(&p.IOTimeout, "io-timeout", "bound on each connection's exchange")
	fs.IntVar(&p.Parallel, "parallel", p.Parallel, "connections in flight per namespace")
	fs.Var(&p.MaxDuration, "max-duration", "bound on the whole run")
	fs.Parse(args)
	// First of all: SetComm may execute this program again, which must
	// find stdin (a plan given as -) unread.
	if err := workload.SetComm(*comm); err != nil {
		return err
	}
	if *planFile != "" {
		// The plan file overrides the defaults; parsing the flags again
		// lets those given on the command line override the file.
		if err := readJSON(*planFile, &p); err != nil {
			return err
		}
		fs.Parse(args)
	}
	if *serversFile != "" {
		var info workload.ServeInfo
		if err := readJSON(*serversFile, &info); err != nil {
			return err
		}
		p.Servers = &info
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	out := os.Stdout
	if *reportFile != "-" {
		f, err := os.Create(*reportFile)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	return workload.RunTo(ctx, p, exe, out)
}

func readJSON(path string, v any) error {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
