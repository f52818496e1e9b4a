/*
 * Bad input for libhakmem.so: each case commits one misuse of the allocation
 * API, run under LD_PRELOAD by crates/preload/tests/misuse.rs (one process
 * per case).
 *
 *   misuse <case>      commit the misuse, then (if still alive) check that
 *                      the allocator still works
 *   misuse list        print the case names
 *
 * Protocol (stdout is unbuffered, so it survives an abort):
 *   "target 0x<hex> request <n> usable <u>"
 *       before the misuse: the pointer the bad call receives, the size the
 *       block was asked with and the usable size of the block it is in (0
 *       when it is in no block: wild, stack, static, foreign pointers, and
 *       large blocks, which have no size class);
 *   "continued"  right after the misuse returned (warn-and-ignore mode);
 *   "ok"         after the burst below found nothing wrong; exit 0.
 * A failed check prints "FAIL misuse:<line>: ..." on stderr and exits 1.
 *
 * The burst after the misuse allocates thousands of blocks of mixed sizes
 * (a quarter of them of the misused block's size; a few per round when that
 * is above 64 KiB), fills each with its own
 * pattern, checks that no two live blocks overlap (a double free that was not
 * ignored hands the same block out twice) and that every pattern survived,
 * frees them in random order, four times over.
 *
 * The secure cases (1-byte overflow, write after free) are only detectable
 * with HAKMEM_SECURE=1; the test harness sets it for them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "FAIL misuse:%d: %s: ", __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

static void target(const void *p, size_t request, size_t usable) {
    printf("target %p request %zu usable %zu\n", p, request, usable);
}

static void continued(void) { printf("continued\n"); }

/* ------------------------------------------------------------------------ */
/* After the misuse: is the allocator still sound?                          */
/* ------------------------------------------------------------------------ */

struct live {
    unsigned char *p;
    size_t n;
    uint64_t seed;
};

static int by_address(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const struct live *)a)->p;
    uintptr_t y = (uintptr_t)((const struct live *)b)->p;
    return x < y ? -1 : x > y;
}

static void burst(size_t hot) {
    enum { N = 6000, ROUNDS = 4 };
    static struct live v[N];
    uint64_t rng = 0xB0B5 + hot;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++) {
            uint64_t r = rng_next(&rng);
            size_t n;
            if (hot && r % 4 == 0 && (hot <= 64 * KiB || i % 1000 == 0))
                n = hot; /* large hot sizes: a few per round */
            else if (r % 100 == 1)
                n = 1 + (r >> 8) % (256 * KiB);
            else if (r % 10 == 2)
                n = 1 + (r >> 8) % (8 * KiB);
            else
                n = 1 + (r >> 8) % 512;
            v[i].p = malloc(opaque(n));
            CHECK(v[i].p, "malloc(%zu) failed after the misuse", n);
            v[i].n = malloc_usable_size(v[i].p);
            CHECK(v[i].n >= n, "usable size %zu < %zu", v[i].n, n);
            v[i].seed = rng_next(&rng);
            fill(v[i].p, v[i].n, v[i].seed);
        }
        qsort(v, N, sizeof v[0], by_address);
        for (int i = 0; i + 1 < N; i++)
            CHECK(v[i].p + v[i].n <= v[i + 1].p,
                  "live blocks overlap after the misuse: %p (+%zu) and %p (+%zu)",
                  (void *)v[i].p, v[i].n, (void *)v[i + 1].p, v[i + 1].n);
        for (int i = 0; i < N; i++) {
            size_t bad = mismatch(v[i].p, v[i].n, v[i].seed);
            CHECK(bad == SIZE_MAX, "block %p (%zu B) corrupted at byte %zu after the misuse",
                  (void *)v[i].p, v[i].n, bad);
        }
        for (int i = N - 1; i > 0; i--) {
            int j = (int)(rng_next(&rng) % (uint64_t)(i + 1));
            struct live t = v[i];
            v[i] = v[j];
            v[j] = t;
        }
        for (int i = 0; i < N; i++) free(v[i].p);
    }
}

/* A block of `n` bytes with a pattern, its request and usable size. */
static unsigned char *block(size_t n, size_t *usable) {
    unsigned char *p = malloc(opaque(n));
    CHECK(p, "malloc(%zu)", n);
    *usable = malloc_usable_size(p);
    fill(p, *usable, n);
    return p;
}

/* ------------------------------------------------------------------------ */
/* The cases                                                                */
/* ------------------------------------------------------------------------ */

static size_t double_free(size_t n) {
    size_t u;
    unsigned char *p = block(n, &u);
    free(p);
    target(p, n, n > MiB ? 0 : u);
    free(hide(p));
    continued();
    return n;
}

static size_t case_double_free_tiny(void) { return double_free(48); }
static size_t case_double_free_zero(void) { return double_free(0); }
static size_t case_double_free_mid(void) { return double_free(5000); }
static size_t case_double_free_large(void) { return double_free(8 * MiB); }

/* The block is freed, then 64 others of its class, then it again: a check of
 * the bin's head alone misses this one. */
static size_t case_double_free_delayed(void) {
    enum { OTHERS = 64 };
    size_t u;
    void *others[OTHERS];
    unsigned char *p = block(48, &u);
    for (int i = 0; i < OTHERS; i++) others[i] = malloc(opaque(48));
    free(p);
    for (int i = 0; i < OTHERS; i++) free(others[i]);
    target(p, 48, u);
    free(hide(p));
    continued();
    return 48;
}

static void *free_it(void *p) {
    free(p);
    return NULL;
}

/* Allocated on the main thread, freed by one thread, then again by another:
 * both frees take the remote path. */
static size_t case_double_free_remote(void) {
    size_t u;
    unsigned char *p = block(48, &u);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_it, p) == 0, "pthread_create");
    pthread_join(t, NULL);
    target(p, 48, u);
    CHECK(pthread_create(&t, NULL, free_it, hide(p)) == 0, "pthread_create");
    pthread_join(t, NULL);
    continued();
    return 48;
}

/* A thread with a heap of its own (it allocated first) frees a block of the
 * main thread twice: the first free waits in the thread's batch of remote
 * frees (one block, not flushed), the second finds the free mark. */
static void *free_twice_with_heap(void *p) {
    void *q = malloc(opaque(32));
    CHECK(q != NULL, "malloc");
    free(p);
    free(hide(p));
    continued();
    free(q);
    return NULL;
}

static size_t case_double_free_batched(void) {
    size_t u;
    unsigned char *p = block(48, &u);
    target(p, 48, u);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_twice_with_heap, p) == 0, "pthread_create");
    pthread_join(t, NULL);
    return 48;
}

/* A thread with a heap frees a block of the main thread, which stays in the
 * thread's batch (the thread stays alive: its exit would flush it); then the
 * owner frees it again, on its own fast path. */
static pthread_barrier_t batched, owner_done;
static void *free_and_hold(void *p) {
    void *q = malloc(opaque(32));
    CHECK(q != NULL, "malloc");
    free(p);
    pthread_barrier_wait(&batched);
    pthread_barrier_wait(&owner_done);
    free(q);
    return NULL;
}

static size_t case_double_free_batched_owner(void) {
    size_t u;
    unsigned char *p = block(48, &u);
    pthread_barrier_init(&batched, NULL, 2);
    pthread_barrier_init(&owner_done, NULL, 2);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_and_hold, p) == 0, "pthread_create");
    pthread_barrier_wait(&batched);
    target(p, 48, u);
    free(hide(p));
    continued();
    pthread_barrier_wait(&owner_done);
    pthread_join(t, NULL);
    return 48;
}

/* A thread with a heap frees a block of the main thread, which stays in its
 * batch; the main thread forks. In the child the thread (and its batch) is
 * gone: the block stays free (it is owned by nobody), so the child's free of
 * it is a double free. The parent mirrors the child's end (exit status or
 * signal); the child goes on with the protocol. */
static size_t case_double_free_batched_fork(void) {
    size_t u;
    unsigned char *p = block(48, &u);
    pthread_barrier_init(&batched, NULL, 2);
    pthread_barrier_init(&owner_done, NULL, 2);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_and_hold, p) == 0, "pthread_create");
    pthread_barrier_wait(&batched);
    target(p, 48, u);
    pid_t c = fork();
    CHECK(c >= 0, "fork");
    if (c == 0) {
        free(hide(p));
        continued();
        return 48;
    }
    int st = 0;
    CHECK(waitpid(c, &st, 0) == c, "waitpid");
    pthread_barrier_wait(&owner_done);
    pthread_join(t, NULL);
    if (WIFSIGNALED(st)) {
        signal(WTERMSIG(st), SIG_DFL);
        raise(WTERMSIG(st));
    }
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

/* Two threads free the same block at the same moment. */
static pthread_barrier_t both_ready;
static void *free_at_barrier(void *p) {
    pthread_barrier_wait(&both_ready);
    free(p);
    return NULL;
}

static size_t case_double_free_concurrent(void) {
    size_t u;
    unsigned char *p = block(48, &u);
    target(p, 48, u);
    pthread_barrier_init(&both_ready, NULL, 2);
    pthread_t a, b;
    CHECK(pthread_create(&a, NULL, free_at_barrier, p) == 0, "pthread_create");
    CHECK(pthread_create(&b, NULL, free_at_barrier, hide(p)) == 0, "pthread_create");
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    continued();
    return 48;
}

static size_t case_free_interior_tiny(void) {
    size_t u;
    unsigned char *p = block(48, &u);
    target(p + 16, 48, u);
    free(hide(p + 16));
    continued();
    CHECK(mismatch(p, u, 48) == SIZE_MAX, "the block under the interior pointer changed");
    free(p);
    return 48;
}

static size_t case_free_interior_mid(void) {
    size_t u;
    unsigned char *p = block(5000, &u);
    target(p + 2048, 5000, u);
    free(hide(p + 2048));
    continued();
    CHECK(mismatch(p, u, 5000) == SIZE_MAX, "the block under the interior pointer changed");
    free(p);
    return 5000;
}

/* The middle of an 8 MiB block: 4 MiB in, far from its header's slot. */
static size_t case_free_interior_large(void) {
    size_t u;
    unsigned char *p = block(8 * MiB, &u);
    target(p + 4 * MiB, 8 * MiB, 0);
    free(hide(p + 4 * MiB));
    continued();
    CHECK(mismatch(p, u, 8 * MiB) == SIZE_MAX, "the large block changed");
    free(p);
    return 0;
}

/* One page into an 8 MiB block: the same 64 KiB slot as its start. */
static size_t case_free_interior_large_head(void) {
    size_t u;
    unsigned char *p = block(8 * MiB, &u);
    target(p + 4096, 8 * MiB, 0);
    free(hide(p + 4096));
    continued();
    CHECK(mismatch(p, u, 8 * MiB) == SIZE_MAX, "the large block changed");
    free(p);
    return 0;
}

static size_t case_free_one(void) {
    target((void *)1, 0, 0);
    free(hide((void *)1));
    continued();
    return 0;
}

static size_t case_free_stack(void) {
    unsigned char buf[256];
    fill(buf, sizeof buf, 7);
    target(buf + 64, 0, 0);
    free(hide(buf + 64));
    continued();
    CHECK(mismatch(buf, sizeof buf, 7) == SIZE_MAX, "free of a stack address wrote to it");
    return 0;
}

static unsigned char static_buf[4096] __attribute__((aligned(64)));
static size_t case_free_static(void) {
    fill(static_buf, sizeof static_buf, 9);
    target(static_buf + 1024, 0, 0);
    free(hide(static_buf + 1024));
    continued();
    CHECK(mismatch(static_buf, sizeof static_buf, 9) == SIZE_MAX,
          "free of a static address wrote to it");
    return 0;
}

static size_t case_realloc_freed(void) {
    size_t u;
    unsigned char *p = block(48, &u);
    free(p);
    target(p, 48, u);
    void *q = realloc(hide(p), opaque(100));
    continued();
    /* Ignored, the call must not hand out anything tied to the freed block. */
    CHECK(q != p, "realloc of a freed block returned the freed block");
    free(q);
    return 48;
}

/* Memory hakmem never saw: a page of our own mapping (readable, so a header
 * read does not fault by luck). */
static unsigned char *foreign_page(void) {
    void *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED, "mmap");
    fill(m, 65536, 3);
    return (unsigned char *)m + 4096;
}

static size_t case_realloc_foreign(void) {
    unsigned char *f = foreign_page();
    target(f, 0, 0);
    void *q = realloc(hide(f), opaque(100));
    continued();
    CHECK(q != f, "realloc of a foreign pointer returned it");
    free(q);
    CHECK(mismatch(f - 4096, 65536, 3) == SIZE_MAX, "realloc of a foreign pointer wrote to it");
    return 0;
}

static size_t case_usable_size_freed(void) {
    size_t u;
    unsigned char *p = block(48, &u);
    free(p);
    target(p, 48, u);
    size_t r = malloc_usable_size(hide(p));
    continued();
    printf("malloc_usable_size returned %zu\n", r);
    return 48;
}

static size_t case_usable_size_foreign(void) {
    unsigned char *f = foreign_page();
    target(f, 0, 0);
    size_t r = malloc_usable_size(hide(f));
    continued();
    printf("malloc_usable_size returned %zu\n", r);
    CHECK(mismatch(f - 4096, 65536, 3) == SIZE_MAX,
          "malloc_usable_size of a foreign pointer wrote to it");
    return 0;
}

/* Secure mode: one byte past the usable size, found at the block's free. */
static size_t overflow(size_t n) {
    unsigned char *p = malloc(opaque(n));
    CHECK(p, "malloc");
    size_t u = malloc_usable_size(p);
    fill(p, u, n);
    target(p, n, u);
    p[opaque(u)] ^= 0x5a;
    free(hide(p));
    /* ... or, at the latest, when a neighbour is handed out or freed. */
    for (int i = 0; i < 1000; i++) free(malloc(opaque(n)));
    continued();
    return n;
}

static size_t case_overflow_1byte_tiny(void) { return overflow(48); }
static size_t case_overflow_1byte_mid(void) { return overflow(5000); }
static size_t case_overflow_1byte_large(void) { return overflow(3000000); }

/* Secure mode: a write into a freed block, found when the block is reused
 * (or leaves a quarantine). */
static size_t write_after_free(size_t n) {
    size_t u;
    unsigned char *p = block(n, &u);
    free(p);
    target(p, n, u);
    ((volatile unsigned char *)hide(p))[u / 2] ^= 0xa5;
    enum { HOLD = 512 };
    void *hold[HOLD];
    for (int round = 0; round < 64; round++) {
        for (int i = 0; i < HOLD; i++) hold[i] = malloc(opaque(n));
        for (int i = 0; i < HOLD; i++) free(hold[i]);
    }
    continued();
    return n;
}

static size_t case_write_after_free_tiny(void) { return write_after_free(48); }
static size_t case_write_after_free_mid(void) { return write_after_free(5000); }

/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t (*fn)(void); /* returns the size the burst should favour */
} CASES[] = {
    {"double_free_tiny", case_double_free_tiny},
    {"double_free_zero", case_double_free_zero},
    {"double_free_delayed", case_double_free_delayed},
    {"double_free_mid", case_double_free_mid},
    {"double_free_large", case_double_free_large},
    {"double_free_remote", case_double_free_remote},
    {"double_free_concurrent", case_double_free_concurrent},
    {"double_free_batched", case_double_free_batched},
    {"double_free_batched_owner", case_double_free_batched_owner},
    {"double_free_batched_fork", case_double_free_batched_fork},
    {"free_interior_tiny", case_free_interior_tiny},
    {"free_interior_mid", case_free_interior_mid},
    {"free_interior_large", case_free_interior_large},
    {"free_interior_large_head", case_free_interior_large_head},
    {"free_one", case_free_one},
    {"free_stack", case_free_stack},
    {"free_static", case_free_static},
    {"realloc_freed", case_realloc_freed},
    {"realloc_foreign", case_realloc_foreign},
    {"usable_size_freed", case_usable_size_freed},
    {"usable_size_foreign", case_usable_size_foreign},
    {"overflow_1byte_tiny", case_overflow_1byte_tiny},
    {"overflow_1byte_mid", case_overflow_1byte_mid},
    {"overflow_1byte_large", case_overflow_1byte_large},
    {"write_after_free_tiny", case_write_after_free_tiny},
    {"write_after_free_mid", case_write_after_free_mid},
};

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: %s <case>|list\n", argv[0]);
        return 64;
    }
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        if (strcmp(argv[1], "list") == 0) {
            puts(CASES[i].name);
            continue;
        }
        if (strcmp(argv[1], CASES[i].name) != 0) continue;
        /* Warm up this thread's heap so the misuse is not its first call. */
        free(malloc(opaque(16)));
        size_t hot = CASES[i].fn();
        burst(hot);
        printf("ok\n");
        return 0;
    }
    if (strcmp(argv[1], "list") == 0) return 0;
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 64;
}
