/* bench-dlcost: what loading a PAM module costs in a process shaped like sshd and sudo
 * (libpam loaded, libgcc_s not), which the Rust benchmark itself cannot be (Rust
 * programs load libgcc_s). For each module: N times dlopen(RTLD_NOW) + dlclose, as
 * libpam does per transaction; prints "median_us p90_us path" per module.
 * Built and run by scripts/bench: bench-dlcost N module.so... */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench-dlcost N module.so...\n");
    return 2;
  }
  int n = atoi(argv[1]);
  if (n < 1) return 2;
  double *t = malloc(sizeof(double) * (size_t)n);
  if (!t) return 1;
  for (int m = 2; m < argc; m++) {
    for (int i = 0; i < n; i++) {
      double start = now_us();
      void *h = dlopen(argv[m], RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
      }
      dlclose(h);
      t[i] = now_us() - start;
    }
    qsort(t, (size_t)n, sizeof(double), by_value);
    printf("%.1f %.1f %s\n", t[n / 2], t[(n * 9) / 10], argv[m]);
  }
  free(t);
  return 0;
}
