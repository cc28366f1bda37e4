//! Maps an etcd key back to the Kubernetes group/resource whose storage wrote it (spec §7),
//! plus namespace and name. This decides which EncryptionConfiguration rule applies.
//!
//! The mapping (spec §7): a first segment with a `.` is `<group>/<resource>` (CRs, CRDs,
//! APIServices); a few built-ins use special prefixes (`services/specs`, `minions`, ...); every
//! other first segment is a built-in resource whose group is not in the key and comes from
//! [`BUILTIN`], a table for Kubernetes 1.31-1.34. An unknown first segment is taken to be a
//! core-group resource of that name (what an older or newer built-in most likely is; the
//! EncryptionConfiguration can only match it through `<name>`, `*.` or `*.*` then anyway).
use serde::Serialize;
use std::fmt;

/// The storage prefix kube-apiserver uses by default (`--etcd-prefix`).
pub const DEFAULT_PREFIX: &str = "/registry";

/// A group/resource pair as the EncryptionConfiguration names it (`secrets` = {"" , secrets},
/// `deployments.apps` = {apps, deployments}). Core group is the empty string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    /// Whether this `--resource` filter (exact, or with `*` as the group and/or resource, as
    /// in the EncryptionConfiguration) selects `gr`.
    pub fn selects(&self, gr: &GroupResource) -> bool {
        (self.group == "*" || self.group == gr.group)
            && (self.resource == "*" || self.resource == gr.resource)
    }

    pub fn new(group: impl Into<String>, resource: impl Into<String>) -> Self {
        GroupResource {
            group: group.into(),
            resource: resource.into(),
        }
    }
    /// Parse `resource[.group]`, splitting at the first `.` (upstream `ParseGroupResource`).
    pub fn parse(s: &str) -> Self {
        match s.split_once('.') {
            Some((r, g)) => GroupResource::new(g, r),
            None => GroupResource::new("", s),
        }
    }
}

impl fmt::Display for GroupResource {
    /// `secrets`, `deployments.apps`: the form used in configs, `--resource` and reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// What an etcd key says about the object stored under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// None for keys outside the storage prefix or that are not objects (e.g. `compact_rev_key`).
    pub gr: Option<GroupResource>,
    pub namespace: Option<String>,
    pub name: String,
}

/// Whether objects of a resource live under a namespace segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One built-in resource whose etcd prefix is its plural name (group not in the key).
#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    pub resource: &'static str,
    pub group: &'static str,
    pub scope: Scope,
}

const fn ns(resource: &'static str, group: &'static str) -> Builtin {
    Builtin {
        resource,
        group,
        scope: Scope::Namespaced,
    }
}
const fn cl(resource: &'static str, group: &'static str) -> Builtin {
    Builtin {
        resource,
        group,
        scope: Scope::Cluster,
    }
}

/// Built-in, etcd-backed resources of Kubernetes 1.31-1.34 stored under `P + <plural>/`, with
/// their group (`kubernetes/kubernetes pkg/registry/*/rest/storage_*.go`, DefaultStorageFactory).
/// Resources with a special prefix are handled separately (see [`parse_key`]). Resources that
/// were removed (e.g. `podsecuritypolicies`) are kept where an old key may still be in etcd.
pub const BUILTIN: &[Builtin] = &[
    // core
    ns("configmaps", ""),
    ns("limitranges", ""),
    cl("namespaces", ""),
    ns("persistentvolumeclaims", ""),
    cl("persistentvolumes", ""),
    ns("pods", ""),
    ns("podtemplates", ""),
    ns("resourcequotas", ""),
    ns("secrets", ""),
    ns("serviceaccounts", ""),
    // apps
    ns("controllerrevisions", "apps"),
    ns("daemonsets", "apps"),
    ns("deployments", "apps"),
    ns("replicasets", "apps"),
    ns("statefulsets", "apps"),
    // batch
    ns("cronjobs", "batch"),
    ns("jobs", "batch"),
    // autoscaling
    ns("horizontalpodautoscalers", "autoscaling"),
    // policy
    ns("poddisruptionbudgets", "policy"),
    cl("podsecuritypolicies", "policy"),
    // rbac
    cl("clusterrolebindings", "rbac.authorization.k8s.io"),
    cl("clusterroles", "rbac.authorization.k8s.io"),
    ns("rolebindings", "rbac.authorization.k8s.io"),
    ns("roles", "rbac.authorization.k8s.io"),
    // storage
    cl("csidrivers", "storage.k8s.io"),
    cl("csinodes", "storage.k8s.io"),
    ns("csistoragecapacities", "storage.k8s.io"),
    cl("storageclasses", "storage.k8s.io"),
    cl("volumeattachments", "storage.k8s.io"),
    cl("volumeattributesclasses", "storage.k8s.io"),
    // networking (ingresses use the special prefix `ingress`)
    cl("ingressclasses", "networking.k8s.io"),
    cl("ipaddresses", "networking.k8s.io"),
    ns("networkpolicies", "networking.k8s.io"),
    cl("servicecidrs", "networking.k8s.io"),
    // coordination
    ns("leases", "coordination.k8s.io"),
    ns("leasecandidates", "coordination.k8s.io"),
    // discovery
    ns("endpointslices", "discovery.k8s.io"),
    // node
    cl("runtimeclasses", "node.k8s.io"),
    // scheduling
    cl("priorityclasses", "scheduling.k8s.io"),
    // certificates
    cl("certificatesigningrequests", "certificates.k8s.io"),
    cl("clustertrustbundles", "certificates.k8s.io"),
    ns("podcertificaterequests", "certificates.k8s.io"),
    // admissionregistration
    cl(
        "mutatingwebhookconfigurations",
        "admissionregistration.k8s.io",
    ),
    cl(
        "validatingwebhookconfigurations",
        "admissionregistration.k8s.io",
    ),
    cl(
        "validatingadmissionpolicies",
        "admissionregistration.k8s.io",
    ),
    cl(
        "validatingadmissionpolicybindings",
        "admissionregistration.k8s.io",
    ),
    cl("mutatingadmissionpolicies", "admissionregistration.k8s.io"),
    cl(
        "mutatingadmissionpolicybindings",
        "admissionregistration.k8s.io",
    ),
    // flowcontrol
    cl("flowschemas", "flowcontrol.apiserver.k8s.io"),
    cl(
        "prioritylevelconfigurations",
        "flowcontrol.apiserver.k8s.io",
    ),
    // resource (DRA)
    cl("deviceclasses", "resource.k8s.io"),
    ns("resourceclaims", "resource.k8s.io"),
    ns("resourceclaimtemplates", "resource.k8s.io"),
    cl("resourceslices", "resource.k8s.io"),
    cl("devicetaintrules", "resource.k8s.io"),
    ns("podschedulingcontexts", "resource.k8s.io"),
    // storage version migration, storage versions
    cl("storageversionmigrations", "storagemigration.k8s.io"),
    cl("storageversions", "internal.apiserver.k8s.io"),
];

/// A built-in by its etcd prefix segment.
pub fn builtin(resource: &str) -> Option<&'static Builtin> {
    BUILTIN.iter().find(|b| b.resource == resource)
}

/// Built-ins whose etcd prefix is not their plural name
/// (`kubernetes/kubernetes pkg/kubeapiserver/default_storage_factory_builder.go`), plus the
/// non-REST keys of spec §7. Matched against the first one or two key segments.
const SPECIAL: &[(&[&str], &str, &str, Scope)] = &[
    (&["services", "specs"], "", "services", Scope::Namespaced),
    (
        &["services", "endpoints"],
        "",
        "endpoints",
        Scope::Namespaced,
    ),
    (&["minions"], "", "nodes", Scope::Cluster),
    (
        &["controllers"],
        "",
        "replicationcontrollers",
        Scope::Namespaced,
    ),
    (
        &["ingress"],
        "networking.k8s.io",
        "ingresses",
        Scope::Namespaced,
    ),
    (&["events"], "", "events", Scope::Namespaced),
    // Core v1 Endpoints with a lease, one per apiserver IP; transformer {"" , apiServerIPInfo}.
    (&["masterleases"], "", "apiServerIPInfo", Scope::Cluster),
    (
        &["peerserverleases"],
        "",
        "apiServerPeerIPInfo",
        Scope::Cluster,
    ),
    // RangeAllocation bitmaps: their storage is created from the `services` config.
    (&["ranges", "serviceips"], "", "services", Scope::Cluster),
    (
        &["ranges", "secondaryserviceips"],
        "",
        "services",
        Scope::Cluster,
    ),
    (
        &["ranges", "servicenodeports"],
        "",
        "services",
        Scope::Cluster,
    ),
];

/// kube-apiserver's storage key prefix `P` for an `--etcd-prefix` value: Go's
/// `path.Join("/", prefix)` (empty and `.` segments dropped, `..` climbing, never above the
/// root) plus a trailing `/` when there is none (`kubernetes/apiserver pkg/storage/etcd3/store.go`
/// `New`). `/registry`, `registry` and `/registry/` give `/registry/`; `/` and the empty string
/// give `/`. Every command that ranges over etcd keys uses this one function, so
/// `--prefix /` means the same keys everywhere.
pub fn storage_key_prefix(prefix: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in prefix.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}/", segments.join("/"))
    }
}

/// Map `key` under storage `prefix` (e.g. `/registry`; a trailing `/` is tolerated) to its
/// group/resource, namespace and name (spec §7).
///
/// Keys outside the prefix (e.g. `compact_rev_key`) and `P + health` get `gr: None` with the
/// whole key (resp. `health`) as name. For built-ins the namespace decision uses the known
/// scope; for CRs and unknown resources two remaining segments are namespace/name and one is
/// a name. Extra segments (which kube-apiserver never writes) stay in the name, `/`-joined.
/// Non-UTF-8 bytes are replaced (U+FFFD); this never fails.
pub fn parse_key(prefix: &str, key: &[u8]) -> KeyInfo {
    parse_key_under(&storage_key_prefix(prefix), key)
}

/// [`parse_key`] with a prefix already normalised by [`storage_key_prefix`] (callers that
/// parse every key of a scan normalise once).
pub fn parse_key_under(storage_prefix: &str, key: &[u8]) -> KeyInfo {
    let key = String::from_utf8_lossy(key);
    let Some(rest) = key.strip_prefix(storage_prefix) else {
        return KeyInfo {
            gr: None,
            namespace: None,
            name: key.into_owned(),
        };
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let first = segments.first().copied().unwrap_or("");
    if first.is_empty() || (segments.len() == 1 && first == "health") {
        return KeyInfo {
            gr: None,
            namespace: None,
            name: rest.to_owned(),
        };
    }
    // 1. `<group>/<resource>/...`: CRs, CRDs, APIServices (SimpleStorageFactory).
    if first.contains('.') {
        let resource = segments.get(1).copied().unwrap_or("");
        let scope = match (first, resource) {
            ("apiextensions.k8s.io", "customresourcedefinitions")
            | ("apiregistration.k8s.io", "apiservices") => Some(Scope::Cluster),
            _ => None,
        };
        return key_info(
            GroupResource::new(first, resource),
            segments.get(2..).unwrap_or(&[]),
            scope,
        );
    }
    // 2. Special prefixes.
    for (path, group, resource, scope) in SPECIAL {
        if segments.len() > path.len() && segments.starts_with(path) {
            return key_info(
                GroupResource::new(*group, *resource),
                &segments[path.len()..],
                Some(*scope),
            );
        }
    }
    // `ranges/<name>` with a name not in the table: still a RangeAllocation of `services`.
    if first == "ranges" && segments.len() == 2 {
        return key_info(
            GroupResource::new("", "services"),
            &segments[1..],
            Some(Scope::Cluster),
        );
    }
    // 3. Built-in table; 4. unknown ⇒ core group, scope from segment count.
    let (gr, scope) = match builtin(first) {
        Some(b) => (GroupResource::new(b.group, b.resource), Some(b.scope)),
        None => (GroupResource::new("", first), None),
    };
    key_info(gr, &segments[1..], scope)
}

fn key_info(gr: GroupResource, rest: &[&str], scope: Option<Scope>) -> KeyInfo {
    let (namespace, name) = match (scope, rest) {
        (_, []) => (None, String::new()),
        (_, [name]) => (None, (*name).to_owned()),
        (Some(Scope::Cluster), _) => (None, rest.join("/")),
        (Some(Scope::Namespaced) | None, [ns, name @ ..]) => {
            (Some((*ns).to_owned()), name.join("/"))
        }
    };
    KeyInfo {
        gr: Some(gr),
        namespace,
        name,
    }
}

/// Whether `gr` is selected by a `--resource` filter string. The filter uses the
/// EncryptionConfiguration's syntax, parsed like [`GroupResource::parse`]: `secrets` (core),
/// `deployments.apps`, `*.apps` (every resource of a group), `*.` (every core resource),
/// `*.*` — and, for convenience on the command line, a bare `*` also means everything.
/// Matching is exact and case-sensitive (resource names are lower-case).
pub fn matches_filter(filter: &str, gr: &GroupResource) -> bool {
    if filter == "*" {
        return true;
    }
    GroupResource::parse(filter).selects(gr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_key_prefix_is_apiservers_cleaned_prefix() {
        for p in [
            "/registry",
            "registry",
            "/registry/",
            "//registry//",
            "./registry/.",
        ] {
            assert_eq!(storage_key_prefix(p), "/registry/", "{p:?}");
        }
        assert_eq!(storage_key_prefix("/"), "/");
        assert_eq!(storage_key_prefix(""), "/");
        assert_eq!(storage_key_prefix("//"), "/");
        assert_eq!(storage_key_prefix("/.."), "/");
        assert_eq!(storage_key_prefix("//a//b/"), "/a/b/");
        assert_eq!(storage_key_prefix("/a/../b"), "/b/");
        assert_eq!(
            storage_key_prefix("/43da5c2e-8f4b-4d6e-9a1b-0c7d2e3f4a5b/registry"),
            "/43da5c2e-8f4b-4d6e-9a1b-0c7d2e3f4a5b/registry/"
        );
        // The prefix parse_key strips is the same one.
        assert_eq!(
            parse_key("/43da/registry/", b"/43da/registry/secrets/a/b").name,
            "b"
        );
    }

    fn gr(s: &str) -> Option<GroupResource> {
        Some(GroupResource::parse(s))
    }
    fn info(gr_: Option<GroupResource>, ns: Option<&str>, name: &str) -> KeyInfo {
        KeyInfo {
            gr: gr_,
            namespace: ns.map(str::to_owned),
            name: name.to_owned(),
        }
    }
    fn pk(key: &str) -> KeyInfo {
        parse_key(DEFAULT_PREFIX, key.as_bytes())
    }

    #[test]
    fn group_resource_parse_and_display() {
        assert_eq!(
            GroupResource::parse("secrets"),
            GroupResource::new("", "secrets")
        );
        assert_eq!(
            GroupResource::parse("deployments.apps"),
            GroupResource::new("apps", "deployments")
        );
        assert_eq!(
            GroupResource::parse("pandas.awesome.bears.example"),
            GroupResource::new("awesome.bears.example", "pandas")
        );
        assert_eq!(GroupResource::parse("*."), GroupResource::new("", "*"));
        assert_eq!(GroupResource::parse("*.*"), GroupResource::new("*", "*"));
        assert_eq!(
            GroupResource::new("apps", "deployments").to_string(),
            "deployments.apps"
        );
        assert_eq!(GroupResource::new("", "secrets").to_string(), "secrets");
    }

    #[test]
    fn core_namespaced_and_cluster() {
        assert_eq!(
            pk("/registry/secrets/default/tok"),
            info(gr("secrets"), Some("default"), "tok")
        );
        assert_eq!(
            pk("/registry/configmaps/kube-system/cm"),
            info(gr("configmaps"), Some("kube-system"), "cm")
        );
        assert_eq!(
            pk("/registry/namespaces/default"),
            info(gr("namespaces"), None, "default")
        );
        assert_eq!(
            pk("/registry/persistentvolumes/pv1"),
            info(gr("persistentvolumes"), None, "pv1")
        );
    }

    #[test]
    fn special_prefixes() {
        assert_eq!(
            pk("/registry/services/specs/default/kubernetes"),
            info(gr("services"), Some("default"), "kubernetes")
        );
        assert_eq!(
            pk("/registry/services/endpoints/default/kubernetes"),
            info(gr("endpoints"), Some("default"), "kubernetes")
        );
        assert_eq!(
            pk("/registry/minions/node-1"),
            info(gr("nodes"), None, "node-1")
        );
        assert_eq!(
            pk("/registry/controllers/ns/rc"),
            info(gr("replicationcontrollers"), Some("ns"), "rc")
        );
        assert_eq!(
            pk("/registry/ingress/ns/web"),
            info(gr("ingresses.networking.k8s.io"), Some("ns"), "web")
        );
        assert_eq!(
            pk("/registry/events/default/pod.17a"),
            info(gr("events"), Some("default"), "pod.17a")
        );
        assert_eq!(
            pk("/registry/masterleases/10.0.0.1"),
            info(
                Some(GroupResource::new("", "apiServerIPInfo")),
                None,
                "10.0.0.1"
            )
        );
        assert_eq!(
            pk("/registry/peerserverleases/kube-apiserver-abc"),
            info(
                Some(GroupResource::new("", "apiServerPeerIPInfo")),
                None,
                "kube-apiserver-abc"
            )
        );
        for r in ["serviceips", "secondaryserviceips", "servicenodeports"] {
            assert_eq!(
                pk(&format!("/registry/ranges/{r}")),
                info(gr("services"), None, r)
            );
        }
    }

    #[test]
    fn builtins_from_table() {
        assert_eq!(
            pk("/registry/deployments/default/web"),
            info(gr("deployments.apps"), Some("default"), "web")
        );
        assert_eq!(
            pk("/registry/leases/kube-system/kube-scheduler"),
            info(
                gr("leases.coordination.k8s.io"),
                Some("kube-system"),
                "kube-scheduler"
            )
        );
        assert_eq!(
            pk("/registry/clusterroles/admin"),
            info(gr("clusterroles.rbac.authorization.k8s.io"), None, "admin")
        );
        assert_eq!(
            pk("/registry/flowschemas/exempt"),
            info(
                gr("flowschemas.flowcontrol.apiserver.k8s.io"),
                None,
                "exempt"
            )
        );
        assert_eq!(
            pk("/registry/endpointslices/default/kubernetes"),
            info(
                gr("endpointslices.discovery.k8s.io"),
                Some("default"),
                "kubernetes"
            )
        );
        assert_eq!(
            pk("/registry/priorityclasses/system-node-critical"),
            info(
                gr("priorityclasses.scheduling.k8s.io"),
                None,
                "system-node-critical"
            )
        );
        assert_eq!(
            pk("/registry/resourceclaims/ns/c"),
            info(gr("resourceclaims.resource.k8s.io"), Some("ns"), "c")
        );
        // Every table entry maps back to itself.
        for b in BUILTIN {
            let key = match b.scope {
                Scope::Namespaced => format!("/registry/{}/ns/n", b.resource),
                Scope::Cluster => format!("/registry/{}/n", b.resource),
            };
            let got = pk(&key);
            assert_eq!(
                got.gr,
                Some(GroupResource::new(b.group, b.resource)),
                "{key}"
            );
            assert_eq!(got.name, "n", "{key}");
        }
    }

    #[test]
    fn dotted_first_segment_is_group() {
        assert_eq!(
            pk(
                "/registry/apiextensions.k8s.io/customresourcedefinitions/crontabs.stable.example.com"
            ),
            info(
                gr("customresourcedefinitions.apiextensions.k8s.io"),
                None,
                "crontabs.stable.example.com"
            )
        );
        assert_eq!(
            pk("/registry/apiregistration.k8s.io/apiservices/v1.apps"),
            info(gr("apiservices.apiregistration.k8s.io"), None, "v1.apps")
        );
        assert_eq!(
            pk("/registry/stable.example.com/crontabs/default/my-cron"),
            info(
                gr("crontabs.stable.example.com"),
                Some("default"),
                "my-cron"
            )
        );
        assert_eq!(
            pk("/registry/cert-manager.io/clusterissuers/letsencrypt"),
            info(gr("clusterissuers.cert-manager.io"), None, "letsencrypt")
        );
    }

    #[test]
    fn unknown_first_segment_is_core() {
        assert_eq!(
            pk("/registry/widgets/ns/w"),
            info(gr("widgets"), Some("ns"), "w")
        );
        assert_eq!(pk("/registry/widgets/w"), info(gr("widgets"), None, "w"));
    }

    #[test]
    fn outside_prefix_and_non_objects() {
        assert_eq!(pk("compact_rev_key"), info(None, None, "compact_rev_key"));
        assert_eq!(
            pk("/other/secrets/a/b"),
            info(None, None, "/other/secrets/a/b")
        );
        assert_eq!(
            pk("/registryx/secrets/a/b"),
            info(None, None, "/registryx/secrets/a/b")
        );
        assert_eq!(pk("/registry/health"), info(None, None, "health"));
        assert_eq!(pk("/registry/"), info(None, None, ""));
    }

    #[test]
    fn prefix_forms() {
        let want = info(gr("secrets"), Some("a"), "b");
        assert_eq!(parse_key("/registry/", b"/registry/secrets/a/b"), want);
        assert_eq!(parse_key("registry", b"/registry/secrets/a/b"), want);
        assert_eq!(
            parse_key("/custom/prefix", b"/custom/prefix/secrets/a/b"),
            want
        );
        assert_eq!(
            parse_key("/custom/prefix", b"/registry/secrets/a/b").gr,
            None
        );
        assert_eq!(parse_key("/", b"/secrets/a/b"), want);
    }

    #[test]
    fn odd_keys_never_panic() {
        for key in [
            &b""[..],
            b"/",
            b"//",
            b"/registry//",
            b"/registry/services",
            b"/registry/\xff\xfe/x",
            b"/registry/ranges/foo",
        ] {
            let _ = parse_key(DEFAULT_PREFIX, key);
        }
        // `services` alone (no specs/endpoints) is not a special prefix.
        assert_eq!(pk("/registry/services").gr, gr("services"));
        assert_eq!(pk("/registry/ranges/foo").gr, gr("services"));
        // Extra segments stay in the name.
        assert_eq!(
            pk("/registry/namespaces/a/b"),
            info(gr("namespaces"), None, "a/b")
        );
        assert_eq!(
            pk("/registry/secrets/a/b/c"),
            info(gr("secrets"), Some("a"), "b/c")
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_keys_never_panic(key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80), prefix in "[a-z/]{0,12}") {
            let info = parse_key(&prefix, &key);
            // A resource is always a single key segment.
            if let Some(gr) = info.gr {
                proptest::prop_assert!(!gr.resource.contains('/'));
            }
        }
    }

    #[test]
    fn filters() {
        let secrets = GroupResource::new("", "secrets");
        let deploy = GroupResource::new("apps", "deployments");
        assert!(matches_filter("secrets", &secrets));
        assert!(!matches_filter("secrets", &deploy));
        assert!(matches_filter("deployments.apps", &deploy));
        assert!(!matches_filter("deployments", &deploy));
        assert!(matches_filter("*.apps", &deploy));
        assert!(!matches_filter("*.apps", &secrets));
        assert!(matches_filter("*.", &secrets));
        assert!(!matches_filter("*.", &deploy));
        assert!(matches_filter("*.*", &deploy));
        assert!(matches_filter("*", &secrets));
    }
}
