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
    time.sleep(5); os._exit(0)
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
os.symlink("sub/file.txt", "sym")
os.link("sub/file.txt", "hard")
os.chmod("sub/file.txt", 0o640)
os.unlink("hard")
os.rmdir("renamed")

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
path = ctypes.create_string_buffer(b"/etc/hostname")
t = struct.unpack_from("I", ring, tail)[0]
i = t & struct.unpack_from("I", ring, mask)[0]
sqes[i * 64:(i + 1) * 64] = struct.pack("BBHiQQIIQ", 18, 0, 0, -100, 0, ctypes.addressof(path), 0, 0, 0x5EED) + b"\0" * 24
struct.pack_into("I", ring, array + i * 4, i)
struct.pack_into("I", ring, tail, t + 1)
print(libc.syscall(426, fd, 1, 1, 1, None, 0), os.getpid())
"#;
