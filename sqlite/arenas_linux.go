//go:build linux && cgo

package sqlite

// SQLite allocates with malloc on whichever thread a cgo call runs, and
// glibc gives threads that allocate at once arenas of their own (up to
// eight a core), each keeping its own freed memory: at 100,000 keys in use
// the benchmark's process held seven, of 1–2 MiB each. Two hold the same
// in less (BENCHMARKS.md), and their locks see little contention from the
// few threads keygate runs. The limit is set as the program loads, before
// any thread has an arena; MALLOC_ARENA_MAX in the environment is left to
// decide.

/*
#include <stdlib.h> // defines __GLIBC__ under glibc
#ifdef __GLIBC__
#include <malloc.h>
__attribute__((constructor)) static void keygate_limit_arenas(void) {
	if (getenv("MALLOC_ARENA_MAX") == NULL) {
		mallopt(M_ARENA_MAX, 2);
	}
}
#endif
*/
import "C"
