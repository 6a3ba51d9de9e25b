//! Devices as written in storage locations and `torch.device(...)` values.

use std::fmt;

/// The device type names PyTorch's device-string parser accepts.
const DEVICE_TYPES: &[&str] = &[
    "cpu",
    "cuda",
    "ipu",
    "xpu",
    "mkldnn",
    "opengl",
    "opencl",
    "ideep",
    "hip",
    "ve",
    "fpga",
    "maia",
    "xla",
    "lazy",
    "vulkan",
    "mps",
    "meta",
    "hpu",
    "mtia",
    "privateuseone",
];

/// A device such as `cpu`, `meta` or `cuda:0`.
/// The type is one of PyTorch's fixed device-type names, so it is a `&'static str` and a
/// device is `Copy` (loaders make one per storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    /// The device type (`cpu`, `cuda`, `meta`, ...), one of PyTorch's device-type names.
    pub kind: &'static str,
    /// The device index (`0` in `cuda:0`), `None` when the string has none.
    pub index: Option<i16>,
}

/// A string [`Device::parse`] refuses (the string is kept for the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid device string {0:?}")]
pub struct DeviceParseError(pub String);

impl Device {
    /// The `cpu` device.
    pub fn cpu() -> Self {
        Device {
            kind: "cpu",
            index: None,
        }
    }

    /// The `meta` device (storages without data).
    pub fn meta() -> Self {
        Device {
            kind: "meta",
            index: None,
        }
    }

    /// Whether this is the `meta` device.
    pub fn is_meta(&self) -> bool {
        self.kind == "meta"
    }

    /// Whether this is the `cpu` device (any index).
    pub fn is_cpu(&self) -> bool {
        self.kind == "cpu"
    }

    /// Parses a device string the way PyTorch does: a known lower-case type name,
    /// optionally `:` and a decimal index without leading zeros.
    pub fn parse(s: &str) -> Result<Self, DeviceParseError> {
        let err = || DeviceParseError(s.to_string());
        let (kind, index) = match s.split_once(':') {
            Some((k, i)) => (k, Some(i)),
            None => (s, None),
        };
        let Some(&kind) = DEVICE_TYPES.iter().find(|&&t| t == kind) else {
            return Err(err());
        };
        let index = match index {
            None => None,
            Some(i) => {
                if i.is_empty()
                    || !i.bytes().all(|b| b.is_ascii_digit())
                    || (i.len() > 1 && i.starts_with('0'))
                {
                    return Err(err());
                }
                Some(i.parse::<i16>().map_err(|_| err())?)
            }
        };
        Ok(Device { kind, index })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}:{}", self.kind, i),
            None => f.write_str(self.kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_devices_and_rejects_others() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::cpu());
        assert_eq!(Device::parse("cuda:0").unwrap().to_string(), "cuda:0");
        assert_eq!(Device::parse("xpu:12").unwrap().index, Some(12));
        assert!(Device::parse("CPU").is_err());
        assert!(Device::parse("cuda:").is_err());
        assert!(Device::parse("cuda:01").is_err());
        assert!(Device::parse("cuda:-1").is_err());
        assert!(Device::parse("tpu").is_err());
    }
}
