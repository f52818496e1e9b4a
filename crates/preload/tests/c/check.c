/*
 * HAKMEM_CHECK=1 (whole-heap validation on slow paths) under LD_PRELOAD,
 * driven by crates/preload/tests/check.rs.
 *
 *   check workload      tiny, mid and large blocks over 4 threads (local and
 *                       cross-thread frees, realloc, calloc, thread exits);
 *                       prints "ok" and exits 0
 *   check corrupt_link  a write after free into a freed block's link word
 *                       (word 0), the program's bug that only the validator
 *                       catches (see below)
 *
 * corrupt_link frees a 48-byte block (the free fast path puts it in the
 * thread's bin, link in word 0, free mark in word 1), then overwrites its
 * link with the address of a static buffer, as a dangling pointer's write
 * would. No misuse check sees this: the free fast path checked the block
 * when it was freed, and the malloc fast path pops blocks unchecked (the
 * free mark in word 1 is intact, and secure mode, whose canaries would
 * notice, is off). Unchecked, the second malloc(48) hands out the static
 * buffer. With HAKMEM_CHECK=1 the next slow path — the first malloc(3000),
 * whose bin is empty, so it refills — validates the heap first, finds a bin
 * block outside the heap's superslabs and aborts with
 * "hakmem: invariant broken: ...".
 *
 * Protocol (stdout unbuffered, so it survives an abort):
 *   "target 0x<block> link 0x<buffer>"   before the corruption;
 *   "continued"                          after the slow path returned;
 *   "foreign 0x<p>"                      malloc handed out the buffer;
 *   "ok"                                 the end; exit 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "FAIL check:%d: %s: ", __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

#define THREADS 4
#define SLOTS 2048

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t size_for(uint64_t r) {
    switch (r % 16) {
    case 0: return 40000 + r % 200000;     /* mid, beyond 32 KiB */
    case 1: return 300000 + r % 2000000;   /* large */
    case 2: case 3: return 1025 + r % 30000; /* mid */
    default: return 1 + r % 1024;          /* tiny */
    }
}

static void fill(unsigned char *p, size_t n, unsigned char v) {
    memset(p, v, n < 64 ? n : 64);
}

static void verify(const unsigned char *p, size_t n, unsigned char v) {
    for (size_t i = 0; i < (n < 64 ? n : 64); i++)
        CHECK(p[i] == v, "block %p byte %zu changed", (void *)p, i);
}

/* Blocks handed between threads: freed by whoever finds them. */
static void *_Atomic handoff[THREADS * 64];

static void *work(void *arg) {
    uint64_t s = 0x9E3779B97F4A7C15ull * ((uintptr_t)arg + 1);
    unsigned char *live[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    for (int round = 0; round < 20000; round++) {
        uint64_t r = next(&s);
        size_t i = r % SLOTS;
        if (live[i]) {
            verify(live[i], len[i], (unsigned char)i);
            switch ((r >> 20) % 4) {
            case 0: { /* realloc */
                size_t n = size_for(next(&s));
                unsigned char *q = realloc(live[i], n);
                CHECK(q != NULL, "realloc %zu", n);
                size_t keep = n < len[i] ? n : len[i];
                verify(q, keep, (unsigned char)i);
                fill(q, n, (unsigned char)i);
                live[i] = q;
                len[i] = n;
                continue;
            }
            case 1: { /* hand over to another thread */
                size_t h = (r >> 24) % (THREADS * 64);
                void *old = atomic_exchange(&handoff[h], live[i]);
                free(old);
                break;
            }
            default:
                free(live[i]);
            }
            live[i] = NULL;
        } else {
            size_t n = size_for(next(&s));
            unsigned char *p = (r >> 30) % 8 == 0 ? calloc(1, n) : malloc(n);
            CHECK(p != NULL, "malloc %zu", n);
            if ((r >> 30) % 8 == 0)
                for (size_t k = 0; k < (n < 64 ? n : 64); k++) CHECK(p[k] == 0, "calloc");
            fill(p, n, (unsigned char)i);
            live[i] = p;
            len[i] = n;
        }
    }
    for (size_t i = 0; i < SLOTS; i++) free(live[i]);
    return NULL;
}

static int workload(void) {
    for (int gen = 0; gen < 3; gen++) {
        pthread_t t[THREADS];
        for (uintptr_t k = 0; k < THREADS; k++)
            CHECK(pthread_create(&t[k], NULL, work, (void *)(k + gen * THREADS)) == 0, "create");
        for (int k = 0; k < THREADS; k++) pthread_join(t[k], NULL);
    }
    for (size_t h = 0; h < THREADS * 64; h++) free(atomic_exchange(&handoff[h], NULL));
    work((void *)99);
    printf("ok\n");
    return 0;
}

static unsigned char buffer[64] __attribute__((aligned(64)));

static int corrupt_link(void) {
    void *volatile p = malloc(48);
    CHECK(p != NULL, "malloc");
    free(p);
    printf("target %p link %p\n", p, (void *)buffer);
    /* the write after free: the freed block's link now leads out of the heap */
    *(void *volatile *)p = buffer;
    void *m = malloc(3000);
    printf("continued\n");
    /* compared as laundered integers: malloc's attribute lets gcc fold a
     * comparison of its result with a static object's address to false */
    uintptr_t a = (uintptr_t)malloc(48), b = (uintptr_t)malloc(48);
    uintptr_t buf = (uintptr_t)buffer;
    __asm__ volatile("" : "+r"(a), "+r"(b), "+r"(buf));
    if (a == buf || b == buf) printf("foreign %p\n", (void *)buf);
    (void)m;
    printf("ok\n");
    /* the bin is broken: leave without another allocator call */
    _exit(0);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 2 && strcmp(argv[1], "workload") == 0) return workload();
    if (argc == 2 && strcmp(argv[1], "corrupt_link") == 0) return corrupt_link();
    fprintf(stderr, "usage: %s workload|corrupt_link\n", argv[0]);
    return 2;
}
