//! Namespace identity from procfs, one way for every user: the capture's host scope, the
//! process table's runtime marks and container attribution.

use std::io;
use std::path::Path;

/// The inode number of `<proc_root>/<pid>/ns/<kind>` (the link reads `mnt:[4026531832]`).
/// readlink, not stat: it works where stat on the link is refused.
pub fn ns_inode(proc_root: &Path, pid: &str, kind: &str) -> io::Result<u64> {
    let link = std::fs::read_link(proc_root.join(pid).join("ns").join(kind))?;
    let s = link.to_string_lossy();
    s.split_once('[')
        .and_then(|(_, r)| r.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("unexpected namespace link {s:?}")))
}

/// The host's namespace of `kind`: pid 1's or, where pid 1's links are refused (some
/// sandboxes), the daemon's own, since it runs on the host; a fallback is logged once here.
pub fn host_ns_inode(proc_root: &Path, kind: &str) -> io::Result<u64> {
    ns_inode(proc_root, "1", kind).or_else(|e| {
        tracing::warn!(kind, error = %e, "Cannot read pid 1's namespace; taking the daemon's own as the host's.");
        ns_inode(proc_root, "self", kind)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespaces_resolve_and_missing_ones_are_errors() {
        let proc_root = Path::new("/proc");
        assert!(ns_inode(proc_root, "self", "mnt").unwrap() > 0);
        assert!(ns_inode(proc_root, "self", "no-such").is_err());
        assert!(host_ns_inode(proc_root, "pid").unwrap() > 0);
    }
}
