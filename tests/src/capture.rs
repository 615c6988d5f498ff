//! Helpers for the capture end-to-end tests: a workload script that performs exact syscalls
//! (python3, which calls the libc wrapper of the same name) and predicates over event JSON.

use serde_json::Value;

/// Performs one syscall scenario per step and prints one JSON object with what it learnt
/// (ports, pids) on stdout. Runs with its cwd set to the scratch directory `root`.
pub const WORKLOAD_PY: &str = r#"
import ctypes, json, os, socket, sys, time
root = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
out = {"pid": os.getpid()}

# a failed execve
try: os.execv(os.path.join(root, "no-such-exe"), ["no-such-exe"])
except FileNotFoundError: pass

# openat(dirfd, relative)
d = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
fd = os.open("sub/file.txt", os.O_RDONLY, dir_fd=d); os.close(fd)
# ../../ path from a subdirectory
os.chdir(os.path.join(root, "sub"))
fd = os.open("../../" + os.path.basename(root) + "/sub/file.txt", os.O_RDONLY); os.close(fd)
# through a symlink
fd = os.open(os.path.join(root, "lnk"), os.O_RDONLY); os.close(fd)
# ENOENT, absolute and relative
try: os.open(os.path.join(root, "missing-abs"), os.O_RDONLY)
except FileNotFoundError: pass
try: os.open("missing-rel", os.O_RDONLY)
except FileNotFoundError: pass
os.chdir(root)

# connect to a closed loopback port, IPv4 and IPv6
def closed_port(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM); s.bind((addr, 0)); p = s.getsockname()[1]; s.close(); return p
p4 = closed_port(socket.AF_INET, "127.0.0.1"); out["port4"] = p4
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try: s.connect(("127.0.0.1", p4))
except ConnectionRefusedError: pass
s.close()
p6 = closed_port(socket.AF_INET6, "::1"); out["port6"] = p6
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
try: s.connect(("::1", p6))
except ConnectionRefusedError: pass
s.close()
# unix socket
upath = os.path.join(root, "u.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind(upath); srv.listen(1)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(upath); c.close(); srv.close()

# memfd_create
m = os.memfd_create("capture-memfd", 0); os.close(m)

# unshare(CLONE_NEWUTS)
libc.unshare(0x04000000)

# ptrace attach/detach a child
child = os.fork()
if child == 0:
    # Killed below; a long sleep so that it is still there to attach to on a slow machine.
    time.sleep(600); os._exit(0)
out["traced"] = child
libc.ptrace(16, child, None, None)
os.waitpid(child, os.WUNTRACED)
libc.ptrace(17, child, None, None)
os.kill(child, 9); os.waitpid(child, 0)

# dup2 a socket onto fd 0
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
os.dup2(s.fileno(), 0)


# name-based file calls, relative to the cwd (root)
os.mkdir("newdir", 0o750)
os.rename("newdir", "renamed")
# A relative old path with an absolute new one whose byte at len(new) - len(old) is '/': the
# kernel side once read that byte as the old path's first and took the path as rooted.
open("mv-src", "w").close(); os.mkdir("nd")
os.rename("mv-src", os.path.join(root, "nd", "abcde"))
os.symlink("sub/file.txt", "sym")
os.link("sub/file.txt", "hard")
os.chmod("sub/file.txt", 0o640)
os.unlink("hard")
os.rmdir("renamed")

# file capabilities as setcap writes them (v2 vfs_cap_data, cap_net_raw+ep), by relative path;
# a v3 value (cap_sys_admin) through an fd; a user xattr on the root dirfd itself through
# setxattrat(AT_EMPTY_PATH) with struct xattr_args { value, size, flags=XATTR_CREATE }
import struct
out["setxattr"] = libc.setxattr(b"sub/file.txt", b"security.capability", struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0), 20, 0)
xfd = os.open("sub/file.txt", os.O_RDONLY)
out["xfd"] = xfd
out["fsetxattr"] = libc.fsetxattr(xfd, b"security.capability", struct.pack("<6I", 0x03000000, 1 << 21, 0, 0, 0, 0), 24, 0)
os.close(xfd)
xval = ctypes.create_string_buffer(b"abc")
xargs = struct.pack("<QII", ctypes.addressof(xval), 3, 1)
out["setxattrat"] = libc.syscall(463, d, b"", 0x1000, b"user.capture", xargs, len(xargs))

# bind/listen/accept on loopback
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4); out["srvport"] = srv.getsockname()[1]
cl = socket.socket(); cl.connect(("127.0.0.1", out["srvport"])); out["cliport"] = cl.getsockname()[1]
a, _ = srv.accept(); a.close(); cl.close(); srv.close()

# bpf(BPF_PROG_GET_NEXT_ID)
attr = ctypes.create_string_buffer(16)
libc.syscall(321, 11, attr, 16)

# capset: read our capabilities and set the same ones again
hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
data = (ctypes.c_uint32 * 6)()
libc.capget(hdr, data)
out["capeff"] = data[0] | (data[3] << 32)
out["capset"] = libc.capset(hdr, data)

# setuid last: drop to nobody, then try to get root back (EPERM)
os.setuid(65534)
try: os.setuid(0)
except PermissionError: pass

print(json.dumps(out), flush=True)
sys.exit(7)
"#;

pub fn s<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for p in path.split('.') {
        cur = match p.parse::<usize>() {
            Ok(i) => cur.get(i)?,
            Err(_) => cur.get(p)?,
        };
    }
    Some(cur)
}

pub fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    s(v, path).and_then(Value::as_str)
}

pub fn int_at(v: &Value, path: &str) -> Option<i64> {
    s(v, path).and_then(Value::as_i64)
}

pub fn is(v: &Value, kind: &str, pid: u32) -> bool {
    str_at(v, "type") == Some(kind) && int_at(v, "process.pid") == Some(pid as i64)
}

/// Submits one IORING_OP_OPENAT of /etc/hostname through a raw io_uring (no liburing needed);
/// prints the io_uring_enter result and its pid.
pub const URING_PY: &str = r#"
import ctypes, mmap, struct, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
p = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, p)
assert fd >= 0, os.strerror(ctypes.get_errno())
sq_entries = struct.unpack_from("I", p, 0)[0]
head, tail, mask, entries, flags, dropped, array = struct.unpack_from("7I", p, 40)
ring = mmap.mmap(fd, array + sq_entries * 4, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
sqes = mmap.mmap(fd, sq_entries * 64, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0x10000000)
def submit(op, dfd, addr, length=0, addr2=0, op_flags=0):
    # struct io_uring_sqe: opcode, flags, ioprio, fd, off/addr2, addr, len, op_flags, user_data
    t = struct.unpack_from("I", ring, tail)[0]
    i = t & struct.unpack_from("I", ring, mask)[0]
    sqes[i * 64:(i + 1) * 64] = struct.pack("BBHiQQIIQ", op, 0, 0, dfd, addr2, addr, length, op_flags, 0x5EED) + b"\0" * 24
    struct.pack_into("I", ring, array + i * 4, i)
    struct.pack_into("I", ring, tail, t + 1)
    return libc.syscall(426, fd, 1, 1, 1, None, 0)
path = ctypes.create_string_buffer(b"/etc/hostname")
ret = submit(18, -100, ctypes.addressof(path))
# RENAMEAT then UNLINKAT by relative paths, in the working directory the caller chose.
open("uring-a", "w").close()
a = ctypes.create_string_buffer(b"uring-a")
b = ctypes.create_string_buffer(b"uring-b")
submit(35, -100, ctypes.addressof(a), -100 & 0xFFFFFFFF, ctypes.addressof(b))
submit(36, -100, ctypes.addressof(b))
print(ret, os.getpid())
"#;

/// Sends through every path `sendto`/`sendmsg`/`sendmmsg` events must cover, and one they must
/// leave out (a TCP send without an address); prints fds and ports as JSON.
pub const SEND_PY: &str = r#"
import ctypes, json, os, socket, sys
root = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
out = {"pid": os.getpid()}

r4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r4.bind(("127.0.0.1", 0))
out["p4"] = r4.getsockname()[1]
r4b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r4b.bind(("127.0.0.1", 0))
out["p4b"] = r4b.getsockname()[1]
r6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); r6.bind(("::1", 0))
out["p6"] = r6.getsockname()[1]

# sendto with an address
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out["sendto_ret"] = u.sendto(b"hello", ("127.0.0.1", out["p4"]))
out["sendto_fd"] = u.fileno(); out["sendto_lport"] = u.getsockname()[1]

# IPv6 sendmsg with msg_name, two iovecs
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
out["sendmsg_ret"] = u6.sendmsg([b"abc", b"defg"], [], 0, ("::1", out["p6"]))
out["sendmsg_fd"] = u6.fileno()

# a connected socket, no address: the kernel's peer
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(("127.0.0.1", out["p4"]))
out["conn_ret"] = c.send(b"xy"); out["conn_fd"] = c.fileno(); out["conn_lport"] = c.getsockname()[1]

# no address, not connected: EDESTADDRREQ, carried as is
e = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); out["fail_fd"] = e.fileno()
try: e.send(b"z")
except OSError as x: out["fail_errno"] = x.errno

# sendmmsg of two messages to two destinations: the event names the first; the second
# destination is what sock_sendmsg reports
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t), ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint32)]
def sin(port):
    b = ctypes.create_string_buffer(16)
    b[0:2] = (2).to_bytes(2, "little"); b[2:4] = port.to_bytes(2, "big"); b[4:8] = bytes([127, 0, 0, 1])
    return b
names = [sin(out["p4"]), sin(out["p4b"])]
data = ctypes.create_string_buffer(b"0123456789")
iovs = [iovec(ctypes.cast(data, ctypes.c_void_p), 10), iovec(ctypes.cast(data, ctypes.c_void_p), 4)]
msgs = (mmsghdr * 2)()
for i in range(2):
    msgs[i].hdr.name = ctypes.cast(names[i], ctypes.c_void_p); msgs[i].hdr.namelen = 16
    msgs[i].hdr.iov = ctypes.pointer(iovs[i]); msgs[i].hdr.iovlen = 1
m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out["mmsg_ret"] = libc.sendmmsg(m.fileno(), msgs, 2, 0); out["mmsg_fd"] = m.fileno()

# a unix datagram to a named socket
upath = os.path.join(root, "d.sock")
us = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); us.bind(upath)
uc = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
out["unix_ret"] = uc.sendto(b"unix!", upath); out["unix_fd"] = uc.fileno()

# TCP: a plain send on a connected stream socket is not reported
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
t = socket.socket(); t.connect(("127.0.0.1", srv.getsockname()[1])); a, _ = srv.accept()
out["tcp_ret"] = t.send(b"tcp-data-17-bytes"); out["tcp_fd"] = t.fileno()
t.close(); a.close(); srv.close()

# a raw ICMP socket: an echo request to 127.0.0.1
rw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); out["raw_fd"] = rw.fileno()
out["raw_ret"] = rw.sendto(bytes([8, 0, 0xf7, 0xff, 0, 0, 0, 0]), ("127.0.0.1", 0))

# TCP Fast Open: a stream send that names its destination is reported
srv2 = socket.socket(); srv2.bind(("127.0.0.1", 0)); srv2.listen(1); out["tfo_port"] = srv2.getsockname()[1]
f = socket.socket(); out["tfo_fd"] = f.fileno()
try: out["tfo_ret"] = f.sendto(b"tfo", socket.MSG_FASTOPEN, ("127.0.0.1", out["tfo_port"]))
except OSError as x: out["tfo_ret"] = -x.errno
f.close(); srv2.close()

# the end marker: a datagram the test waits for, so that the absence checks are meaningful
out["end_ret"] = u.sendto(b"end", ("127.0.0.1", out["p4b"]))
print(json.dumps(out), flush=True)
"#;

/// Adversarial paths. First a race: while the helper opens through one path buffer, another
/// task flips that buffer between two existing files (`A-file`, `B-file`) in a tight loop. The
/// flipper is a forked child sharing the buffer's page (MAP_SHARED): for the kernel that is the
/// same as a second thread, and unlike a Python thread it runs truly in parallel (no GIL). The
/// helper keeps every fd open (fd numbers stay unique) and records what the kernel opened
/// (readlink of /proc/self/fd/N), plus how often the buffer no longer named it when the call
/// returned ("hits"); it stops after `RACE_HITS` hits or `RACE_MAX_OPENS` opens.
/// Then a dirfd whose directory is renamed after it was opened: a successful openat and
/// mkdirat, a failed openat and unlinkat through it.
pub const RACE_MAX_OPENS: usize = 2000;
pub const RACE_HITS: usize = 20;
pub const ADVERSARIAL_PY: &str = r#"
import ctypes, json, mmap, os, resource, signal, sys, time
root = sys.argv[1]; max_opens = int(sys.argv[2]); want_hits = int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, max_opens + 64)), hard))
libc = ctypes.CDLL(None, use_errno=True)
out = {"pid": os.getpid(), "opened": {}, "hits": 0}
a = os.path.join(root, "race", "A-file").encode()
at = a.rindex(b"A-file")
mm = mmap.mmap(-1, 4096)
mm[:len(a) + 1] = a + b"\0"
mm[4000] = 0
cpus = sorted(os.sched_getaffinity(0))
flipper = os.fork()
if flipper == 0:
    # On its own CPU when there are two: the race needs both to run at once.
    if len(cpus) > 1: os.sched_setaffinity(0, {cpus[0]})
    mm[4000] = 1
    while True:
        mm[at] = 66; mm[at] = 65
if len(cpus) > 1: os.sched_setaffinity(0, {cpus[1]})
while mm[4000] == 0: time.sleep(0.001)
addr = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(mm)))
for _ in range(max_opens):
    fd = libc.openat(-100, addr, os.O_RDONLY)
    after = bytes(mm[:len(a)]).decode()
    if fd >= 0:
        opened = os.readlink(f"/proc/self/fd/{fd}")
        out["opened"][str(fd)] = opened
        if opened != after: out["hits"] += 1
    if out["hits"] >= want_hits: break
os.kill(flipper, signal.SIGKILL); os.waitpid(flipper, 0)

d1 = os.path.join(root, "d1"); os.mkdir(d1)
with open(os.path.join(d1, "f"), "w") as f: f.write("x")
dfd = os.open(d1, os.O_RDONLY | os.O_DIRECTORY); out["dirfd"] = dfd
os.rename(d1, os.path.join(root, "d2"))
out["renamed_fd"] = os.open("f", os.O_RDONLY, dir_fd=dfd)
os.mkdir("sub", 0o700, dir_fd=dfd)
try: os.open("missing", os.O_RDONLY, dir_fd=dfd)
except FileNotFoundError: pass
try: os.unlink("nope", dir_fd=dfd)
except FileNotFoundError: pass
print(json.dumps(out), flush=True)
"#;

/// Thread exits: a thread that returns, then the main thread leaves with pthread_exit while a
/// second thread still runs, and that thread ends the process with exit status 5: the
/// process' last thread is not its leader. Prints the pid and both threads' tids.
pub const THREADS_PY: &str = r#"
import ctypes, json, os, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
out = {"pid": os.getpid()}
def quick(): out["quick_tid"] = threading.get_native_id()
t = threading.Thread(target=quick); t.start(); t.join()
def last():
    out["last_tid"] = threading.get_native_id()
    # Wait until the leader has really left (a zombie until the process ends), not a fixed
    # time a loaded machine can outlast.
    stat = f"/proc/self/task/{os.getpid()}/stat"
    deadline = time.monotonic() + 60
    out["leader_exited"] = False
    while time.monotonic() < deadline:
        with open(stat) as f: s = f.read()
        if s[s.rindex(")") + 2] in "ZX":
            out["leader_exited"] = True
            break
        time.sleep(0.01)
    print(json.dumps(out), flush=True)
    os._exit(5)
threading.Thread(target=last).start()
while "last_tid" not in out: time.sleep(0.01)
libc.pthread_exit(None)
"#;
