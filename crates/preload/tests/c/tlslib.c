/*
 * A library with dynamic TLS for the dlopen_tls group of conformance.c:
 * ld.so allocates the TLS block of a dlopen'ed library through the
 * (interposed) malloc on the first access from each thread, and frees it
 * when the thread exits.
 */
#include <stdlib.h>
#include <string.h>

static __thread unsigned char big[64 * 1024];
static __thread int counter;
static void *from_constructor;

__attribute__((constructor)) static void tlslib_init(void) {
    from_constructor = malloc(1000);
    if (from_constructor) memset(from_constructor, 7, 1000);
}

__attribute__((destructor)) static void tlslib_fini(void) { free(from_constructor); }

/* Returns 1 if this thread's TLS block is private and zero-initialised. */
int tls_touch(int v) {
    if (counter != 0) return 0;
    for (size_t i = 0; i < sizeof big; i += 4096)
        if (big[i] != 0) return 0;
    memset(big, v, sizeof big);
    counter = v;
    for (size_t i = 0; i < sizeof big; i += 511)
        if (big[i] != (unsigned char)v) return 0;
    if (!from_constructor || ((unsigned char *)from_constructor)[999] != 7) return 0;
    counter = 0;
    memset(big, 0, sizeof big);
    return 1;
}
