/*
 * A C gRPC unary load generator for bench/run.ts (built there with gcc and libnghttp2): like h2load,
 * but every call carries a fresh request id, so that DeductQuota is measured as a deduct and not as
 * the replay of one (h2load sends one prebuilt body). Keeps `concurrency` calls in flight on one
 * HTTP/2 connection for `seconds`, then prints one JSON line: {"answers": n, "errors": n, "seconds": s}
 * (an answer is a call that ended with grpc-status 0).
 *
 * Usage: grpc-load <host> <port> <check|deduct> <seconds> <concurrency> <token> <users>
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  uint8_t body[256];
  size_t length;
  size_t sent;
  int status; /* grpc-status, -1 until seen */
} call_t;

static int fd;
static int deduct;
static int users;
static long long answers, errors, calls;
static int in_flight;
static double deadline;
static char path[128], authority[128], bearer[512], run[32];

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* A protobuf string field (wire type 2) of at most 127 bytes. */
static size_t put_string(uint8_t *out, int field, const char *s) {
  size_t n = strlen(s);
  out[0] = (uint8_t)(field << 3 | 2);
  out[1] = (uint8_t)n;
  memcpy(out + 2, s, n);
  return n + 2;
}

/* One length-prefixed gRPC message: userId (1), serviceName (2), count (3) = 1, requestId (5). */
static void build(call_t *c, long long n) {
  char user[32], request[64];
  snprintf(user, sizeof user, "bench%lld", n % users);
  snprintf(request, sizeof request, "%s-%lld", run, n);
  uint8_t *m = c->body + 5;
  size_t len = put_string(m, 1, user);
  len += put_string(m + len, 2, "passport");
  m[len++] = 3 << 3;
  m[len++] = 1;
  if (deduct) len += put_string(m + len, 5, request);
  c->body[0] = 0;
  c->body[1] = (uint8_t)(len >> 24);
  c->body[2] = (uint8_t)(len >> 16);
  c->body[3] = (uint8_t)(len >> 8);
  c->body[4] = (uint8_t)len;
  c->length = len + 5;
  c->sent = 0;
  c->status = -1;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
  (void)s, (void)id, (void)user;
  call_t *c = source->ptr;
  size_t n = c->length - c->sent < length ? c->length - c->sent : length;
  memcpy(buf, c->body + c->sent, n);
  c->sent += n;
  if (c->sent == c->length) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

#define HEADER(k, v) {(uint8_t *)k, (uint8_t *)v, sizeof k - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

static void submit(nghttp2_session *s) {
  if (now() >= deadline) return;
  call_t *c = malloc(sizeof *c);
  build(c, ++calls);
  nghttp2_nv headers[] = {
      HEADER(":method", "POST"),
      HEADER(":scheme", "http"),
      HEADER(":path", path),
      HEADER(":authority", authority),
      HEADER("content-type", "application/grpc"),
      HEADER("te", "trailers"),
      HEADER("authorization", bearer),
  };
  nghttp2_data_provider body = {.source = {.ptr = c}, .read_callback = read_body};
  if (nghttp2_submit_request(s, NULL, headers, sizeof headers / sizeof headers[0], &body, c) < 0) {
    free(c);
    errors++;
    return;
  }
  in_flight++;
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t length, int flags, void *user) {
  (void)s, (void)flags, (void)user;
  ssize_t n = send(fd, data, length, MSG_NOSIGNAL);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? NGHTTP2_ERR_WOULDBLOCK : NGHTTP2_ERR_CALLBACK_FAILURE;
  return n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user) {
  (void)valuelen, (void)flags, (void)user;
  call_t *c = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
  /* nghttp2 hands names and values NUL-terminated. */
  if (c && namelen == 11 && memcmp(name, "grpc-status", 11) == 0) c->status = atoi((const char *)value);
  return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *user) {
  (void)user;
  call_t *c = nghttp2_session_get_stream_user_data(s, id);
  if (!c) return 0;
  if (code == 0 && c->status == 0) answers++;
  else errors++;
  free(c);
  in_flight--;
  submit(s);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: grpc-load <host> <port> <check|deduct> <seconds> <concurrency> <token> <users>\n");
    return 2;
  }
  deduct = strcmp(argv[3], "deduct") == 0;
  double seconds = atof(argv[4]);
  int concurrency = atoi(argv[5]);
  users = atoi(argv[7]);
  snprintf(path, sizeof path, "/billing.v1.BillingInternalService/%s", deduct ? "DeductQuota" : "CheckQuota");
  snprintf(authority, sizeof authority, "%s:%s", argv[1], argv[2]);
  snprintf(bearer, sizeof bearer, "Bearer %s", argv[6]);
  snprintf(run, sizeof run, "c%lx", (unsigned long)time(NULL) ^ (unsigned long)getpid() << 16);

  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  inet_pton(AF_INET, argv[1], &addr.sin_addr);
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    perror("connect");
    return 1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  nghttp2_session_callbacks *cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_send_callback(cb, on_send);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
  /* Answer bodies are dropped unread (nghttp2 gives the flow-control window back by itself). */
  nghttp2_session *s;
  nghttp2_session_client_new(&s, cb, NULL);
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
                                       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24}};
  nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, settings, 2);

  double started = now();
  deadline = started + seconds;
  for (int i = 0; i < concurrency; i++) submit(s);
  static uint8_t buf[1 << 16];
  while (in_flight > 0) {
    if (nghttp2_session_send(s) != 0) break;
    struct pollfd p = {.fd = fd, .events = POLLIN | (nghttp2_session_want_write(s) ? POLLOUT : 0)};
    if (poll(&p, 1, 1000) < 0) break;
    if (p.revents & POLLIN) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (nghttp2_session_mem_recv(s, buf, (size_t)n) < 0) break;
    }
    if (p.revents & (POLLERR | POLLHUP)) break;
  }
  errors += in_flight;
  printf("{\"answers\": %lld, \"errors\": %lld, \"seconds\": %.3f}\n", answers, errors, now() - started);
  nghttp2_session_del(s);
  close(fd);
  return 0;
}
