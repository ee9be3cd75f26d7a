//! The kubelet's device-plugin checkpoint file ([`DEFAULT_PATH`]), which Multus reads when the
//! PodResources socket does not exist (multus-cni `pkg/checkpoint`).
//!
//! The document is `{"Data":{"PodDeviceEntries":[{"PodUID","ContainerName","ResourceName",
//! "DeviceIDs","AllocResp"}],"RegisteredDevices":{...}},"Checksum":N}`. `DeviceIDs` is a map from
//! NUMA node (a decimal string; `-1` for devices without topology) to IDs in kubelets since 1.21,
//! and a plain list before; both are accepted. The checksum is not verified (upstream ignores it
//! too). Parsing is pure; [`read`] is the file edge.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::Error;

/// Where the kubelet keeps its device-plugin checkpoint.
pub const DEFAULT_PATH: &str = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint";

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Checkpoint {
    #[serde(rename = "Data")]
    pub data: Data,
    #[serde(rename = "Checksum", default)]
    pub checksum: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Data {
    #[serde(rename = "PodDeviceEntries", default, deserialize_with = "null_as_default")]
    pub pod_device_entries: Vec<PodDevicesEntry>,
    #[serde(rename = "RegisteredDevices", default, deserialize_with = "null_as_default")]
    pub registered_devices: BTreeMap<String, Vec<String>>,
}

/// One container's devices of one resource. `AllocResp` (the device plugin's answer, base64) is
/// not needed and not kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PodDevicesEntry {
    #[serde(rename = "PodUID", default)]
    pub pod_uid: String,
    #[serde(rename = "ContainerName", default)]
    pub container_name: String,
    #[serde(rename = "ResourceName", default)]
    pub resource_name: String,
    #[serde(rename = "DeviceIDs", default, deserialize_with = "null_as_default")]
    pub device_ids: DeviceIds,
}

/// `DeviceIDs` in either layout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawDeviceIds")]
pub enum DeviceIds {
    /// Kubernetes ≥ 1.21: NUMA node → IDs.
    PerNuma(BTreeMap<i64, Vec<String>>),
    /// Kubernetes ≤ 1.20.
    Flat(Vec<String>),
}

/// What the JSON holds; NUMA keys are checked to be integers after the layout is known (serde's
/// untagged matching cannot read integer keys from JSON strings itself).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDeviceIds {
    PerNuma(BTreeMap<String, Vec<String>>),
    Flat(Vec<String>),
}

impl TryFrom<RawDeviceIds> for DeviceIds {
    type Error = String;

    fn try_from(raw: RawDeviceIds) -> Result<DeviceIds, String> {
        match raw {
            RawDeviceIds::Flat(v) => Ok(DeviceIds::Flat(v)),
            RawDeviceIds::PerNuma(m) => m
                .into_iter()
                .map(|(k, v)| {
                    k.parse::<i64>().map(|n| (n, v)).map_err(|_| format!("NUMA node {k:?} is not an integer"))
                })
                .collect::<Result<_, _>>()
                .map(DeviceIds::PerNuma),
        }
    }
}

impl Default for DeviceIds {
    fn default() -> Self {
        DeviceIds::Flat(Vec::new())
    }
}

impl DeviceIds {
    /// Every ID, NUMA nodes in ascending order (upstream walks a Go map, whose order is random;
    /// ascending is one of the orders it can produce, and stable).
    pub fn all(&self) -> Vec<String> {
        match self {
            DeviceIds::PerNuma(m) => m.values().flatten().cloned().collect(),
            DeviceIds::Flat(v) => v.clone(),
        }
    }
}

/// Go decodes `null` into a nil slice or map; serde would refuse it.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Checkpoint {
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Checkpoint, Error> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Malformed(format!("cannot parse device-plugin checkpoint {}: {e}", path.display())))
    }

    /// The pod's devices by resource name: every entry with this pod UID, in file order, all
    /// containers together (multus-cni `checkpoint.GetPodResourceMap`). An empty UID is an error,
    /// as upstream.
    pub fn pod_resources(&self, pod_uid: &str) -> Result<BTreeMap<String, Vec<String>>, Error> {
        if pod_uid.is_empty() {
            return Err(Error::Devices("cannot look up a pod in the device-plugin checkpoint: empty pod UID".into()));
        }
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in self.data.pod_device_entries.iter().filter(|e| e.pod_uid == pod_uid) {
            out.entry(e.resource_name.clone()).or_default().extend(e.device_ids.all());
        }
        Ok(out)
    }
}

/// Reads and parses the checkpoint at `path`.
pub fn read(path: &Path) -> Result<Checkpoint, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| crate::files::FileError::new("failed to read device-plugin checkpoint", path, e))?;
    Checkpoint::parse(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &[u8] = include_bytes!("../../tests/fixtures/checkpoint/kubelet_internal_checkpoint-1.21.json");
    const OLD: &[u8] = include_bytes!("../../tests/fixtures/checkpoint/kubelet_internal_checkpoint-1.20.json");
    const POD: &str = "9d3c7b1e-0f4a-4c55-8a7e-1b2f3c4d5e6f";
    const OTHER: &str = "0b1e2d3c-aaaa-bbbb-cccc-000000000001";

    fn map(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn kubelet_1_21_document_per_numa_node() {
        let cp = Checkpoint::parse(NEW, Path::new("new")).unwrap();
        assert_eq!(cp.checksum, 3854967041);
        assert_eq!(cp.data.pod_device_entries.len(), 5);
        let e = &cp.data.pod_device_entries[0];
        assert_eq!((e.pod_uid.as_str(), e.container_name.as_str()), (POD, "app"));
        assert_eq!(
            e.device_ids,
            DeviceIds::PerNuma(BTreeMap::from([
                (0, vec!["0000:03:02.0".to_string(), "0000:03:02.1".to_string()]),
                (1, vec!["0000:81:02.3".to_string()]),
            ]))
        );
        assert_eq!(cp.data.registered_devices["nvidia.com/gpu"], ["GPU-6a1c"]);
        assert_eq!(
            cp.pod_resources(POD).unwrap(),
            map(&[
                ("example.com/none", &[]),
                ("intel.com/sriov_netdevice", &["0000:03:02.0", "0000:03:02.1", "0000:81:02.3", "0000:03:02.5"]),
                ("nvidia.com/gpu", &["GPU-6a1c"]),
            ])
        );
        assert_eq!(cp.pod_resources(OTHER).unwrap(), map(&[("intel.com/sriov_netdevice", &["0000:03:02.7"])]));
        assert!(cp.pod_resources("no-such-uid").unwrap().is_empty());
        assert!(cp.pod_resources("").unwrap_err().to_string().contains("empty pod UID"));
    }

    #[test]
    fn kubelet_1_20_document_flat_list() {
        let cp = Checkpoint::parse(OLD, Path::new("old")).unwrap();
        assert_eq!(cp.checksum, 2098410361);
        assert_eq!(
            cp.pod_resources(POD).unwrap(),
            map(&[("intel.com/sriov_netdevice", &["0000:03:02.0", "0000:03:02.1", "0000:03:02.5"])])
        );
    }

    #[test]
    fn nulls_and_garbage() {
        let cp = Checkpoint::parse(
            br#"{"Data":{"PodDeviceEntries":null,"RegisteredDevices":null},"Checksum":0}"#,
            Path::new("x"),
        )
        .unwrap();
        assert!(cp.data.pod_device_entries.is_empty());
        let e = Checkpoint::parse(b"{\"Data\":", Path::new("/var/lib/kubelet/cp")).unwrap_err();
        assert!(e.to_string().contains("/var/lib/kubelet/cp"), "{e}");
        let e = Checkpoint::parse(br#"{"Data":{"PodDeviceEntries":[{"DeviceIDs":{"x":["a"]}}]}}"#, Path::new("x"));
        assert!(e.is_err(), "a NUMA key must be an integer, as Go's map[int64][]string requires");
    }
}
