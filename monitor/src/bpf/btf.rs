//! Just enough of a BTF reader to find struct member offsets in /sys/kernel/btf/vmlinux: the
//! kernel programs take them as a read-only global (`Offsets`) instead of compiled-in layouts.
//! Hand-written because aya-obj keeps its type walkers private; the format is small and
//! documented (Documentation/bpf/btf.rst).

use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("BTF data is malformed: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct or union named {0:?}")]
    NoType(String),
    #[error("BTF struct {0:?} has no member {1:?}")]
    NoMember(String, String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    typ: u32,
    /// Bit offset.
    offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// size for struct/union/int/enum; referenced type id for ptr/typedef/modifiers.
    size_or_type: u32,
    members: Vec<Member>,
}

pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    by_name: HashMap<String, u32>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.into(),
            source,
        })?;
        Btf::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            return Err(BtfError::Malformed(
                "bad magic (only little-endian BTF is supported)",
            ));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let tsec = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of range"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of range"))?
            .to_vec();
        // Type id 0 is void.
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < tsec.len() {
            let name = u32_at(tsec, at)?;
            let info = u32_at(tsec, at + 4)?;
            let size_or_type = u32_at(tsec, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => at += 4,
                KIND_ARRAY => at += 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let off = u32_at(tsec, m + 8)?;
                        members.push(Member {
                            name: u32_at(tsec, m)?,
                            typ: u32_at(tsec, m + 4)?,
                            offset: if kind_flag { off & 0xff_ffff } else { off },
                        });
                    }
                    at += vlen * 12;
                }
                KIND_ENUM | KIND_FUNC_PROTO => at += vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => at += vlen * 12,
                _ => {}
            }
            types.push(Type {
                name,
                kind,
                size_or_type,
                members,
            });
        }
        let mut btf = Btf {
            types,
            strings,
            by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if (t.kind == KIND_STRUCT || t.kind == KIND_UNION) && !t.members.is_empty() {
                let n = btf.str_at(t.name).to_string();
                if !n.is_empty() {
                    btf.by_name.entry(n).or_insert(id as u32);
                }
            }
        }
        Ok(btf)
    }

    fn str_at(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follow typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Bit offset of `name` in `t`, looking through anonymous struct/union members.
    fn member_bits(&self, t: &Type, name: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            let mname = self.str_at(m.name);
            if mname == name {
                return Some((m.offset, m.typ));
            }
            if mname.is_empty()
                && let Some(inner) = self.resolve(m.typ)
                && (inner.kind == KIND_STRUCT || inner.kind == KIND_UNION)
                && let Some((o, ty)) = self.member_bits(inner, name, depth + 1)
            {
                return Some((m.offset + o, ty));
            }
        }
        None
    }

    /// Byte offset of a dotted member path within a struct: `"task_struct.cred"`,
    /// `"dentry.d_name.name"` (nested embedded structs, not pointers).
    pub fn offset(&self, path: &str) -> Result<u32, BtfError> {
        let mut parts = path.split('.');
        let sname = parts.next().unwrap_or("");
        let id = *self
            .by_name
            .get(sname)
            .ok_or_else(|| BtfError::NoType(sname.to_string()))?;
        let mut t = self
            .resolve(id)
            .ok_or(BtfError::Malformed("dangling type id"))?;
        let mut bits = 0u32;
        let mut cur = sname.to_string();
        for p in parts {
            let (o, ty) = self
                .member_bits(t, p, 0)
                .ok_or_else(|| BtfError::NoMember(cur.clone(), p.to_string()))?;
            bits += o;
            cur = format!("{cur}.{p}");
            t = self
                .resolve(ty)
                .ok_or(BtfError::Malformed("dangling type id"))?;
        }
        Ok(bits / 8)
    }

    /// Size of a struct or union.
    pub fn size_of(&self, name: &str) -> Result<u32, BtfError> {
        let id = *self
            .by_name
            .get(name)
            .ok_or_else(|| BtfError::NoType(name.to_string()))?;
        Ok(self.types[id as usize].size_or_type)
    }
}

/// Every offset the kernel programs need.
pub fn offsets(btf: &Btf) -> Result<monitor_common::Offsets, BtfError> {
    let o = |p: &str| btf.offset(p);
    let ctime = inode_time(btf, "ctime");
    let mtime = inode_time(btf, "mtime");
    Ok(monitor_common::Offsets {
        task_real_parent: o("task_struct.real_parent")?,
        task_tgid: o("task_struct.tgid")?,
        task_cred: o("task_struct.cred")?,
        task_start_boottime: o("task_struct.start_boottime")?,
        // CONFIG_AUDIT off: no loginuid; the field then reads as whatever sits at 0 — avoid that.
        task_loginuid: o("task_struct.loginuid").unwrap_or(0),
        task_nsproxy: o("task_struct.nsproxy")?,
        task_mm: o("task_struct.mm")?,
        task_fs: o("task_struct.fs")?,
        task_files: o("task_struct.files")?,
        task_exit_code: o("task_struct.exit_code")?,
        task_signal: o("task_struct.signal")?,
        task_group_leader: o("task_struct.group_leader")?,
        task_thread_pid: o("task_struct.thread_pid")?,
        cred_uid: o("cred.uid")?,
        cred_gid: o("cred.gid")?,
        cred_euid: o("cred.euid")?,
        cred_egid: o("cred.egid")?,
        cred_cap_effective: o("cred.cap_effective")?,
        nsproxy_mnt_ns: o("nsproxy.mnt_ns")?,
        mnt_namespace_inum: o("mnt_namespace.ns")? + o("ns_common.inum")?,
        pid_level: o("pid.level")?,
        pid_numbers: o("pid.numbers")?,
        upid_size: btf.size_of("upid")?,
        upid_ns: o("upid.ns")?,
        pid_namespace_inum: o("pid_namespace.ns")? + o("ns_common.inum")?,
        mm_exe_file: o("mm_struct.exe_file")?,
        mm_arg_start: o("mm_struct.arg_start")?,
        mm_arg_end: o("mm_struct.arg_end")?,
        mm_env_start: o("mm_struct.env_start")?,
        mm_env_end: o("mm_struct.env_end")?,
        fs_root: o("fs_struct.root")?,
        fs_pwd: o("fs_struct.pwd")?,
        path_mnt: o("path.mnt")?,
        path_dentry: o("path.dentry")?,
        files_fdt: o("files_struct.fdt")?,
        fdt_fd: o("fdtable.fd")?,
        fdt_max_fds: o("fdtable.max_fds")?,
        file_f_path: o("file.f_path")?,
        file_f_inode: o("file.f_inode")?,
        file_private_data: o("file.private_data")?,
        inode_i_mode: o("inode.i_mode")?,
        inode_i_rdev: o("inode.i_rdev")?,
        inode_i_sb: o("inode.i_sb")?,
        sb_s_magic: o("super_block.s_magic")?,
        dentry_d_parent: o("dentry.d_parent")?,
        dentry_d_name: o("dentry.d_name")?,
        dentry_d_inode: o("dentry.d_inode")?,
        qstr_len: o("qstr.len")?,
        qstr_name: o("qstr.name")?,
        mount_mnt_parent: o("mount.mnt_parent")?,
        mount_mnt_mountpoint: o("mount.mnt_mountpoint")?,
        mount_mnt: o("mount.mnt")?,
        vfsmount_mnt_root: o("vfsmount.mnt_root")?,
        vfsmount_mnt_sb: o("vfsmount.mnt_sb")?,
        socket_type: o("socket.type")?,
        socket_sk: o("socket.sk")?,
        sk_family: o("sock_common.skc_family")?,
        sk_daddr: o("sock_common.skc_daddr")?,
        sk_rcv_saddr: o("sock_common.skc_rcv_saddr")?,
        sk_dport: o("sock_common.skc_dport")?,
        sk_num: o("sock_common.skc_num")?,
        sk_v6_daddr: o("sock_common.skc_v6_daddr")?,
        sk_v6_rcv_saddr: o("sock_common.skc_v6_rcv_saddr")?,
        signal_tty: o("signal_struct.tty")?,
        tty_index: o("tty_struct.index")?,
        tty_driver: o("tty_struct.driver")?,
        driver_major: o("tty_driver.major")?,
        driver_minor_start: o("tty_driver.minor_start")?,
        tp_fork_child_pid: 0,
        // overlayfs built as a module has no BTF in vmlinux: the flag is then not computed.
        ovl_present: (o("ovl_inode.vfs_inode").is_ok() && o("ovl_inode.__upperdentry").is_ok())
            as u32,
        ovl_inode_vfs_inode: o("ovl_inode.vfs_inode").unwrap_or(0),
        ovl_inode_upperdentry: o("ovl_inode.__upperdentry").unwrap_or(0),
        tp_uring_opcode: 0,
        tp_uring_flags: 0,
        tp_uring_op_str: 0,
        tp_uring_req: 0,
        // io_uring's request types are private to io_uring/*.c; without them in BTF (or with
        // CONFIG_IO_URING off) submissions keep their opcode only.
        kiocb_cmd: o("io_kiocb.cmd").unwrap_or(0),
        uring_open_dfd: o("io_open.dfd").unwrap_or(0),
        uring_open_filename: o("io_open.filename").unwrap_or(0),
        uring_open_how: o("io_open.how").unwrap_or(0),
        filename_name: o("filename.name").unwrap_or(0),
        uring_unlink_dfd: o("io_unlink.dfd").unwrap_or(0),
        uring_unlink_flags: o("io_unlink.flags").unwrap_or(0),
        uring_unlink_filename: o("io_unlink.filename").unwrap_or(0),
        uring_rename_old_dfd: o("io_rename.old_dfd").unwrap_or(0),
        uring_rename_oldpath: o("io_rename.oldpath").unwrap_or(0),
        uring_rename_newpath: o("io_rename.newpath").unwrap_or(0),
        uring_rename_flags: o("io_rename.flags").unwrap_or(0),
        tp_exit_group_dead: 0,
        upid_nr: o("upid.nr")?,
        signal_pids: o("signal_struct.pids").unwrap_or(0),
        inode_ctime_sec: ctime.0,
        inode_ctime_nsec: ctime.1,
        inode_mtime_sec: mtime.0,
        inode_mtime_nsec: mtime.1,
    })
}

/// (seconds, nanoseconds) offsets of an inode time ("ctime", "mtime") under the names kernels
/// have used: `i_X_sec`/`i_X_nsec` (6.11+), the `__i_X` timespec64 (6.6-6.10), `i_X` (older).
/// (0, 0) when none is found: the programs then leave the times at 0.
pub fn inode_time(btf: &Btf, which: &str) -> (u32, u32) {
    if let (Ok(s), Ok(n)) = (
        btf.offset(&format!("inode.i_{which}_sec")),
        btf.offset(&format!("inode.i_{which}_nsec")),
    ) {
        return (s, n);
    }
    for name in [format!("inode.__i_{which}"), format!("inode.i_{which}")] {
        if let (Ok(s), Ok(n)) = (
            btf.offset(&format!("{name}.tv_sec")),
            btf.offset(&format!("{name}.tv_nsec")),
        ) {
            return (s, n);
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: struct outer { int a; union { int b; long c; }; struct inner s; }
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0s\0inner\0x\0".to_vec();
        let name = |s: &str| -> u32 {
            let pos = strings
                .windows(s.len() + 1)
                .position(|w| &w[..s.len()] == s.as_bytes() && w[s.len()] == 0);
            pos.map(|p| p as u32).unwrap_or(0)
        };
        let mut t = Vec::new();
        let push = |t: &mut Vec<u8>, v: u32| t.extend_from_slice(&v.to_le_bytes());
        // 1: int (size 4)
        push(&mut t, name("int"));
        push(&mut t, KIND_INT << 24);
        push(&mut t, 4);
        push(&mut t, 32);
        // 2: anonymous union { b: int @0, c: int @0 }
        push(&mut t, 0);
        push(&mut t, (KIND_UNION << 24) | 2);
        push(&mut t, 8);
        for n in ["b", "c"] {
            push(&mut t, name(n));
            push(&mut t, 1);
            push(&mut t, 0);
        }
        // 3: struct inner { x @ 32 bits }
        push(&mut t, name("inner"));
        push(&mut t, (KIND_STRUCT << 24) | 1);
        push(&mut t, 8);
        push(&mut t, name("x"));
        push(&mut t, 1);
        push(&mut t, 32);
        // 4: struct outer { a @0, anon @64, s @128 }
        push(&mut t, name("outer"));
        push(&mut t, (KIND_STRUCT << 24) | 3);
        push(&mut t, 24);
        for (n, ty, off) in [("a", 1, 0), ("", 2, 64), ("s", 3, 128)] {
            push(&mut t, if n.is_empty() { 0 } else { name(n) });
            push(&mut t, ty);
            push(&mut t, off);
        }
        let mut out = vec![0x9f, 0xeb, 1, 0];
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&t);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_nested_structs() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.offset("outer.a").unwrap(), 0);
        assert_eq!(btf.offset("outer.c").unwrap(), 8);
        assert_eq!(btf.offset("outer.s.x").unwrap(), 20);
        assert_eq!(btf.size_of("outer").unwrap(), 24);
        assert!(matches!(
            btf.offset("outer.zz"),
            Err(BtfError::NoMember(..))
        ));
        assert!(matches!(btf.offset("nope.a"), Err(BtfError::NoType(..))));
    }

    /// (name, size, members as (name, type id, bit offset)).
    type TestStruct<'a> = (&'a str, u32, &'a [(&'a str, u32, u32)]);

    /// A BTF blob of one int type (id 1) and the given structs (ids 2..).
    fn structs_blob(structs: &[TestStruct]) -> Vec<u8> {
        let mut strings = b"\0int\0".to_vec();
        let mut name = |s: &str| -> u32 {
            let at = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            at
        };
        let mut t = Vec::new();
        let push = |t: &mut Vec<u8>, v: u32| t.extend_from_slice(&v.to_le_bytes());
        for v in [1, KIND_INT << 24, 8, 64] {
            push(&mut t, v);
        }
        for (sname, size, members) in structs {
            push(&mut t, name(sname));
            push(&mut t, (KIND_STRUCT << 24) | members.len() as u32);
            push(&mut t, *size);
            for (m, ty, off) in members.iter() {
                push(&mut t, name(m));
                push(&mut t, *ty);
                push(&mut t, *off);
            }
        }
        let mut out = vec![0x9f, 0xeb, 1, 0];
        for v in [24u32, 0, t.len() as u32, t.len() as u32, strings.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&t);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn inode_times_under_each_kernel_naming() {
        // 6.11+: separate second and nanosecond members.
        let new = structs_blob(&[(
            "inode",
            64,
            &[
                ("i_mtime_sec", 1, 8 * 8),
                ("i_ctime_sec", 1, 16 * 8),
                ("i_mtime_nsec", 1, 28 * 8),
                ("i_ctime_nsec", 1, 32 * 8),
            ],
        )]);
        let btf = Btf::parse(&new).unwrap();
        assert_eq!(inode_time(&btf, "ctime"), (16, 32));
        assert_eq!(inode_time(&btf, "mtime"), (8, 28));
        // 6.6-6.10: `__i_ctime` timespec64, `i_mtime` timespec64 (type id 2).
        let mid = structs_blob(&[
            ("timespec64", 16, &[("tv_sec", 1, 0), ("tv_nsec", 1, 64)]),
            ("inode", 96, &[("i_mtime", 2, 40 * 8), ("__i_ctime", 2, 56 * 8)]),
        ]);
        let btf = Btf::parse(&mid).unwrap();
        assert_eq!(inode_time(&btf, "ctime"), (56, 64));
        assert_eq!(inode_time(&btf, "mtime"), (40, 48));
        // Neither: the times are not captured.
        let none = structs_blob(&[("inode", 8, &[("i_mode", 1, 0)])]);
        assert_eq!(inode_time(&Btf::parse(&none).unwrap(), "ctime"), (0, 0));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"garbage").is_err());
        let mut b = blob();
        b.truncate(40);
        assert!(Btf::parse(&b).is_err());
    }

    #[test]
    fn reads_this_kernel_when_present() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux");
            return;
        };
        let o = offsets(&btf).unwrap();
        assert!(o.task_cred > 0 && o.dentry_d_name > 0 && o.upid_size >= 16);
        // Every kernel with BTF keeps both inode times under one of the known names, and the
        // session pid in signal_struct (4.19+).
        assert!(o.inode_ctime_sec > 0 && o.inode_mtime_sec > 0);
        assert_ne!(o.inode_ctime_sec, o.inode_mtime_sec);
        assert!(o.signal_pids > 0);
        assert_eq!(o.upid_nr, 0);
    }
}
