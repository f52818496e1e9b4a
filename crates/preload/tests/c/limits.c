/*
 * Size limits and memory exhaustion for libhakmem.so, run under LD_PRELOAD by
 * crates/preload/tests/limits.rs (one process per group).
 *
 *   limits <group>     run one group
 *   limits list        print the group names
 *
 * Groups:
 *   overflow     size overflow and impossible alignments not covered by
 *                conformance.c's errno group (every tier's block survives a
 *                failed realloc/reallocarray; alignments near SIZE_MAX;
 *                page rounding that overflows; zero-sized calloc products)
 *   oom_tiny, oom_small, oom_mid, oom_big_mid, oom_large, oom_aligned,
 *   oom_calloc
 *                under RLIMIT_AS (the current address-space size plus
 *                OOM_HEADROOM, default 256 MiB): allocate blocks of one kind
 *                until NULL; the NULL comes with errno == ENOMEM; free them;
 *                fill again (at least half as many fit); then every tier
 *                still allocates (the recovery checks)
 *   oom_mixed    the same with random sizes from 24 B to 6 MiB, and a
 *                realloc that fails at the limit leaves its block intact
 *   impossible   under RLIMIT_AS, 32000 requests of 2^36 .. SIZE_MAX bytes
 *                through every entry point, each after a malloc(16)/free:
 *                NULL and ENOMEM every time, live blocks intact; the loop
 *                sits between two syscall(SYS_getppid) markers for a tracer;
 *                then 2000 requests of nearly the whole limit between two more
 *
 * Every failed check prints "FAIL <group>:<line>: ..." on stderr and the
 * process exits 1. Allocations of other sizes than the one that filled the
 * address space, made after everything was freed ("FAIL(recovery)"), are
 * counted apart: when only those fail the process exits 3. The last line on
 * stdout is "ok <group> ..." on success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testutil.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define OVER_PTRDIFF ((size_t)PTRDIFF_MAX + 1)

static const char *group = "?";
static int failures;
/* Failed checks of allocations after everything was freed at the limit, of
 * sizes other than the one that filled it: the process exits 3 when these
 * are the only failures. */
static int recovery_failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", group, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
        }                                                                      \
    } while (0)

#define RECOVER(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            recovery_failures++;                                               \
            fprintf(stderr, "FAIL(recovery) %s:%d: %s: ", group, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
        }                                                                      \
    } while (0)

#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL(fatal) %s:%d: %s: ", group, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            fflush(NULL);                                                      \
            _exit(1);                                                          \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------------------------ */
/* overflow                                                                  */
/* ------------------------------------------------------------------------ */

/* NULL with one of the allowed errno values, and nothing returned. */
#define EXPECT_FAIL(expr, e1, e2, what)                                                       \
    do {                                                                                      \
        errno = 0;                                                                            \
        void *r_ = (expr);                                                                    \
        int e_ = errno;                                                                       \
        CHECK(r_ == NULL, "%s returned %p instead of NULL", what, r_);                        \
        CHECK(e_ == (e1) || e_ == (e2), "%s: errno %d (%s), expected %s", what, e_,           \
              strerror(e_), #e1 "/" #e2);                                                     \
        if (r_) free(r_);                                                                     \
    } while (0)

static void group_overflow(void) {
    /* Alignments a 64-bit address space cannot honour. */
    size_t huge_aligns[] = {(size_t)1 << 63, (size_t)1 << 62, (size_t)1 << 48};
    for (size_t i = 0; i < sizeof huge_aligns / sizeof huge_aligns[0]; i++) {
        size_t a = huge_aligns[i];
        char what[96];
        snprintf(what, sizeof what, "aligned_alloc(%#zx, 1)", a);
        EXPECT_FAIL(aligned_alloc(opaque(a), 1), ENOMEM, EINVAL, what);
        snprintf(what, sizeof what, "memalign(%#zx, 1)", a);
        EXPECT_FAIL(memalign(opaque(a), 1), ENOMEM, EINVAL, what);
        void *sentinel = (void *)0x5eed, *m = sentinel;
        int rc = posix_memalign(&m, opaque(a), 1);
        CHECK(rc == ENOMEM || rc == EINVAL, "posix_memalign(%#zx, 1) returned %d", a, rc);
        CHECK(m == sentinel, "posix_memalign(%#zx, 1) modified *memptr on failure", a);
    }
    /* memalign rounds a bad alignment up: past 2^63 there is no power of two. */
    EXPECT_FAIL(memalign(opaque(SIZE_MAX), 1), EINVAL, ENOMEM, "memalign(SIZE_MAX, 1)");
    EXPECT_FAIL(memalign(opaque(((size_t)1 << 63) + 1), 1), EINVAL, ENOMEM,
                "memalign(2^63 + 1, 1)");
    /* Size plus alignment padding overflows. */
    EXPECT_FAIL(aligned_alloc(opaque(2 * MiB), opaque(SIZE_MAX - MiB)), ENOMEM, ENOMEM,
                "aligned_alloc(2 MiB, SIZE_MAX - 1 MiB)");
    EXPECT_FAIL(aligned_alloc(opaque(64 * MiB), opaque(PTRDIFF_MAX - 32 * MiB)), ENOMEM, ENOMEM,
                "aligned_alloc(64 MiB, PTRDIFF_MAX - 32 MiB)");
    {
        void *sentinel = (void *)0x5eed, *m = sentinel;
        int rc = posix_memalign(&m, opaque(2 * MiB), opaque(SIZE_MAX - 3 * MiB));
        CHECK(rc == ENOMEM, "posix_memalign(2 MiB, SIZE_MAX - 3 MiB) returned %d", rc);
        CHECK(m == sentinel, "posix_memalign(2 MiB, SIZE_MAX - 3 MiB) modified *memptr");
    }
    /* Page rounding that overflows. */
    EXPECT_FAIL(valloc(opaque(SIZE_MAX - 4094)), ENOMEM, ENOMEM, "valloc(SIZE_MAX - 4094)");
    EXPECT_FAIL(pvalloc(opaque(SIZE_MAX - 4094)), ENOMEM, ENOMEM, "pvalloc(SIZE_MAX - 4094)");
    EXPECT_FAIL(pvalloc(opaque(PTRDIFF_MAX - 100)), ENOMEM, ENOMEM,
                "pvalloc(PTRDIFF_MAX - 100) (rounds past PTRDIFF_MAX)");
    EXPECT_FAIL(malloc(opaque(PTRDIFF_MAX - 4096)), ENOMEM, ENOMEM, "malloc(PTRDIFF_MAX - 4096)");
    /* reallocarray of NULL is an allocation: overflow fails the same way. */
    EXPECT_FAIL(reallocarray(NULL, opaque(SIZE_MAX / 2 + 1), 2), ENOMEM, ENOMEM,
                "reallocarray(NULL, SIZE_MAX/2 + 1, 2)");
    EXPECT_FAIL(reallocarray(NULL, opaque((size_t)1 << 32), (size_t)1 << 32), ENOMEM, ENOMEM,
                "reallocarray(NULL, 2^32, 2^32) (wraps to 0 if unchecked)");
    /* A product that wraps to exactly 0 must not become a malloc(0). */
    EXPECT_FAIL(calloc(opaque((size_t)1 << 32), (size_t)1 << 32), ENOMEM, ENOMEM,
                "calloc(2^32, 2^32) (wraps to 0 if unchecked)");
    /* Zero products are fine: a unique, freeable pointer (or NULL). */
    void *z1 = calloc(opaque(0), opaque(SIZE_MAX)), *z2 = calloc(opaque(SIZE_MAX), 0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2, "calloc(0, SIZE_MAX) = %p, calloc(SIZE_MAX, 0) = %p",
          z1, z2);
    free(z1);
    free(z2);

    /* A failed realloc / reallocarray leaves the block of every tier intact
     * (conformance.c checks a 300 B block), and the freed neighbour of the
     * same size is never what a wrapped request returns. */
    static const size_t tiers[] = {24, 1000, 5000, 200000, 3 * MiB, 9 * MiB};
    for (size_t t = 0; t < sizeof tiers / sizeof tiers[0]; t++) {
        size_t n = tiers[t];
        unsigned char *p = malloc(opaque(n));
        REQUIRE(p, "malloc(%zu)", n);
        size_t u = malloc_usable_size(p);
        fill(p, u, n);
        unsigned char *freed = malloc(opaque(n));
        REQUIRE(freed, "malloc(%zu)", n);
        free(freed);
        struct {
            const char *what;
            size_t a, b;
        } bad[] = {
            {"realloc(p, SIZE_MAX)", SIZE_MAX, 0},
            {"realloc(p, PTRDIFF_MAX + 1)", OVER_PTRDIFF, 0},
            {"realloc(p, PTRDIFF_MAX - 4096)", PTRDIFF_MAX - 4096, 0},
            {"realloc(p, 2^47)", (size_t)1 << 47, 0},
            {"reallocarray(p, n + 2^63, 2) (wraps to 2n)", n + ((size_t)1 << 63), 2},
            {"reallocarray(p, 2^32 + 1, 2^32 - 1) (wraps to n-ish)", ((size_t)1 << 32) + 1,
             ((size_t)1 << 32) - 1},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            errno = 0;
            void *r = bad[i].b ? reallocarray(p, opaque(bad[i].a), opaque(bad[i].b))
                               : realloc(p, opaque(bad[i].a));
            int e = errno;
            CHECK(r == NULL, "%s on a %zu B block returned %p%s", bad[i].what, n, r,
                  r == freed ? " (the freed block!)" : "");
            CHECK(e == ENOMEM, "%s on a %zu B block: errno %d", bad[i].what, n, e);
            if (r) {
                p = r;
                u = malloc_usable_size(p);
                fill(p, u, n);
                continue;
            }
            CHECK(malloc_usable_size(p) == u, "%s changed the %zu B block's usable size",
                  bad[i].what, n);
            CHECK(mismatch(p, u, n) == SIZE_MAX, "%s corrupted the %zu B block", bad[i].what, n);
        }
        /* Calloc products that wrap to n never return the freed block. */
        errno = 0;
        void *c = calloc(opaque(((size_t)1 << 63) + n / 2), 2);
        CHECK(c == NULL && errno == ENOMEM, "calloc(2^63 + %zu, 2) returned %p errno %d", n / 2,
              c, errno);
        if (c) free(c);
        unsigned char *q = realloc(p, opaque(n + 1000));
        REQUIRE(q, "realloc(%zu -> %zu) after the failures", n, n + 1000);
        CHECK(mismatch(q, u < n + 1000 ? u : n + 1000, n) == SIZE_MAX,
              "realloc lost the %zu B block's contents", n);
        free(q);
    }
}

/* ------------------------------------------------------------------------ */
/* Out of memory under RLIMIT_AS                                            */
/* ------------------------------------------------------------------------ */

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0;
    REQUIRE(f, "open /proc/self/statm");
    REQUIRE(fscanf(f, "%lu", &size) == 1, "read /proc/self/statm");
    fclose(f);
    return (size_t)size * page_size();
}

static size_t headroom(void) {
    const char *h = getenv("OOM_HEADROOM_MIB");
    return (h ? (size_t)strtoul(h, NULL, 10) : 256) * MiB;
}

static size_t limit_set;

/* The soft RLIMIT_AS: the current address-space size plus the headroom. */
static void set_limit(void) {
    struct rlimit rl;
    REQUIRE(getrlimit(RLIMIT_AS, &rl) == 0, "getrlimit");
    size_t vm = vm_size();
    limit_set = vm + headroom();
    REQUIRE(rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= limit_set,
            "the hard RLIMIT_AS %llu is below %zu", (unsigned long long)rl.rlim_max, limit_set);
    rl.rlim_cur = limit_set;
    REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS, %zu)", limit_set);
    printf("vm %zu MiB at start, RLIMIT_AS %zu MiB\n", vm / MiB, limit_set / MiB);
}

/* Live blocks are chained through their first 16 bytes: no other memory. */
struct node {
    struct node *next;
    size_t n;
    uint64_t seed;
};

enum kind { K_MALLOC, K_ALIGNED, K_CALLOC };

static struct node *alloc_node(enum kind k, size_t n, uint64_t seed) {
    REQUIRE(n >= sizeof(struct node), "block of %zu B too small for the chain", n);
    struct node *b;
    switch (k) {
    case K_ALIGNED:
        b = aligned_alloc(4096, opaque(n));
        break;
    case K_CALLOC:
        b = calloc(opaque(n / 16), 16);
        if (b) {
            /* calloc memory reads zero even when the OS is short of memory */
            unsigned char *c = (unsigned char *)b;
            for (size_t i = 0; i < n / 16 * 16; i += 997)
                if (c[i]) {
                    CHECK(0, "calloc(%zu, 16) block not zero at byte %zu", n / 16, i);
                    break;
                }
        }
        break;
    default:
        b = malloc(opaque(n));
    }
    if (!b) return NULL;
    b->n = n;
    b->seed = seed;
    /* A pattern on the first and last bytes (all of a small block). */
    size_t head = n < 256 ? n : 256;
    if (head > sizeof *b) fill((unsigned char *)b + sizeof *b, head - sizeof *b, seed);
    if (n > 512) fill((unsigned char *)b + n - 64, 64, seed + 1);
    return b;
}

static void check_node(struct node *b) {
    size_t n = b->n, head = n < 256 ? n : 256;
    if (head > sizeof *b)
        CHECK(mismatch((unsigned char *)b + sizeof *b, head - sizeof *b, b->seed) == SIZE_MAX,
              "block %p (%zu B) corrupted at its head", (void *)b, n);
    if (n > 512)
        CHECK(mismatch((unsigned char *)b + n - 64, 64, b->seed + 1) == SIZE_MAX,
              "block %p (%zu B) corrupted at its tail", (void *)b, n);
    CHECK(malloc_usable_size(b) >= n, "usable size of %p below %zu", (void *)b, n);
}

struct filled {
    struct node *list;
    size_t count, bytes, failures;
};

/* Allocates with `size_of` until `give_up` consecutive NULLs; every NULL must
 * come with ENOMEM. */
static struct filled fill_memory(enum kind k, size_t (*size_of)(uint64_t *), int give_up,
                                 uint64_t seed) {
    struct filled f = {0};
    int misses = 0;
    uint64_t rng = seed;
    while (misses < give_up) {
        size_t n = size_of(&rng);
        errno = 0;
        struct node *b = alloc_node(k, n, rng_next(&rng));
        if (!b) {
            int e = errno;
            if (e != ENOMEM && f.failures < 5)
                CHECK(0, "allocation of %zu B failed with errno %d (%s), expected ENOMEM", n, e,
                      strerror(e));
            f.failures++;
            misses++;
            continue;
        }
        misses = 0;
        b->next = f.list;
        f.list = b;
        f.count++;
        f.bytes += n;
    }
    return f;
}

static void free_all(struct filled *f) {
    /* Free every other block first, then the rest: fragmentation on the way. */
    struct node *keep = NULL;
    int i = 0;
    for (struct node *b = f->list, *next; b; b = next, i++) {
        next = b->next;
        check_node(b);
        if (i % 2) {
            free(b);
        } else {
            b->next = keep;
            keep = b;
        }
    }
    for (struct node *b = keep, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    f->list = NULL;
}

static size_t fixed_size;
static size_t the_fixed_size(uint64_t *rng) {
    (void)rng;
    return fixed_size;
}
static size_t mixed_size(uint64_t *rng) {
    uint64_t r = rng_next(rng);
    switch (r % 8) {
    case 0:
        return 1 * MiB + (r >> 8) % (5 * MiB);
    case 1:
    case 2:
        return 1 * KiB + (r >> 8) % (255 * KiB);
    default:
        return sizeof(struct node) + (r >> 8) % 1000;
    }
}

/* Every tier still allocates (and frees) after the exhaustion. */
static void still_works(const char *when) {
    static const size_t sizes[] = {1, 24, 100, 1000, 5000, 70000, 500000, 3 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(opaque(sizes[i]));
        RECOVER(p != NULL, "malloc(%zu) %s failed (errno %d)", sizes[i], when, errno);
        if (p) {
            memset(p, 0x7b, sizes[i]);
            free(p);
        }
    }
    void *a = aligned_alloc(opaque(65536), 100000);
    RECOVER(a != NULL, "aligned_alloc(64 KiB, 100000) %s failed", when);
    free(a);
    void *c = calloc(opaque(1000), 1000);
    RECOVER(c != NULL, "calloc(1000, 1000) %s failed", when);
    free(c);
}

static void oom(enum kind k, size_t (*size_of)(uint64_t *), int give_up) {
    set_limit();
    struct filled f = fill_memory(k, size_of, give_up, 1);
    printf("first fill: %zu blocks, %zu MiB, stopped by %zu NULLs\n", f.count, f.bytes / MiB,
           f.failures);
    /* The limit, not something else, stopped the fill: most of the headroom
     * was handed out. */
    CHECK(f.bytes >= headroom() / 4, "only %zu MiB allocated under a %zu MiB headroom",
          f.bytes / MiB, headroom() / MiB);
    size_t first = f.count;
    free_all(&f);
    printf("vm %zu MiB after freeing everything\n", vm_size() / MiB);
    still_works("after freeing everything");

    /* What was freed can be allocated again. */
    f = fill_memory(k, size_of, give_up, 2);
    printf("second fill: %zu blocks, %zu MiB\n", f.count, f.bytes / MiB);
    CHECK(f.count >= first / 2, "the second fill got %zu blocks, the first %zu: memory freed "
          "at the limit was not reusable", f.count, first);
    free_all(&f);
    still_works("after the second fill");
}

static void group_oom_tiny(void) {
    fixed_size = 24;
    oom(K_MALLOC, the_fixed_size, 1);
}
static void group_oom_small(void) {
    fixed_size = 200;
    oom(K_MALLOC, the_fixed_size, 1);
}
static void group_oom_mid(void) {
    fixed_size = 5000;
    oom(K_MALLOC, the_fixed_size, 1);
}
static void group_oom_big_mid(void) {
    fixed_size = 300000;
    oom(K_MALLOC, the_fixed_size, 1);
}
static void group_oom_large(void) {
    fixed_size = 3 * MiB + 5;
    oom(K_MALLOC, the_fixed_size, 1);
}
static void group_oom_aligned(void) {
    fixed_size = 10000;
    oom(K_ALIGNED, the_fixed_size, 1);
}
static void group_oom_calloc(void) {
    fixed_size = 40000;
    oom(K_CALLOC, the_fixed_size, 1);
}

static void group_oom_mixed(void) {
    set_limit();
    /* A block we will try to grow at the limit. */
    size_t n = 100000;
    unsigned char *keep = malloc(opaque(n));
    REQUIRE(keep, "malloc");
    fill(keep, n, 77);
    struct filled f = fill_memory(K_MALLOC, mixed_size, 200, 3);
    printf("mixed fill: %zu blocks, %zu MiB, %zu NULLs\n", f.count, f.bytes / MiB, f.failures);
    CHECK(f.bytes >= headroom() / 4, "only %zu MiB allocated under a %zu MiB headroom",
          f.bytes / MiB, headroom() / MiB);
    /* Growing a block at the limit fails cleanly. */
    errno = 0;
    unsigned char *grown = realloc(keep, opaque(64 * MiB));
    if (grown == NULL) {
        CHECK(errno == ENOMEM, "failed realloc: errno %d", errno);
        CHECK(mismatch(keep, n, 77) == SIZE_MAX, "a failed realloc at the limit corrupted it");
    } else {
        CHECK(mismatch(grown, n, 77) == SIZE_MAX, "realloc at the limit lost the contents");
        keep = grown;
    }
    errno = 0;
    void *c = calloc(opaque(64), MiB);
    CHECK(c == NULL && errno == ENOMEM, "calloc(64, 1 MiB) at the limit: %p errno %d", c, errno);
    free(c);
    free_all(&f);
    printf("vm %zu MiB after freeing everything\n", vm_size() / MiB);
    /* Now it fits. */
    grown = realloc(keep, opaque(64 * MiB));
    RECOVER(grown != NULL, "realloc to 64 MiB after freeing everything failed (errno %d)", errno);
    if (grown) {
        CHECK(mismatch(grown, n, 77) == SIZE_MAX, "realloc lost the contents");
        keep = grown;
    } else {
        CHECK(mismatch(keep, n, 77) == SIZE_MAX, "a failed realloc corrupted the block");
    }
    free(keep);
    still_works("after the mixed fill");
}

/* ------------------------------------------------------------------------ */
/* Impossible requests: no system calls                                      */
/* ------------------------------------------------------------------------ */

/* Under RLIMIT_AS, IMPOSSIBLE_N requests that can never succeed (2^36 ..
 * 2^47 bytes, beyond the limit, and 2^50 .. SIZE_MAX, beyond the address
 * space, through every entry point in turn), each right after a
 * malloc(16)/free. Every one returns NULL (posix_memalign: ENOMEM) with errno
 * ENOMEM; realloc/reallocarray leave their block intact; the live blocks of
 * every tier keep their contents. The loop is bracketed by two
 * syscall(SYS_getppid) markers, so a tracer (limits.rs runs this under
 * strace) can count the mmap/munmap/madvise/mremap calls between them.
 * Then NEAR_N requests of nearly the whole limit (between a third and a
 * fourth marker), which only a failed mmap can refuse. */
#define IMPOSSIBLE_N 32000
#define NEAR_N 2000

static size_t impossible_size(uint64_t *rng, unsigned i) {
    /* every third: 2^36 .. 2^47, inside the address space but far beyond
     * RLIMIT_AS; the others 2^50 .. 2^64 - 1, beyond the address space */
    unsigned log = i % 3 == 0 ? 36 + (i / 3) % 11 : 50 + i % 14;
    size_t base = (size_t)1 << log;
    size_t size = base + (size_t)(rng_next(rng) % base);
    if (i % 17 == 0) size = SIZE_MAX - (size_t)(rng_next(rng) % 4096);
    return size;
}

static void group_impossible(void) {
    const size_t tiers[] = {24, 1000, 5000, 300000, 3 * MiB + 5};
    enum { NT = sizeof tiers / sizeof tiers[0] };
    unsigned char *live[NT];
    for (size_t t = 0; t < NT; t++) {
        live[t] = malloc(opaque(tiers[t]));
        REQUIRE(live[t], "malloc(%zu)", tiers[t]);
        fill(live[t], tiers[t], 900 + t);
    }
    set_limit();
    for (int i = 0; i < 16; i++) free(malloc(opaque(16)));
    static const char *const names[] = {"malloc",         "calloc",        "realloc",
                                        "posix_memalign", "aligned_alloc", "memalign",
                                        "valloc",         "pvalloc",       "reallocarray"};
    enum { NE = sizeof names / sizeof names[0] };
    unsigned fails[NE] = {0};
    uint64_t rng = 2024;
    syscall(SYS_getppid); /* marker: the counted loop starts */
    for (unsigned i = 0; i < IMPOSSIBLE_N; i++) {
        void *small = malloc(opaque(16));
        CHECK(small != NULL, "malloc(16) #%u failed (errno %d)", i, errno);
        free(small);
        size_t size = impossible_size(&rng, i);
        unsigned which = i % NE;
        unsigned char *old = live[i % NT];
        void *r = NULL;
        int rc = ENOMEM;
        errno = 0;
        switch (which) {
        case 0: r = malloc(opaque(size)); break;
        case 1: r = (i & 1) ? calloc(opaque(1), size) : calloc(opaque(size / 8), 8); break;
        case 2: r = realloc(old, opaque(size)); break;
        case 3: {
            void *m = (void *)0x1234;
            rc = posix_memalign(&m, opaque((size_t)64 << (i % 10)), size);
            r = m == (void *)0x1234 ? NULL : m;
            break;
        }
        case 4: r = aligned_alloc(opaque((size_t)64 << (i % 10)), size & ~(((size_t)64 << (i % 10)) - 1)); break;
        case 5: r = memalign(opaque((size_t)16 << (i % 12)), size); break;
        case 6: r = valloc(opaque(size)); break;
        case 7: r = pvalloc(opaque(size)); break;
        case 8: r = reallocarray(old, opaque(2), size / 2); break;
        }
        int e = errno;
        if (r != NULL || e != ENOMEM || rc != ENOMEM) {
            fails[which]++;
            if (fails[which] <= 3)
                CHECK(0, "%s(%zu) #%u: result %p, errno %d, rc %d; expected NULL and ENOMEM",
                      names[which], size, i, r, e, rc);
            if (r && r != old) free(r);
        }
    }
    syscall(SYS_getppid); /* marker: the counted loop ends */
    /* Requests that fit the limit on paper but not next to what is mapped:
     * only the OS can say no, one failing mmap each; the out-of-memory
     * reclaim must not also give away (and the next malloc(16) map again)
     * the thread's memory every time. Between the third and fourth marker. */
    syscall(SYS_getppid);
    for (unsigned i = 0; i < NEAR_N; i++) {
        void *small = malloc(opaque(16));
        CHECK(small != NULL, "malloc(16) #%u failed (errno %d)", i, errno);
        free(small);
        errno = 0;
        size_t size = limit_set - 4 * KiB * (i % 64);
        void *r = malloc(opaque(size));
        int e = errno;
        if (r != NULL || e != ENOMEM) {
            CHECK(0, "malloc(%zu) at the limit #%u: result %p, errno %d", size, i, r, e);
            free(r);
        }
    }
    syscall(SYS_getppid);
    for (size_t t = 0; t < NT; t++) {
        CHECK(mismatch(live[t], tiers[t], 900 + t) == SIZE_MAX,
              "the live %zu B block lost its contents", tiers[t]);
        free(live[t]);
    }
    unsigned total = 0;
    for (unsigned k = 0; k < NE; k++) total += fails[k];
    printf("impossible: %d requests through %d entry points, %u not NULL/ENOMEM\n", IMPOSSIBLE_N,
           (int)NE, total);
    still_works("after the impossible requests");
}

/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    void (*fn)(void);
} GROUPS[] = {
    {"overflow", group_overflow},       {"oom_tiny", group_oom_tiny},
    {"oom_small", group_oom_small},     {"oom_mid", group_oom_mid},
    {"oom_big_mid", group_oom_big_mid}, {"oom_large", group_oom_large},
    {"oom_aligned", group_oom_aligned}, {"oom_calloc", group_oom_calloc},
    {"oom_mixed", group_oom_mixed},     {"impossible", group_impossible},
};

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: %s <group>|list\n", argv[0]);
        return 64;
    }
    for (size_t i = 0; i < sizeof GROUPS / sizeof GROUPS[0]; i++) {
        if (strcmp(argv[1], "list") == 0) {
            puts(GROUPS[i].name);
            continue;
        }
        if (strcmp(argv[1], GROUPS[i].name) != 0) continue;
        group = GROUPS[i].name;
        GROUPS[i].fn();
        printf("%s %s: %d failed checks, %d failed recovery checks\n",
               failures || recovery_failures ? "FAILED" : "ok", group, failures,
               recovery_failures);
        return failures ? 1 : recovery_failures ? 3 : 0;
    }
    if (strcmp(argv[1], "list") == 0) return 0;
    fprintf(stderr, "unknown group %s\n", argv[1]);
    return 64;
}
