/* Call-site profiling under libhakmem.so.
 *   sites exact <json-path>   three wrappers call hak_alloc_cs 1000/100/10
 *                             times (64 KiB, 256 KiB, 2 MiB); the table is
 *                             written as JSON to <json-path>
 *   sites sampled             plain malloc from three functions in known
 *                             proportions (run with HAKMEM_SITES=1 and
 *                             HAKMEM_SITES_JSON)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The API comes from the preloaded libhakmem.so (looked up, not linked). */
static void *(*hak_alloc_cs)(size_t);
static void (*hak_free_cs)(void *);
static int (*hak_sites_report_json)(int);

__attribute__((noinline)) void *json_site(void) { return hak_alloc_cs(64 << 10); }
__attribute__((noinline)) void *mir_site(void) { return hak_alloc_cs(256 << 10); }
__attribute__((noinline)) void *vm_site(void) { return hak_alloc_cs(2 << 20); }

__attribute__((noinline)) void *hot_site(void) { return malloc(48); }
__attribute__((noinline)) void *warm_site(void) { return malloc(700); }
__attribute__((noinline)) void *cool_site(void) { return malloc(5000); }

int main(int argc, char **argv) {
    hak_alloc_cs = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "hak_alloc_cs");
    hak_free_cs = (void (*)(void *))dlsym(RTLD_DEFAULT, "hak_free_cs");
    hak_sites_report_json = (int (*)(int))dlsym(RTLD_DEFAULT, "hak_sites_report_json");
    if (argc >= 3 && !strcmp(argv[1], "exact")) {
        if (!hak_alloc_cs || !hak_free_cs || !hak_sites_report_json) {
            fprintf(stderr, "libhakmem.so's call-site API is missing\n");
            return 1;
        }
        static void *p[1110];
        int n = 0;
        for (int i = 0; i < 1000; i++) p[n++] = json_site();
        for (int i = 0; i < 100; i++) p[n++] = mir_site();
        for (int i = 0; i < 10; i++) p[n++] = vm_site();
        for (int i = 0; i < n; i++) {
            if (!p[i]) { fprintf(stderr, "allocation %d failed\n", i); return 1; }
            memset(p[i], 1, 4096);
            hak_free_cs(p[i]);
        }
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || hak_sites_report_json(fd) != 0) { fprintf(stderr, "json failed\n"); return 1; }
        close(fd);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "sampled")) {
        /* 60% hot, 30% warm, 10% cool: 200000 calls */
        for (int r = 0; r < 2000; r++) {
            void *b[100];
            for (int i = 0; i < 100; i++) {
                int k = i % 10;
                b[i] = k < 6 ? hot_site() : k < 9 ? warm_site() : cool_site();
                memset(b[i], 2, 32);
            }
            for (int i = 0; i < 100; i++) free(b[i]);
        }
        puts("sampled done");
        return 0;
    }
    fprintf(stderr, "usage: sites exact <json> | sites sampled\n");
    return 2;
}
