/*
 * bench/lib/xen-devices-stub.c: an LD_PRELOAD library that lets Debian's xenstored
 * (C, xen-utils-4.17) and oxenstored start on a host with no Xen hypervisor, so that
 * bench/xenstore can measure them through their Unix socket. See bench/README.md.
 *
 * Built by bench/xenstore.ts with `cc -shared -fPIC`; nothing else uses it.
 *
 * Both daemons, as Debian builds them, open the hypervisor interfaces at start-up and
 * exit when they are missing (tools/xenstore/xenstored_domain.c domain_init/dom0_init,
 * tools/ocaml/xenstored/xenstored.ml Event.init):
 *   xc_interface_open    /dev/xen/privcmd      (libxenctrl)
 *   xengnttab_open       /dev/xen/gntdev       (libxengnttab)
 *   xenevtchn_open       /dev/xen/evtchn       (libxenevtchn)
 *   xenbus_evtchn        /proc/xen/xsd_port    (Domain-0's xenstore event channel)
 *   xenbus_map           /proc/xen/xsd_kva     (Domain-0's xenstore ring page)
 * This library answers those calls itself:
 *   - the handles are dummies; xenevtchn_fd() is an eventfd that is never signalled, so the
 *     daemons' poll() never sees an event-channel notification (there are no guests);
 *   - binding or notifying an event channel succeeds and does nothing; no event is ever
 *     pending; mapping a grant fails (ENOSYS); xc_domain_getinfo reports no domains;
 *   - open("/proc/xen/xsd_port") and open("/proc/xen/xsd_kva") open the files
 *     $XEN_STUB_DIR/xsd_port (holding a port number) and $XEN_STUB_DIR/xsd_kva (a zeroed
 *     4 KiB file), so Domain-0's ring is a page of a plain file that no one writes to;
 *   - setrlimit(RLIMIT_NOFILE) beyond the hard limit, which fails with EPERM without
 *     CAP_SYS_RESOURCE (oxenstored asks for /proc/sys/fs/nr_open at start-up), is retried
 *     with the current hard limit.
 * None of these is on the path of a request from a socket client, which is what the bench
 * measures: that is the daemons' own code.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- libxenevtchn ---------------------------------------------------------------------- */

struct stub_evtchn {
    int fd;
};

static int next_port = 10;

void *xenevtchn_open(void *logger, unsigned int flags)
{
    (void)logger;
    (void)flags;
    struct stub_evtchn *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->fd < 0) {
        free(h);
        return NULL;
    }
    return h;
}

void *xenevtchn_fdopen(void *logger, int fd, unsigned int flags)
{
    (void)logger;
    (void)flags;
    struct stub_evtchn *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->fd = fd;
    return h;
}

int xenevtchn_close(void *xh)
{
    struct stub_evtchn *h = xh;
    if (h) {
        close(h->fd);
        free(h);
    }
    return 0;
}

int xenevtchn_fd(void *xh) { return ((struct stub_evtchn *)xh)->fd; }
int xenevtchn_notify(void *h, uint32_t port) { (void)h; (void)port; return 0; }
int xenevtchn_bind_interdomain(void *h, uint32_t domid, uint32_t remote_port) { (void)h; (void)domid; (void)remote_port; return next_port++; }
int xenevtchn_bind_virq(void *h, unsigned int virq) { (void)h; (void)virq; return next_port++; }
int xenevtchn_unbind(void *h, uint32_t port) { (void)h; (void)port; return 0; }
int xenevtchn_pending(void *h) { (void)h; errno = EAGAIN; return -1; }
int xenevtchn_unmask(void *h, uint32_t port) { (void)h; (void)port; return 0; }

/* ---- libxengnttab ---------------------------------------------------------------------- */

static int gnttab_dummy;

void *xengnttab_open(void *logger, unsigned int flags) { (void)logger; (void)flags; return &gnttab_dummy; }
int xengnttab_close(void *h) { (void)h; return 0; }
int xengnttab_set_max_grants(void *h, uint32_t count) { (void)h; (void)count; return 0; }
void *xengnttab_map_grant_ref(void *h, uint32_t domid, uint32_t ref, int prot) { (void)h; (void)domid; (void)ref; (void)prot; errno = ENOSYS; return NULL; }
int xengnttab_unmap(void *h, void *start, uint32_t count) { (void)h; (void)start; (void)count; return 0; }

/* ---- libxenctrl (the calls the daemons make at start-up or on a domain event) ------------- */

static int xc_dummy;

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned int flags) { (void)logger; (void)dombuild_logger; (void)flags; return &xc_dummy; }
int xc_interface_close(void *xch) { (void)xch; return 0; }
int xc_domain_getinfo(void *xch, uint32_t first, unsigned int max, void *info) { (void)xch; (void)first; (void)max; (void)info; return 0; }
int xc_domain_getinfolist(void *xch, uint32_t first, unsigned int max, void *info) { (void)xch; (void)first; (void)max; (void)info; return 0; }

/* ---- /proc/xen/xsd_{port,kva} -> $XEN_STUB_DIR ------------------------------------------- */

static const char *redirect(const char *path, char *buf, size_t len)
{
    const char *dir = getenv("XEN_STUB_DIR");
    if (!dir || !path)
        return path;
    const char *leaf = NULL;
    if (strcmp(path, "/proc/xen/xsd_port") == 0)
        leaf = "xsd_port";
    else if (strcmp(path, "/proc/xen/xsd_kva") == 0)
        leaf = "xsd_kva";
    if (!leaf)
        return path;
    snprintf(buf, len, "%s/%s", dir, leaf);
    return buf;
}

static int open_common(const char *sym, const char *path, int flags, mode_t mode)
{
    char buf[4096];
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, sym);
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(redirect(path, buf, sizeof(buf)), flags, mode);
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common("open", path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common("open64", path, flags, mode);
}

/* ---- setrlimit(RLIMIT_NOFILE) without CAP_SYS_RESOURCE ---------------------------------- */

static int setrlimit_common(const char *sym, int resource, const struct rlimit *rl)
{
    int (*real)(int, const struct rlimit *) = (int (*)(int, const struct rlimit *))dlsym(RTLD_NEXT, sym);
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    int rc = real(resource, rl);
    if (rc != 0 && errno == EPERM && resource == RLIMIT_NOFILE) {
        struct rlimit cur;
        if (getrlimit(RLIMIT_NOFILE, &cur) == 0) {
            struct rlimit capped = { rl->rlim_cur < cur.rlim_max ? rl->rlim_cur : cur.rlim_max, cur.rlim_max };
            fprintf(stderr, "xen-devices-stub: setrlimit(RLIMIT_NOFILE, %llu) refused (EPERM); using the hard limit %llu\n",
                    (unsigned long long)rl->rlim_max, (unsigned long long)cur.rlim_max);
            rc = real(resource, &capped);
        }
    }
    return rc;
}

/* struct rlimit and struct rlimit64 are the same on LP64 (x86_64), the only target here. */
_Static_assert(sizeof(struct rlimit) == sizeof(struct rlimit64), "LP64 only");

int setrlimit(__rlimit_resource_t resource, const struct rlimit *rl) { return setrlimit_common("setrlimit", (int)resource, rl); }
int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rl) { return setrlimit_common("setrlimit64", (int)resource, (const struct rlimit *)rl); }
