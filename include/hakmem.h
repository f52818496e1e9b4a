/*
 * hakmem.h: hakmem's C API beyond the standard allocation functions.
 *
 * libhakmem.so exports malloc, free, calloc, realloc and the rest of the C
 * allocation API (see README.md). This header declares what it adds:
 * call-site profiling. The address an allocation is made from labels its
 * purpose; hakmem keeps, per call site, the number of allocations and
 * frees, bytes allocated and live, average and largest size, a size
 * histogram, sampled lifetimes (allocation to free), local and remote
 * (cross-thread) frees, and an inferred policy class:
 *
 *   SMALL_FREQUENT    mean size <= 64 KiB and >= 1000 allocations
 *   LARGE_INFREQUENT  mean size >  1 MiB  and <  1000 allocations
 *   MEDIUM            everything else
 *
 * and lifetime class: SHORT when the median sampled lifetime is at most
 * about 16.8 ms (2^24 ns), LONG above, UNKNOWN with fewer than 8 samples.
 *
 * Sites are recorded in two ways:
 *   - exactly, by allocating through hak_alloc_cs() / hak_alloc_site();
 *   - by sampling every malloc() of an unmodified program, when the
 *     environment has HAKMEM_SITES=1 (one call in 2^HAKMEM_SITES_SAMPLE,
 *     default 2^12, is recorded with its return address; the report scales
 *     those counts back up and marks the sites "[sampled]").
 * The report is printed at exit when profiling is on (and written as JSON
 * to the file named by HAKMEM_SITES_JSON), or on demand with
 * hak_sites_report().
 *
 * The site table has a fixed number of slots; sites beyond it are summed
 * in one "other" line. Recording never allocates and takes no lock.
 *
 * All functions are thread-safe. None is async-signal-safe.
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Allocates `size` bytes, like malloc(size), and records the allocation at
 * the call site (the return address of this call: the instruction after
 * the call in the caller). Every call is recorded.
 *
 * Returns a pointer aligned like malloc's (at least 16 bytes for sizes
 * above 8), a unique pointer for size 0, or NULL with errno = ENOMEM.
 */
void *hak_alloc_cs(size_t size);

/*
 * Like hak_alloc_cs(), recorded at `site` instead of the caller: for
 * allocation wrappers, so that their callers are told apart:
 *
 *     void *xmalloc(size_t n) {
 *         return hak_alloc_site(n, __builtin_return_address(0));
 *     }
 *
 * `site` is a code address; NULL counts in the "other" line.
 */
void *hak_alloc_site(size_t size, const void *site);

/*
 * Frees a block from hak_alloc_cs() or hak_alloc_site() and records the
 * free (and the block's lifetime) at the site that allocated it; the free
 * counts as remote when the calling thread is not the allocating one.
 * NULL does nothing. Blocks from the cs functions may also be passed to
 * free() and realloc() like any hakmem block, and any hakmem block may be
 * passed here.
 */
void hak_free_cs(void *ptr);

/*
 * Writes the site report as text to file descriptor `fd` (2 for stderr):
 * a summary line, then the top sites by bytes allocated and by allocation
 * count, one row each: allocations, frees, bytes, live bytes, average and
 * largest size, tiny/mid/large mix in percent, remote-free share, median
 * lifetime, inferred class, and the site (`function+0xoffset (object)`
 * from dladdr, or the bare address). Write errors are ignored.
 *
 * Does not allocate. Takes the dynamic loader's lock (dladdr): do not call
 * it from a signal handler or from inside a dl_iterate_phdr callback.
 */
void hak_sites_report(int fd);

/*
 * Writes every site of the table as one JSON object to `fd` (the schema is
 * described in crates/sites/src/lib.rs; "version": 1). Returns 0, or -1 if
 * a write failed. Same restrictions as hak_sites_report().
 */
int hak_sites_report_json(int fd);

/*
 * Zeroes every site's counters (sites keep their slots). Frees of blocks
 * allocated before the reset are not counted. Events racing with the reset
 * on other threads may be lost or counted in part.
 */
void hak_sites_reset(void);

/*
 * Site-aware placement (HAKMEM_SITE_PLACEMENT, default on): blocks from
 * sites seen to be long-lived (through hak_alloc_cs, hak_alloc_site or
 * sampled malloc) are served from slabs of their own, so that they do not
 * pin slabs of short-lived blocks. on > 0 turns it on, on == 0 off, on < 0
 * only asks. Returns 1 if it was on before the call, else 0.
 */
int hak_site_placement(int on);

#ifdef __cplusplus
}
#endif

#endif /* HAKMEM_H */
