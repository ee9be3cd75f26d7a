//! [`InformerCluster`]: the daemon's [`Cluster`], answering pod and NetworkAttachmentDefinition
//! lookups from watch-fed caches (kube-runtime reflectors: this node's pods, every NAD) and
//! falling back to a live GET when the cache has not caught up. Writes (network-status, events)
//! go straight to the API server through [`ApiCluster`]. Upstream's thick daemon keeps informers
//! too, but GETs each ADD's NADs from the API; ours come from the cache. The pod cache holds
//! metadata only.
//!
//! Pod lookup (upstream's informer policy): poll the cache every 50 ms for up to 2.5 s for the
//! sandbox's pod (a fresh pod may not have reached the watch yet, and a recreated pod's cached
//! copy may still be the old UID), then ask the API server once. DEL and CHECK do not wait: once
//! the pod watch has synced, a pod the cache lacks is gone (upstream: NotFound is final on DEL).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod as KPod;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, metadata_watcher, watcher};

use super::Error;
use super::cluster::{ApiCluster, EventQueue, nad_resource, pod_from_api};
use crate::cni::Error as Cni;
use crate::logging;
use crate::multus::kube::{Cluster, EventType, K8sArgs, Pod, PodLookup, ResourceMap};
use crate::multus::nad::NetworkAttachmentDefinition;
use crate::multus::status::NetworkStatus;

const POLL: Duration = Duration::from_millis(50);
const BUDGET: Duration = Duration::from_millis(2500);

pub struct InformerCluster {
    api: ApiCluster,
    pods: Store<PartialObjectMeta<KPod>>,
    nads: Store<DynamicObject>,
    /// Set once the pod watch has listed every pod of the node: from then on, a pod the cache
    /// does not hold is gone (for a teardown).
    pods_synced: Arc<AtomicBool>,
    /// Events go out from here, off the requests' path.
    events: EventQueue,
}

/// The pod watch is metadata only (`PartialObjectMetadata`: names, UIDs, annotations), which is all
/// multus reads; upstream caches whole pods minus a few trimmed fields. The managed fields go too,
/// so a node's pods cost little memory.
fn trim(pod: &mut PartialObjectMeta<KPod>) {
    pod.metadata.managed_fields = None;
}

impl InformerCluster {
    /// Starts the watches on `handle` (the pods of `node`; every pod when `node` is empty) with
    /// `watch_client` and waits up to `sync` for their first lists; an unsynced cache only means
    /// more live GETs. Lookups, status writes and events use `client`.
    pub async fn start(
        handle: tokio::runtime::Handle,
        client: kube::Client,
        watch_client: kube::Client,
        node: &str,
        sync: Duration,
    ) -> Self {
        let pod_api: Api<KPod> = Api::all(watch_client.clone());
        let mut pod_cfg = watcher::Config::default();
        if !node.is_empty() {
            pod_cfg = pod_cfg.fields(&format!("spec.nodeName={node}"));
        }
        let (pods, pod_writer) = reflector::store();
        let pod_stream =
            metadata_watcher(pod_api, pod_cfg).default_backoff().modify(trim).reflect(pod_writer).applied_objects();
        handle.spawn(pod_stream.for_each(|r| async move {
            if let Err(e) = r {
                logging::error(&format!("pod watch: {e}"));
            }
        }));

        let ar = nad_resource();
        let nad_api: Api<DynamicObject> = Api::all_with(watch_client, &ar);
        let nad_writer = reflector::store::Writer::new(ar.clone());
        let nads = nad_writer.as_reader();
        let nad_stream =
            watcher(nad_api, watcher::Config::default()).default_backoff().reflect(nad_writer).applied_objects();
        handle.spawn(nad_stream.for_each(|r| async move {
            if let Err(e) = r {
                logging::error(&format!("network-attachment-definition watch: {e}"));
            }
        }));

        // One waiter per store: a store's readiness wakes a single task (kube-runtime's
        // `DelayedInit` keeps one waker), so a second concurrent waiter would sleep through it —
        // the startup wait ran into its 20 s timeout and the synced flag could stay unset for good.
        let pods_synced = Arc::new(AtomicBool::new(false));
        let (synced_tx, mut synced_rx) = tokio::sync::watch::channel(false);
        let (flag, ready_pods, ready_nads) = (pods_synced.clone(), pods.clone(), nads.clone());
        handle.spawn(async move {
            if ready_pods.wait_until_ready().await.is_ok() {
                flag.store(true, Ordering::Release);
            }
            let _ = ready_nads.wait_until_ready().await;
            let _ = synced_tx.send(true);
        });
        if tokio::time::timeout(sync, synced_rx.wait_for(|s| *s)).await.is_err() {
            logging::error(&format!("the caches did not sync within {}s; using live lookups", sync.as_secs()));
        }
        let events = EventQueue::start(&handle, client.clone());
        InformerCluster { api: ApiCluster::on_handle(handle, client), pods, nads, pods_synced, events }
    }

    fn cached_pod(&self, args: &K8sArgs) -> Option<Pod> {
        let p = self.pods.get(&ObjectRef::new(&args.name).within(&args.namespace))?;
        let pod = pod_from_api(&p.metadata);
        pod.check_uid(args).is_ok().then_some(pod)
    }

    pub fn api(&self) -> &ApiCluster {
        &self.api
    }
}

impl Cluster for InformerCluster {
    fn has_client(&self) -> bool {
        true
    }

    fn pod(&self, args: &K8sArgs) -> Result<PodLookup, Cni> {
        if args.name.is_empty() || args.namespace.is_empty() {
            return Ok(PodLookup::NoClient);
        }
        let deadline = Instant::now() + BUDGET;
        loop {
            if let Some(pod) = self.cached_pod(args) {
                return Ok(PodLookup::Found(pod));
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        logging::verbose(&format!("pod {} not in the cache; asking the API server", args.describe()));
        self.api.pod(args)
    }

    /// A pod the synced cache does not hold (under the sandbox's UID) is gone: no polling, no
    /// API request. Before the first list completes, one live lookup.
    fn teardown_pod(&self, args: &K8sArgs) -> Result<PodLookup, Cni> {
        if args.name.is_empty() || args.namespace.is_empty() {
            return Ok(PodLookup::NoClient);
        }
        if let Some(pod) = self.cached_pod(args) {
            return Ok(PodLookup::Found(pod));
        }
        if self.pods_synced.load(Ordering::Acquire) {
            logging::verbose(&format!("pod {} is not in the synced cache: gone", args.describe()));
            return Ok(PodLookup::NotFound);
        }
        self.api.pod(args)
    }

    fn nad(&self, namespace: &str, name: &str) -> Result<Option<NetworkAttachmentDefinition>, Cni> {
        let key = ObjectRef::new_with(name, nad_resource()).within(namespace);
        match self.nads.get(&key) {
            Some(obj) => {
                let v = serde_json::to_value(obj.as_ref()).expect("an object serializes");
                serde_json::from_value(v).map(Some).map_err(|e| {
                    Error::Malformed(format!("network-attachment-definition {namespace}/{name} is malformed: {e}"))
                        .into()
                })
            }
            None => self.api.nad(namespace, name),
        }
    }

    fn set_network_status(&self, pod: &Pod, entries: &[NetworkStatus]) -> Result<(), Cni> {
        self.api.set_network_status(pod, entries)
    }

    /// Queued: the event's POST is not on the ADD's critical path (the thin plugin, a process
    /// that exits after the ADD, posts synchronously).
    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        self.events.record(self.api.event_for(pod, kind, reason, message))
    }

    fn resource_map(&self, pod: &Pod) -> Result<ResourceMap, Cni> {
        self.api.resource_map(pod)
    }
}

/// Shared form for request handlers.
pub type SharedCluster = Arc<dyn Cluster>;
