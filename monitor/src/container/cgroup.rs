//! cgroup v2 facts: where the hierarchy is mounted, what a cgroup path says about the container
//! that owns it, and how a cgroup id (the directory's inode number) maps back to a path.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Runtime names as they appear in `container.runtime`.
pub const RT_CONTAINERD: &str = "containerd";
pub const RT_CRIO: &str = "cri-o";
pub const RT_DOCKER: &str = "docker";
pub const RT_PODMAN: &str = "podman";
pub const RT_RUNC: &str = "runc";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no cgroup2 mount in {0} (cgroup v1-only hosts are not supported: events carry the v2 cgroup id)"
    )]
    NoCgroup2(PathBuf),
}

/// The cgroup2 mount point, from a mountinfo file (normally /proc/self/mountinfo).
pub fn find_cgroup2_mount(mountinfo: &Path) -> Result<PathBuf, CgroupError> {
    let text = std::fs::read_to_string(mountinfo).map_err(|source| CgroupError::Read {
        path: mountinfo.to_path_buf(),
        source,
    })?;
    parse_cgroup2_mount(&text).ok_or_else(|| CgroupError::NoCgroup2(mountinfo.to_path_buf()))
}

/// The first cgroup2 mount in mountinfo text. Mount points are octal-escaped (`\040` for space).
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if post.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        // Fields: id parent major:minor root mount-point ...; a mount whose root is not "/" is a
        // cgroup-namespaced view and would make every path relative to something else.
        let mut f = pre.split_whitespace();
        let root = f.nth(3)?;
        let mount_point = f.next()?;
        if root != "/" {
            continue;
        }
        return Some(PathBuf::from(unescape_mountinfo(mount_point)));
    }
    None
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a cgroup path says about a container, before any runtime state is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathMatch {
    /// 64-hex id.
    pub full_id: String,
    /// Runtime named by the path pattern; None when the pattern is shared (bare `<id>` segments
    /// are used by containerd's `/<namespace>/<id>`, kubelet's cgroupfs driver and plain runc).
    pub runtime: Option<&'static str>,
    /// The container's own cgroup (the path up to and including the matching segment).
    pub container_path: String,
    /// Kubernetes pod uid from a `pod<uid>` / `kubepods-...-pod<uid>.slice` ancestor.
    pub pod_uid: Option<String>,
}

pub fn is_full_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Every container candidate in a cgroup v2 path (as in `/proc/<pid>/cgroup`'s `0::` line),
/// outermost first. The outermost is the container the host's runtime knows; deeper matches are
/// nested containers (docker-in-docker) or child cgroups a container made for itself, which
/// belong to it.
pub fn parse_cgroup_path(path: &str) -> Vec<PathMatch> {
    let mut out = Vec::new();
    let mut pod_uid: Option<String> = None;
    let mut parent: &str = "";
    let mut pos = 0usize;
    for seg in path.split('/') {
        // `split` yields every segment followed by exactly one '/'.
        let seg_end = pos + seg.len();
        pos = seg_end + 1;
        if seg.is_empty() {
            continue;
        }
        if let Some(uid) = pod_uid_of(seg) {
            pod_uid = Some(uid);
        }
        if let Some((full_id, runtime)) = match_segment(seg, parent) {
            out.push(PathMatch {
                full_id,
                runtime,
                container_path: path[..seg_end].to_string(),
                pod_uid: pod_uid.clone(),
            });
        }
        parent = seg;
    }
    out
}

fn match_segment(seg: &str, parent: &str) -> Option<(String, Option<&'static str>)> {
    let scope = seg.strip_suffix(".scope");
    let body = scope.unwrap_or(seg);
    // Conmon and other helpers sit in their own `*-conmon-<id>` cgroups: runtime processes on
    // the host, not the container.
    if body.contains("conmon") {
        return None;
    }
    let prefixed: [(&str, &'static str); 4] = [
        ("docker-", RT_DOCKER),
        ("cri-containerd-", RT_CONTAINERD),
        ("crio-", RT_CRIO),
        ("libpod-", RT_PODMAN),
    ];
    for (prefix, rt) in prefixed {
        if let Some(id) = body.strip_prefix(prefix) {
            return is_full_id(id).then(|| (id.to_string(), Some(rt)));
        }
    }
    if is_full_id(body) {
        // `/docker/<id>` is docker's cgroupfs driver; any other parent is shared.
        let rt = (scope.is_none() && parent == "docker").then_some(RT_DOCKER);
        return Some((body.to_string(), rt));
    }
    // systemd driver with another prefix (`runc-<id>.scope`, `<anything>-<id>.scope`).
    if let Some(s) = scope
        && let Some((_, id)) = s.rsplit_once('-')
        && is_full_id(id)
    {
        return Some((id.to_string(), None));
    }
    None
}

fn pod_uid_of(seg: &str) -> Option<String> {
    // cgroupfs: `pod<uid>`; systemd: `kubepods-burstable-pod<uid with _>.slice`.
    if let Some(slice) = seg.strip_suffix(".slice") {
        let idx = slice.rfind("-pod")?;
        if !slice.starts_with("kubepods") {
            return None;
        }
        let uid = slice[idx + 4..].replace('_', "-");
        return is_uid(&uid).then_some(uid);
    }
    let uid = seg.strip_prefix("pod")?;
    is_uid(uid).then(|| uid.to_string())
}

fn is_uid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-')
}

/// The v2 cgroup path of a process, from `/proc/<pid>/cgroup`'s `0::` line.
pub fn proc_cgroup_path(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_string())
}

/// The cgroup id of a path relative to the cgroup2 mount: its directory's inode number.
pub fn cgroup_id_of(mount: &Path, rel: &str) -> Option<u64> {
    let p = mount.join(rel.trim_start_matches('/'));
    std::fs::metadata(p).ok().map(|m| m.ino())
}

/// Walk the cgroup2 tree and map every directory's inode to its path (relative, with a leading
/// `/`). Bounded by `max_dirs`; symlinks are not followed (cgroupfs has none).
pub fn walk_tree(mount: &Path, max_dirs: usize) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(mount.to_path_buf(), "/".to_string())];
    while let Some((dir, rel)) = stack.pop() {
        if out.len() >= max_dirs {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        out.insert(meta.ino(), rel.clone());
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let child_rel = if rel == "/" {
                    format!("/{name}")
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((entry.path(), child_rel));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "999342a291a621d81cb5b1486d296f1266957798eca23c73b31ed7bb267df1af";

    fn one(path: &str) -> Option<(String, Option<&'static str>, String, Option<String>)> {
        parse_cgroup_path(path)
            .into_iter()
            .next()
            .map(|m| (m.full_id, m.runtime, m.container_path, m.pod_uid))
    }

    #[test]
    fn every_runtime_pattern() {
        let uid = "0b8f7a52-1c1e-4d3c-9c55-1f1f8f3b2a10";
        let uid_ = uid.replace('-', "_");
        let cases: Vec<(String, Option<&str>, Option<&str>)> = vec![
            (
                format!("/system.slice/docker-{ID}.scope"),
                Some(RT_DOCKER),
                None,
            ),
            (format!("/docker/{ID}"), Some(RT_DOCKER), None),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope"
                ),
                Some(RT_CONTAINERD),
                Some(uid),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{ID}.scope"
                ),
                Some(RT_CRIO),
                Some(uid),
            ),
            (
                format!("/kubepods/burstable/pod{uid}/crio-{ID}"),
                Some(RT_CRIO),
                Some(uid),
            ),
            (
                format!("/kubepods/besteffort/pod{uid}/{ID}"),
                None,
                Some(uid),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope"),
                Some(RT_PODMAN),
                None,
            ),
            (format!("/libpod_parent/libpod-{ID}"), Some(RT_PODMAN), None),
            (format!("/default/{ID}"), None, None),
            (format!("/k8s.io/{ID}"), None, None),
            (format!("/{ID}"), None, None),
            (format!("/system.slice/runc-{ID}.scope"), None, None),
        ];
        for (path, rt, pod) in cases {
            let got = one(&path).unwrap_or_else(|| panic!("no match for {path}"));
            assert_eq!(got.0, ID, "{path}");
            assert_eq!(got.1, rt, "{path}");
            assert_eq!(got.2, path, "{path}");
            assert_eq!(got.3.as_deref(), pod, "{path}");
        }
    }

    #[test]
    fn child_cgroups_belong_to_the_container() {
        let got = parse_cgroup_path(&format!("/libpod_parent/libpod-{ID}/init.scope/sub"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].container_path, format!("/libpod_parent/libpod-{ID}"));
        // Nested container: outermost first.
        let inner = "a".repeat(64);
        let got = parse_cgroup_path(&format!("/system.slice/docker-{ID}.scope/docker/{inner}"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].full_id, ID);
        assert_eq!(got[1].full_id, inner);
        assert_eq!(got[1].runtime, Some(RT_DOCKER));
    }

    #[test]
    fn not_containers() {
        for p in [
            "/",
            "",
            "/system.slice/sshd.service",
            "/user.slice/user-0.slice/session-1.scope",
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            &format!("/system.slice/crio-conmon-{ID}.scope"),
            &format!("/docker-{}.scope", &ID[..63]),
            &format!("/docker-{}.scope", ID.to_uppercase()),
            "/kubepods.slice/kubepods-besteffort.slice",
        ] {
            assert!(parse_cgroup_path(p).is_empty(), "{p}");
        }
    }

    #[test]
    fn mountinfo_hybrid_and_pure_v2() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_cgroup2_mount(v2),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let escaped = "29 23 0:26 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(escaped),
            Some(PathBuf::from("/mnt/cg two"))
        );
        // A namespaced view (root not "/") is skipped; v1 only has none.
        let nsd = "29 23 0:26 /kubepods/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(parse_cgroup2_mount(nsd), None);
        assert_eq!(
            parse_cgroup2_mount("40 31 0:37 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }
}
