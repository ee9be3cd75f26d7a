//! [`ApiCluster`]: the [`Cluster`] seam answered by the API server (the thin plugin's way; the
//! daemon adds informer caches in front of it). Synchronous on the outside — multus's operations
//! are plain functions — and kube-rs inside, driven by a runtime this type owns or borrows.
//!
//! Policies, as upstream's thin plugin: the pod GET is retried every 250 ms for 2.5 s on errors that
//! may pass (5xx, 429, connection failures); a NotFound is final. The network-status write is a
//! read-modify-write of `pods/status` retried on 409 Conflict. Events are best effort.
//!
//! Pods are read as metadata only (`PartialObjectMetadata`: multus reads nothing else) and written
//! back untyped: the status write keeps every field of the pod as the server sent it, including
//! fields newer than the API version this client was built against.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod as KPod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::core::PartialObjectMeta;

use super::Error;
use super::client::{self, Source};
use super::devices::DeviceSources;
use super::error::is_transient;
use crate::cni::Error as Cni;
use crate::logging;
use crate::multus::kube::{Cluster, EventType, K8sArgs, Pod, PodLookup, ResourceMap};
use crate::multus::nad::NetworkAttachmentDefinition;
use crate::multus::status::{self, NetworkStatus};

/// The annotation multus writes on the pod.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";

/// How often and how long lookups are retried on errors that may pass.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub interval: Duration,
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { interval: Duration::from_millis(250), budget: Duration::from_millis(2500) }
    }
}

/// How many times a conflicting network-status write is retried (client-go's `DefaultRetry`).
const CONFLICT_RETRIES: usize = 5;

enum Driver {
    Own(tokio::runtime::Runtime),
    Borrowed(tokio::runtime::Handle),
}

impl Driver {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        match self {
            Driver::Own(rt) => rt.block_on(f),
            Driver::Borrowed(h) => h.block_on(f),
        }
    }
}

pub struct ApiCluster {
    driver: Driver,
    client: kube::Client,
    retry: RetryPolicy,
    /// Who the events say they come from (`source.component`).
    component: String,
    /// Where the kubelet tells which devices a pod got.
    devices: DeviceSources,
}

/// The NetworkAttachmentDefinition resource (no Rust type exists in k8s-openapi).
pub fn nad_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions")
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == code)
}

/// Our view of an API pod.
pub fn pod_from_api(metadata: &ObjectMeta) -> Pod {
    Pod {
        namespace: metadata.namespace.clone().unwrap_or_default(),
        name: metadata.name.clone().unwrap_or_default(),
        uid: metadata.uid.clone().unwrap_or_default(),
        annotations: metadata.annotations.clone().unwrap_or_default(),
    }
}

/// core/v1 pods, untyped.
fn pod_resource() -> ApiResource {
    ApiResource::erase::<KPod>(&())
}

impl ApiCluster {
    /// The cluster for a multus config's `kubeconfig` (or in-cluster settings); `None` without one.
    /// Owns a single-threaded runtime: for synchronous callers such as the thin plugin.
    pub fn from_kubeconfig(kubeconfig: &str) -> Result<Option<ApiCluster>, Error> {
        let source = client::source(kubeconfig, |k| std::env::var(k).ok());
        if source == Source::None {
            return Ok(None);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(format!("cannot start the kubernetes client runtime: {e}")))?;
        let client = rt.block_on(client::connect(&source))?;
        Ok(client.map(|client| ApiCluster::with(Driver::Own(rt), client)))
    }

    /// A cluster on an existing client, for callers on blocking threads of a multi-threaded
    /// runtime (the daemon's request workers).
    pub fn on_handle(handle: tokio::runtime::Handle, client: kube::Client) -> ApiCluster {
        ApiCluster::with(Driver::Borrowed(handle), client)
    }

    fn with(driver: Driver, client: kube::Client) -> ApiCluster {
        ApiCluster {
            driver,
            client,
            retry: RetryPolicy::default(),
            component: "multus".into(),
            devices: DeviceSources::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> ApiCluster {
        self.retry = retry;
        self
    }

    pub fn with_devices(mut self, devices: DeviceSources) -> ApiCluster {
        self.devices = devices;
        self
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The event this cluster's component records for `pod`.
    pub fn event_for(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) -> Event {
        event_object(pod, kind, reason, message, &self.component)
    }

    /// Runs `f` until it succeeds, fails for good, or the retry budget is spent.
    async fn retrying<T, F, Fut>(&self, mut f: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let deadline = Instant::now() + self.retry.budget;
        loop {
            match f().await {
                Err(e) if is_transient(&e) && Instant::now() + self.retry.interval < deadline => {
                    logging::verbose(&format!("kubernetes API call failed, retrying: {e}"));
                    tokio::time::sleep(self.retry.interval).await;
                }
                other => return other,
            }
        }
    }

    /// The API pod's metadata, or `None` when it does not exist.
    pub fn api_pod(&self, namespace: &str, name: &str) -> Result<Option<PartialObjectMeta<KPod>>, Error> {
        let api: Api<KPod> = Api::namespaced(self.client.clone(), namespace);
        self.driver
            .block_on(self.retrying(|| api.get_metadata_opt(name)))
            .map_err(|e| Error::api(format!("cannot get pod {namespace}/{name}"), e))
    }

    /// Read-modify-write of `pods/status` (upstream's `UpdateStatus` + RetryOnConflict). The pod
    /// read back must still be the sandbox's pod: one deleted and recreated under the same name
    /// meanwhile (another UID, not a static pod) is refused, as upstream's `SetNetworkStatus` does.
    async fn write_status(&self, pod: &Pod, value: &str) -> Result<(), Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &pod.namespace, &pod_resource());
        let what = || format!("cannot write the network-status of pod {}/{}", pod.namespace, pod.name);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(mut current) = api.get_opt(&pod.name).await.map_err(|e| Error::api(what(), e))? else {
                logging::verbose(&format!("pod {}/{} is gone; network-status not written", pod.namespace, pod.name));
                return Ok(());
            };
            let now = pod_from_api(&current.metadata);
            if !pod.uid.is_empty() && now.uid != pod.uid && !now.is_static() {
                return Err(Error::Stale(format!(
                    "{}: expected pod UID {:?} but got {:?} from Kube API (the pod was recreated)",
                    what(),
                    pod.uid,
                    now.uid
                )));
            }
            current
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(NETWORK_STATUS_ANNOTATION.to_string(), value.to_string());
            let body = serde_json::to_vec(&current).expect("a pod serializes");
            match api.replace_status(&pod.name, &PostParams::default(), body).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 409) && attempt < CONFLICT_RETRIES => {
                    logging::verbose(&format!("network-status of {}/{}: conflict, retrying", pod.namespace, pod.name));
                }
                Err(e) if is_status(&e, 404) => return Ok(()),
                Err(e) => return Err(Error::api(what(), e)),
            }
        }
    }
}

/// Events recorded off the request's path, as client-go's broadcaster does: a bounded queue
/// drained by one task on the daemon's runtime. `record` never waits; when the queue is full (the
/// API server is slow or gone) the event is dropped with a log line — an event is best effort,
/// a pod's ADD is not.
pub struct EventQueue {
    tx: tokio::sync::mpsc::Sender<Event>,
}

impl EventQueue {
    /// Events waiting at most (client-go's broadcaster queues 1000 for a whole kubelet).
    pub const CAPACITY: usize = 256;

    pub fn start(handle: &tokio::runtime::Handle, client: kube::Client) -> EventQueue {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(Self::CAPACITY);
        handle.spawn(async move {
            while let Some(ev) = rx.recv().await {
                let ns = ev.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                if let Err(e) = api.create(&PostParams::default(), &ev).await {
                    let (reason, name) = (ev.reason.as_deref().unwrap_or(""), ev.involved_object.name.as_deref());
                    logging::error(&format!("cannot record event {reason} on pod {ns}/{}: {e}", name.unwrap_or("")));
                }
            }
        });
        EventQueue { tx }
    }

    pub fn record(&self, ev: Event) {
        if let Err(e) = self.tx.try_send(ev) {
            let (why, ev) = match e {
                tokio::sync::mpsc::error::TrySendError::Full(ev) => ("full", ev),
                tokio::sync::mpsc::error::TrySendError::Closed(ev) => ("closed", ev),
            };
            logging::error(&format!(
                "event queue {why}: dropping event {} on pod {}/{}",
                ev.reason.as_deref().unwrap_or(""),
                ev.metadata.namespace.as_deref().unwrap_or(""),
                ev.involved_object.name.as_deref().unwrap_or("")
            ));
        }
    }
}

/// The event upstream's recorder would create (core/v1, source component `multus`).
pub fn event_object(pod: &Pod, kind: EventType, reason: &str, message: &str, component: &str) -> Event {
    let now = k8s_openapi::chrono::Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", pod.name, nanos)),
            namespace: Some(pod.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(kind.as_str().into()),
        source: Some(EventSource { component: Some(component.into()), host: None }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some(component.into()),
        ..Default::default()
    }
}

impl Cluster for ApiCluster {
    fn has_client(&self) -> bool {
        true
    }

    fn pod(&self, args: &K8sArgs) -> Result<PodLookup, Cni> {
        if args.name.is_empty() || args.namespace.is_empty() {
            // Not a Kubernetes pod (no K8S_POD_* in CNI_ARGS): nothing to look up.
            return Ok(PodLookup::NoClient);
        }
        Ok(match self.api_pod(&args.namespace, &args.name)? {
            Some(p) => PodLookup::Found(pod_from_api(&p.metadata)),
            None => PodLookup::NotFound,
        })
    }

    fn nad(&self, namespace: &str, name: &str) -> Result<Option<NetworkAttachmentDefinition>, Cni> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &nad_resource());
        let obj = self
            .driver
            .block_on(self.retrying(|| api.get_opt(name)))
            .map_err(|e| Error::api(format!("cannot get network-attachment-definition {namespace}/{name}"), e))?;
        obj.map(|o| {
            let v = serde_json::to_value(o).expect("an object serializes");
            serde_json::from_value(v).map_err(|e| {
                Error::Malformed(format!("network-attachment-definition {namespace}/{name} is malformed: {e}"))
            })
        })
        .transpose()
        .map_err(Cni::from)
    }

    fn set_network_status(&self, pod: &Pod, entries: &[NetworkStatus]) -> Result<(), Cni> {
        let value = status::annotation(entries);
        Ok(self.driver.block_on(self.write_status(pod, &value))?)
    }

    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        let ev = self.event_for(pod, kind, reason, message);
        if let Err(e) = self.driver.block_on(api.create(&PostParams::default(), &ev)) {
            logging::error(&format!("cannot record event {reason} on pod {}/{}: {e}", pod.namespace, pod.name));
        }
    }

    fn resource_map(&self, pod: &Pod) -> Result<ResourceMap, Cni> {
        Ok(self.driver.block_on(self.devices.resource_map_async(pod)).map(|m| m.resources)?)
    }
}
