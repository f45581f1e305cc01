// SPDX-License-Identifier: Apache-2.0

package perf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowtap/flowtap/internal/e2e/harness"
)

// replayConns and replayPackets shape the capture BenchmarkReplayEndToEnd
// replays: 200,000 loopback connections of 10 packets each (handshake, a
// request and an answer with their ACKs, a close), 2 M packets.
const (
	replayConns   = 200_000
	replayPackets = 10 * replayConns
)

// BenchmarkReplayEndToEnd measures 'flowtap replay' on a synthetic capture
// (writeSyntheticCapture): every packet read, decoded, counted and
// derived, both endpoints of every connection reported (begin and end, as
// JSON to /dev/null through the stdout sink plugin), on the machine's
// cores. It reports packets/s (target ≥ 2.5 M/s) and the peak resident
// memory of flowtap. With Suricata installed, it runs Suricata on the
// same file (flow records only, eve.json to a temp dir) and reports its
// rate beside flowtap's.
func BenchmarkReplayEndToEnd(b *testing.B) {
	bin := harness.Binaries(b)
	file := filepath.Join(b.TempDir(), "synthetic.pcap")
	if err := writeSyntheticCapture(file, replayConns); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		cmd := exec.Command(filepath.Join(bin, "flowtap"), "replay", file, "--local", "127.0.0.0/8",
			"--events", "flows", "--output", "json", "--flow-table-size", "65536")
		cmd.Stdout = nil // /dev/null
		var stderr strings.Builder
		cmd.Stderr = &stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("flowtap replay: %v\n%s", err, stderr.String())
		}
		d := time.Since(t0)
		b.ReportMetric(replayPackets/d.Seconds(), "packets/s")
		b.ReportMetric(float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)/1024, "flowtap-max-rss-MiB")
		b.ReportMetric(cmd.ProcessState.UserTime().Seconds()+cmd.ProcessState.SystemTime().Seconds(), "flowtap-cpu-s")
		b.Logf("flowtap replay: %v for %d packets; log tail:\n%s", d, replayPackets, lastLines(stderr.String(), 4))
		if path, err := exec.LookPath("suricata"); err == nil {
			b.ReportMetric(suricataRate(b, path, file), "suricata-packets/s")
		} else {
			b.Logf("Suricata is not installed: no comparison (Debian bookworm-backports has suricata 7)")
		}
	}
}

// suricataRate runs Suricata on file with a configuration that writes
// flow records only, and returns its packets per second.
func suricataRate(b *testing.B, path, file string) float64 {
	dir := b.TempDir()
	conf := filepath.Join(dir, "suricata.yaml")
	// The stock flow, flow-timeouts and stream sections (Suricata's
	// defaults) stay: without them it enters emergency mode and swaps
	// client and server on some flows. Checksums are not validated:
	// loopback captures carry none.
	body := `%YAML 1.1
---
default-log-dir: ` + dir + `
outputs:
  - eve-log:
      enabled: yes
      filename: eve.json
      types:
        - flow
app-layer:
  protocols:
    http: {enabled: no}
    tls: {enabled: no}
stream:
  checksum-validation: no
`
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(path, "-c", conf, "-r", file, "-l", dir, "-k", "none", "--runmode", "single")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("suricata: %v\n%s", err, out)
	}
	d := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return replayPackets / d.Seconds()
}

// writeSyntheticCapture writes a pcap (Ethernet) of n loopback connections
// of 10 packets each to path, with correct IPv4 and TCP checksums.
func writeSyntheticCapture(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	le := binary.LittleEndian
	hdr := le.AppendUint32(nil, 0xa1b2c3d4)
	hdr = le.AppendUint16(hdr, 2)
	hdr = le.AppendUint16(hdr, 4)
	hdr = append(hdr, make([]byte, 8)...)
	hdr = le.AppendUint32(hdr, 262144)
	hdr = le.AppendUint32(hdr, 1) // Ethernet
	w.Write(hdr)
	var buf []byte
	for i := range n {
		client := [4]byte{127, 1, byte(i / 50000), byte(1 + i/200%250)}
		server := [4]byte{127, 0, 0, 1}
		cport, sport := uint16(10000+i%200*200+i%199), uint16(8080)
		cseq, sseq := uint32(i)*7919, uint32(i)*104729
		us := int64(i) * 20 // a connection every 20 µs of capture time
		pkt := func(fromClient bool, flags byte, payload int) {
			src, dst, sp, dp, seq, ack := client, server, cport, sport, cseq, sseq
			if !fromClient {
				src, dst, sp, dp, seq, ack = server, client, sport, cport, sseq, cseq
			}
			buf = appendFrame(buf[:0], src, dst, sp, dp, seq, ack, flags, payload)
			rec := le.AppendUint32(nil, uint32(us/1e6))
			rec = le.AppendUint32(rec, uint32(us%1e6))
			rec = le.AppendUint32(rec, uint32(len(buf)))
			rec = le.AppendUint32(rec, uint32(len(buf)))
			w.Write(rec)
			w.Write(buf)
			adv := uint32(payload)
			if flags&(tcpSYN|tcpFIN) != 0 {
				adv++
			}
			if fromClient {
				cseq += adv
			} else {
				sseq += adv
			}
			us++
		}
		pkt(true, tcpSYN, 0)
		pkt(false, tcpSYN|tcpACK, 0)
		pkt(true, tcpACK, 0)
		pkt(true, tcpPSH|tcpACK, 100)
		pkt(false, tcpACK, 0)
		pkt(false, tcpPSH|tcpACK, 1000)
		pkt(true, tcpACK, 0)
		pkt(true, tcpFIN|tcpACK, 0)
		pkt(false, tcpFIN|tcpACK, 0)
		pkt(true, tcpACK, 0)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

// appendFrame appends an Ethernet frame carrying an IPv4 TCP segment with
// payload zero bytes.
func appendFrame(b []byte, src, dst [4]byte, sport, dport uint16, seq, ack uint32, flags byte, payload int) []byte {
	be := binary.BigEndian
	b = append(b, make([]byte, 12)...) // MAC addresses
	b = be.AppendUint16(b, 0x0800)
	ip := len(b)
	total := 20 + 20 + payload
	b = append(b, 0x45, 0)
	b = be.AppendUint16(b, uint16(total))
	b = append(b, 0, 0, 0x40, 0, 64, 6, 0, 0) // id, DF, TTL, TCP, checksum
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	be.PutUint16(b[ip+10:], checksum(b[ip:ip+20], 0))
	tcp := len(b)
	b = be.AppendUint16(b, sport)
	b = be.AppendUint16(b, dport)
	b = be.AppendUint32(b, seq)
	if flags&tcpACK == 0 {
		ack = 0
	}
	b = be.AppendUint32(b, ack)
	b = append(b, 5<<4, flags, 0xff, 0xff, 0, 0, 0, 0)
	b = append(b, make([]byte, payload)...)
	pseudo := uint32(src[0])<<8 | uint32(src[1]) + uint32(src[2])<<8 | uint32(src[3]) +
		uint32(dst[0])<<8 | uint32(dst[1]) + uint32(dst[2])<<8 | uint32(dst[3]) + 6 + uint32(20+payload)
	be.PutUint16(b[tcp+16:], checksum(b[tcp:], pseudo))
	return b
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
