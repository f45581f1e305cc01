// SPDX-License-Identifier: Apache-2.0

package kernels

import (
	"bufio"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// cloudImage matches the name of a Debian cloud kernel package, e.g.
// linux-image-5.10.0-32-cloud-amd64-unsigned or
// linux-image-6.12.117+deb13-cloud-amd64-unsigned; the group is the ABI.
var cloudImage = regexp.MustCompile(`^linux-image-([0-9][0-9.]*(?:-[0-9]+)?(?:\+deb[0-9]+)?)-cloud-amd64-unsigned$`)

// cloudSearch is the apt-cache search pattern that lists them.
const cloudSearch = `^linux-image-.*-cloud-amd64-unsigned$`

// abi is a parsed kernel ABI: its numbers in order ("5.10.0-32" is
// 5 10 0 32; a "+debNN" suffix names the suite and does not count).
type abi []int

func parseABI(s string) (abi, bool) {
	s, _, _ = strings.Cut(s, "+")
	var out abi
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' }) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, len(out) >= 2
}

// series is "major.minor".
func (a abi) series() string { return fmt.Sprintf("%d.%d", a[0], a[1]) }

// SelectCloudKernel picks, from the output of 'apt-cache search
// --names-only' (one "name - description" a line), the cloud kernel
// image package of the given series ("6.1") with the highest ABI. The
// mirror keeps only the newest ABIs, so no ABI number is ever written
// down: this is how the matrix names its packages.
func SelectCloudKernel(searchOutput, series string) (string, error) {
	var best string
	var bestABI abi
	var seen []string
	sc := bufio.NewScanner(strings.NewReader(searchOutput))
	for sc.Scan() {
		name, _, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		m := cloudImage.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		a, ok := parseABI(m[1])
		if !ok {
			continue
		}
		seen = append(seen, name)
		if a.series() != series {
			continue
		}
		if best == "" || slices.Compare(a, bestABI) > 0 {
			best, bestABI = name, a
		}
	}
	if best == "" {
		if len(seen) == 0 {
			return "", fmt.Errorf("no cloud kernel image package (linux-image-*-cloud-amd64-unsigned) in the package lists")
		}
		return "", fmt.Errorf("no cloud kernel image package of series %s; the lists have: %s", series, strings.Join(seen, ", "))
	}
	return best, nil
}
