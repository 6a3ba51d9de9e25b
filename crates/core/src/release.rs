//! PyTorch releases and what each one's writers put in a file (its writer profile).
//!
//! ptconform writes what PyTorch 2.15 writes unless told otherwise. Loader authors test
//! against the files of the release their users run, so every supported release (2.0 to
//! 2.15) has a profile: the records its `torch.jit.save` writes and the versions its
//! mobile writers stamp. The facts come from files each release wrote
//! (`corpus/torch-<version>/`, made by `oracle/makers/make_corpus.py` in that release's venv).

use std::fmt;
use std::str::FromStr;

use crate::model::ScalarType;

/// A PyTorch release, by minor version: every patch release of a minor writes the same
/// bytes (the writers change between minors only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    /// The major version (`2` in 2.15).
    pub major: u16,
    /// The minor version (`15` in 2.15).
    pub minor: u16,
}

impl Release {
    /// The oldest release ptconform reproduces.
    pub const OLDEST: Release = Release::new(2, 0);
    /// The release ptconform writes by default.
    pub const LATEST: Release = Release::new(2, 15);

    /// The release `major.minor` (not checked against the supported range).
    pub const fn new(major: u16, minor: u16) -> Release {
        Release { major, minor }
    }

    /// Every supported release, oldest first.
    pub fn supported() -> impl Iterator<Item = Release> {
        (Release::OLDEST.minor..=Release::LATEST.minor).map(|m| Release::new(2, m))
    }

    /// What this release's writers produce.
    pub fn profile(self) -> WriterProfile {
        WriterProfile {
            // `torch.jit.save` of 2.0 ends with `version`; 2.1 added `byteorder` and
            // `.data/serialization_id` after it (see `corpus/torch-*/linear.pt`).
            byteorder_record: self >= FIRST_WITH_BYTEORDER,
            serialization_id_record: self >= FIRST_WITH_SERIALIZATION_ID,
        }
    }
}

impl Release {
    /// Whether this release saves and loads tensors of `dtype` (an older release's
    /// unpickler refuses the storage class of a newer dtype, `torch.UInt16Storage`, and
    /// its flatbuffer loader fails on the scalar type number).
    pub fn has_dtype(self, dtype: ScalarType) -> bool {
        self >= first_release_with(dtype)
    }
}

/// The first release that saves and loads `dtype`, as the cross-version corpus shows it
/// (`corpus/torch-<version>/dtypes.json`: what each release's `dtypes` scenario could
/// save and load back). Where no corpus release lies between the last without and the
/// first with a dtype, the first with it is named: a release in the gap is treated as
/// lacking it (generated files avoid it, `check --for-pytorch` warns), never the other
/// way round. `tests/pytorch/cross_version.rs` checks the table against every release's corpus.
fn first_release_with(dtype: ScalarType) -> Release {
    use ScalarType::*;
    match dtype {
        UInt8 | Int8 | Int16 | Int32 | Int64 | Float16 | Float32 | Float64 | Complex32
        | Complex64 | Complex128 | Bool | QInt8 | QUInt8 | QInt32 | BFloat16 | QUInt4x2
        | QUInt2x4 => Release::new(2, 0),
        // 2.0.1 could not save and load the bit types back (its `dtypes` scenario left
        // them out); 2.1 added the float8 types.
        Bits1x8 | Bits2x4 | Bits4x2 | Bits8 | Bits16 | Float8E5M2 | Float8E4M3Fn => {
            Release::new(2, 1)
        }
        Float8E5M2Fnuz | Float8E4M3Fnuz => Release::new(2, 2),
        UInt16 | UInt32 | UInt64 | UInt1 | UInt2 | UInt3 | UInt4 | UInt5 | UInt6 | UInt7 => {
            Release::new(2, 3)
        }
        Int1 | Int2 | Int3 | Int4 | Int5 | Int6 | Int7 => Release::new(2, 6),
        Float8E8M0Fnu => Release::new(2, 7),
        Float4E2M1FnX2 => Release::new(2, 8),
    }
}

/// The first release whose `torch.jit.save` writes the `byteorder` record.
const FIRST_WITH_BYTEORDER: Release = Release::new(2, 1);
/// The first release whose `torch.jit.save` writes `.data/serialization_id`.
const FIRST_WITH_SERIALIZATION_ID: Release = Release::new(2, 1);

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl serde::Serialize for Release {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Release {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Release, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a release string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    /// Not `MAJOR.MINOR` or `MAJOR.MINOR.PATCH` (the text given).
    #[error("`{0}` is not a PyTorch version (expected MAJOR.MINOR or MAJOR.MINOR.PATCH)")]
    Syntax(String),
    /// A well-formed release outside the supported range.
    #[error("PyTorch {0} is not supported (ptconform reproduces {first} to {last})", first = Release::OLDEST, last = Release::LATEST)]
    Unsupported(Release),
}

impl FromStr for Release {
    type Err = ReleaseError;

    /// `2.6`, `2.6.0` or `2.6.0+cpu` (a local version label is ignored).
    fn from_str(s: &str) -> Result<Release, ReleaseError> {
        let syntax = || ReleaseError::Syntax(s.to_string());
        let public = s.split('+').next().unwrap_or_default();
        let mut parts = public.split('.');
        let mut number = |required: bool| -> Result<Option<u16>, ReleaseError> {
            match parts.next() {
                None if !required => Ok(None),
                None => Err(syntax()),
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    p.parse().map(Some).map_err(|_| syntax())
                }
                Some(_) => Err(syntax()),
            }
        };
        let major = number(true)?.ok_or_else(syntax)?;
        let minor = number(true)?.ok_or_else(syntax)?;
        let _patch = number(false)?;
        if parts.next().is_some() {
            return Err(syntax());
        }
        let release = Release::new(major, minor);
        if release < Release::OLDEST || release > Release::LATEST {
            return Err(ReleaseError::Unsupported(release));
        }
        Ok(release)
    }
}

/// The parts of a file that differ between releases' writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterProfile {
    /// `torch.jit.save` writes `byteorder` (`little`) after the version record.
    pub byteorder_record: bool,
    /// `torch.jit.save` ends the archive with `.data/serialization_id`.
    pub serialization_id_record: bool,
}

impl Default for WriterProfile {
    fn default() -> Self {
        Release::LATEST.profile()
    }
}

impl WriterProfile {
    /// The releases whose writers produce this profile, oldest first.
    pub fn releases(self) -> Vec<Release> {
        Release::supported()
            .filter(|r| r.profile() == self)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_or_without_patch_and_label() {
        assert_eq!("2.6".parse(), Ok(Release::new(2, 6)));
        assert_eq!("2.6.0".parse(), Ok(Release::new(2, 6)));
        assert_eq!("2.0.1+cu117".parse(), Ok(Release::new(2, 0)));
        assert_eq!("2.15.0".parse(), Ok(Release::LATEST));
        for bad in ["", "2", "2.", "2.x", "2.6.0.1", "two.six", "2.-1", " 2.6"] {
            assert!(
                matches!(bad.parse::<Release>(), Err(ReleaseError::Syntax(_))),
                "{bad:?}"
            );
        }
        for old in ["1.13.1", "2.16", "3.0"] {
            assert!(
                matches!(old.parse::<Release>(), Err(ReleaseError::Unsupported(_))),
                "{old}"
            );
        }
    }

    #[test]
    fn every_profile_names_its_releases() {
        for r in Release::supported() {
            assert!(r.profile().releases().contains(&r), "{r}");
        }
        assert_eq!(Release::supported().count(), 16);
    }
}
