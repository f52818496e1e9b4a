/*
 * Helpers shared by the C test programs (limits.c, load.c, misuse.c): values
 * the compiler cannot see through, a small PRNG, and a byte pattern to fill
 * blocks with and check them against. Every function is `static inline`, so a
 * program that uses only some of them compiles without warnings.
 */
#ifndef HAKMEM_TESTUTIL_H
#define HAKMEM_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Keeps the compiler from reasoning about a pointer or size (from folding
 * free(malloc(n)) away, or a size into a known constant). */
static inline void *hide(void *p) {
    __asm__ volatile("" : "+r"(p));
    return p;
}
static inline size_t opaque(size_t x) {
    __asm__ volatile("" : "+r"(x));
    return x;
}

/* xorshift64*. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Byte i of the pattern of `seed`. */
static inline unsigned char pat(uint64_t seed, size_t i) {
    return (unsigned char)((seed * 0x9E3779B97F4A7C15ULL + i * 0x2545F4914F6CDD1DULL) >> 56);
}

static inline void fill(void *p, size_t n, uint64_t seed) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = pat(seed, i);
}

/* Index of the first byte that does not match, or SIZE_MAX. */
static inline size_t mismatch(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(seed, i)) return i;
    return SIZE_MAX;
}

#endif
