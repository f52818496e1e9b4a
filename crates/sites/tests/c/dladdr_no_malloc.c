/* Does glibc's dladdr call the allocator? The report symbolises return
 * addresses with dladdr; under LD_PRELOAD, an allocation inside it would
 * re-enter hakmem. This program interposes the allocator, checks that the
 * interposition sees libc's internal calls (strdup), then counts the
 * allocator calls made by dladdr. Exit 0: none. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static volatile int armed, count;

void *malloc(size_t n) { if (armed) count++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { if (armed) count++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { if (armed) count++; return __libc_realloc(p, n); }
void free(void *p) { if (armed && p) count++; __libc_free(p); }

__attribute__((noinline)) int probe(void) { return 1; }

int main(void) {
    Dl_info info;
    int found = 0;

    armed = 1;
    free(strdup("interposed?"));
    armed = 0;
    if (count != 2) {
        printf("interposition not seen (%d calls)\n", count);
        return 2;
    }

    count = 0;
    armed = 1;
    for (int i = 0; i < 3; i++) {
        found += dladdr((char *)write + 4, &info) != 0;
        found += dladdr((char *)probe + 1, &info) != 0;
        found += dladdr((void *)0x10, &info) != 0;
    }
    armed = 0;
    printf("dladdr resolved %d of 9, allocator calls %d\n", found, count);
    return count != 0 || found != 6;
}
