// nfqref: the C reference NFQUEUE reader of the nfq benchmark figure
// (issue 4, appliance/bench/nfq.go). It is built on Debian's
// libnetfilter_queue the way that library's own example reader is: one
// recv, nfq_handle_packet, and nfq_set_verdict for every packet. With -b it
// drains what the socket holds after each blocking recv (up to 64
// messages) and returns runs of accepts with one nfq_set_verdict_batch,
// which is what the Go lean reader does too.
//
// It binds the queue as the Go readers do (copy whole packets, queue
// length -m, NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO, SO_RCVBUFFORCE -r),
// applies one content rule (-c: drop packets whose TCP/UDP payload
// contains it), prints "ready" once bound, and on SIGTERM or SIGINT prints
// its counters as one JSON line and exits.
//
// Build: gcc -O2 -o nfqref nfqref.c -lnetfilter_queue
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/netfilter.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

static volatile sig_atomic_t stop;

static struct {
	unsigned long long received, accepted, dropped, errors, overruns, reads, writes;
} cnt;

static const char *pattern;
static size_t patlen;
static int batch;
static uint32_t pending_id;
static int have_pending;

static void on_signal(int sig) { (void)sig; stop = 1; }

// l4payload returns the TCP or UDP payload of an IPv4 or IPv6 packet (IPv6
// without extension headers), or what follows the IP header for other
// protocols; NULL if the packet is too short.
static const unsigned char *l4payload(const unsigned char *p, int len, int *plen)
{
	int off, proto;
	if (len < 1)
		return NULL;
	if ((p[0] >> 4) == 4) {
		if (len < 20)
			return NULL;
		off = (p[0] & 0x0f) * 4;
		proto = p[9];
	} else if ((p[0] >> 4) == 6) {
		if (len < 40)
			return NULL;
		off = 40;
		proto = p[6];
	} else {
		return NULL;
	}
	if (proto == 6) {
		if (len < off + 20)
			return NULL;
		off += (p[off + 12] >> 4) * 4;
	} else if (proto == 17) {
		off += 8;
	}
	if (off > len)
		return NULL;
	*plen = len - off;
	return p + off;
}

static void verdict(struct nfq_q_handle *qh, uint32_t id, int v)
{
	cnt.writes++;
	if (nfq_set_verdict(qh, id, v, 0, NULL) < 0)
		cnt.errors++;
}

static void flush_pending(struct nfq_q_handle *qh)
{
	if (!have_pending)
		return;
	cnt.writes++;
	if (nfq_set_verdict_batch(qh, pending_id, NF_ACCEPT) < 0)
		cnt.errors++;
	have_pending = 0;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data)
{
	(void)msg;
	(void)data;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	if (ph == NULL) {
		cnt.errors++;
		return 0;
	}
	uint32_t id = ntohl(ph->packet_id);
	unsigned char *pkt;
	int len = nfq_get_payload(nfa, &pkt);
	int v = NF_ACCEPT;
	cnt.received++;
	if (pattern != NULL && len > 0) {
		int plen;
		const unsigned char *pl = l4payload(pkt, len, &plen);
		if (pl != NULL && memmem(pl, plen, pattern, patlen) != NULL)
			v = NF_DROP;
	}
	if (v == NF_DROP)
		cnt.dropped++;
	else
		cnt.accepted++;
	if (!batch) {
		verdict(qh, id, v);
	} else if (v == NF_ACCEPT) {
		pending_id = id;
		have_pending = 1;
	} else {
		flush_pending(qh); // a batch verdict covers every queued ID up to its ID
		verdict(qh, id, NF_DROP);
	}
	return 0;
}

static void die(const char *what)
{
	fprintf(stderr, "nfqref: %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	int queue = 0, maxlen = 4096, rcvbuf = 64 << 20, opt;
	while ((opt = getopt(argc, argv, "q:m:r:c:b")) != -1) {
		switch (opt) {
		case 'q': queue = atoi(optarg); break;
		case 'm': maxlen = atoi(optarg); break;
		case 'r': rcvbuf = atoi(optarg); break;
		case 'c': pattern = optarg; patlen = strlen(optarg); break;
		case 'b': batch = 1; break;
		default:
			fprintf(stderr, "usage: nfqref [-q queue] [-m maxlen] [-r rcvbuf] [-c content] [-b]\n");
			return 2;
		}
	}
	struct nfq_handle *h = nfq_open();
	if (h == NULL)
		die("nfq_open");
	struct nfq_q_handle *qh = nfq_create_queue(h, queue, on_packet, NULL);
	if (qh == NULL)
		die("nfq_create_queue");
	if (nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0)
		die("nfq_set_mode");
	if (nfq_set_queue_maxlen(qh, maxlen) < 0)
		die("nfq_set_queue_maxlen");
	uint32_t flags = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO;
	if (nfq_set_queue_flags(qh, flags, flags) < 0)
		die("nfq_set_queue_flags");
	int fd = nfq_fd(h);
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
		die("setsockopt SO_RCVBUFFORCE");

	struct sigaction sa = {0};
	sa.sa_handler = on_signal; // no SA_RESTART: recv returns EINTR
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);

	static char buf[64 * 1024 + 4096] __attribute__((aligned(8)));
	while (!stop) {
		int n = recv(fd, buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				cnt.overruns++;
				continue;
			}
			die("recv");
		}
		cnt.reads++;
		nfq_handle_packet(h, buf, n);
		if (!batch)
			continue;
		for (int i = 0; i < 63; i++) {
			n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
			if (n < 0) {
				if (errno == ENOBUFS) {
					cnt.overruns++;
					continue;
				}
				break; // EAGAIN: drained
			}
			nfq_handle_packet(h, buf, n);
		}
		flush_pending(qh);
	}
	printf("{\"received\":%llu,\"accepted\":%llu,\"dropped\":%llu,\"errors\":%llu,\"overruns\":%llu,\"reads\":%llu,\"writes\":%llu}\n",
	       cnt.received, cnt.accepted, cnt.dropped, cnt.errors, cnt.overruns, cnt.reads, cnt.writes);
	fflush(stdout);
	nfq_destroy_queue(qh);
	nfq_close(h);
	return 0;
}
