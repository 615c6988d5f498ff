//! `fd.host_path`: where a file a container process acted on lives on the host.
//!
//! The kernel resolves `fd.path` from the process' own root (its dentry walk stops there), so a
//! container's `/etc/passwd` is `/etc/passwd`. The host-side path is that path seen through the
//! container's filesystem as its OCI bundle describes it:
//! - the root: `root.path` of the bundle's `config.json`, resolved against the bundle directory
//!   when relative (containerd: `<bundle>/rootfs`; podman and CRI-O: the overlay's merged dir);
//! - the mounts, in the order the runtime makes them: a bind mount maps its destination to its
//!   host source; any other mount (proc, sysfs, tmpfs, devpts, mqueue, cgroup ...) has no host
//!   path; `linux.maskedPaths` (masked after the mounts) have none either.
//!
//! The mount that shows a path is the last one, in that order, whose destination is the path or
//! one of its ancestors: a later mount on an ancestor hides an earlier one below it.
//!
//! # When it is exact
//! For a kernel-resolved `fd.path` (path_source=kernel) on the container's root filesystem or a
//! bind mount declared in the bundle, in a process that has not changed its root inside the
//! container: the host path then names the same file (the runtimes mount the rootfs in the host
//! mount namespace). It is approximate when:
//! - `fd.path` itself came from user memory (path_source=user: name-based calls and failed
//!   opens join the user's string lexically, so a symlink in it is not followed); host_path
//!   inherits fd.path's source;
//! - the container mounted something itself after start (needs CAP_SYS_ADMIN; the `mount` event
//!   reports it), or chroot'ed inside its root (the `chroot` event reports it);
//! - a bind source was replaced on the host after the container started.
//!
//! It is absent (never guessed) for host processes, containers whose bundle was not read, paths
//! on non-bind mounts and masked paths, and anything that is not an absolute path.

use std::path::Path;

use super::oci::Spec;
use crate::decode::{escape_bytes, join_path};
use crate::event::{Event, FdType};

/// More mounts than this (real containers have 10-30) and the view is not built.
pub const MAX_MOUNTS: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    /// Normalised absolute destination inside the container.
    dest: String,
    /// Host directory or file for a bind mount (escaped like event strings); None otherwise.
    source: Option<String>,
}

/// A container's filesystem layout as its bundle declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsView {
    /// The rootfs on the host, escaped like event strings, without a trailing `/`.
    root: String,
    mounts: Vec<Mount>,
}

/// Escape a host path (from the runtime's config, valid UTF-8 JSON but possibly holding control
/// characters) the way the decoder escapes kernel strings, so that the joined result is
/// uniformly escaped.
fn host_str(p: &str) -> String {
    escape_bytes(p.as_bytes(), usize::MAX)
}

fn normalise(dir: &str) -> String {
    let p = join_path("/", dir);
    if p == "/" { String::new() } else { p }
}

impl FsView {
    /// From a parsed `config.json` and the bundle directory it was read from. None when the
    /// bundle names no root or declares too many mounts to be trusted.
    pub fn from_spec(spec: &Spec, bundle: &Path) -> Option<FsView> {
        let root = spec.root.as_ref()?.path.as_deref().filter(|p| !p.is_empty())?;
        let resolve = |p: &str| -> Option<String> {
            let abs = if p.starts_with('/') {
                p.to_string()
            } else {
                format!("{}/{p}", bundle.to_str()?)
            };
            Some(normalise(&abs))
        };
        let root = resolve(root)?;
        let masked = spec.linux.as_ref().map_or(&[][..], |l| &l.masked_paths[..]);
        if spec.mounts.len() + masked.len() > MAX_MOUNTS {
            return None;
        }
        let mut mounts = Vec::with_capacity(spec.mounts.len() + masked.len());
        for m in &spec.mounts {
            let Some(dest) = m.destination.as_deref() else {
                continue;
            };
            let bind = m.typ.as_deref() == Some("bind")
                || m.options.iter().any(|o| o == "bind" || o == "rbind");
            // A bind without a usable source still hides what is below it: no host path.
            let source = if bind {
                m.source.as_deref().and_then(resolve)
            } else {
                None
            };
            mounts.push(Mount {
                dest: normalise(dest),
                source: source.map(|s| host_str(if s.is_empty() { "/" } else { &s })),
            });
        }
        for p in masked {
            mounts.push(Mount {
                dest: normalise(p),
                source: None,
            });
        }
        Some(FsView {
            root: host_str(&root),
            mounts,
        })
    }

    /// The host path of `path` (absolute, as the container sees it), or None when it has none.
    pub fn host_path(&self, path: &str) -> Option<String> {
        if !path.starts_with('/') {
            return None;
        }
        let under = |dest: &str| {
            dest.is_empty()
                || path == dest
                || (path.starts_with(dest) && path.as_bytes().get(dest.len()) == Some(&b'/'))
        };
        match self.mounts.iter().rev().find(|m| under(&m.dest)) {
            Some(m) => {
                let src = m.source.as_deref()?;
                let rest = &path[m.dest.len()..];
                Some(match (src, rest) {
                    (s, "") => s.to_string(),
                    ("/", r) => r.to_string(),
                    (s, r) => format!("{s}{r}"),
                })
            }
            None if path == "/" => Some(if self.root.is_empty() {
                "/".into()
            } else {
                self.root.clone()
            }),
            None => Some(format!("{}{path}", self.root)),
        }
    }
}

/// Fill `ev.fd.host_path` for a file event of a process in this container.
pub fn fill(ev: &mut Event, view: &FsView) {
    let Some(fd) = ev.fd.as_mut() else {
        return;
    };
    if !matches!(fd.typ, FdType::File | FdType::Directory) {
        return;
    }
    fd.host_path = fd.path.as_deref().and_then(|p| view.host_path(p));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Fd, Source};

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).expect("valid spec")
    }

    fn runc_like() -> FsView {
        let s = spec(
            r#"{
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/data/", "type": "bind", "source": "/srv/vol", "options": ["rbind"]},
                {"destination": "/etc/hosts", "type": "none", "source": "/var/lib/c/hosts", "options": ["bind", "ro"]},
                {"destination": "/data/cache", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/data/cache/pinned", "source": "pinned", "options": ["bind"]},
                {"destination": "/whole", "type": "bind", "source": "/"}
            ],
            "linux": {"maskedPaths": ["/proc/kcore", "/etc/secret"]}
        }"#,
        );
        FsView::from_spec(&s, Path::new("/run/bundles/c1/")).expect("view")
    }

    #[test]
    fn root_filesystem_paths_go_through_the_bundle_root() {
        let v = runc_like();
        assert_eq!(
            v.host_path("/etc/passwd").as_deref(),
            Some("/run/bundles/c1/rootfs/etc/passwd")
        );
        assert_eq!(v.host_path("/").as_deref(), Some("/run/bundles/c1/rootfs"));
        // A sibling that merely shares a prefix with a mount is on the root.
        assert_eq!(
            v.host_path("/database").as_deref(),
            Some("/run/bundles/c1/rootfs/database")
        );
        assert_eq!(v.host_path("relative/x"), None);
    }

    #[test]
    fn bind_mounts_map_to_their_source_others_have_none() {
        let v = runc_like();
        assert_eq!(v.host_path("/data").as_deref(), Some("/srv/vol"));
        assert_eq!(v.host_path("/data/a/b").as_deref(), Some("/srv/vol/a/b"));
        assert_eq!(
            v.host_path("/etc/hosts").as_deref(),
            Some("/var/lib/c/hosts")
        );
        assert_eq!(v.host_path("/proc/self/status"), None);
        assert_eq!(v.host_path("/dev/null"), None);
        // tmpfs over part of a bind mount, and a bind again inside that tmpfs (relative
        // source: the bundle directory).
        assert_eq!(v.host_path("/data/cache/x"), None);
        assert_eq!(
            v.host_path("/data/cache/pinned/y").as_deref(),
            Some("/run/bundles/c1/pinned/y")
        );
        assert_eq!(v.host_path("/whole/etc/shadow").as_deref(), Some("/etc/shadow"));
        assert_eq!(v.host_path("/whole").as_deref(), Some("/"));
    }

    #[test]
    fn masked_paths_have_none() {
        let v = runc_like();
        assert_eq!(v.host_path("/proc/kcore"), None);
        assert_eq!(v.host_path("/etc/secret"), None);
        assert_eq!(v.host_path("/etc/secret/inner"), None);
        assert!(v.host_path("/etc/secrets").is_some());
    }

    #[test]
    fn a_later_mount_on_an_ancestor_hides_earlier_ones_below() {
        let s = spec(
            r#"{"root": {"path": "/var/lib/ovl/merged"},
                "mounts": [
                    {"destination": "/a/b", "type": "bind", "source": "/h/ab"},
                    {"destination": "/a", "type": "bind", "source": "/h/a"}
                ]}"#,
        );
        let v = FsView::from_spec(&s, Path::new("/b")).expect("view");
        assert_eq!(v.host_path("/a/b/c").as_deref(), Some("/h/a/b/c"));
        assert_eq!(
            v.host_path("/x").as_deref(),
            Some("/var/lib/ovl/merged/x")
        );
    }

    #[test]
    fn no_root_or_too_many_mounts_means_no_view() {
        assert_eq!(FsView::from_spec(&spec("{}"), Path::new("/b")), None);
        assert_eq!(
            FsView::from_spec(&spec(r#"{"root": {"path": ""}}"#), Path::new("/b")),
            None
        );
        let mounts: Vec<String> = (0..=MAX_MOUNTS)
            .map(|i| format!(r#"{{"destination": "/m{i}", "type": "tmpfs"}}"#))
            .collect();
        let s = spec(&format!(
            r#"{{"root": {{"path": "/r"}}, "mounts": [{}]}}"#,
            mounts.join(",")
        ));
        assert_eq!(FsView::from_spec(&s, Path::new("/b")), None);
    }

    #[test]
    fn hostile_root_is_escaped_like_event_strings() {
        let s = spec(r#"{"root": {"path": "/r\nx\\y"}}"#);
        let v = FsView::from_spec(&s, Path::new("/b")).expect("view");
        assert_eq!(v.host_path("/f").as_deref(), Some("/r\\x0ax\\\\y/f"));
    }

    #[test]
    fn fills_file_events_only() {
        let v = runc_like();
        let mut ev = Event {
            fd: Some(Fd {
                typ: FdType::File,
                path: Some("/etc/passwd".into()),
                path_source: Source::Kernel,
                ..Fd::default()
            }),
            ..Event::default()
        };
        fill(&mut ev, &v);
        assert_eq!(
            ev.fd.as_ref().and_then(|f| f.host_path.as_deref()),
            Some("/run/bundles/c1/rootfs/etc/passwd")
        );
        let mut sock = Event {
            fd: Some(Fd {
                typ: FdType::Ipv4,
                path: Some("/x".into()),
                ..Fd::default()
            }),
            ..Event::default()
        };
        fill(&mut sock, &v);
        assert_eq!(sock.fd.and_then(|f| f.host_path), None);
    }
}
