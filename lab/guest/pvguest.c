/*
 * pvguest: the lab guest's load program (runs from the busybox initramfs, see lab/lab.sh).
 *
 * Reads the kernel command line:
 *   pv.mem=<MiB>        allocate that much memory, fill it with non-zero data, then keep
 *                       rewriting it (every page is touched and its content changed);
 *   pv.fill=<percent>   same, sized as a percentage of MemTotal (pv.mem wins if both given);
 *   pv.rate=<MiB/s>     limit the rewrite speed (0 or absent: as fast as it can);
 *   pv.tick=<ms>        also print "T <k>" every <ms> milliseconds.
 *
 * Prints on stdout (the init script points it at /dev/console = ttyS0):
 *   PVSTART mem=<MiB> rate=<MiB/s> tick=<ms>   once, at start
 *   PVREADY mem=<MiB>                          once, when the memory is filled
 *   PVCOUNT <n> <work>                         every second; n starts at 1 and lives in memory,
 *                                              work = cumulative pages rewritten
 *   T <k>                                      every pv.tick ms
 *
 * A resumed/restored guest continues its counter; a rebooted one starts at 1 again.
 * Times are the guest's CLOCK_MONOTONIC, which stops while the VM is paused (TCG): measure
 * pauses from the host by timestamping the arrival of the T lines.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WORDS_PER_PAGE (PAGE / sizeof(uint64_t))
#define FILL_CHUNK_PAGES 64UL      /* pages filled between clock checks */
#define REWRITE_CHUNK_PAGES 512UL  /* pages rewritten between clock checks */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000ULL), (long)(t % 1000000000ULL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static void out(const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(1, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

static void outf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void outf(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) out(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Reads a whole small file (e.g. /proc/cmdline) into buf; returns length or -1. */
static ssize_t read_file(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  size_t len = 0;
  while (len + 1 < cap) {
    ssize_t r = read(fd, buf + len, cap - 1 - len);
    if (r < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return -1;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0;
  return (ssize_t)len;
}

/* Value of "key=" on the command line as an unsigned number; returns 1 when found. */
static int cmdline_u64(const char *cmdline, const char *key, uint64_t *val) {
  size_t kl = strlen(key);
  const char *p = cmdline;
  while (*p) {
    while (*p == ' ' || *p == '\n' || *p == '\t') p++;
    if (!*p) break;
    const char *end = p;
    while (*end && *end != ' ' && *end != '\n' && *end != '\t') end++;
    if ((size_t)(end - p) > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
      char *e;
      unsigned long long v = strtoull(p + kl + 1, &e, 10);
      if (e != p + kl + 1) {
        *val = (uint64_t)v;
        return 1;
      }
    }
    p = end;
  }
  return 0;
}

static uint64_t mem_total_kib(void) {
  char buf[4096];
  if (read_file("/proc/meminfo", buf, sizeof buf) < 0) return 0;
  char *p = strstr(buf, "MemTotal:");
  if (!p) return 0;
  return strtoull(p + 9, NULL, 10);
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static inline uint64_t xorshift(void) {
  uint64_t x = rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  rng = x;
  return x | 1; /* never zero */
}

/* Timers: a 1 s counter and an optional fast tick. */
static uint64_t counter = 0;    /* last PVCOUNT printed */
static uint64_t work = 0;       /* cumulative pages rewritten */
static uint64_t tick_k = 0;     /* last T printed */
static uint64_t next_sec, next_tick, tick_ns;

static void check_timers(uint64_t t) {
  if (tick_ns && t >= next_tick) {
    outf("T %llu\n", (unsigned long long)++tick_k);
    next_tick += tick_ns;
    if (t >= next_tick) next_tick = t + tick_ns; /* fell behind: don't print a burst */
  }
  if (t >= next_sec) {
    outf("PVCOUNT %llu %llu\n", (unsigned long long)++counter, (unsigned long long)work);
    next_sec += 1000000000ULL;
    if (t >= next_sec) next_sec = t + 1000000000ULL;
  }
}

static uint64_t next_event(void) {
  uint64_t e = next_sec;
  if (tick_ns && next_tick < e) e = next_tick;
  return e;
}

int main(void) {
  char cmdline[4096] = "";
  read_file("/proc/cmdline", cmdline, sizeof cmdline);

  uint64_t mem_mib = 0, fill_pct = 0, rate_mib = 0, tick_ms = 0;
  int have_mem = cmdline_u64(cmdline, "pv.mem", &mem_mib);
  if (!have_mem && cmdline_u64(cmdline, "pv.fill", &fill_pct)) {
    if (fill_pct > 100) fill_pct = 100;
    mem_mib = mem_total_kib() * fill_pct / 100 / 1024;
  }
  cmdline_u64(cmdline, "pv.rate", &rate_mib);
  cmdline_u64(cmdline, "pv.tick", &tick_ms);

  uint64_t t0 = now_ns();
  tick_ns = tick_ms * 1000000ULL;
  next_sec = t0 + 1000000000ULL;
  next_tick = t0 + tick_ns;
  rng ^= t0;

  outf("PVSTART mem=%llu rate=%llu tick=%llu\n", (unsigned long long)mem_mib,
       (unsigned long long)rate_mib, (unsigned long long)tick_ms);

  uint8_t *mem = NULL;
  uint64_t pages = mem_mib * (1024 * 1024 / PAGE);
  if (pages) {
    mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      outf("PVERROR mmap %llu MiB failed: %s\n", (unsigned long long)mem_mib, strerror(errno));
      mem = NULL;
      pages = 0;
      mem_mib = 0;
    }
  }

  /* Fill phase: every word non-zero, pseudo-random (so nothing is a zero page or compresses). */
  for (uint64_t p = 0; p < pages;) {
    uint64_t end = p + FILL_CHUNK_PAGES < pages ? p + FILL_CHUNK_PAGES : pages;
    for (; p < end; p++) {
      uint64_t *w = (uint64_t *)(mem + p * PAGE);
      for (unsigned i = 0; i < WORDS_PER_PAGE; i++) w[i] = xorshift();
    }
    check_timers(now_ns());
  }
  outf("PVREADY mem=%llu\n", (unsigned long long)mem_mib);

  /* Rewrite phase: every page gets a new value in one of its words, round after round. */
  uint64_t rate_pages = rate_mib * (1024 * 1024 / PAGE); /* pages per second, 0 = unlimited */
  uint64_t start = now_ns();
  uint64_t pos = 0, round = 0;
  for (;;) {
    uint64_t t = now_ns();
    check_timers(t);
    if (!pages) {
      sleep_until(next_event());
      continue;
    }
    if (rate_pages) {
      /* Pages allowed so far; if we are ahead, sleep until the next chunk is allowed or a timer fires. */
      uint64_t allowed = (uint64_t)((double)(t - start) * (double)rate_pages / 1e9);
      if (work >= allowed) {
        uint64_t when = start + (uint64_t)((double)(work + REWRITE_CHUNK_PAGES) * 1e9 / (double)rate_pages);
        uint64_t e = next_event();
        sleep_until(when < e ? when : e);
        continue;
      }
    }
    uint64_t n = REWRITE_CHUNK_PAGES;
    if (rate_pages) {
      /* never exceed the allowance by more than one chunk */
      uint64_t allowed = (uint64_t)((double)(t - start) * (double)rate_pages / 1e9);
      if (allowed - work < n) n = allowed - work;
      if (n == 0) n = 1;
    }
    for (uint64_t i = 0; i < n; i++) {
      uint64_t *w = (uint64_t *)(mem + pos * PAGE);
      w[(pos + round) % WORDS_PER_PAGE] = xorshift();
      if (++pos == pages) {
        pos = 0;
        round++;
      }
    }
    work += n;
  }
  return 0;
}
