/*
 * Faults and load for libhakmem.so, run under LD_PRELOAD by
 * crates/preload/tests/load.rs (one process per group).
 *
 *   load fork [rounds]            fork while 4 threads allocate (default 100
 *                                 rounds); every child checks the block it
 *                                 inherited, allocates every tier, starts a
 *                                 thread, every tenth forks a grandchild, and
 *                                 exits 0; a child still alive after 20 s
 *                                 dies of SIGALRM (deadlock)
 *   load sigfork [secs]           a single-threaded loop mallocs and frees
 *                                 while another process sends SIGUSR1/SIGUSR2,
 *                                 whose handlers fork (nested); children
 *                                 _exit(7) at once and are reaped
 *   load churn [threads]          threads started one after another (default
 *                                 1000), each allocating and freeing 1 MiB in
 *                                 small blocks, half of them handed to the
 *                                 next thread to free; RSS and VmSize growth
 *                                 after the first 50 threads stay within
 *                                 CHURN_RSS_MIB / CHURN_VM_MIB
 *   load stress [secs] [threads]  test-stress style: threads allocate random
 *                                 sizes across tiny, mid and large with
 *                                 malloc/calloc/realloc/aligned_alloc, swap
 *                                 blocks through shared slots (cross-thread
 *                                 frees), check every block's pattern at free;
 *                                 threads are replaced every 300 ms
 *   load list                     print the group names
 *
 * Failed checks print "FAIL <group>:<line>: ..." on stderr; the process exits
 * 1. The last line on stdout is "ok <group>: ..." on success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static const char *group = "?";
static atomic_int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            if (atomic_fetch_add(&failures, 1) < 20) {                         \
                fprintf(stderr, "FAIL %s:%d: %s: ", group, __LINE__, #cond);   \
                fprintf(stderr, __VA_ARGS__);                                  \
                fprintf(stderr, "\n");                                         \
            }                                                                  \
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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* statm: (VmSize, RSS) in bytes. */
static void statm(size_t *vm, size_t *rss) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long v = 0, r = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &v, &r) != 2) v = r = 0;
        fclose(f);
    }
    *vm = (size_t)v * page_size();
    *rss = (size_t)r * page_size();
}

static size_t env_size(const char *name, size_t dflt) {
    const char *s = getenv(name);
    return s && *s ? (size_t)strtoull(s, NULL, 10) : dflt;
}

/* ------------------------------------------------------------------------ */
/* Self-checking blocks: {size, seed} header, a pattern in every word after  */
/* ------------------------------------------------------------------------ */

struct hdr {
    size_t n;
    uint64_t seed;
};

static inline uint64_t pat_word(uint64_t seed, size_t k) {
    return (seed ^ 0x5DEECE66DULL) + (uint64_t)k * 0x9E3779B97F4A7C15ULL;
}

/* Whether word k of a block of `to` words carries the pattern: every word of
 * a block up to 16 KiB; of larger ones the first and last 4 KiB and every
 * 2048th word (one per 16 KiB), so filling and checking stay cheap. */
static inline int patterned(size_t k, size_t to) {
    return to <= 2048 || k < 512 || k + 512 >= to || (k & 2047) == 0;
}

static void fill_words(uint64_t *w, size_t from, size_t to, uint64_t seed) {
    for (size_t k = from; k < to; k++)
        if (patterned(k, to)) w[k] = pat_word(seed, k);
}

/* The first patterned word among [from, limit) of a block of `to` words
 * that does not match, or SIZE_MAX. */
static size_t bad_word_upto(const uint64_t *w, size_t from, size_t to, size_t limit,
                            uint64_t seed) {
    for (size_t k = from; k < limit && k < to; k++)
        if (patterned(k, to) && w[k] != pat_word(seed, k)) return k;
    return SIZE_MAX;
}

static size_t bad_word(const uint64_t *w, size_t from, size_t to, uint64_t seed) {
    return bad_word_upto(w, from, to, to, seed);
}

static void stamp(void *p, size_t n, uint64_t seed) {
    struct hdr *h = p;
    h->n = n;
    h->seed = seed;
    fill_words(p, 2, n / 8, seed);
}

static void verify(const void *p, const char *when) {
    const struct hdr *h = p;
    size_t n = h->n;
    size_t k = bad_word(p, 2, n / 8, h->seed);
    CHECK(k == SIZE_MAX, "block %p of %zu B corrupted at word %zu %s", p, n, k, when);
    CHECK(malloc_usable_size((void *)p) >= n, "block %p: usable %zu < %zu %s", p,
          malloc_usable_size((void *)p), n, when);
}

static void *blk_new(size_t n, uint64_t seed) {
    if (n < sizeof(struct hdr)) n = sizeof(struct hdr);
    void *p = malloc(opaque(n));
    if (p) stamp(p, n, seed);
    return p;
}

static void blk_free(void *p) {
    if (!p) return;
    verify(p, "at free");
    free(p);
}

/* 80% tiny (16 B .. 1 KiB), 18% small mid (1 .. 64 KiB), 1.8% big mid
 * (64 KiB .. 1 MiB), 0.2% large (1 .. 4 MiB): about 20 KB on average. */
static size_t random_size(uint64_t *rng) {
    uint64_t r = rng_next(rng);
    unsigned per_mille = (unsigned)(r % 1000);
    r >>= 10;
    if (per_mille < 800) return 16 + r % 1009;
    if (per_mille < 980) return 1 * KiB + r % (63 * KiB);
    if (per_mille < 998) return 64 * KiB + r % (960 * KiB);
    return 1 * MiB + r % (3 * MiB);
}

/* ------------------------------------------------------------------------ */
/* fork while threads allocate                                              */
/* ------------------------------------------------------------------------ */

static atomic_int stop_workers;

static void *fork_worker(void *a) {
    uint64_t rng = (uint64_t)(uintptr_t)a * 7919 + 1;
    enum { RING = 128 };
    void *ring[RING] = {0};
    unsigned long ops = 0;
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        int i = (int)(r % RING);
        blk_free(ring[i]);
        ring[i] = NULL;
        switch ((r >> 8) % 32) {
        case 0: {
            size_t n = 64 + (r >> 16) % 20000;
            unsigned char *c = calloc(1, n);
            if (c) {
                for (size_t k = 0; k < n; k += 61) CHECK(c[k] == 0, "calloc not zero");
                free(c);
            }
            break;
        }
        case 1:
            free(aligned_alloc(4096, 8192 + (r >> 16) % 8192));
            break;
        case 2: {
            void *p = blk_new(100, r);
            void *q = p ? realloc(p, 5000 + (r >> 16) % 300000) : NULL;
            if (q) {
                CHECK(bad_word(q, 2, 100 / 8, r) == SIZE_MAX, "realloc lost data");
                free(q);
            }
            break;
        }
        case 3: /* a large block, freed at once */
            blk_free(blk_new(2 * MiB + (r >> 16) % MiB, r));
            break;
        default:
            ring[i] = blk_new(random_size(&rng), r);
        }
        ops++;
    }
    for (int i = 0; i < RING; i++) blk_free(ring[i]);
    return (void *)ops;
}

static void *child_thread(void *a) {
    uint64_t rng = (uint64_t)(uintptr_t)a;
    void *v[64];
    for (int i = 0; i < 64; i++) v[i] = blk_new(random_size(&rng), rng);
    for (int i = 0; i < 64; i++) blk_free(v[i]);
    return NULL;
}

static int child_work(void *inherited, uint64_t seed, int depth) {
    alarm(20); /* a deadlocked child dies of SIGALRM instead of hanging */
    verify(inherited, "in the child");
    free(inherited);
    /* Every tier, a thread, and maybe a grandchild forked while it runs. */
    static const size_t sizes[] = {0, 8, 24, 100, 1000, 1025, 5000, 65536, 300000,
                                   1 * MiB, 3 * MiB};
    void *v[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        v[i] = blk_new(sizes[i], seed + i);
        REQUIRE(v[i], "malloc(%zu) in the child", sizes[i]);
    }
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(seed | 1)) == 0,
            "pthread_create in the child");
    if (depth == 0 && seed % 10 == 0) {
        void *again = blk_new(777, seed);
        REQUIRE(again, "malloc");
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork in the child");
        if (pid == 0) _exit(child_work(again, seed, 1));
        blk_free(again);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "grandchild ended with status %#x",
              status);
    }
    pthread_join(t, NULL);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) blk_free(v[i]);
    void *m = NULL;
    REQUIRE(posix_memalign(&m, 65536, 1000) == 0, "posix_memalign in the child");
    free(m);
    return atomic_load(&failures) ? 1 : 0;
}

static void group_fork(int argc, char **argv) {
    int rounds = argc > 2 ? atoi(argv[2]) : 100;
    enum { WORKERS = 4 };
    pthread_t w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        REQUIRE(pthread_create(&w[i], NULL, fork_worker, (void *)(uintptr_t)(i + 1)) == 0,
                "pthread_create");
    uint64_t rng = 4242;
    int deadlocks = 0;
    for (int k = 0; k < rounds; k++) {
        uint64_t seed = rng_next(&rng) % 1000000 * 10 + (uint64_t)(k % 10 == 0 ? 0 : 1 + k % 9);
        void *inherited = blk_new(5000, seed);
        REQUIRE(inherited, "malloc");
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork");
        if (pid == 0) {
            group = "fork(child)";
            exit(child_work(inherited, seed, 0));
        }
        /* The parent keeps allocating while the child runs. */
        void *mine[32];
        for (int i = 0; i < 32; i++) mine[i] = blk_new(random_size(&rng), seed + (uint64_t)i);
        for (int i = 0; i < 32; i++) blk_free(mine[i]);
        blk_free(inherited);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
        if (WIFSIGNALED(status)) {
            deadlocks += WTERMSIG(status) == SIGALRM;
            CHECK(0, "fork child #%d died of signal %d%s", k, WTERMSIG(status),
                  WTERMSIG(status) == SIGALRM ? " (deadlock: it hung for 20 s)" : "");
        } else {
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child #%d exited with %d",
                  k, WEXITSTATUS(status));
        }
    }
    atomic_store(&stop_workers, 1);
    unsigned long total = 0;
    for (int i = 0; i < WORKERS; i++) {
        void *ops = NULL;
        pthread_join(w[i], &ops);
        CHECK(ops != NULL, "worker %d made no progress", i);
        total += (unsigned long)(uintptr_t)ops;
    }
    printf("fork: %d rounds, %d deadlocked children, %lu worker operations\n", rounds, deadlocks,
           total);
}

/* ------------------------------------------------------------------------ */
/* fork from signal handlers in a single-threaded process                    */
/* ------------------------------------------------------------------------ */

/* glibc's tst-mallocfork2 in spirit: the main (only) thread mallocs and
 * frees in a loop while a sender process sends SIGUSR1 and SIGUSR2 as fast
 * as it can; both handlers call fork (async-signal-safe in a single-threaded
 * process), and each signal may interrupt the other's handler (each blocks
 * only its own), so forks nest inside forks (two deep) and interrupt
 * allocator calls. Every
 * child `_exit`s at once with code 7; the main loop reaps them and checks
 * the code. A hang fails the run through the harness's deadline. */
/* lock-free atomics: a nested handler may interrupt an increment */
static atomic_int sigfork_forks, sigfork_fork_failures;

static void sigfork_handler(int sig) {
    (void)sig;
    int saved = errno;
    pid_t pid = fork();
    if (pid == 0) _exit(7);
    atomic_fetch_add(pid < 0 ? &sigfork_fork_failures : &sigfork_forks, 1);
    errno = saved;
}

static int sigfork_reap(int *bad, int block) {
    int n = 0, status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
        if (pid == 0) break;
        n++;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 7)) {
            (*bad)++;
            CHECK(0, "a child forked in the handler ended with status %#x", status);
        }
    }
    return n;
}

static void group_sigfork(int argc, char **argv) {
    double secs = argc > 2 ? atof(argv[2]) : 2.0;
    pid_t parent = getpid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sigfork_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    REQUIRE(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction");
    pid_t sender = fork();
    REQUIRE(sender >= 0, "fork the sender");
    if (sender == 0) {
        /* the sender: its own process, so the test process stays
         * single-threaded; it dies with the parent's process group */
        signal(SIGUSR1, SIG_IGN);
        signal(SIGUSR2, SIG_IGN);
        for (unsigned long i = 0;; i++) {
            if (kill(parent, (i & 1) ? SIGUSR2 : SIGUSR1) != 0) _exit(0);
            if ((i & 15) == 0) usleep(200);
        }
    }
    enum { LIVE = 64 };
    void *live[LIVE] = {0};
    uint64_t rng = 777;
    unsigned long ops = 0;
    int reaped = 0, bad = 0;
    double end = now_s() + secs;
    while (now_s() < end) {
        for (int i = 0; i < 256; i++) {
            unsigned k = (unsigned)(rng_next(&rng) % LIVE);
            blk_free(live[k]);
            live[k] = blk_new(random_size(&rng), rng_next(&rng));
            CHECK(live[k] != NULL, "malloc failed");
            void *q = malloc(opaque(16 + i));
            CHECK(q != NULL, "malloc(16 + i) failed");
            free(q);
            ops += 2;
        }
        reaped += sigfork_reap(&bad, 0);
    }
    kill(sender, SIGKILL);
    /* block the signals while the rest is reaped */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int status;
    REQUIRE(waitpid(sender, &status, 0) == sender, "waitpid(sender)");
    reaped += sigfork_reap(&bad, 1);
    for (int k = 0; k < LIVE; k++) blk_free(live[k]);
    int forks = atomic_load(&sigfork_forks);
    CHECK(reaped == forks, "forked %d children, reaped %d", forks, reaped);
    CHECK(forks > 20, "only %d forks in the handlers: the signals did not arrive", forks);
    printf("sigfork: %d forks in signal handlers, %d failed forks, %d children reaped, %d bad, "
           "%lu main-loop operations\n",
           forks, atomic_load(&sigfork_fork_failures), reaped, bad, ops);
}

/* ------------------------------------------------------------------------ */
/* 1000 threads one after another                                           */
/* ------------------------------------------------------------------------ */

enum { CHURN_HANDOFF = 4096 };
static void *churn_handoff[CHURN_HANDOFF];
static size_t churn_handoff_n;

struct churn_arg {
    int id;
    size_t freed_from_previous;
};

static void *churn_thread(void *a) {
    struct churn_arg *arg = a;
    uint64_t rng = (uint64_t)arg->id * 0x9E3779B97F4A7C15ULL + 1;
    /* Odd threads start with a free of the previous thread's blocks: their
     * first allocator call is a cross-thread free into an exited thread's
     * superslabs. */
    if (arg->id % 2) {
        for (size_t i = 0; i < churn_handoff_n; i++) blk_free(churn_handoff[i]);
        arg->freed_from_previous = churn_handoff_n;
        churn_handoff_n = 0;
    }
    enum { MAX = 1 << 14 };
    void *v[MAX];
    size_t n = 0, bytes = 0;
    while (bytes < MiB && n < MAX) {
        size_t sz = 16 + rng_next(&rng) % 497;
        v[n] = blk_new(sz, rng);
        REQUIRE(v[n], "malloc(%zu) in thread %d", sz, arg->id);
        bytes += sz;
        n++;
    }
    if (arg->id % 2 == 0) {
        for (size_t i = 0; i < churn_handoff_n; i++) blk_free(churn_handoff[i]);
        arg->freed_from_previous = churn_handoff_n;
        churn_handoff_n = 0;
    }
    /* Free half in random order; hand a sample of the rest to the next thread. */
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_next(&rng) % (i + 1);
        void *t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    size_t keep = n / 2 < CHURN_HANDOFF ? n / 2 : CHURN_HANDOFF;
    for (size_t i = 0; i < n - keep; i++) blk_free(v[i]);
    for (size_t i = 0; i < keep; i++) churn_handoff[i] = v[n - keep + i];
    churn_handoff_n = keep;
    return NULL;
}

static void group_churn(int argc, char **argv) {
    int threads = argc > 2 ? atoi(argv[2]) : 1000;
    size_t rss_bound = env_size("CHURN_RSS_MIB", 32) * MiB;
    size_t vm_bound = env_size("CHURN_VM_MIB", 256) * MiB;
    enum { WARMUP = 50 };
    size_t vm0 = 0, rss0 = 0, vm_max = 0, rss_max = 0, vm, rss;
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        struct churn_arg arg = {i, 0};
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, churn_thread, &arg) == 0, "pthread_create #%d", i);
        REQUIRE(pthread_join(t, NULL) == 0, "pthread_join");
        if (i > 0) CHECK(arg.freed_from_previous > 0, "thread %d freed nothing", i);
        statm(&vm, &rss);
        if (i == WARMUP) {
            vm0 = vm;
            rss0 = rss;
        }
        if (i >= WARMUP) {
            if (vm > vm_max) vm_max = vm;
            if (rss > rss_max) rss_max = rss;
        }
    }
    for (size_t i = 0; i < churn_handoff_n; i++) blk_free(churn_handoff[i]);
    churn_handoff_n = 0;
    statm(&vm, &rss);
    printf("churn: %d threads in %.2f s; after %d: RSS %zu MiB, VmSize %zu MiB; peak after: "
           "RSS %zu MiB (+%zu), VmSize %zu MiB (+%zu); at the end RSS %zu MiB\n",
           threads, now_s() - t0, WARMUP, rss0 / MiB, vm0 / MiB, rss_max / MiB,
           (rss_max - rss0) / MiB, vm_max / MiB, (vm_max - vm0) / MiB, rss / MiB);
    if (threads > WARMUP) {
        CHECK(rss_max - rss0 <= rss_bound,
              "RSS grew by %zu MiB over %d threads (bound %zu MiB): thread caches are not "
              "reclaimed",
              (rss_max - rss0) / MiB, threads - WARMUP, rss_bound / MiB);
        CHECK(vm_max - vm0 <= vm_bound, "VmSize grew by %zu MiB over %d threads (bound %zu MiB)",
              (vm_max - vm0) / MiB, threads - WARMUP, vm_bound / MiB);
    }
}

/* ------------------------------------------------------------------------ */
/* test-stress style                                                        */
/* ------------------------------------------------------------------------ */

enum { SLOTS = 4096, LOCAL = 256 };
static _Atomic(void *) slots[SLOTS];
static atomic_ulong stress_ops, stress_remote, stress_realloc, stress_calloc;
static double stress_round_end;

static void *stress_thread(void *a) {
    uint64_t rng = (uint64_t)(uintptr_t)a * 0x1234567ULL + 99;
    void *local[LOCAL] = {0};
    unsigned long ops = 0, swaps = 0, reallocs = 0, callocs = 0;
    while (1) {
        if ((ops & 255) == 0 && now_s() > stress_round_end) break;
        uint64_t r = rng_next(&rng);
        int li = (int)((r >> 40) % LOCAL);
        switch (r % 16) {
        case 0: { /* calloc */
            size_t n = random_size(&rng);
            unsigned char *c = calloc(opaque(n / 8), 8);
            REQUIRE(c || n / 8 == 0, "calloc(%zu, 8)", n / 8);
            if (!c) break;
            for (size_t k = 0; k < n / 8 * 8; k += 31)
                if (c[k]) {
                    CHECK(0, "calloc(%zu, 8) not zero at byte %zu", n / 8, k);
                    break;
                }
            if (n / 8 * 8 >= sizeof(struct hdr)) {
                stamp(c, n / 8 * 8, r);
                blk_free(local[li]);
                local[li] = c;
            } else {
                free(c);
            }
            callocs++;
            break;
        }
        case 1: { /* realloc a local block: grow or shrink, the prefix survives */
            struct hdr *h = local[li];
            if (!h) break;
            verify(h, "before realloc");
            size_t old = h->n, n = random_size(&rng);
            if (n < sizeof(struct hdr)) n = sizeof(struct hdr);
            uint64_t seed = h->seed;
            struct hdr *q = realloc(h, opaque(n));
            REQUIRE(q, "realloc(%zu -> %zu)", old, n);
            size_t keep = old < n ? old : n;
            CHECK(bad_word_upto((uint64_t *)q, 2, old / 8, keep / 8, seed) == SIZE_MAX,
                  "realloc(%zu -> %zu) lost the contents", old, n);
            stamp(q, n, seed + 1);
            local[li] = q;
            reallocs++;
            break;
        }
        case 2: { /* aligned */
            size_t align = (size_t)16 << ((r >> 8) % 12); /* 16 B .. 32 KiB */
            size_t n = random_size(&rng);
            if (n < sizeof(struct hdr)) n = sizeof(struct hdr);
            void *p = aligned_alloc(align, opaque(n));
            REQUIRE(p, "aligned_alloc(%zu, %zu)", align, n);
            CHECK(((uintptr_t)p & (align - 1)) == 0, "aligned_alloc(%zu) = %p", align, p);
            stamp(p, n, r);
            blk_free(local[li]);
            local[li] = p;
            break;
        }
        case 3:
        case 4:
        case 5: { /* swap through a shared slot: whoever takes it frees it */
            void *p = blk_new(random_size(&rng), r);
            REQUIRE(p, "malloc");
            void *old = atomic_exchange(&slots[(r >> 20) % SLOTS], p);
            blk_free(old);
            swaps++;
            break;
        }
        default: {
            void *p = blk_new(random_size(&rng), r);
            REQUIRE(p, "malloc");
            blk_free(local[li]);
            local[li] = p;
        }
        }
        ops++;
    }
    /* Hand the local blocks to the shared slots: later threads free them. */
    for (int i = 0; i < LOCAL; i++)
        if (local[i]) blk_free(atomic_exchange(&slots[(size_t)(i * 16 + (int)(rng % 16)) % SLOTS],
                                                local[i]));
    atomic_fetch_add(&stress_ops, ops);
    atomic_fetch_add(&stress_remote, swaps);
    atomic_fetch_add(&stress_realloc, reallocs);
    atomic_fetch_add(&stress_calloc, callocs);
    return NULL;
}

static void group_stress(int argc, char **argv) {
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    int threads = argc > 3 ? atoi(argv[3]) : 8;
    REQUIRE(threads > 0 && threads <= 256, "threads");
    double t0 = now_s(), end = t0 + secs;
    int rounds = 0;
    size_t vm, rss, rss_max = 0;
    while (now_s() < end || rounds < 2) {
        stress_round_end = now_s() + 0.3;
        pthread_t t[256];
        for (int i = 0; i < threads; i++)
            REQUIRE(pthread_create(&t[i], NULL, stress_thread,
                                   (void *)(uintptr_t)(rounds * 1000 + i + 1)) == 0,
                    "pthread_create");
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        rounds++;
        statm(&vm, &rss);
        if (rss > rss_max) rss_max = rss;
    }
    for (int i = 0; i < SLOTS; i++) blk_free(atomic_exchange(&slots[i], NULL));
    printf("stress: %d threads, %d rounds, %.1f s: %lu operations, %lu through shared slots, "
           "%lu reallocs, %lu callocs; peak RSS %zu MiB\n",
           threads, rounds, now_s() - t0, atomic_load(&stress_ops), atomic_load(&stress_remote),
           atomic_load(&stress_realloc), atomic_load(&stress_calloc), rss_max / MiB);
    CHECK(atomic_load(&stress_remote) > 1000, "too few cross-thread handoffs");
}

/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    void (*fn)(int, char **);
} GROUPS[] = {
    {"fork", group_fork},
    {"sigfork", group_sigfork},
    {"churn", group_churn},
    {"stress", group_stress},
};

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s <group> [args]|list\n", argv[0]);
        return 64;
    }
    for (size_t i = 0; i < sizeof GROUPS / sizeof GROUPS[0]; i++) {
        if (strcmp(argv[1], "list") == 0) {
            puts(GROUPS[i].name);
            continue;
        }
        if (strcmp(argv[1], GROUPS[i].name) != 0) continue;
        group = GROUPS[i].name;
        GROUPS[i].fn(argc, argv);
        int f = atomic_load(&failures);
        printf("%s %s: %d failed checks\n", f ? "FAILED" : "ok", group, f);
        fflush(NULL);
        return f ? 1 : 0;
    }
    if (strcmp(argv[1], "list") == 0) return 0;
    fprintf(stderr, "unknown group %s\n", argv[1]);
    return 64;
}
