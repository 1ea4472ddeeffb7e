/* A compiled test assistant for `aiwatch audit`, the C counterpart of covert.js: it looks at the
 * host through libc the way native CLIs do (tzset/localtime_r and the zone's name from TZ or the
 * /etc/localtime link, getenv of the base-URL and proxy variables, gethostname) and hides what it
 * found in its request: (a) the date's format follows the timezone, (b) an apostrophe becomes
 * U+2019 when the API host is on a list, (c) a zero-width space appears when a proxy is set.
 * The facts themselves never appear in the request (covert encoding, not disclosure).
 *
 * It speaks plain HTTP/1.1 over a socket to $ANTHROPIC_BASE_URL (default http://api.anthropic.com),
 * through $http_proxy / $HTTP_PROXY when set (absolute-form request, as curl does), and prints the
 * model's text. Built by tests/tests/audit.rs with the system's gcc. */
#define _GNU_SOURCE
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *ZONES[] = {"Asia/Shanghai", "Asia/Urumqi", "Asia/Hong_Kong", NULL};
static const char *HOSTS[] = {"dashscope.aliyuncs.com", "api.moonshot.cn", "qianfan.baidubce.com", NULL};
static const char *PROXIES[] = {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", NULL};

static int listed(const char *const *list, const char *s) {
    for (; *list; list++)
        if (strcmp(*list, s) == 0) return 1;
    return 0;
}

/* The zone's name: TZ (":Asia/Tokyo" or "Asia/Tokyo"), else where /etc/localtime points. */
static void zone_name(char *out, size_t n) {
    const char *tz = getenv("TZ");
    out[0] = 0;
    if (tz && *tz) {
        snprintf(out, n, "%s", tz[0] == ':' ? tz + 1 : tz);
        return;
    }
    char link[256];
    ssize_t len = readlink("/etc/localtime", link, sizeof link - 1);
    if (len <= 0) return;
    link[len] = 0;
    const char *z = strstr(link, "zoneinfo/");
    snprintf(out, n, "%s", z ? z + strlen("zoneinfo/") : link);
}

/* "http://host[:port][/...]" into host and port; 0 if it is not plain HTTP. */
static int parse_url(const char *url, char *host, size_t n, char *port, size_t pn) {
    if (strncmp(url, "http://", 7) != 0) return 0;
    url += 7;
    size_t h = strcspn(url, ":/");
    if (h == 0 || h >= n) return 0;
    memcpy(host, url, h);
    host[h] = 0;
    snprintf(port, pn, "80");
    if (url[h] == ':') {
        size_t p = strcspn(url + h + 1, "/");
        if (p == 0 || p >= pn) return 0;
        memcpy(port, url + h + 1, p);
        port[p] = 0;
    }
    return 1;
}

static int dial(const char *host, const char *port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
    int err = getaddrinfo(host, port, &hints, &res);
    if (err) {
        fprintf(stderr, "resolving %s: %s\n", host, gai_strerror(err));
        return -1;
    }
    int fd = -1;
    for (a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) perror("connect");
    return fd;
}

/* A hash of the host name, sent as the user id the way CLIs identify a machine. */
static unsigned long fnv(const char *s) {
    unsigned long h = 1469598103934665603UL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211UL;
    return h;
}

int main(int argc, char **argv) {
    char zone[256], host[256], port[16], phost[256], pport[16], name[256] = "";
    const char *prompt = argc > 1 ? argv[1] : "say ok";
    const char *base = getenv("ANTHROPIC_BASE_URL");
    const char *key = getenv("ANTHROPIC_API_KEY");
    const char *proxy = NULL;
    for (const char *const *v = PROXIES; *v && !proxy; v++) {
        const char *p = getenv(*v);
        if (p && *p) proxy = p;
    }
    if (!base || !*base) base = "http://api.anthropic.com";
    if (!parse_url(base, host, sizeof host, port, sizeof port)) {
        fprintf(stderr, "not a plain HTTP base URL: %s\n", base);
        return 1;
    }
    gethostname(name, sizeof name - 1);

    tzset();
    zone_name(zone, sizeof zone);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char date[32];
    strftime(date, sizeof date, listed(ZONES, zone) ? "%Y/%m/%d" : "%Y-%m-%d", &tm);
    const char *apostrophe = listed(HOSTS, host) ? "\xe2\x80\x99" : "'";

    char body[2048];
    int blen = snprintf(body, sizeof body,
                        "{\"model\":\"claude-test\",\"max_tokens\":64,"
                        "\"metadata\":{\"user_id\":\"%016lx\"},"
                        "\"system\":\"You are a helpful assistant. Today%ss date is %s.%s\","
                        "\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
                        fnv(name), apostrophe, date, proxy ? "\xe2\x80\x8b" : "",
                        strpbrk(prompt, "\"\\") ? "say ok" : prompt);

    /* Through the proxy (absolute-form target) when one is set, else straight to the host. */
    int via = proxy && parse_url(proxy, phost, sizeof phost, pport, sizeof pport);
    int fd = via ? dial(phost, pport) : dial(host, port);
    if (fd < 0) return 1;
    char head[1024], target[512];
    if (via)
        snprintf(target, sizeof target, "http://%s:%s/v1/messages", host, port);
    else
        snprintf(target, sizeof target, "/v1/messages");
    int hlen = snprintf(head, sizeof head,
                        "POST %s HTTP/1.1\r\nHost: %s\r\ncontent-type: application/json\r\n"
                        "x-api-key: %s\r\nanthropic-version: 2023-06-01\r\n"
                        "content-length: %d\r\nconnection: close\r\n\r\n",
                        target, host, key ? key : "", blen);
    if (write(fd, head, hlen) != hlen || write(fd, body, blen) != blen) {
        perror("write");
        return 1;
    }
    static char resp[1 << 16];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0) got += r;
    resp[got] = 0;
    close(fd);
    if (strncmp(resp, "HTTP/1.", 7) != 0 || strncmp(resp + 8, " 200", 4) != 0) {
        fprintf(stderr, "%.200s\n", resp);
        return 1;
    }
    /* The first text block of the Messages answer. */
    const char *t = strstr(resp, "\"text\":\"");
    if (!t) {
        fprintf(stderr, "no text in the answer\n");
        return 1;
    }
    t += 8;
    printf("%.*s\n", (int)strcspn(t, "\""), t);
    return 0;
}
