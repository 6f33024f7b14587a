#!/usr/bin/python3
"""Stands in for the agent's process inside crossdock-agent.service's sandbox (tests/packaging.rs).

Why: the hardening of the unit must leave the agent able to do its job (net sysctls, iptables on both
backends, netlink, its health socket, the Docker socket, outbound TCP, sd_notify and the watchdog)
and must take away what it does not need. This probe tries each of those from inside the real unit,
run by a real systemd, and prints one line per check: `ok <name>` or `FAIL <name>: <detail>`. It then
behaves like the agent towards systemd: READY=1 once its socket is bound, WATCHDOG=1 pings, a line on
SIGHUP, a clean exit on SIGTERM.
"""
import errno
import grp
import os
import signal
import socket
import stat
import subprocess

SOCKET_DIR = "/run/crossdock"
SOCKET = SOCKET_DIR + "/agent.sock"
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13


def out(line):
    print(line, flush=True)


def check(name, fn):
    try:
        detail = fn()
    except Exception as e:  # the detail goes to the test's failure message
        out(f"FAIL {name}: {type(e).__name__}: {e}")
        return
    if detail is None or detail is True:
        out(f"ok {name}")
    else:
        out(f"FAIL {name}: {detail}")


def expect_errno(fn, *codes):
    try:
        fn()
    except OSError as e:
        if e.errno in codes:
            return None
        return f"failed with {errno.errorcode.get(e.errno, e.errno)}, expected one of " + ", ".join(
            errno.errorcode[c] for c in codes)
    return "succeeded, but must be denied"


def status_field(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    raise RuntimeError(f"{name} missing from /proc/self/status")


def run(*argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def write_sysctl(path, value):
    with open("/proc/sys/" + path, "w") as f:
        f.write(value)
    with open("/proc/sys/" + path) as f:
        got = f.read().strip()
    return None if got == value else f"wrote {value}, read back {got}"


def capabilities():
    want = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)
    eff = int(status_field("CapEff"), 16)
    bnd = int(status_field("CapBnd"), 16)
    if eff != want or bnd != want:
        return f"CapEff={eff:#x} CapBnd={bnd:#x}, want both {want:#x} (CAP_NET_ADMIN, CAP_NET_RAW)"
    if status_field("NoNewPrivs") != "1":
        return "NoNewPrivs is not set"
    if status_field("Seccomp") != "2":
        return "no seccomp filter"


def iptables_nft():
    run("iptables", "-w", "5", "-t", "raw", "-I", "PREROUTING", "-s", "10.250.0.0/16", "-d", "10.250.1.0/24",
        "-m", "comment", "--comment", "crossdock-probe", "-j", "ACCEPT")
    run("iptables", "-w", "5", "-t", "nat", "-N", "CROSSDOCK-PROBE")
    run("iptables", "-w", "5", "-t", "nat", "-I", "POSTROUTING", "-s", "10.250.1.0/24", "-d", "10.250.0.0/16",
        "-j", "CROSSDOCK-PROBE")
    run("iptables", "-w", "5", "-t", "filter", "-N", "CROSSDOCK-PROBE")
    saved = run("iptables-save")
    for want in ("crossdock-probe", ":CROSSDOCK-PROBE", "-j CROSSDOCK-PROBE"):
        if want not in saved:
            return f"`{want}` missing from iptables-save after adding it"


def iptables_legacy():
    # The legacy backend takes /run/xtables.lock (flock): the one file outside /run/crossdock that the
    # unit makes writable.
    run("iptables-legacy", "-w", "5", "-t", "filter", "-N", "CROSSDOCK-PROBE-LEGACY")
    if "CROSSDOCK-PROBE-LEGACY" not in run("iptables-legacy", "-w", "5", "-S"):
        return "chain missing after creating it"


def netlink_route():
    run("ip", "address", "add", "10.250.9.1/32", "dev", "lo")
    run("ip", "route", "add", "10.250.99.0/24", "dev", "lo")
    routes = run("ip", "route", "show", "10.250.99.0/24")
    run("ip", "route", "del", "10.250.99.0/24", "dev", "lo")
    run("ip", "address", "del", "10.250.9.1/32", "dev", "lo")
    if "10.250.99.0/24" not in routes:
        return f"route not listed after adding it: {routes!r}"


def health_socket():
    d = os.stat(SOCKET_DIR)
    gid = grp.getgrnam("crossdock").gr_gid
    if stat.S_IMODE(d.st_mode) != 0o750 or d.st_gid != gid:
        return f"{SOCKET_DIR} is mode {stat.S_IMODE(d.st_mode):o} gid {d.st_gid}, want 750 crossdock({gid})"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(SOCKET)
    s.listen(16)
    os.chmod(SOCKET, 0o660)
    os.chown(SOCKET, -1, gid)
    st = os.stat(SOCKET)
    if stat.S_IMODE(st.st_mode) != 0o660 or st.st_gid != gid:
        return f"socket is mode {stat.S_IMODE(st.st_mode):o} gid {st.st_gid}"
    health_socket.listener = s  # kept open until exit


def docker_socket():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect("/var/run/docker.sock")
    s.close()


def outbound_tcp(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    # Nothing listens on port 9 here: a refusal proves the socket was allowed and the packet went out.
    err = s.connect_ex((addr, 9))
    s.close()
    return None if err == errno.ECONNREFUSED else f"connect returned {errno.errorcode.get(err, err)}"


def write_file(path):
    with open(path, "w") as f:
        f.write("x")


def unshare_netns():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "unshare")


def sd_notify(msg):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        raise RuntimeError("NOTIFY_SOCKET is not set")
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(msg.encode(), addr)
    s.close()


def main():
    out(f"probe pid {os.getpid()} uid {os.getuid()} gid {os.getgid()}")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].startswith("/proc/sys"):
                out(f"mount {fields[4]} {fields[5]}")
    check("capabilities are exactly CAP_NET_ADMIN CAP_NET_RAW, no new privileges, seccomp", capabilities)
    check("sysctl net.ipv4.ip_forward is writable", lambda: write_sysctl("net/ipv4/ip_forward", "1"))
    check("sysctl net.ipv4.conf.lo.forwarding is writable",
          lambda: write_sysctl("net/ipv4/conf/lo/forwarding", "1"))
    check("sysctl kernel.* is read-only",
          lambda: expect_errno(lambda: write_file("/proc/sys/kernel/domainname"), errno.EROFS, errno.EACCES,
                               errno.EPERM))
    check("iptables (nft backend) edits raw, nat and filter", iptables_nft)
    check("iptables-legacy takes /run/xtables.lock and edits filter", iptables_legacy)
    check("netlink: address and route changes", netlink_route)
    check("health socket bound in /run/crossdock, mode 0660, group crossdock", health_socket)
    check("Docker socket reachable", docker_socket)
    check("outbound TCP over IPv4", lambda: outbound_tcp(socket.AF_INET, "127.0.0.1"))
    check("outbound TCP over IPv6", lambda: outbound_tcp(socket.AF_INET6, "::1"))
    check("/etc is read-only", lambda: expect_errno(lambda: write_file("/etc/crossdock/probe"), errno.EROFS))
    check("/usr is read-only", lambda: expect_errno(lambda: write_file("/usr/bin/probe"), errno.EROFS))
    check("/var is read-only", lambda: expect_errno(lambda: write_file("/var/lib/probe"), errno.EROFS))
    check("/home is inaccessible", lambda: expect_errno(lambda: os.listdir("/root"), errno.EACCES, errno.ENOENT))
    check("/tmp is private and writable", lambda: write_file("/tmp/probe"))
    check("no raw devices", lambda: expect_errno(lambda: open("/dev/mem", "rb"), errno.ENOENT, errno.EPERM))
    check("packet sockets are refused",
          lambda: expect_errno(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW), errno.EAFNOSUPPORT))
    check("namespaces cannot be created", lambda: expect_errno(unshare_netns, errno.EPERM))
    check("watchdog interval is 30 s",
          lambda: None if os.environ.get("WATCHDOG_USEC") == "30000000"
          else f"WATCHDOG_USEC={os.environ.get('WATCHDOG_USEC')}")

    # Signals are taken synchronously: HUP prints a line (the agent re-reads its configuration), TERM
    # ends the process cleanly. Between them, a watchdog ping every 5 s (WatchdogSec=30).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGTERM})
    sd_notify("READY=1\nSTATUS=probe finished its checks")
    out("ready")
    while True:
        sd_notify("WATCHDOG=1")
        info = signal.sigtimedwait({signal.SIGHUP, signal.SIGTERM}, 5)
        if info is None:
            continue
        if info.si_signo == signal.SIGHUP:
            out("reloaded on SIGHUP")
        else:
            out("stopping on SIGTERM")
            return

if __name__ == "__main__":
    main()
