/*
 * C/POSIX conformance checks for libhakmem.so, run under LD_PRELOAD by
 * crates/preload/tests/c_api.rs (one process per group).
 *
 *   conformance <group>      run one group of checks
 *   conformance list         print the group names
 *
 * Every failed check prints "FAIL <group>:<line>: ..." on stderr; the process
 * exits 1 if any check failed (2 if the allocator in use is not the one that
 * was expected, 3 if a destructor-time check failed).
 *
 * HAKMEM_EXPECT=1 means "hakmem must be the allocator in use": before any
 * group runs, every allocation entry point must resolve (dlsym RTLD_DEFAULT,
 * then dladdr) into a library whose file name is libhakmem.so, otherwise the
 * process exits 2 with a loud message: we never silently test glibc. It also
 * turns the DECIDED checks (hakmem's documented choices where glibc 2.36
 * behaves differently, e.g. aligned_alloc(3, n)) from notes into failures.
 *
 * HAKMEM_TLSLIB names the shared library used by the dlopen_tls group.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Reporting                                                                */
/* ------------------------------------------------------------------------ */

static const char *group = "?";
static atomic_int failures;
static atomic_long checks;
static int notes;
static int strict; /* HAKMEM_EXPECT=1: hakmem must be the allocator */

static void report(int line, const char *kind, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#include <stdarg.h>
/* At most REPORTS_PER_LINE messages per check site, so a systematic bug does
 * not drown the rest. */
enum { MAX_LINES = 4096, REPORTS_PER_LINE = 5 };
static atomic_int reports_at[MAX_LINES];

static void report(int line, const char *kind, const char *cond, const char *fmt, ...) {
    int seen = atomic_fetch_add(&reports_at[line % MAX_LINES], 1);
    if (seen > REPORTS_PER_LINE) return;
    if (seen == REPORTS_PER_LINE) {
        fprintf(stderr, "%s %s:%d: (further reports from this line suppressed)\n", kind, group,
                line);
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s %s:%d: %s: %s\n", kind, group, line, cond, msg);
}

/* A check that must hold for hakmem and for glibc alike. */
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        atomic_fetch_add(&checks, 1);                                          \
        if (!(cond)) {                                                         \
            atomic_fetch_add(&failures, 1);                                    \
            report(__LINE__, "FAIL", #cond, __VA_ARGS__);                      \
        }                                                                      \
    } while (0)

/* A check whose failure leaves nothing sensible to test: stop the group. */
#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        atomic_fetch_add(&checks, 1);                                          \
        if (!(cond)) {                                                         \
            report(__LINE__, "FAIL(fatal)", #cond, __VA_ARGS__);               \
            fflush(NULL);                                                      \
            _exit(1);                                                          \
        }                                                                      \
    } while (0)

/*
 * One of hakmem's documented decisions where glibc 2.36 differs: a failure
 * when hakmem is the allocator (strict), a note otherwise.
 */
#define DECIDED(cond, ...)                                                     \
    do {                                                                       \
        atomic_fetch_add(&checks, 1);                                          \
        if (!(cond)) {                                                         \
            if (strict) {                                                      \
                atomic_fetch_add(&failures, 1);                                \
                report(__LINE__, "FAIL", #cond, __VA_ARGS__);                  \
            } else {                                                           \
                notes++;                                                       \
                report(__LINE__, "NOTE(not hakmem; hakmem decides otherwise)", \
                       #cond, __VA_ARGS__);                                    \
            }                                                                  \
        }                                                                      \
    } while (0)

/* Keeps the compiler from folding a size into a known constant. */
static size_t opaque(size_t x) {
    __asm__ volatile("" : "+r"(x));
    return x;
}

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define OVER_PTRDIFF ((size_t)PTRDIFF_MAX + 1)
/* Below PTRDIFF_MAX but beyond any 47/57-bit address space. */
#define HUGE_REQUEST ((size_t)1 << 58)

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static int is_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (size_t)resident * page_size();
}

/* ------------------------------------------------------------------------ */
/* Patterns and PRNG                                                        */
/* ------------------------------------------------------------------------ */

static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/*
 * The pattern of a block: byte i is byte i % 8 (little endian) of word i / 8,
 * so that 8-aligned blocks are filled and checked a word at a time.
 */
static inline uint64_t pat_word(uint64_t seed, size_t k) {
    return (seed ^ 0x5DEECE66DULL) + (uint64_t)k * 0x9E3779B97F4A7C15ULL;
}

static inline unsigned char pat(uint64_t seed, size_t i) {
    return (unsigned char)(pat_word(seed, i / 8) >> (8 * (i % 8)));
}

static void fill(void *p, size_t n, uint64_t seed) {
    unsigned char *b = p;
    size_t i = 0;
    if (((uintptr_t)b & 7) == 0) {
        uint64_t *w = p;
        for (; i + 8 <= n; i += 8) w[i / 8] = pat_word(seed, i / 8);
    }
    for (; i < n; i++) b[i] = pat(seed, i);
}

/* Index of the first byte that does not match, or SIZE_MAX. */
static size_t mismatch(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    size_t i = 0;
    if (((uintptr_t)b & 7) == 0) {
        const uint64_t *w = p;
        for (; i + 8 <= n; i += 8)
            if (w[i / 8] != pat_word(seed, i / 8)) break;
    }
    for (; i < n; i++)
        if (b[i] != pat(seed, i)) return i;
    return SIZE_MAX;
}

static size_t first_nonzero(const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    if (((uintptr_t)b & 7) == 0) {
        const uint64_t *w = p;
        for (; i + 8 <= n; i += 8)
            if (w[i / 8] != 0) break;
    }
    for (; i < n; i++)
        if (b[i] != 0) return i;
    return SIZE_MAX;
}

/*
 * Blocks that carry their own size and seed in the first 16 bytes, so that
 * whichever thread frees them can check their contents.
 */
struct blk_hdr {
    size_t n;
    uint64_t seed;
};

static void *blk_new(size_t n, uint64_t seed) {
    if (n < sizeof(struct blk_hdr)) n = sizeof(struct blk_hdr);
    struct blk_hdr *h = malloc(n);
    if (!h) return NULL;
    h->n = n;
    h->seed = seed;
    fill(h + 1, n - sizeof *h, seed);
    return h;
}

static void blk_free(void *p) {
    if (!p) return;
    struct blk_hdr *h = p;
    size_t n = h->n;
    size_t bad = mismatch(h + 1, n - sizeof *h, h->seed);
    CHECK(bad == SIZE_MAX, "block %p of %zu bytes corrupted at byte %zu before free", p, n,
          bad + sizeof *h);
    CHECK(malloc_usable_size(p) >= n, "usable size %zu < %zu", malloc_usable_size(p), n);
    free(p);
}

/* Sizes that cross every tier boundary hakmem has (and glibc's). */
static const size_t SIZES[] = {
    0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 40, 47, 48, 63, 64, 65, 80, 96,
    100, 127, 128, 129, 200, 255, 256, 257, 384, 511, 512, 513, 768, 1000, 1023, 1024, 1025,
    1536, 2047, 2048, 2049, 3000, 4095, 4096, 4097, 8191, 8192, 8193, 12288, 16383, 16384,
    16385, 32767, 32768, 32769, 65535, 65536, 65537, 100000, 131071, 131072, 131073, 200000,
    262144, 500000, 1048575, 1048576, 1048577, 2 * 1048576 - 1, 2 * 1048576, 2 * 1048576 + 1,
    3 * 1048576 + 5, 4 * 1048576, 8 * 1048576 + 1, 16 * 1048576 + 3,
};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

static size_t pow2_floor(size_t n) {
    size_t p = 1;
    while (p <= n / 2) p <<= 1;
    return p;
}

/* ------------------------------------------------------------------------ */
/* Which allocator is in use?                                               */
/* ------------------------------------------------------------------------ */

static const char *const ENTRY_POINTS[] = {
    "malloc",        "free",           "calloc",   "realloc",
    "reallocarray",  "posix_memalign", "aligned_alloc", "memalign",
    "valloc",        "pvalloc",        "malloc_usable_size", "free_sized",
    "free_aligned_sized", "cfree",
};
#define NENTRY (sizeof ENTRY_POINTS / sizeof ENTRY_POINTS[0])

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Library that `name` resolves to for this process, or NULL if undefined. */
static const char *resolves_to(const char *name) {
    void *sym = dlsym(RTLD_DEFAULT, name);
    if (!sym) return NULL;
    Dl_info info;
    memset(&info, 0, sizeof info);
    if (!dladdr(sym, &info) || !info.dli_fname) return "(unknown object)";
    return info.dli_fname[0] ? info.dli_fname : "(main program)";
}

static int is_hakmem_path(const char *path) {
    return path && strcmp(base_name(path), "libhakmem.so") == 0;
}

static int find_loaded(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    if (is_hakmem_path(info->dlpi_name)) {
        *(const char **)data = info->dlpi_name;
        return 1;
    }
    return 0;
}

/*
 * Returns 1 if every entry point resolves into libhakmem.so. With `verbose`
 * prints where each one resolves.
 */
static int hakmem_in_use(int verbose) {
    const char *loaded = NULL;
    dl_iterate_phdr(find_loaded, &loaded);
    if (verbose) printf("libhakmem.so loaded: %s\n", loaded ? loaded : "NO");
    int all = 1;
    for (size_t i = 0; i < NENTRY; i++) {
        const char *lib = resolves_to(ENTRY_POINTS[i]);
        int ok = is_hakmem_path(lib);
        all &= ok;
        if (verbose || !ok)
            fprintf(verbose ? stdout : stderr, "  %-20s -> %s%s\n", ENTRY_POINTS[i],
                    lib ? lib : "(undefined)", ok ? "" : "   <-- not libhakmem.so");
    }
    if (!all) {
        if (!loaded)
            fprintf(stderr,
                    "libhakmem.so is not loaded in this process: the LD_PRELOAD did not take "
                    "(LD_PRELOAD=%s)\n",
                    getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "(unset)");
        else
            fprintf(stderr,
                    "libhakmem.so (%s) is loaded but does not provide the entry points above\n",
                    loaded);
    }
    return all;
}

static void expect_hakmem(void) {
    if (hakmem_in_use(0)) return;
    fprintf(stderr,
            "\n*** HAKMEM_EXPECT=1 but the allocator in use is not hakmem: refusing to test "
            "glibc by mistake. ***\n\n");
    fflush(NULL);
    _exit(2);
}

/* Optional entry points: glibc 2.36 has neither free_sized nor a linkable cfree. */
typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);
typedef void (*cfree_fn)(void *);

static void *optional_entry(const char *name) {
    void *f = dlsym(RTLD_DEFAULT, name);
    if (!f) {
        /* strict mode has already checked that they exist */
        printf("skip: %s is not provided by the allocator in use\n", name);
    }
    return f;
}

static void group_loaded(void) {
    strict = 1;
    int ok = hakmem_in_use(1);
    REQUIRE(ok, "the allocator in use is not libhakmem.so (see above)");
    /* And the calls really go there: a pointer from malloc is known to hakmem. */
    void *p = malloc(opaque(100));
    REQUIRE(p != NULL, "malloc(100) failed");
    CHECK(malloc_usable_size(p) >= 100, "usable %zu", malloc_usable_size(p));
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Before main                                                              */
/* ------------------------------------------------------------------------ */

static void *ctor_early, *ctor_zeroed, *ctor_grown, *ctor_aligned;
static size_t ctor_early_usable;
static int ctor_failed;
static void *dtor_block;

__attribute__((constructor(101))) static void allocate_before_main(void) {
    /* Runs before main and before lower-priority constructors. */
    ctor_early = malloc(opaque(100));
    if (!ctor_early) {
        ctor_failed = __LINE__;
        return;
    }
    ctor_early_usable = malloc_usable_size(ctor_early);
    fill(ctor_early, ctor_early_usable, 101);
    ctor_zeroed = calloc(opaque(10), 100);
    if (!ctor_zeroed || first_nonzero(ctor_zeroed, 1000) != SIZE_MAX) ctor_failed = __LINE__;
    ctor_grown = malloc(opaque(10));
    if (!ctor_grown) {
        ctor_failed = __LINE__;
        return;
    }
    fill(ctor_grown, 10, 7);
    ctor_grown = realloc(ctor_grown, opaque(50000));
    if (!ctor_grown || mismatch(ctor_grown, 10, 7) != SIZE_MAX) ctor_failed = __LINE__;
    void *tmp = malloc(opaque(33));
    free(tmp);
    if (posix_memalign(&ctor_aligned, 4096, 5000) != 0 || !is_aligned(ctor_aligned, 4096))
        ctor_failed = __LINE__;
}

__attribute__((constructor)) static void allocate_before_main_late(void) {
    void *blocks[64];
    for (int i = 0; i < 64; i++) blocks[i] = malloc(opaque((size_t)i * 37));
    for (int i = 0; i < 64; i += 2) free(blocks[i]);
    for (int i = 1; i < 64; i += 2) free(blocks[i]);
}

static void at_exit_allocates(void) {
    void *p = malloc(opaque(1000));
    if (!p) _exit(3);
    memset(p, 1, 1000);
    free(p);
}

__attribute__((destructor)) static void free_after_main(void) {
    if (!dtor_block) return;
    if (mismatch(dtor_block, 4000, 99) != SIZE_MAX) {
        fprintf(stderr, "FAIL ctor: block freed in a destructor was corrupted\n");
        _exit(3);
    }
    free(dtor_block);
    void *p = calloc(opaque(100), 100);
    if (!p || first_nonzero(p, 10000) != SIZE_MAX) _exit(3);
    free(p);
}

static void group_ctor(void) {
    CHECK(ctor_failed == 0, "an allocation in a constructor failed (line %d)", ctor_failed);
    REQUIRE(ctor_early && ctor_zeroed && ctor_grown && ctor_aligned, "constructor blocks missing");
    CHECK(malloc_usable_size(ctor_early) == ctor_early_usable,
          "usable size of a pre-main block changed: %zu -> %zu", ctor_early_usable,
          malloc_usable_size(ctor_early));
    CHECK(mismatch(ctor_early, ctor_early_usable, 101) == SIZE_MAX, "pre-main block corrupted");
    CHECK(mismatch(ctor_grown, 10, 7) == SIZE_MAX, "pre-main realloc'd block corrupted");
    ctor_grown = realloc(ctor_grown, opaque(20));
    CHECK(ctor_grown && mismatch(ctor_grown, 10, 7) == SIZE_MAX, "realloc of a pre-main block");
    free(ctor_early);
    free(ctor_zeroed);
    free(ctor_grown);
    free(ctor_aligned);
    dtor_block = malloc(opaque(4000));
    REQUIRE(dtor_block, "malloc(4000)");
    fill(dtor_block, 4000, 99);
    CHECK(atexit(at_exit_allocates) == 0, "atexit");
}

/* ------------------------------------------------------------------------ */
/* malloc, free, calloc basics                                              */
/* ------------------------------------------------------------------------ */

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static void group_basic(void) {
    /* malloc(0): a unique, freeable, non-NULL pointer. */
    enum { N0 = 1000 };
    static void *zero[N0];
    for (int i = 0; i < N0; i++) {
        zero[i] = malloc(opaque(0));
        REQUIRE(zero[i] != NULL, "malloc(0) returned NULL (#%d)", i);
    }
    void *sorted[N0];
    memcpy(sorted, zero, sizeof sorted);
    qsort(sorted, N0, sizeof sorted[0], cmp_ptr);
    for (int i = 1; i < N0; i++)
        CHECK(sorted[i] != sorted[i - 1], "malloc(0) returned %p twice", sorted[i]);
    for (int i = 0; i < N0; i++) free(zero[i]);

    /* calloc with a zero count or size behaves like malloc(0). */
    void *c1 = calloc(opaque(0), 16), *c2 = calloc(16, opaque(0)), *c3 = calloc(opaque(0), 0);
    CHECK(c1 && c2 && c3, "calloc with a zero factor returned NULL: %p %p %p", c1, c2, c3);
    CHECK(c1 != c2 && c2 != c3 && c1 != c3, "calloc(0,...) pointers not unique");
    free(c1);
    free(c2);
    free(c3);

    /* free(NULL) is a no-op and keeps errno. */
    errno = 4242;
    free(NULL);
    CHECK(errno == 4242, "free(NULL) changed errno to %d", errno);

    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu",
          malloc_usable_size(NULL));

    /* Usable size >= request, alignment, whole usable size writable, no overlap. */
    static void *live[NSIZES * 4];
    static size_t usable[NSIZES * 4];
    size_t nlive = 0;
    for (int rep = 0; rep < 4; rep++) {
        for (size_t i = 0; i < NSIZES; i++) {
            size_t n = SIZES[i];
            if (rep > 0 && n > MiB) continue; /* keep RSS modest */
            void *p = malloc(opaque(n));
            REQUIRE(p != NULL, "malloc(%zu) returned NULL", n);
            size_t u = malloc_usable_size(p);
            CHECK(u >= n, "malloc(%zu): usable size %zu", n, u);
            if (n > 0) {
                size_t a = pow2_floor(n) < 16 ? pow2_floor(n) : 16;
                CHECK(is_aligned(p, a), "malloc(%zu) = %p is not %zu-aligned", n, p, a);
            }
            fill(p, u, (uint64_t)nlive * 977 + 1);
            live[nlive] = p;
            usable[nlive] = u;
            nlive++;
        }
    }
    /* Churn around the live blocks, then check them. */
    for (int i = 0; i < 2000; i++) free(malloc(opaque((size_t)(i * 7919) % 70000)));
    for (size_t i = 0; i < nlive; i++) {
        CHECK(malloc_usable_size(live[i]) == usable[i],
              "usable size of a live block changed: %zu -> %zu", usable[i],
              malloc_usable_size(live[i]));
        size_t bad = mismatch(live[i], usable[i], (uint64_t)i * 977 + 1);
        CHECK(bad == SIZE_MAX,
              "block %p (usable %zu) was overwritten at byte %zu: blocks overlap or the usable "
              "size is not really usable",
              live[i], usable[i], bad);
    }
    for (size_t i = 0; i < nlive; i++) {
        errno = 777;
        free(live[i]);
        CHECK(errno == 777, "free of a %zu-byte block changed errno to %d", usable[i], errno);
    }

    /* realloc(NULL, n) is malloc(n). */
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = SIZES[i];
        void *p = realloc(NULL, opaque(n));
        REQUIRE(p != NULL, "realloc(NULL, %zu) returned NULL", n);
        CHECK(malloc_usable_size(p) >= n, "realloc(NULL, %zu): usable %zu", n,
              malloc_usable_size(p));
        fill(p, n, n);
        CHECK(mismatch(p, n, n) == SIZE_MAX, "realloc(NULL, %zu) block not writable", n);
        free(p);
    }

    /* The usual C idioms. */
    char *s = strdup("hakmem says hello");
    REQUIRE(s, "strdup");
    CHECK(strcmp(s, "hakmem says hello") == 0, "strdup content");
    free(s);
    char *a = NULL;
    CHECK(asprintf(&a, "%d-%s", 42, "x") == 4 && a && strcmp(a, "42-x") == 0, "asprintf");
    free(a);
}

/* ------------------------------------------------------------------------ */
/* errno, ENOMEM, overflow                                                  */
/* ------------------------------------------------------------------------ */

#define EXPECT_ENOMEM(expr, what)                                                             \
    do {                                                                                      \
        errno = 0;                                                                            \
        void *r_ = (expr);                                                                    \
        int e_ = errno;                                                                       \
        CHECK(r_ == NULL, "%s returned %p instead of NULL", what, r_);                        \
        CHECK(e_ == ENOMEM, "%s: errno %d (%s), expected ENOMEM", what, e_, strerror(e_));    \
        if (r_) free(r_);                                                                     \
    } while (0)

static void group_errno(void) {
    /* Requests above PTRDIFF_MAX, and requests no address space can hold. */
    EXPECT_ENOMEM(malloc(opaque(OVER_PTRDIFF)), "malloc(PTRDIFF_MAX + 1)");
    EXPECT_ENOMEM(malloc(opaque(SIZE_MAX)), "malloc(SIZE_MAX)");
    EXPECT_ENOMEM(malloc(opaque(SIZE_MAX - 4096)), "malloc(SIZE_MAX - 4096)");
    EXPECT_ENOMEM(malloc(opaque(HUGE_REQUEST)), "malloc(1 << 58)");
    EXPECT_ENOMEM(malloc(opaque(PTRDIFF_MAX)), "malloc(PTRDIFF_MAX)");
    /* ... right after a free (glibc's tst-malloc-too-large). */
    free(malloc(opaque(100)));
    EXPECT_ENOMEM(malloc(opaque(OVER_PTRDIFF)), "malloc(PTRDIFF_MAX + 1) after a free");
    free(malloc(opaque(4 * MiB)));
    EXPECT_ENOMEM(malloc(opaque(OVER_PTRDIFF + 4096)), "malloc(PTRDIFF_MAX + 4097) after free");

    /* calloc: nmemb * size overflow, and products above PTRDIFF_MAX. */
    EXPECT_ENOMEM(calloc(opaque(SIZE_MAX / 2 + 1), 2), "calloc(SIZE_MAX/2 + 1, 2)");
    EXPECT_ENOMEM(calloc(2, opaque(SIZE_MAX / 2 + 1)), "calloc(2, SIZE_MAX/2 + 1)");
    EXPECT_ENOMEM(calloc(opaque((size_t)1 << 32), (size_t)1 << 32), "calloc(2^32, 2^32)");
    EXPECT_ENOMEM(calloc(opaque(SIZE_MAX), opaque(SIZE_MAX)), "calloc(SIZE_MAX, SIZE_MAX)");
    EXPECT_ENOMEM(calloc(opaque(((size_t)1 << 32) + 1), ((size_t)1 << 32) + 1),
                  "calloc(2^32 + 1, 2^32 + 1) (wraps to 8 GiB + 1 if unchecked)");
    EXPECT_ENOMEM(calloc(opaque(((size_t)1 << 63) + 1), 2),
                  "calloc(2^63 + 1, 2) (wraps to 2 bytes if unchecked)");
    EXPECT_ENOMEM(calloc(1, opaque(OVER_PTRDIFF)), "calloc(1, PTRDIFF_MAX + 1)");
    EXPECT_ENOMEM(calloc(opaque(PTRDIFF_MAX / 2 + 1), 2), "calloc(PTRDIFF_MAX/2 + 1, 2)");

    /* realloc / reallocarray failures leave the old block intact. */
    size_t n = 300;
    unsigned char *p = malloc(opaque(n));
    REQUIRE(p, "malloc(300)");
    size_t u = malloc_usable_size(p);
    fill(p, u, 55);
    struct {
        const char *what;
        size_t a, b; /* b == 0: realloc(p, a); else reallocarray(p, a, b) */
    } bad[] = {
        {"realloc(p, PTRDIFF_MAX + 1)", OVER_PTRDIFF, 0},
        {"realloc(p, SIZE_MAX)", SIZE_MAX, 0},
        {"realloc(p, SIZE_MAX - 8)", SIZE_MAX - 8, 0},
        {"realloc(p, 1 << 58)", HUGE_REQUEST, 0},
        {"reallocarray(p, SIZE_MAX/2 + 1, 2)", SIZE_MAX / 2 + 1, 2},
        {"reallocarray(p, 2^32 + 1, 2^32 + 1)", ((size_t)1 << 32) + 1, ((size_t)1 << 32) + 1},
        {"reallocarray(p, 2^63 + 1, 2) (wraps to 2)", ((size_t)1 << 63) + 1, 2},
        {"reallocarray(p, PTRDIFF_MAX/4 + 1, 4)", PTRDIFF_MAX / 4 + 1, 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *r = bad[i].b ? reallocarray(p, opaque(bad[i].a), opaque(bad[i].b))
                           : realloc(p, opaque(bad[i].a));
        int e = errno;
        CHECK(r == NULL, "%s returned %p", bad[i].what, r);
        CHECK(e == ENOMEM, "%s: errno %d (%s), expected ENOMEM", bad[i].what, e, strerror(e));
        if (r) {
            p = r; /* keep the test going */
            u = malloc_usable_size(p);
            fill(p, u, 55);
            continue;
        }
        CHECK(malloc_usable_size(p) == u, "%s changed the old block's usable size %zu -> %zu",
              bad[i].what, u, malloc_usable_size(p));
        CHECK(mismatch(p, u, 55) == SIZE_MAX, "%s corrupted the old block", bad[i].what);
    }
    /* The old block still works. */
    unsigned char *q = reallocarray(p, opaque(10), 100);
    REQUIRE(q, "reallocarray(p, 10, 100) after failures");
    CHECK(mismatch(q, u < 1000 ? u : 1000, 55) == SIZE_MAX, "reallocarray lost the contents");
    free(q);

    /* Aligned entry points. */
    EXPECT_ENOMEM(aligned_alloc(64, opaque(OVER_PTRDIFF)), "aligned_alloc(64, PTRDIFF_MAX + 1)");
    EXPECT_ENOMEM(aligned_alloc(4096, opaque(SIZE_MAX - 100)), "aligned_alloc(4096, SIZE_MAX-100)");
    EXPECT_ENOMEM(memalign(4096, opaque(SIZE_MAX - 4095)), "memalign(4096, SIZE_MAX - 4095)");
    EXPECT_ENOMEM(memalign(64, opaque(HUGE_REQUEST)), "memalign(64, 1 << 58)");
    EXPECT_ENOMEM(valloc(opaque(SIZE_MAX)), "valloc(SIZE_MAX)");
    EXPECT_ENOMEM(valloc(opaque(OVER_PTRDIFF)), "valloc(PTRDIFF_MAX + 1)");
    EXPECT_ENOMEM(pvalloc(opaque(SIZE_MAX - 100)), "pvalloc(SIZE_MAX - 100) (page rounding overflows)");
    EXPECT_ENOMEM(pvalloc(opaque(OVER_PTRDIFF)), "pvalloc(PTRDIFF_MAX + 1)");
    /* posix_memalign returns ENOMEM and, as glibc and tcmalloc do, also
     * leaves errno == ENOMEM; *memptr is untouched. */
    void *sentinel = (void *)0x1234;
    const struct {
        size_t align, size;
        const char *what;
    } pm_fail[] = {
        {64, SIZE_MAX, "posix_memalign(64, SIZE_MAX)"},
        {4096, OVER_PTRDIFF, "posix_memalign(4096, PTRDIFF_MAX + 1)"},
        {(size_t)1 << 62, 1, "posix_memalign(1 << 62, 1)"},
        {(size_t)1 << 63, 1, "posix_memalign(1 << 63, 1)"},
        {64, HUGE_REQUEST, "posix_memalign(64, 1 << 58)"},
    };
    for (size_t i = 0; i < sizeof pm_fail / sizeof pm_fail[0]; i++) {
        void *m = sentinel;
        errno = 0;
        int rc = posix_memalign(&m, opaque(pm_fail[i].align), opaque(pm_fail[i].size));
        int e = errno;
        CHECK(rc == ENOMEM, "%s returned %d, expected ENOMEM", pm_fail[i].what, rc);
        CHECK(e == ENOMEM, "%s left errno %d (%s), expected ENOMEM as glibc does",
              pm_fail[i].what, e, strerror(e));
        CHECK(m == sentinel, "%s modified *memptr on failure", pm_fail[i].what);
        if (rc == 0 && m != sentinel) free(m);
    }
    /* Success leaves errno as it was. */
    {
        void *m = sentinel;
        errno = EBADF;
        int rc = posix_memalign(&m, opaque(64), 100);
        CHECK(rc == 0 && m != sentinel, "posix_memalign(64, 100) returned %d", rc);
        CHECK(errno == EBADF, "a successful posix_memalign changed errno EBADF -> %d", errno);
        if (rc == 0) free(m);
    }

    /* After all those failures the allocator still works. */
    for (size_t i = 0; i < NSIZES; i++) {
        void *r = malloc(opaque(SIZES[i]));
        REQUIRE(r, "malloc(%zu) after failures", SIZES[i]);
        free(r);
    }

    /* free preserves errno, for every tier and every errno value. */
    int values[] = {0, EINVAL, ENOMEM, EBADF, EAGAIN, 9999};
    for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
        for (size_t i = 0; i < NSIZES; i++) {
            void *r = malloc(opaque(SIZES[i]));
            REQUIRE(r, "malloc(%zu)", SIZES[i]);
            errno = values[v];
            free(r);
            CHECK(errno == values[v], "free of a malloc(%zu) block changed errno %d -> %d",
                  SIZES[i], values[v], errno);
        }
        void *r = aligned_alloc(opaque(2 * MiB), 5 * MiB);
        REQUIRE(r, "aligned_alloc(2 MiB, 5 MiB)");
        errno = values[v];
        free(r);
        CHECK(errno == values[v], "free of an aligned block changed errno %d -> %d", values[v],
              errno);
        errno = values[v];
        free(NULL);
        CHECK(errno == values[v], "free(NULL) changed errno %d -> %d", values[v], errno);
    }
}

/* ------------------------------------------------------------------------ */
/* Alignment entry points                                                   */
/* ------------------------------------------------------------------------ */

static void check_aligned_block(const char *fn, void *p, size_t align, size_t n) {
    REQUIRE(p != NULL, "%s(align %zu, %zu) returned NULL (errno %d)", fn, align, n, errno);
    CHECK(is_aligned(p, align), "%s(align %zu, %zu) = %p is misaligned", fn, align, n, p);
    size_t u = malloc_usable_size(p);
    CHECK(u >= n, "%s(align %zu, %zu): usable size %zu", fn, align, n, u);
    fill(p, u, align + n);
    /* A neighbour must not land inside it. */
    void *nb = malloc(opaque(64));
    REQUIRE(nb, "malloc(64)");
    fill(nb, 64, 3);
    CHECK(mismatch(p, u, align + n) == SIZE_MAX, "%s(align %zu, %zu) block overlaps", fn, align,
          n);
    CHECK(malloc_usable_size(p) == u, "usable size not stable");
    free(nb);
}

static void group_align(void) {
    const size_t ps = page_size();
    void *sentinel = (void *)0x5eed;

    /* posix_memalign: EINVAL unless a power of two multiple of sizeof(void *). */
    size_t bad_pm[] = {0, 1, 2, 3, 4, 7, 9, 12, 24, 48, 96, 4095, 4097, 3 * 4096,
                       ((size_t)1 << 20) + 8, SIZE_MAX, SIZE_MAX / 2, ((size_t)1 << 63) + 8};
    for (size_t i = 0; i < sizeof bad_pm / sizeof bad_pm[0]; i++) {
        void *m = sentinel;
        errno = 9999;
        int rc = posix_memalign(&m, opaque(bad_pm[i]), 64);
        int e = errno;
        CHECK(rc == EINVAL, "posix_memalign(align %zu) returned %d, expected EINVAL", bad_pm[i],
              rc);
        /* glibc returns EINVAL without touching errno; so does hakmem */
        CHECK(e == 9999, "posix_memalign(align %zu) changed errno 9999 -> %d on EINVAL", bad_pm[i],
              e);
        CHECK(m == sentinel, "posix_memalign(align %zu) modified *memptr on EINVAL", bad_pm[i]);
        if (rc == 0 && m != sentinel) free(m);
    }

    /* aligned_alloc: alignment 0 or not a power of two -> NULL, EINVAL. */
    size_t bad_aa[] = {0, 3, 5, 6, 12, 24, 48, 100, 4095, 3 * 4096, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_aa / sizeof bad_aa[0]; i++) {
        errno = 0;
        void *r = aligned_alloc(opaque(bad_aa[i]), 64);
        int e = errno;
        DECIDED(r == NULL && e == EINVAL,
                "aligned_alloc(%zu, 64) returned %p with errno %d, expected NULL and EINVAL",
                bad_aa[i], r, e);
        if (r) free(r);
    }

    /* Every power of two up to 64 MiB is honoured. */
    for (size_t align = 1; align <= 64 * MiB; align <<= 1) {
        size_t sizes[] = {1, align + 1, align > 1 ? align - 1 : 1, align, 3 * align + 5, 100};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k];
            if (align >= 8 * MiB && k >= 2) continue; /* keep big alignments cheap */
            if (align >= sizeof(void *)) {
                void *m = sentinel;
                int rc = posix_memalign(&m, opaque(align), n);
                CHECK(rc == 0, "posix_memalign(%zu, %zu) returned %d", align, n, rc);
                if (rc == 0) {
                    check_aligned_block("posix_memalign", m, align, n);
                    free(m);
                }
            }
            errno = 0;
            void *a = aligned_alloc(opaque(align), n);
            check_aligned_block("aligned_alloc", a, align, n);
            free(a);
            void *mm = memalign(opaque(align), n);
            check_aligned_block("memalign", mm, align, n);
            free(mm);
        }
    }

    /* Many live aligned blocks at once: no overlap, all aligned. */
    enum { NA = 300 };
    static void *blocks[NA];
    static size_t al[NA], us[NA];
    uint64_t rng = 12345;
    for (int i = 0; i < NA; i++) {
        al[i] = (size_t)16 << (rng_next(&rng) % 10); /* 16 .. 8 KiB */
        size_t n = 1 + rng_next(&rng) % 5000;
        blocks[i] = aligned_alloc(opaque(al[i]), n);
        REQUIRE(blocks[i] && is_aligned(blocks[i], al[i]), "aligned_alloc(%zu, %zu)", al[i], n);
        us[i] = malloc_usable_size(blocks[i]);
        CHECK(us[i] >= n, "usable %zu < %zu", us[i], n);
        fill(blocks[i], us[i], (uint64_t)i);
    }
    for (int i = 0; i < NA; i++) {
        CHECK(mismatch(blocks[i], us[i], (uint64_t)i) == SIZE_MAX, "aligned block %d overlaps",
              i);
        /* realloc of an aligned block keeps its contents */
        void *r = realloc(blocks[i], opaque(us[i] + 1000));
        REQUIRE(r, "realloc of an aligned block");
        CHECK(mismatch(r, us[i], (uint64_t)i) == SIZE_MAX, "realloc of aligned block %d lost data",
              i);
        free(r);
    }

    /* valloc: page aligned. pvalloc: page aligned, size rounded up to a page. */
    size_t vsizes[] = {1, 100, ps - 1, ps, ps + 1, 3 * ps + 17, MiB + 1, 5 * MiB};
    for (size_t i = 0; i < sizeof vsizes / sizeof vsizes[0]; i++) {
        size_t n = vsizes[i];
        void *v = valloc(opaque(n));
        check_aligned_block("valloc", v, ps, n);
        free(v);
        size_t rounded = (n + ps - 1) / ps * ps;
        void *pv = pvalloc(opaque(n));
        check_aligned_block("pvalloc", pv, ps, rounded);
        memset(pv, 0x5a, rounded); /* the rounded-up size is the caller's */
        free(pv);
    }
    void *pv0 = pvalloc(opaque(0));
    CHECK(pv0 != NULL && is_aligned(pv0, ps), "pvalloc(0) = %p", pv0);
    free(pv0);
}

/* ------------------------------------------------------------------------ */
/* free_sized, free_aligned_sized, cfree                                    */
/* ------------------------------------------------------------------------ */

/* Frees `rounds` blocks of `n` bytes through `release` and checks RSS stays flat. */
static size_t rss_growth_after(void (*release)(void *, size_t), size_t n, int rounds) {
    size_t before = rss_bytes();
    for (int i = 0; i < rounds; i++) {
        void *p = malloc(opaque(n));
        if (!p) return SIZE_MAX;
        memset(p, 0x77, n);
        release(p, n);
    }
    size_t after = rss_bytes();
    return after > before ? after - before : 0;
}

static free_sized_fn p_free_sized;
static free_aligned_sized_fn p_free_aligned_sized;
static cfree_fn p_cfree;

static void release_free_sized(void *p, size_t n) { p_free_sized(p, n); }
static void release_cfree(void *p, size_t n) {
    (void)n;
    p_cfree(p);
}
static void release_realloc0(void *p, size_t n) {
    (void)n;
    void *r = realloc(p, opaque(0));
    CHECK(r == NULL, "realloc(p, 0) returned %p, expected NULL (p freed)", r);
}

static void group_sized_free(void) {
    p_free_sized = (free_sized_fn)optional_entry("free_sized");
    p_free_aligned_sized = (free_aligned_sized_fn)optional_entry("free_aligned_sized");
    p_cfree = (cfree_fn)optional_entry("cfree");

    if (p_free_sized) {
        p_free_sized(NULL, 0);
        p_free_sized(NULL, 100);
        for (size_t i = 0; i < NSIZES; i++) {
            size_t n = SIZES[i];
            void *p = malloc(opaque(n));
            REQUIRE(p, "malloc(%zu)", n);
            fill(p, n, 1);
            errno = 31337;
            p_free_sized(p, n);
            CHECK(errno == 31337, "free_sized changed errno to %d", errno);
            void *c = calloc(opaque(n ? n : 1), 3);
            REQUIRE(c, "calloc");
            p_free_sized(c, (n ? n : 1) * 3);
            void *r = realloc(malloc(opaque(n / 2 + 1)), n + 10);
            REQUIRE(r, "realloc");
            p_free_sized(r, n + 10);
        }
        size_t g = rss_growth_after(release_free_sized, 64 * KiB, 4000);
        CHECK(g < 64 * MiB, "free_sized does not free: RSS grew by %zu MiB", g / MiB);
    }
    if (p_free_aligned_sized) {
        p_free_aligned_sized(NULL, 64, 0);
        for (size_t align = 1; align <= 4 * MiB; align <<= 1) {
            size_t sizes[] = {1, align, align + 1, 1000};
            for (size_t k = 0; k < 4; k++) {
                void *p = aligned_alloc(opaque(align), sizes[k]);
                REQUIRE(p && is_aligned(p, align), "aligned_alloc(%zu, %zu)", align, sizes[k]);
                fill(p, sizes[k], align);
                errno = 31337;
                p_free_aligned_sized(p, align, sizes[k]);
                CHECK(errno == 31337, "free_aligned_sized changed errno to %d", errno);
            }
        }
        size_t before = rss_bytes();
        for (int i = 0; i < 4000; i++) {
            void *p = aligned_alloc(opaque(4096), 64 * KiB);
            REQUIRE(p, "aligned_alloc(4096, 64 KiB)");
            memset(p, 1, 64 * KiB);
            p_free_aligned_sized(p, 4096, 64 * KiB);
        }
        size_t after = rss_bytes();
        CHECK(after < before + 64 * MiB, "free_aligned_sized does not free: RSS grew by %zu MiB",
              (after - before) / MiB);
    }
    if (p_cfree) {
        p_cfree(NULL);
        for (size_t i = 0; i < NSIZES; i++) {
            void *p = malloc(opaque(SIZES[i]));
            REQUIRE(p, "malloc");
            errno = 31337;
            p_cfree(p);
            CHECK(errno == 31337, "cfree changed errno to %d", errno);
            void *a = aligned_alloc(opaque(256), SIZES[i] + 1);
            REQUIRE(a, "aligned_alloc");
            p_cfree(a);
        }
        size_t g = rss_growth_after(release_cfree, 64 * KiB, 4000);
        CHECK(g < 64 * MiB, "cfree does not free: RSS grew by %zu MiB", g / MiB);
    }
}

/* ------------------------------------------------------------------------ */
/* realloc                                                                  */
/* ------------------------------------------------------------------------ */

static void group_realloc(void) {
    /* realloc(p, 0) frees p and returns NULL (glibc's behaviour, hakmem's choice). */
    for (size_t i = 0; i < NSIZES; i++) {
        void *p = malloc(opaque(SIZES[i] + 1));
        REQUIRE(p, "malloc");
        void *r = realloc(p, opaque(0));
        CHECK(r == NULL, "realloc(malloc(%zu), 0) returned %p, expected NULL", SIZES[i] + 1, r);
        free(r); /* free(result) is always safe */
    }
    void *r0 = realloc(NULL, opaque(0));
    CHECK(r0 != NULL, "realloc(NULL, 0) is malloc(0) and must not return NULL");
    free(r0);
    size_t g = rss_growth_after(release_realloc0, 16 * KiB, 20000);
    CHECK(g < 64 * MiB, "realloc(p, 0) does not free p: RSS grew by %zu MiB (16 KiB blocks)",
          g / MiB);
    g = rss_growth_after(release_realloc0, MiB, 300);
    CHECK(g < 64 * MiB, "realloc(p, 0) does not free p: RSS grew by %zu MiB (1 MiB blocks)",
          g / MiB);

    /* A chain across every tier; the whole old usable size is preserved. */
    size_t chain[] = {10, 100, 2000, 70000, 3 * MiB, 100, 5, 1024, 1025, 300000, 40, 8 * MiB,
                      16, 16, 17};
    unsigned char *p = malloc(opaque(1));
    REQUIRE(p, "malloc(1)");
    size_t u = malloc_usable_size(p);
    fill(p, u, 0);
    for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++) {
        size_t m = chain[i];
        unsigned char *q = realloc(p, opaque(m));
        REQUIRE(q, "realloc(%zu -> %zu)", u, m);
        size_t keep = u < m ? u : m;
        size_t bad = mismatch(q, keep, i);
        CHECK(bad == SIZE_MAX,
              "realloc from usable %zu to %zu lost byte %zu (the whole usable size must be "
              "preserved)",
              u, m, bad);
        u = malloc_usable_size(q);
        CHECK(u >= m, "usable %zu < %zu after realloc", u, m);
        fill(q, u, i + 1);
        p = q;
    }
    free(p);

    /* Growth within the usable size and by a byte at a time (systemd style). */
    p = malloc(opaque(20));
    REQUIRE(p, "malloc(20)");
    size_t len = 0;
    while (len < 256 * KiB) {
        size_t us = malloc_usable_size(p);
        if (len == us) {
            unsigned char *q = realloc(p, opaque(len + 1));
            REQUIRE(q, "realloc(%zu)", len + 1);
            p = q;
            us = malloc_usable_size(p);
        }
        /* fill the whole usable size like greedy_realloc users do */
        for (size_t i = len; i < us; i++) p[i] = pat(9, i);
        len = us;
    }
    CHECK(mismatch(p, len, 9) == SIZE_MAX, "byte-wise growth lost data");
    free(p);

    /* Same-size realloc and shrink keep the contents. */
    for (size_t i = 1; i < NSIZES; i++) {
        size_t n = SIZES[i];
        unsigned char *b = malloc(opaque(n));
        REQUIRE(b, "malloc");
        fill(b, n, n);
        unsigned char *c = realloc(b, opaque(n));
        REQUIRE(c, "same-size realloc");
        CHECK(mismatch(c, n, n) == SIZE_MAX, "same-size realloc(%zu) lost data", n);
        unsigned char *d = realloc(c, opaque(n / 3 + 1));
        REQUIRE(d, "shrinking realloc");
        CHECK(mismatch(d, n / 3 + 1, n) == SIZE_MAX, "shrinking realloc(%zu -> %zu) lost data", n,
              n / 3 + 1);
        free(d);
    }

    /* Random model test: 64 slots, allocate / realloc / free. */
    enum { SLOTS = 64 };
    unsigned char *slot[SLOTS] = {0};
    size_t su[SLOTS] = {0};
    uint64_t seed[SLOTS] = {0};
    uint64_t rng = 0xC0FFEE;
    for (int op = 0; op < 30000; op++) {
        int i = (int)(rng_next(&rng) % SLOTS);
        uint64_t r = rng_next(&rng);
        size_t n = (r % 100 == 0)   ? 100000 + r % (2 * MiB)
                   : (r % 10 == 0) ? 1024 + r % 60000
                                   : r % 1024;
        if (!slot[i]) {
            slot[i] = malloc(opaque(n));
            REQUIRE(slot[i], "malloc(%zu)", n);
        } else if (r % 3 == 0) {
            CHECK(mismatch(slot[i], su[i], seed[i]) == SIZE_MAX, "slot %d corrupted", i);
            free(slot[i]);
            slot[i] = NULL;
            continue;
        } else {
            unsigned char *q = realloc(slot[i], opaque(n));
            if (n == 0) {
                CHECK(q == NULL, "realloc(p, 0) returned %p", q);
                slot[i] = NULL;
                continue;
            }
            REQUIRE(q, "realloc(%zu)", n);
            size_t keep = su[i] < n ? su[i] : n;
            size_t bad = mismatch(q, keep, seed[i]);
            CHECK(bad == SIZE_MAX, "realloc %zu -> %zu lost byte %zu", su[i], n, bad);
            slot[i] = q;
        }
        su[i] = malloc_usable_size(slot[i]);
        CHECK(su[i] >= n, "usable %zu < %zu", su[i], n);
        seed[i] = rng_next(&rng);
        fill(slot[i], su[i], seed[i]);
    }
    for (int i = 0; i < SLOTS; i++) {
        if (slot[i])
            CHECK(mismatch(slot[i], su[i], seed[i]) == SIZE_MAX, "slot %d corrupted at end", i);
        free(slot[i]);
    }
}

/* ------------------------------------------------------------------------ */
/* calloc zeroes, even reused memory                                        */
/* ------------------------------------------------------------------------ */

static void dirty_and_free(size_t n, int count) {
    void **v = malloc(sizeof(void *) * (size_t)count);
    REQUIRE(v, "malloc");
    for (int i = 0; i < count; i++) {
        v[i] = malloc(opaque(n));
        REQUIRE(v[i], "malloc(%zu)", n);
        memset(v[i], 0xA5, malloc_usable_size(v[i]));
    }
    for (int i = 0; i < count; i += 2) free(v[i]);
    for (int i = 1; i < count; i += 2) free(v[i]);
    free(v);
}

static void check_calloc(size_t nmemb, size_t size, int count) {
    void **v = malloc(sizeof(void *) * (size_t)count);
    REQUIRE(v, "malloc");
    size_t n = nmemb * size;
    for (int i = 0; i < count; i++) {
        v[i] = calloc(opaque(nmemb), size);
        REQUIRE(v[i], "calloc(%zu, %zu)", nmemb, size);
        size_t bad = first_nonzero(v[i], n);
        CHECK(bad == SIZE_MAX, "calloc(%zu, %zu) byte %zu is not zero (reused memory?)", nmemb,
              size, bad);
        memset(v[i], 0xA5, malloc_usable_size(v[i]));
    }
    for (int i = 0; i < count; i++) free(v[i]);
    free(v);
}

struct remote_free_arg {
    void **v;
    int count;
};

static void *free_them(void *a) {
    struct remote_free_arg *r = a;
    for (int i = 0; i < r->count; i++) free(r->v[i]);
    return NULL;
}

static void group_calloc(void) {
    static const size_t csizes[] = {1, 8, 16, 24, 48, 64, 100, 128, 256, 500, 1000, 1024, 2000,
                                    4096, 5000, 16384, 40000, 65536, 100000, 200000, 300000,
                                    1048576, 1572864, 3 * 1048576};
    for (int round = 0; round < 40; round++) {
        for (size_t i = 0; i < sizeof csizes / sizeof csizes[0]; i++) {
            size_t n = csizes[i];
            int count = n >= 1048576 ? 2 : n >= 65536 ? 8 : 64;
            if (n >= 1048576 && round % 10 != 0) continue;
            dirty_and_free(n, count);
            /* same byte count, different factorisations */
            if (round % 3 == 0) check_calloc(1, n, count);
            else if (round % 3 == 1) check_calloc(n, 1, count);
            else if (n % 8 == 0) check_calloc(n / 8, 8, count);
            else check_calloc(n, 1, count);
        }
    }
    /* A shrunk block's dirty tail must not leak into a later calloc. */
    for (int i = 0; i < 2000; i++) {
        size_t n = opaque(64 + (size_t)(i % 50) * 97);
        unsigned char *p = malloc(n);
        REQUIRE(p, "malloc");
        memset(p, 0xEE, malloc_usable_size(p));
        p = realloc(p, opaque(8));
        REQUIRE(p, "realloc");
        free(p);
        unsigned char *c = calloc(1, n);
        REQUIRE(c, "calloc");
        CHECK(first_nonzero(c, n) == SIZE_MAX, "calloc after a shrink is dirty (size %zu)", n);
        free(c);
    }
    /* Blocks dirtied here, freed by another thread, then calloc'd here. */
    for (int round = 0; round < 20; round++) {
        enum { CNT = 256 };
        void *v[CNT];
        size_t n = 16 + (size_t)round * 200;
        for (int i = 0; i < CNT; i++) {
            v[i] = malloc(opaque(n));
            REQUIRE(v[i], "malloc");
            memset(v[i], 0xA5, malloc_usable_size(v[i]));
        }
        struct remote_free_arg a = {v, CNT};
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, free_them, &a) == 0, "pthread_create");
        pthread_join(t, NULL);
        check_calloc(1, n, CNT);
    }
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

struct first_call {
    void *p;
    size_t n, m;
    uint64_t seed;
    void *out;
    size_t usable;
};

/* Each of these is the thread's first call into the allocator. */
static void *first_is_free(void *a) {
    struct first_call *f = a;
    free(f->p);
    return NULL;
}
static void *first_is_realloc(void *a) {
    struct first_call *f = a;
    f->out = realloc(f->p, f->m);
    return NULL;
}
static void *first_is_usable_size(void *a) {
    struct first_call *f = a;
    f->usable = malloc_usable_size(f->p);
    free(f->p);
    return NULL;
}
static void *first_is_free_null(void *a) {
    (void)a;
    free(NULL);
    return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg) {
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, fn, arg) == 0, "pthread_create");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join");
}

static void first_calls(void) {
    static const size_t sizes[] = {8, 24, 100, 200, 1000, 3000, 40000, 200000, 3 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        struct first_call f = {0};
        f.p = malloc(opaque(n));
        REQUIRE(f.p, "malloc");
        fill(f.p, n, n);
        run_thread(first_is_free, &f);

        size_t targets[] = {n * 3 + 1, n / 2 + 1, n};
        for (size_t k = 0; k < 3; k++) {
            struct first_call g = {0};
            g.p = malloc(opaque(n));
            REQUIRE(g.p, "malloc");
            fill(g.p, n, n + k);
            g.m = targets[k];
            run_thread(first_is_realloc, &g);
            REQUIRE(g.out, "realloc(%zu -> %zu) as a thread's first call returned NULL", n, g.m);
            size_t keep = n < g.m ? n : g.m;
            CHECK(mismatch(g.out, keep, n + k) == SIZE_MAX,
                  "realloc(%zu -> %zu) as a thread's first call lost data", n, g.m);
            fill(g.out, g.m, 5);
            free(g.out); /* freed back on the main thread */
        }

        struct first_call h = {0};
        h.p = malloc(opaque(n));
        REQUIRE(h.p, "malloc");
        size_t expect = malloc_usable_size(h.p);
        run_thread(first_is_usable_size, &h);
        CHECK(h.usable == expect, "malloc_usable_size from another thread: %zu vs %zu", h.usable,
              expect);
    }
    run_thread(first_is_free_null, NULL);
}

/* Many short-lived threads; blocks outlive the threads that allocated them. */
enum { ROUNDS = 30, THREADS = 8, PER_THREAD = 400, HANDOFF = PER_THREAD / 4 };
static void *handoff[THREADS][HANDOFF];

struct worker_arg {
    int id, round;
};

static size_t random_size(uint64_t *rng) {
    uint64_t r = rng_next(rng);
    if (r % 100 == 0) return 16 + r % (300 * KiB);
    if (r % 10 == 0) return 16 + r % (8 * KiB);
    return 16 + r % 256;
}

static void *short_lived(void *a) {
    struct worker_arg *w = a;
    uint64_t rng = (uint64_t)(w->id + 1) * 0x9E3779B97F4A7C15ULL + (uint64_t)w->round;
    /* Free what a previous (exited) thread left, from the other end of the array. */
    int from = (w->id + 3) % THREADS;
    for (int i = 0; i < HANDOFF; i++) {
        blk_free(handoff[from][i]);
        handoff[from][i] = NULL;
    }
    void *mine[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        mine[i] = blk_new(random_size(&rng), rng_next(&rng));
        REQUIRE(mine[i], "malloc in a short-lived thread");
    }
    /* Free three quarters in random order; the rest outlives this thread. */
    for (int i = 0; i < PER_THREAD - HANDOFF; i++) {
        int j = (int)(rng_next(&rng) % (uint64_t)(PER_THREAD - i)) + i;
        void *t = mine[i];
        mine[i] = mine[j];
        mine[j] = t;
        blk_free(mine[i]);
    }
    for (int i = 0; i < HANDOFF; i++) handoff[w->id][i] = mine[PER_THREAD - HANDOFF + i];
    return NULL;
}

static void many_threads(void) {
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t t[THREADS];
        struct worker_arg args[THREADS];
        /* Thread i fills handoff slot i and frees slot (i+3)%T, which was filled by an
         * exited thread: even threads run in one wave, odd threads in the next, so no two
         * live threads touch the same slot. */
        for (int wave = 0; wave < 2; wave++) {
            for (int i = wave; i < THREADS; i += 2) {
                args[i].id = i;
                args[i].round = round;
                REQUIRE(pthread_create(&t[i], NULL, short_lived, &args[i]) == 0,
                        "pthread_create");
            }
            for (int i = wave; i < THREADS; i += 2) pthread_join(t[i], NULL);
        }
    }
}

/* Cross-thread stress through a shared slot array (mimalloc test-stress style). */
enum { STRESS_THREADS = 4, STRESS_SLOTS = 1024, STRESS_OPS = 60000 };
static _Atomic(void *) shared_slots[STRESS_SLOTS];

static void *stress(void *a) {
    uint64_t rng = (uint64_t)(uintptr_t)a * 0x1234567ULL + 99;
    enum { LOCAL = 64 };
    void *local[LOCAL] = {0};
    for (int op = 0; op < STRESS_OPS; op++) {
        uint64_t r = rng_next(&rng);
        size_t n = (r % 100 == 0) ? 16 + r % (64 * KiB) : 16 + (r >> 8) % 128;
        void *b = blk_new(n, rng_next(&rng));
        REQUIRE(b, "malloc in stress");
        if ((r >> 20) % 4 == 0) {
            void *old = atomic_exchange(&shared_slots[(r >> 24) % STRESS_SLOTS], b);
            blk_free(old);
        } else {
            int i = (int)((r >> 30) % LOCAL);
            blk_free(local[i]);
            local[i] = b;
        }
    }
    for (int i = 0; i < LOCAL; i++) blk_free(local[i]);
    return NULL;
}

static void stress_threads(void) {
    for (int round = 0; round < 2; round++) {
        pthread_t t[STRESS_THREADS];
        for (int i = 0; i < STRESS_THREADS; i++)
            REQUIRE(pthread_create(&t[i], NULL, stress, (void *)(uintptr_t)(i + 1 + round * 10)) ==
                        0,
                    "pthread_create");
        for (int i = 0; i < STRESS_THREADS; i++) pthread_join(t[i], NULL);
    }
    for (int i = 0; i < STRESS_SLOTS; i++) blk_free(atomic_exchange(&shared_slots[i], NULL));
}

/* Detached threads that allocate and exit without being joined. */
static atomic_int detached_done;
static void *detached(void *a) {
    uint64_t rng = (uint64_t)(uintptr_t)a;
    void *keep[32];
    for (int i = 0; i < 32; i++) keep[i] = blk_new(random_size(&rng), rng);
    for (int i = 0; i < 32; i++) blk_free(keep[i]);
    atomic_fetch_add(&detached_done, 1);
    return NULL;
}

static void detached_threads(void) {
    enum { N = 64 };
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < N; i++) {
        pthread_t t;
        REQUIRE(pthread_create(&t, &attr, detached, (void *)(uintptr_t)(i + 1)) == 0,
                "pthread_create");
    }
    pthread_attr_destroy(&attr);
    for (int spins = 0; atomic_load(&detached_done) < N && spins < 10000; spins++) usleep(1000);
    CHECK(atomic_load(&detached_done) == N, "only %d of %d detached threads finished",
          atomic_load(&detached_done), N);
}

static void group_threads(void) {
    first_calls();
    many_threads();
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < HANDOFF; k++) {
            blk_free(handoff[i][k]);
            handoff[i][k] = NULL;
        }
    stress_threads();
    detached_threads();
    /* The main thread still works after all that. */
    for (size_t i = 0; i < NSIZES; i++) blk_free(blk_new(SIZES[i], i));
}

/* ------------------------------------------------------------------------ */
/* fork while other threads allocate                                        */
/* ------------------------------------------------------------------------ */

static atomic_int stop_workers;

static void *busy_allocator(void *a) {
    uint64_t rng = (uint64_t)(uintptr_t)a * 7919;
    enum { RING = 128 };
    void *ring[RING] = {0};
    unsigned long ops = 0;
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        int i = (int)(r % RING);
        blk_free(ring[i]);
        ring[i] = NULL;
        switch ((r >> 8) % 8) {
        case 0: {
            void *p = calloc(1, 64 + (r >> 16) % 4000);
            free(p);
            break;
        }
        case 1: {
            void *p = aligned_alloc(4096, 8192);
            free(p);
            break;
        }
        case 2: {
            void *p = realloc(malloc(100), 5000 + (r >> 16) % 300000);
            free(p);
            break;
        }
        default:
            ring[i] = blk_new(random_size(&rng), r);
        }
        ops++;
    }
    for (int i = 0; i < RING; i++) blk_free(ring[i]);
    return (void *)ops;
}

/* Every size of SIZES up to 1 MiB, allocated then freed. */
static void churn_up_to_1mib(uint64_t seed) {
    void *v[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        v[i] = SIZES[i] <= MiB ? blk_new(SIZES[i], seed + i) : NULL;
        REQUIRE(v[i] || SIZES[i] > MiB, "malloc(%zu)", SIZES[i]);
    }
    for (size_t i = 0; i < NSIZES; i++) blk_free(v[i]);
}

static void *child_thread(void *a) {
    churn_up_to_1mib((uint64_t)(uintptr_t)a);
    return NULL;
}

static int child_work(void *inherited, uint64_t inherited_seed) {
    alarm(20); /* a deadlocked child dies with SIGALRM instead of hanging */
    /* The parent's block is intact and ours to free. */
    CHECK(mismatch(inherited, 5000, inherited_seed) == SIZE_MAX, "inherited block corrupted");
    free(inherited);
    churn_up_to_1mib(inherited_seed);
    void *big = malloc(opaque(8 * MiB)); /* a large (mmap-tier) block */
    REQUIRE(big, "malloc(8 MiB) in the child");
    memset(big, 1, 8 * MiB);
    free(big);
    void *c = calloc(1000, 10);
    REQUIRE(c && first_nonzero(c, 10000) == SIZE_MAX, "calloc in the child");
    c = realloc(c, 100000);
    REQUIRE(c, "realloc in the child");
    free(c);
    void *m = NULL;
    REQUIRE(posix_memalign(&m, 65536, 1000) == 0 && is_aligned(m, 65536), "posix_memalign");
    free(m);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, child_thread, NULL) == 0, "pthread_create in the child");
    pthread_join(t, NULL);
    return atomic_load(&failures) ? 1 : 0;
}

static void group_fork(void) {
    enum { WORKERS = 3, FORKS = 30 };
    pthread_t w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        REQUIRE(pthread_create(&w[i], NULL, busy_allocator, (void *)(uintptr_t)(i + 1)) == 0,
                "pthread_create");
    uint64_t rng = 4242;
    for (int k = 0; k < FORKS; k++) {
        uint64_t seed = rng_next(&rng);
        void *inherited = malloc(opaque(5000));
        REQUIRE(inherited, "malloc");
        fill(inherited, 5000, seed);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork");
        if (pid == 0) {
            group = "fork(child)";
            exit(child_work(inherited, seed));
        }
        /* The parent keeps allocating while the child runs. */
        churn_up_to_1mib(seed);
        CHECK(mismatch(inherited, 5000, seed) == SIZE_MAX, "parent's block corrupted");
        free(inherited);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
        if (WIFSIGNALED(status))
            CHECK(0, "fork child #%d died of signal %d%s", k, WTERMSIG(status),
                  WTERMSIG(status) == SIGALRM ? " (deadlock: it hung for 20 s)" : "");
        else
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child #%d exited with %d",
                  k, WEXITSTATUS(status));
        usleep(500);
    }
    atomic_store(&stop_workers, 1);
    for (int i = 0; i < WORKERS; i++) {
        void *ops = NULL;
        pthread_join(w[i], &ops);
        CHECK(ops != NULL, "worker %d made no progress", i);
    }
}

/* ------------------------------------------------------------------------ */
/* dlopen'ed library with dynamic TLS (ld.so allocates it through malloc)   */
/* ------------------------------------------------------------------------ */

typedef int (*tls_touch_fn)(int);
static tls_touch_fn tls_touch;

static void *touch_tls(void *a) {
    int v = (int)(uintptr_t)a;
    if (!tls_touch(v)) atomic_fetch_add(&failures, 1);
    void *p = malloc(opaque(100)); /* plus some ordinary allocation */
    free(p);
    return NULL;
}

static void group_dlopen_tls(void) {
    const char *lib = getenv("HAKMEM_TLSLIB");
    if (!lib) {
        printf("skip: HAKMEM_TLSLIB is not set\n");
        return;
    }
    for (int load = 0; load < 3; load++) {
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        REQUIRE(h, "dlopen(%s): %s", lib, dlerror());
        tls_touch = (tls_touch_fn)dlsym(h, "tls_touch");
        REQUIRE(tls_touch, "dlsym(tls_touch)");
        CHECK(tls_touch(1), "dynamic TLS on the main thread");
        for (int round = 0; round < 4; round++) {
            enum { N = 16 };
            pthread_t t[N];
            for (int i = 0; i < N; i++)
                REQUIRE(pthread_create(&t[i], NULL, touch_tls, (void *)(uintptr_t)(i + 2)) == 0,
                        "pthread_create");
            for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
        }
        CHECK(dlclose(h) == 0, "dlclose: %s", dlerror());
    }
}

/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    void (*fn)(void);
} GROUPS[] = {
    {"loaded", group_loaded},   {"ctor", group_ctor},           {"basic", group_basic},
    {"errno", group_errno},     {"align", group_align},         {"sized_free", group_sized_free},
    {"realloc", group_realloc}, {"calloc", group_calloc},       {"threads", group_threads},
    {"fork", group_fork},       {"dlopen_tls", group_dlopen_tls},
};

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <group>|list\n", argv[0]);
        return 64;
    }
    const char *expect = getenv("HAKMEM_EXPECT");
    strict = expect && strcmp(expect, "1") == 0;
    if (strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < sizeof GROUPS / sizeof GROUPS[0]; i++) puts(GROUPS[i].name);
        return 0;
    }
    for (size_t i = 0; i < sizeof GROUPS / sizeof GROUPS[0]; i++) {
        if (strcmp(argv[1], GROUPS[i].name) != 0) continue;
        group = GROUPS[i].name;
        if (strict && GROUPS[i].fn != group_loaded) expect_hakmem();
        GROUPS[i].fn();
        int f = atomic_load(&failures);
        printf("%s %s: %ld checks, %d failed, %d notes (allocator: %s)\n", f ? "FAILED" : "ok",
               group, atomic_load(&checks), f, notes, resolves_to("malloc"));
        fflush(NULL);
        return f ? 1 : 0;
    }
    fprintf(stderr, "unknown group %s\n", argv[1]);
    return 64;
}
