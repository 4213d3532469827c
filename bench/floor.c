// The kernel's floor for one socket write on this machine, which every SSE server pays per
// write whatever it does in user space: one thread (pinned to core 0) writes a frame of B
// bytes, F times over in one write, to each of N loopback TCP connections in turn; a reader
// thread (pinned to core 1) drains them all with epoll. Prints the writer's CPU time per write
// and per frame; the loopback receive path runs in the writer's softirq, so it is included,
// exactly as it is charged to a server.
//
//   gcc -O2 -o /tmp/floor bench/floor.c -lpthread
//   for f in 1 4 8 32; do /tmp/floor 2000 290 50 $f; done    # N B rounds F
//
// Not built by anything: a measuring stick for bench/RESULTS.md's CPU rows (see issue 9).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int n_socks;
static int *rd, *wr;

static void pin(int core) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void *reader(void *arg) {
    (void)arg;
    pin(1);
    int ep = epoll_create1(0);
    for (int i = 0; i < n_socks; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.fd = rd[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, rd[i], &e);
    }
    struct epoll_event ev[256];
    static char buf[65536];
    for (;;) {
        int n = epoll_wait(ep, ev, 256, -1);
        for (int i = 0; i < n; i++)
            while (read(ev[i].data.fd, buf, sizeof buf) > 0) {
            }
    }
    return NULL;
}

static double seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: floor SOCKETS BYTES ROUNDS [FRAMES_PER_WRITE]\n");
        return 2;
    }
    n_socks = atoi(argv[1]);
    int bytes = atoi(argv[2]), rounds = atoi(argv[3]), frames = argc > 4 ? atoi(argv[4]) : 1;
    rd = malloc(n_socks * sizeof *rd);
    wr = malloc(n_socks * sizeof *wr);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4096) || getsockname(l, (void *)&a, &len)) {
        perror("listen");
        return 1;
    }
    for (int i = 0; i < n_socks; i++) {
        int one = 1;
        rd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(rd[i], (void *)&a, sizeof a) || (wr[i] = accept(l, NULL, NULL)) < 0) {
            perror("connect");
            return 1;
        }
        setsockopt(wr[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(rd[i], F_SETFL, O_NONBLOCK);
    }
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    pin(0);
    char *msg = malloc((size_t)bytes * frames);
    memset(msg, 'x', (size_t)bytes * frames);
    usleep(200000);
    double cpu0 = seconds(CLOCK_THREAD_CPUTIME_ID), wall0 = seconds(CLOCK_MONOTONIC);
    long writes = 0;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n_socks; i++)
            if (write(wr[i], msg, (size_t)bytes * frames) > 0)
                writes++;
    double cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0, wall = seconds(CLOCK_MONOTONIC) - wall0;
    printf("sockets=%d bytes=%d frames/write=%d writes=%ld cpu=%.3fs wall=%.3fs "
           "us/write=%.2f us/frame=%.3f\n",
           n_socks, bytes, frames, writes, cpu, wall, cpu / writes * 1e6,
           cpu / writes / frames * 1e6);
    return 0;
}
