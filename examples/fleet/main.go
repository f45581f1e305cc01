// SPDX-License-Identifier: Apache-2.0

// Command flowtap-fleet-count reads the flow events a fleet of flowtap
// agents publishes into a NATS JetStream stream, on subjects
// flowtap.<host>.<event>, and prints how many connections each host
// made or accepted, ended, and failed to make.
//
// It reads with a durable pull consumer: a second run continues where the
// first acknowledged, so it counts only what arrived since. It needs
// nothing of flowtap: the subject names the host and the event, so it
// counts without decoding a message body. A message holds one event, or,
// from agents with events_per_message above 1, several of that subject:
// its Flowtap-Events header says how many (its body has as many JSON
// lines).
//
//	flowtap-fleet-count -servers nats://n1:4222,nats://n2:4222 -idle 5s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Counts are one host's totals.
type Counts struct {
	// Connections counts net_flow_tcp_begin events: connections this
	// host made or accepted (a loopback connection counts twice, once
	// per end).
	Connections int `json:"connections"`
	// Ended counts net_flow_tcp_end events.
	Ended int `json:"ended"`
	// Failed counts net_flow_tcp_failed events: attempts that never
	// established.
	Failed int `json:"failed"`
	// Other counts every other event.
	Other int `json:"other"`
}

// add counts n events called event.
func (c *Counts) add(event string, n int) {
	switch event {
	case "net_flow_tcp_begin":
		c.Connections += n
	case "net_flow_tcp_end":
		c.Ended += n
	case "net_flow_tcp_failed":
		c.Failed += n
	default:
		c.Other += n
	}
}

// eventsHeader is the header of a packed message: how many events, one
// JSON line each, its body holds. A message without it holds one event,
// its body a JSON object.
const eventsHeader = "Flowtap-Events"

// eventCount is how many events a message holds: its Flowtap-Events
// header's count, which must match the lines of its body, or 1.
func eventCount(header nats.Header, body []byte) (int, error) {
	v := header.Get(eventsHeader)
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s: %q is not a count of events", eventsHeader, v)
	}
	if lines := bytes.Count(body, []byte("\n")); lines != n || body[len(body)-1] != '\n' {
		return 0, fmt.Errorf("%s: %d, but the body holds %d newline-terminated lines", eventsHeader, n, lines)
	}
	return n, nil
}

// options are the command line.
type options struct {
	servers   string
	stream    string
	durable   string
	prefix    string
	host      string
	creds     string
	idle      time.Duration
	every     time.Duration
	jsonOut   bool
	fetchSize int
}

func main() {
	var o options
	flag.StringVar(&o.servers, "servers", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated (any servers of the cluster)")
	flag.StringVar(&o.stream, "stream", "FLOWTAP", "the stream the agents publish into")
	flag.StringVar(&o.durable, "durable", "fleet-count", "name of the durable consumer: a run continues where the last one acknowledged")
	flag.StringVar(&o.prefix, "prefix", "flowtap", "the subjects' first token: the agents' subject is <prefix>.{host}.{event}")
	flag.StringVar(&o.host, "host", "", "count one host only (its subject token: dots in its name are underscores)")
	flag.StringVar(&o.creds, "creds", "", "NATS credentials file")
	flag.DurationVar(&o.idle, "idle", 0, "stop once no event arrived for this long (0: run until interrupted)")
	flag.DurationVar(&o.every, "every", 10*time.Second, "print the counts this often while running")
	flag.BoolVar(&o.jsonOut, "json", false, "print the counts as one JSON object by host")
	flag.IntVar(&o.fetchSize, "fetch", 1000, "messages asked for at a time")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "flowtap-fleet-count:", err)
		os.Exit(1)
	}
}

// run reads the stream until ctx ends or it has been idle for o.idle,
// and prints the counts to out.
func run(ctx context.Context, o options, out io.Writer) error {
	opts := []nats.Option{nats.Name("flowtap-fleet-count"), nats.MaxReconnects(-1)}
	if o.creds != "" {
		opts = append(opts, nats.UserCredentials(o.creds))
	}
	nc, err := nats.Connect(o.servers, opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", o.servers, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// The filter is the subject hierarchy: every host's events, or one
	// host's; the server sends nothing else.
	host := "*"
	if o.host != "" {
		host = o.host
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	cons, err := js.CreateOrUpdateConsumer(cctx, o.stream, jetstream.ConsumerConfig{
		Durable:        o.durable,
		Description:    "flowtap-fleet-count",
		FilterSubjects: []string{o.prefix + "." + host + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckAllPolicy, // acknowledging a message acknowledges all before it
	})
	cancel()
	if err != nil {
		return fmt.Errorf("durable consumer %q on stream %q: %w", o.durable, o.stream, err)
	}
	counts := map[string]*Counts{}
	var last uint64 // stream sequence of the last message counted
	lastEvent, lastPrint := time.Now(), time.Now()
	for ctx.Err() == nil {
		batch, err := cons.Fetch(o.fetchSize, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		var tail jetstream.Msg
		for m := range batch.Messages() {
			tail = m
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("message on %s: %w", m.Subject(), err)
			}
			if md.Sequence.Stream <= last {
				continue // redelivered: counted already
			}
			last = md.Sequence.Stream
			h, event, ok := hostEvent(m.Subject(), o.prefix)
			if !ok {
				continue
			}
			n, err := eventCount(m.Headers(), m.Data())
			if err != nil {
				return fmt.Errorf("message %d on %s: %w", md.Sequence.Stream, m.Subject(), err)
			}
			if counts[h] == nil {
				counts[h] = &Counts{}
			}
			counts[h].add(event, n)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetch: %w", err)
		}
		if tail != nil {
			lastEvent = time.Now()
			if err := tail.DoubleAck(ctx); err != nil {
				return fmt.Errorf("acknowledge: %w", err)
			}
		}
		if o.idle > 0 && time.Since(lastEvent) >= o.idle {
			break
		}
		if !o.jsonOut && time.Since(lastPrint) >= o.every {
			printTable(out, counts)
			lastPrint = time.Now()
		}
	}
	if o.jsonOut {
		return json.NewEncoder(out).Encode(counts)
	}
	printTable(out, counts)
	return nil
}

// hostEvent splits a subject prefix.<host>.<event> into host and event.
func hostEvent(subject, prefix string) (host, event string, ok bool) {
	rest, found := strings.CutPrefix(subject, prefix+".")
	if !found {
		return "", "", false
	}
	host, event, found = strings.Cut(rest, ".")
	if !found || host == "" || event == "" || strings.Contains(event, ".") {
		return "", "", false
	}
	return host, event, true
}

// printTable prints the counts, one host a line, sorted by host.
func printTable(out io.Writer, counts map[string]*Counts) {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "host\tconnections\tended\tfailed\tother\t")
	var total Counts
	for _, h := range slices.Sorted(maps.Keys(counts)) {
		c := counts[h]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", h, c.Connections, c.Ended, c.Failed, c.Other)
		total.Connections += c.Connections
		total.Ended += c.Ended
		total.Failed += c.Failed
		total.Other += c.Other
	}
	fmt.Fprintf(tw, "%d hosts\t%d\t%d\t%d\t%d\t\n", len(counts), total.Connections, total.Ended, total.Failed, total.Other)
	tw.Flush()
}
