// Package backoff is the pause between retries that the kubelet gate's restarts
// would otherwise turn into a loop (a failed restart of containerd, a download
// that failed verification).
package backoff

import "time"

// Doubling is base after the first failure, doubled for each further one, never
// more than max.
func Doubling(base, max time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
