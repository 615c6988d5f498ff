//! OCI runtime bundle `config.json`: annotations (Kubernetes metadata as containerd's CRI plugin
//! and CRI-O write them), image reference, and whether the container is privileged.
//!
//! The runtime writes these files on the host, but annotation values can come from a pod spec,
//! so every string taken from them is bounded.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::event::K8s;

/// Larger config.json files are refused (real ones are a few KiB; seccomp profiles make some
/// reach a few hundred).
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// Longest string kept from annotations and labels.
pub const MAX_VALUE_LEN: usize = 1024;
/// Most labels kept per container.
pub const MAX_LABELS: usize = 64;

pub mod ann {
    pub const CRI_SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const CRI_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const CRI_SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const CRIO_IMAGE_NAME: &str = "io.kubernetes.cri-o.ImageName";
    pub const CRIO_IMAGE_REF: &str = "io.kubernetes.cri-o.ImageRef";
    pub const CRIO_LABELS: &str = "io.kubernetes.cri-o.Labels";
    pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
    pub const CRIO_CONTAINER_ID: &str = "io.kubernetes.cri-o.ContainerID";
    pub const CRIO_NAME: &str = "io.kubernetes.cri-o.Name";
    pub const CONTAINER_MANAGER: &str = "io.container.manager";
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path} is not a valid OCI config: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

/// The parts of an OCI runtime spec attribution needs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    pub annotations: BTreeMap<String, String>,
    pub process: Option<SpecProcess>,
    pub linux: Option<SpecLinux>,
    /// The container's root filesystem (for `fd.host_path`).
    pub root: Option<SpecRoot>,
    pub mounts: Vec<SpecMount>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpecRoot {
    /// Absolute, or relative to the bundle directory.
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpecMount {
    pub destination: Option<String>,
    #[serde(rename = "type")]
    pub typ: Option<String>,
    pub source: Option<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpecProcess {
    pub capabilities: Option<SpecCaps>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpecCaps {
    pub bounding: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpecLinux {
    pub resources: Option<SpecResources>,
    #[serde(rename = "cgroupsPath")]
    pub cgroups_path: Option<String>,
    #[serde(rename = "maskedPaths")]
    pub masked_paths: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpecResources {
    pub devices: Vec<SpecDevice>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpecDevice {
    pub allow: bool,
    #[serde(rename = "type")]
    pub typ: Option<String>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: Option<String>,
}

/// Read a JSON file with a size bound.
pub fn read_json_bounded<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, OciError> {
    let shown = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| OciError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut buf = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|source| OciError::Read {
            path: shown.clone(),
            source,
        })?;
    if buf.len() as u64 > MAX_CONFIG_BYTES {
        return Err(OciError::TooLarge { path: shown });
    }
    serde_json::from_slice(&buf).map_err(|source| OciError::Json {
        path: shown,
        source,
    })
}

pub fn read_spec(path: &Path) -> Result<Spec, OciError> {
    read_json_bounded(path)
}

/// Keep at most `MAX_VALUE_LEN` bytes, cut on a char boundary.
pub fn bounded(s: &str) -> String {
    if s.len() <= MAX_VALUE_LEN {
        return s.to_string();
    }
    let mut end = MAX_VALUE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Kubernetes metadata from containerd CRI or CRI-O annotations; None when neither names a pod.
pub fn k8s_from_annotations(a: &BTreeMap<String, String>) -> Option<K8s> {
    let get = |k: &str| a.get(k).map(|v| bounded(v));
    let (pod_name, namespace, pod_uid, container_name) =
        if let Some(pod) = get(ann::CRI_SANDBOX_NAME) {
            (
                pod,
                get(ann::CRI_SANDBOX_NAMESPACE),
                get(ann::CRI_SANDBOX_UID),
                get(ann::CRI_CONTAINER_NAME),
            )
        } else {
            let pod = get(ann::POD_NAME)?;
            (
                pod,
                get(ann::POD_NAMESPACE),
                get(ann::POD_UID),
                get(ann::CONTAINER_NAME),
            )
        };
    let mut labels = BTreeMap::new();
    if let Some(raw) = a.get(ann::CRIO_LABELS) {
        // A JSON object of strings; anything else is ignored rather than trusted.
        if let Ok(map) = serde_json::from_str::<BTreeMap<String, serde_json::Value>>(raw) {
            for (k, v) in map.into_iter().take(MAX_LABELS) {
                if let serde_json::Value::String(v) = v {
                    labels.insert(bounded(&k), bounded(&v));
                }
            }
        }
    }
    Some(K8s {
        pod_name,
        namespace: namespace.unwrap_or_default(),
        pod_uid: pod_uid.unwrap_or_default(),
        container_name: container_name.unwrap_or_default(),
        labels,
    })
}

/// Image reference named by the annotations (containerd CRI, then CRI-O).
pub fn image_from_annotations(a: &BTreeMap<String, String>) -> Option<String> {
    a.get(ann::CRI_IMAGE_NAME)
        .or_else(|| a.get(ann::CRIO_IMAGE_NAME))
        .map(|s| bounded(s))
}

/// Which manager wrote the bundle, when its annotations say so.
pub fn runtime_from_annotations(a: &BTreeMap<String, String>) -> Option<&'static str> {
    use super::cgroup::{RT_CONTAINERD, RT_CRIO, RT_PODMAN};
    if a.get(ann::CONTAINER_MANAGER).is_some_and(|m| m == "libpod") {
        // Podman also writes `io.kubernetes.cri-o.Created`/`TTY`: check it first.
        return Some(RT_PODMAN);
    }
    if a.contains_key(ann::CRIO_CONTAINER_TYPE) || a.contains_key(ann::CRIO_CONTAINER_ID) {
        return Some(RT_CRIO);
    }
    if a.contains_key(ann::CRI_CONTAINER_TYPE) || a.contains_key(ann::CRI_SANDBOX_NAME) {
        return Some(RT_CONTAINERD);
    }
    None
}

/// An image reference split into repository, tag and digest:
/// `registry:5000/ns/name:tag@sha256:...`. A bare image id (`sha256:...` or 64 hex) has no
/// repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

pub fn parse_image_ref(image: &str) -> ImageRef {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, d.to_string()),
        None => (image, String::new()),
    };
    if rest.starts_with("sha256:") || super::cgroup::is_full_id(rest) {
        return ImageRef {
            digest,
            ..Default::default()
        };
    }
    // A ':' after the last '/' is a tag; before it, a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) => ImageRef {
            repository: rest[..last_slash + i].to_string(),
            tag: rest[last_slash + i + 1..].to_string(),
            digest,
        },
        None => ImageRef {
            repository: rest.to_string(),
            tag: String::new(),
            digest,
        },
    }
}

/// Privileged = CAP_SYS_ADMIN in the bounding set and a device cgroup rule that allows every
/// device: what `--privileged` / `privileged: true` produce, and enough to own the host. Not
/// "every capability": runtimes only grant the capabilities they hold themselves (podman under
/// a daemon without CAP_SYS_RESOURCE drops it from a privileged container).
/// None when the spec has no capabilities section.
pub fn is_privileged(spec: &Spec) -> Option<bool> {
    let caps = spec.process.as_ref()?.capabilities.as_ref()?;
    let sys_admin = caps.bounding.iter().any(|b| b == "CAP_SYS_ADMIN");
    let all_devices = spec
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .is_some_and(|r| {
            r.devices.iter().any(|d| {
                d.allow
                    && d.typ.as_deref().is_none_or(|t| t == "a")
                    && d.major.is_none_or(|m| m < 0)
                    && d.minor.is_none_or(|m| m < 0)
                    && d.access
                        .as_deref()
                        .is_none_or(|a| a.contains('r') && a.contains('w') && a.contains('m'))
            })
        });
    Some(sys_admin && all_devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn containerd_cri_annotations() {
        let a = map(&[
            (ann::CRI_SANDBOX_NAME, "web-7d9f"),
            (ann::CRI_SANDBOX_NAMESPACE, "shop"),
            (ann::CRI_SANDBOX_UID, "0b8f7a52-1c1e-4d3c-9c55-1f1f8f3b2a10"),
            (ann::CRI_CONTAINER_NAME, "nginx"),
            (ann::CRI_CONTAINER_TYPE, "container"),
            (ann::CRI_IMAGE_NAME, "docker.io/library/nginx:1.25"),
        ]);
        let k = k8s_from_annotations(&a).expect("k8s");
        assert_eq!(
            k,
            K8s {
                pod_name: "web-7d9f".into(),
                namespace: "shop".into(),
                pod_uid: "0b8f7a52-1c1e-4d3c-9c55-1f1f8f3b2a10".into(),
                container_name: "nginx".into(),
                labels: BTreeMap::new(),
            }
        );
        assert_eq!(
            image_from_annotations(&a).as_deref(),
            Some("docker.io/library/nginx:1.25")
        );
        assert_eq!(runtime_from_annotations(&a), Some("containerd"));
    }

    #[test]
    fn crio_annotations_with_labels() {
        let labels = r#"{"app":"db","io.kubernetes.pod.name":"db-0","bad":5}"#;
        let a = map(&[
            (ann::POD_NAME, "db-0"),
            (ann::POD_NAMESPACE, "data"),
            (ann::POD_UID, "uid-1"),
            (ann::CONTAINER_NAME, "postgres"),
            (ann::CRIO_CONTAINER_TYPE, "container"),
            (ann::CRIO_IMAGE_NAME, "quay.io/pg/postgres:16"),
            (ann::CRIO_LABELS, labels),
        ]);
        let k = k8s_from_annotations(&a).expect("k8s");
        assert_eq!(k.pod_name, "db-0");
        assert_eq!(k.namespace, "data");
        assert_eq!(k.pod_uid, "uid-1");
        assert_eq!(k.container_name, "postgres");
        assert_eq!(
            k.labels,
            map(&[("app", "db"), ("io.kubernetes.pod.name", "db-0")])
        );
        assert_eq!(runtime_from_annotations(&a), Some("cri-o"));
        assert_eq!(
            image_from_annotations(&a).as_deref(),
            Some("quay.io/pg/postgres:16")
        );
        // Labels that are not a JSON object are ignored.
        let a = map(&[(ann::POD_NAME, "x"), (ann::CRIO_LABELS, "not json")]);
        assert!(k8s_from_annotations(&a).expect("k8s").labels.is_empty());
    }

    #[test]
    fn podman_is_not_crio_and_plain_is_nothing() {
        let a = map(&[
            (ann::CONTAINER_MANAGER, "libpod"),
            ("io.kubernetes.cri-o.Created", "2026"),
        ]);
        assert_eq!(runtime_from_annotations(&a), Some("podman"));
        assert!(k8s_from_annotations(&a).is_none());
        assert_eq!(runtime_from_annotations(&BTreeMap::new()), None);
    }

    #[test]
    fn long_values_are_bounded() {
        let long = "é".repeat(MAX_VALUE_LEN);
        let a = map(&[(ann::CRI_SANDBOX_NAME, &long)]);
        let k = k8s_from_annotations(&a).expect("k8s");
        assert!(k.pod_name.len() <= MAX_VALUE_LEN);
        assert!(long.starts_with(&k.pod_name));
    }

    #[test]
    fn image_refs() {
        let cases = [
            ("nginx", "nginx", "", ""),
            ("nginx:1.25", "nginx", "1.25", ""),
            (
                "docker.io/library/nginx:1.25",
                "docker.io/library/nginx",
                "1.25",
                "",
            ),
            ("localhost:5000/team/app", "localhost:5000/team/app", "", ""),
            (
                "localhost:5000/team/app:v2",
                "localhost:5000/team/app",
                "v2",
                "",
            ),
            ("quay.io/x/y@sha256:abcd", "quay.io/x/y", "", "sha256:abcd"),
            (
                "quay.io/x/y:1@sha256:abcd",
                "quay.io/x/y",
                "1",
                "sha256:abcd",
            ),
            ("sha256:0123", "", "", ""),
        ];
        for (input, repo, tag, digest) in cases {
            let r = parse_image_ref(input);
            assert_eq!(
                (r.repository.as_str(), r.tag.as_str(), r.digest.as_str()),
                (repo, tag, digest),
                "{input}"
            );
        }
    }

    #[test]
    fn privileged_needs_sys_admin_and_all_devices() {
        let all: Vec<String> = crate::event::CAPABILITY_NAMES.iter().map(|s| s.to_string()).collect();
        let spec = |caps: Vec<String>, devices: Vec<SpecDevice>| Spec {
            process: Some(SpecProcess {
                capabilities: Some(SpecCaps { bounding: caps }),
            }),
            linux: Some(SpecLinux {
                resources: Some(SpecResources { devices }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let allow_all = SpecDevice {
            allow: true,
            access: Some("rwm".into()),
            ..Default::default()
        };
        let deny_all = SpecDevice {
            allow: false,
            access: Some("rwm".into()),
            ..Default::default()
        };
        assert_eq!(
            is_privileged(&spec(all.clone(), vec![allow_all.clone()])),
            Some(true)
        );
        assert_eq!(
            is_privileged(&spec(all.clone(), vec![deny_all.clone()])),
            Some(false)
        );
        assert_eq!(
            is_privileged(&spec(all[..14].to_vec(), vec![allow_all.clone()])),
            Some(false)
        );
        // All but CAP_SYS_RESOURCE (what podman grants when it lacks it) is still privileged.
        let most: Vec<String> = all
            .iter()
            .filter(|c| *c != "CAP_SYS_RESOURCE")
            .cloned()
            .collect();
        assert_eq!(
            is_privileged(&spec(most, vec![allow_all.clone()])),
            Some(true)
        );
        let one_dev = SpecDevice {
            major: Some(1),
            minor: Some(3),
            ..allow_all.clone()
        };
        assert_eq!(
            is_privileged(&spec(all, vec![deny_all, one_dev])),
            Some(false)
        );
        assert_eq!(is_privileged(&Spec::default()), None);
        // From real JSON (podman's unprivileged default).
        let json = r#"{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"]}},
                       "linux":{"resources":{"devices":[{"allow":false,"access":"rwm"}]}},
                       "annotations":{"io.container.manager":"libpod"}}"#;
        let s: Spec = serde_json::from_str(json).expect("parse");
        assert_eq!(is_privileged(&s), Some(false));
        assert_eq!(
            s.annotations
                .get("io.container.manager")
                .map(String::as_str),
            Some("libpod")
        );
    }
}
