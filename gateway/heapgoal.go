package gateway

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// minHeapGoal is the least heap goal keepHeapGoal gives the garbage
// collector. A process serving keygate's API holds a live heap of a couple
// of MiB while every request allocates, so with Go's default (a goal of
// twice the live heap, 4 MiB at the least) it would collect dozens of
// times a second under load, and each collection's fixed costs — stopping
// the world, waking mark workers, handing memory back to the OS — cost more
// than the marking; most of all on virtual machines, where each of those is
// a round of interrupts. A 32 MiB goal cuts CPU per login by about a quarter
// (BENCHMARKS.md).
//
// From about 21 MiB live (100,000 keys in use fill the key cache with about
// 16 MiB) the goal is one and a half times the live heap, not Go's twice:
// the process's peak memory is its heap goal, and a cache that large is
// most of the live heap but none of the garbage, so the extra collections
// cost little (BENCHMARKS.md).
const minHeapGoal = 32 << 20

// keepHeapGoal sets GOGC after every collection so that the next one's heap
// goal is minHeapGoal, or twice the live heap once that is larger (Go's
// default). GOGC in the environment wins: then it does nothing. Serve runs
// it, once per process, so that every process serving keygate — keygate
// serve, the benchmark's floor — runs the same collector policy.
func keepHeapGoal() {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}
	var retune func()
	retune = func() {
		metrics.Read(sample)
		live := sample[0].Value.Uint64()
		roots := live + sample[1].Value.Uint64() + sample[2].Value.Uint64()
		// Go's goal is the larger of live + roots*GOGC/100 and
		// 4 MiB*GOGC/100: pick the GOGC that puts the first at goal and
		// keeps the second below it.
		goal := max(minHeapGoal, live*3/2)
		percent := 100
		if roots > 0 {
			percent = int(min((goal-live)*100/roots, minHeapGoal*100/(4<<20)))
		}
		percent = max(percent, 1)
		debug.SetGCPercent(percent)
		// A cleanup runs once the collector has found its object
		// unreachable: normally after the next cycle, so each cycle runs
		// on the percent the one before it chose (if the live heap jumps,
		// one cycle may overshoot before this catches up).
		runtime.AddCleanup(new([64]byte), func(struct{}) { retune() }, struct{}{})
	}
	retune()
}
