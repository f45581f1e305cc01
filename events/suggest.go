// SPDX-License-Identifier: Apache-2.0

package events

// Closest returns the candidate nearest to name by edit distance, if it is
// near enough to be a plausible typo (at most 2 edits, or a third of the
// name's length), else "". Ties go to the earlier candidate. Config
// validation and filters use it for their "did you mean" hints.
func Closest(name string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		if d := levenshtein(name, c); bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist < 0 || bestDist > max(2, len(name)/3) {
		return ""
	}
	return best
}
