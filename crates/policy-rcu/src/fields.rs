//! The one definition of the policy's fields.
//!
//! [`policy_fields!`] takes every field of [`FrozenPolicy`] once — its name
//! (which is also its key in policy files), type, default, valid range,
//! unit and documentation — and generates from that table:
//!
//! * the [`FrozenPolicy`] struct and [`DEFAULT_POLICY`](crate::DEFAULT_POLICY)
//!   (through `default_policy`);
//! * the policy file's [`Key`] enum with [`Key::ALL`], [`Key::name`],
//!   [`Key::doc`], [`Key::range`] and [`Key::values`], which the file
//!   format's parser, serializer and [`FrozenPolicy::validate`] iterate;
//! * [`FrozenPolicy::get`] / [`FrozenPolicy::set`] (scalar fields) and
//!   [`FrozenPolicy::class_values`] (per-class fields);
//! * [`FIELDS`]: a descriptor per scalar field (name, range, default, unit,
//!   getter and setter) that other crates iterate instead of naming fields:
//!   the learner's knobs, the options and `xtask`.
//!
//! The per-class fields (`tiny_cap`, `tiny_refill`, `mid_cap`,
//! `mid_refill`) are in the same table but have no [`FIELDS`] entry: they
//! hold one `u16` per size class, their defaults come from the class tables
//! (`class_defaults` below) and the learner scales them class band by class
//! band (`hakmem-ace-learner`'s `knob.rs`) rather than setting one value.
//!
//! Cross-field rules (`refill ≤ cap`, `large_cache_max_block ≤
//! large_cache_budget`) are not per field; they are checked in
//! [`FrozenPolicy::validate`] (`file.rs`).

use core::fmt;

use hakmem_mid_mt::{mid_default_cap, MID_CLASSES};
use hakmem_tiny_sll::TINY_CLASSES;

/// The largest per-class capacity a policy may hold (four times the
/// largest default, so the learner can scale every class by four).
pub const MAX_CAP: u16 = 8192;

const TIB: u64 = 1 << 40;
const ADDRESS_SPACE: u64 = 1 << 47;

/// What a scalar field's number counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// Milliseconds.
    Millis,
    /// Thousandths (of a ratio).
    Permille,
    /// A number of things (mappings, superslabs).
    Count,
}

/// One scalar field of [`FrozenPolicy`], as data.
#[derive(Clone, Copy)]
pub struct FieldInfo {
    /// Its key in the policy file.
    pub key: Key,
    /// The field's name (also its key's name in the file).
    pub name: &'static str,
    /// One line describing it (the policy file's comment above it).
    pub doc: &'static str,
    /// Smallest valid value.
    pub min: u64,
    /// Largest valid value (never above `usize::MAX`).
    pub max: u64,
    /// [`DEFAULT_POLICY`](crate::DEFAULT_POLICY)'s value.
    pub default: u64,
    /// What the number counts.
    pub unit: Unit,
    /// The field bounds memory that is kept for reuse (a cache or pool
    /// budget): 0 turns that retention off, as `HAKMEM_MODE=minimal` does.
    pub retains: bool,
    /// Reads the field.
    pub get: fn(&FrozenPolicy) -> u64,
    /// Writes the field; the value must lie in `min..=max` (so it fits the
    /// field's type).
    pub set: fn(&mut FrozenPolicy, u64),
}

impl fmt::Debug for FieldInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldInfo")
            .field("name", &self.name)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("default", &self.default)
            .field("unit", &self.unit)
            .field("retains", &self.retains)
            .finish()
    }
}

impl FieldInfo {
    /// `v` clamped into `min..=max`.
    pub const fn clamp(&self, v: u64) -> u64 {
        if v < self.min {
            self.min
        } else if v > self.max {
            self.max
        } else {
            v
        }
    }

    /// The descriptor of the field named `name`, if it is a scalar field.
    pub fn by_name(name: &str) -> Option<&'static FieldInfo> {
        FIELDS.iter().find(|f| f.name == name)
    }
}

/// A range's upper end, capped to what a `usize` holds.
const fn range(lo: u64, hi: u64) -> (u64, u64) {
    let max = usize::MAX as u64;
    (lo, if hi > max { max } else { hi })
}

const fn clamp(v: usize, lo: usize, hi: usize) -> usize {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// The per-class fields' defaults.
struct ClassDefaults {
    tiny_cap: [u16; TINY_CLASSES],
    tiny_refill: [u16; TINY_CLASSES],
    mid_cap: [u16; MID_CLASSES],
    mid_refill: [u16; MID_CLASSES],
}

const fn class_defaults() -> ClassDefaults {
    let mut tiny_cap = [0u16; TINY_CLASSES];
    let mut tiny_refill = [0u16; TINY_CLASSES];
    let mut c = 0;
    while c < TINY_CLASSES {
        // about 128 KiB of cached blocks per class, 128..=2048 blocks:
        // a burst of a thousand live blocks of a class (a request's parse
        // tree) is freed into the bin and allocated again from it, not
        // spilled to its slabs and refilled (request-burst: 16% fewer
        // instructions than with 32 KiB)
        let cap = clamp(
            131072 / hakmem_tiny_sll::classes::TINY_SIZES[c] as usize,
            128,
            2048,
        );
        tiny_cap[c] = cap as u16;
        tiny_refill[c] = clamp(cap / 2, 8, 64) as u16;
        c += 1;
    }
    let mut mid_cap = [0u16; MID_CLASSES];
    let mut mid_refill = [0u16; MID_CLASSES];
    let mut m = 0;
    while m < MID_CLASSES {
        let cap = mid_default_cap(m) as usize;
        mid_cap[m] = cap as u16;
        mid_refill[m] = clamp(cap / 2, 1, 16) as u16;
        m += 1;
    }
    ClassDefaults {
        tiny_cap,
        tiny_refill,
        mid_cap,
        mid_refill,
    }
}

const CLASS_DEFAULTS: ClassDefaults = class_defaults();

/// Generates the policy struct, its file keys, defaults and descriptors
/// from one table (see the [module documentation](self)).
macro_rules! policy_fields {
    (
        per_class {
            $(
                $(#[$cattr:meta])*
                $cname:ident: [u16; $clen:expr] = $cdefault:expr;
                    key $cvariant:ident, range $clo:expr => $chi:expr,
                    file_doc $cfile_doc:literal;
            )*
        }
        scalar {
            $(
                $(#[$attr:meta])*
                $name:ident: $ty:ident = $default:expr;
                    key $variant:ident, range $lo:expr => $hi:expr,
                    unit $unit:ident, retains $retains:literal,
                    file_doc $file_doc:literal;
            )*
        }
    ) => {
        /// All tunables. Generated, with everything that lists them, from
        /// the table in `fields.rs`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct FrozenPolicy {
            $( $(#[$cattr])* pub $cname: [u16; $clen], )*
            $( $(#[$attr])* pub $name: $ty, )*
        }

        /// A key of the policy file: one field of [`FrozenPolicy`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Key {
            $(
                #[doc = concat!("`", stringify!($cname), "`: per class.")]
                $cvariant,
            )*
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                $variant,
            )*
        }

        const ALL_KEYS: &[Key] = &[$(Key::$cvariant,)* $(Key::$variant,)*];

        impl Key {
            /// Number of keys.
            pub const COUNT: usize = ALL_KEYS.len();

            /// Every key, in the order [`FrozenPolicy::serialize`] writes
            /// them (the table's order).
            pub const ALL: [Key; Key::COUNT] = [$(Key::$cvariant,)* $(Key::$variant,)*];

            /// The key as written in the file (the field's name).
            pub const fn name(self) -> &'static str {
                match self {
                    $( Key::$cvariant => stringify!($cname), )*
                    $( Key::$variant => stringify!($name), )*
                }
            }

            /// One line describing the key (written as a comment above it).
            pub const fn doc(self) -> &'static str {
                match self {
                    $( Key::$cvariant => $cfile_doc, )*
                    $( Key::$variant => $file_doc, )*
                }
            }

            /// The inclusive range each of the key's values must lie in
            /// (never above `usize::MAX`). For the refill keys this is the
            /// outer bound; each refill must also be at most its class's
            /// cap, and `large_cache_max_block` at most
            /// `large_cache_budget` (checked by
            /// [`FrozenPolicy::validate`]).
            pub const fn range(self) -> (u64, u64) {
                match self {
                    $( Key::$cvariant => range($clo, $chi), )*
                    $( Key::$variant => range($lo, $hi), )*
                }
            }

            /// How many values the key takes: one per class for the
            /// per-class keys, else 1.
            pub const fn values(self) -> usize {
                match self {
                    $( Key::$cvariant => $clen, )*
                    _ => 1,
                }
            }

            /// Whether the key takes one value per class.
            pub const fn per_class(self) -> bool {
                match self {
                    $( Key::$cvariant => true, )*
                    _ => false,
                }
            }
        }

        impl FrozenPolicy {
            /// The values of a per-class key (`None` for a scalar key).
            pub fn class_values(&self, key: Key) -> Option<&[u16]> {
                match key {
                    $( Key::$cvariant => Some(&self.$cname), )*
                    _ => None,
                }
            }

            /// The values of a per-class key, to change (`None` for a
            /// scalar key).
            pub fn class_values_mut(&mut self, key: Key) -> Option<&mut [u16]> {
                match key {
                    $( Key::$cvariant => Some(&mut self.$cname), )*
                    _ => None,
                }
            }

            /// The value of a scalar key (`None` for a per-class key).
            pub const fn get(&self, key: Key) -> Option<u64> {
                match key {
                    $( Key::$variant => Some(self.$name as u64), )*
                    _ => None,
                }
            }

            /// Sets a scalar key to `v` clamped into [`Key::range`]; false
            /// (nothing set) for a per-class key.
            pub fn set(&mut self, key: Key, v: u64) -> bool {
                let (lo, hi) = key.range();
                let v = v.clamp(lo, hi);
                match key {
                    $( Key::$variant => self.$name = v as $ty, )*
                    _ => return false,
                }
                true
            }
        }

        /// The built-in policy's values, straight from the table.
        pub(crate) const fn default_policy() -> FrozenPolicy {
            FrozenPolicy {
                $( $cname: $cdefault, )*
                $( $name: $default, )*
            }
        }

        /// Every scalar field of [`FrozenPolicy`], in [`Key::ALL`] order.
        pub const FIELDS: &[FieldInfo] = &[
            $(
                FieldInfo {
                    key: Key::$variant,
                    name: stringify!($name),
                    doc: $file_doc,
                    min: range($lo, $hi).0,
                    max: range($lo, $hi).1,
                    default: default_policy().$name as u64,
                    unit: Unit::$unit,
                    retains: $retains,
                    get: |p| p.$name as u64,
                    set: |p, v| p.$name = v as $ty,
                },
            )*
        ];
    };
}

policy_fields! {
    per_class {
        /// Per tiny class: how many free blocks a thread's bin may hold.
        tiny_cap: [u16; TINY_CLASSES] = CLASS_DEFAULTS.tiny_cap;
            key TinyCap, range 0 => MAX_CAP as u64,
            file_doc "per tiny class: free blocks a thread's bin may hold";
        /// Per tiny class: how many blocks one refill moves into the bin.
        tiny_refill: [u16; TINY_CLASSES] = CLASS_DEFAULTS.tiny_refill;
            key TinyRefill, range 0 => MAX_CAP as u64,
            file_doc "per tiny class: blocks one refill moves into the bin";
        /// Per mid class: bin capacity.
        mid_cap: [u16; MID_CLASSES] = CLASS_DEFAULTS.mid_cap;
            key MidCap, range 0 => MAX_CAP as u64,
            file_doc "per mid class: free blocks a thread's bin may hold";
        /// Per mid class: refill count.
        mid_refill: [u16; MID_CLASSES] = CLASS_DEFAULTS.mid_refill;
            key MidRefill, range 0 => MAX_CAP as u64,
            file_doc "per mid class: blocks one refill moves into the bin";
    }
    scalar {
        /// Mid W_MAX, in thousandths: a mid request whose bin is empty may
        /// take a cached block of a larger class up to this multiple of its
        /// size.
        mid_wmax_permille: u32 = 1250;
            key MidWmaxPermille, range 1000 => 8000, unit Permille, retains false,
            file_doc "mid W_MAX (1/1000): an empty bin may take a block up to this multiple of the size";
        /// Bytes of freed large mappings kept with their pages (BigCache
        /// budget).
        large_cache_budget: usize = 64 << 20;
            key LargeCacheBudget, range 0 => TIB, unit Bytes, retains true,
            file_doc "bytes of freed large mappings kept with their pages";
        /// Largest mapping the large cache keeps.
        large_cache_max_block: usize = 64 << 20;
            key LargeCacheMaxBlock, range 0 => TIB, unit Bytes, retains true,
            file_doc "largest mapping the large cache keeps (bytes)";
        /// Large W_MAX, in thousandths: a cached mapping is reused for a
        /// request only if it is at most this multiple of the request.
        large_wmax_permille: u32 = 1250;
            key LargeWmaxPermille, range 1000 => 8000, unit Permille, retains false,
            file_doc "large W_MAX (1/1000): a cached mapping serves requests down to 1/this of its size";
        /// Address space of purged large mappings kept for reuse.
        large_clean_budget: usize = 1 << 30;
            key LargeCleanBudget, range 0 => ADDRESS_SPACE, unit Bytes, retains true,
            file_doc "address space of purged large mappings kept for reuse (bytes)";
        /// Decay: cached memory unused this long (ms) is purged.
        decay_ms: u64 = 1000;
            key DecayMs, range 1 => 3_600_000, unit Millis, retains false,
            file_doc "cached memory unused this long (ms) is purged";
        /// Mappings purged (`madvise`) per batch.
        madvise_batch: u32 = 8;
            key MadviseBatch, range 1 => 4096, unit Count, retains false,
            file_doc "mappings purged per madvise batch";
        /// Large mappings of at least this many bytes are 2 MiB aligned and
        /// advised for transparent huge pages (the THP gate).
        thp_threshold: usize = 2 << 20;
            key ThpThreshold, range 0 => ADDRESS_SPACE, unit Bytes, retains false,
            file_doc "large mappings of at least this many bytes get transparent huge pages";
        /// Empty superslabs the pool keeps with their pages.
        pool_dirty: u32 = 32;
            key PoolDirty, range 0 => 4096, unit Count, retains true,
            file_doc "empty superslabs the pool keeps with their pages";
        /// Purged superslabs the pool keeps as address space.
        pool_clean: u32 = 64;
            key PoolClean, range 0 => 4096, unit Count, retains true,
            file_doc "purged superslabs the pool keeps as address space";
        /// Empty superslabs a heap keeps for itself before giving them back.
        heap_keep_empty: u32 = 8;
            key HeapKeepEmpty, range 0 => 4096, unit Count, retains true,
            file_doc "empty superslabs a heap keeps for itself";
        /// Bytes of empty slabs a heap keeps (for reuse as they are) until
        /// they decay; beyond it a slab that empties goes back to its
        /// superslab at once.
        heap_empty_budget: usize = 64 << 20;
            key HeapEmptyBudget, range 0 => TIB, unit Bytes, retains true,
            file_doc "bytes of empty slabs a heap keeps until they decay";
    }
}

impl Key {
    /// The key named `name`, if any.
    pub fn from_name(name: &[u8]) -> Option<Key> {
        Key::ALL
            .iter()
            .copied()
            .find(|k| k.name().as_bytes() == name)
    }

    /// The descriptor of a scalar key (`None` for a per-class key).
    pub const fn field(self) -> Option<&'static FieldInfo> {
        let mut i = 0;
        while i < FIELDS.len() {
            if FIELDS[i].key as usize == self as usize {
                return Some(&FIELDS[i]);
            }
            i += 1;
        }
        None
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Every scalar key has its descriptor, in key order, and every default is
// within its range.
const _: () = {
    let mut i = 0;
    let mut scalars = 0;
    while i < Key::COUNT {
        let k = Key::ALL[i];
        assert!(k as usize == i);
        if !k.per_class() {
            assert!(FIELDS[scalars].key as usize == i);
            let f = &FIELDS[scalars];
            assert!(f.min <= f.default && f.default <= f.max);
            scalars += 1;
        }
        i += 1;
    }
    assert!(scalars == FIELDS.len());
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_POLICY;

    #[test]
    fn descriptors_read_and_write_their_fields() {
        for f in FIELDS {
            assert_eq!(Key::from_name(f.name.as_bytes()), Some(f.key));
            assert_eq!(f.key.field().map(|g| g.name), Some(f.name));
            assert_eq!((f.get)(&DEFAULT_POLICY), f.default);
            assert_eq!(DEFAULT_POLICY.get(f.key), Some(f.default));
            assert_eq!(f.key.range(), (f.min, f.max));
            for v in [f.min, f.max, f.clamp(12345)] {
                let mut p = DEFAULT_POLICY;
                (f.set)(&mut p, v);
                assert_eq!((f.get)(&p), v, "{}", f.name);
                // only that field changed
                for g in FIELDS.iter().filter(|g| g.name != f.name) {
                    assert_eq!((g.get)(&p), g.default, "{} set {}", f.name, g.name);
                }
                let mut q = DEFAULT_POLICY;
                assert!(q.set(f.key, v));
                assert_eq!(p, q);
            }
        }
        for k in Key::ALL.into_iter().filter(|k| k.per_class()) {
            assert!(k.field().is_none());
            assert!(DEFAULT_POLICY.get(k).is_none());
            assert_eq!(DEFAULT_POLICY.class_values(k).unwrap().len(), k.values());
            assert!(!DEFAULT_POLICY.clone().set(k, 1));
        }
        assert_eq!(FieldInfo::by_name("decay_ms").unwrap().default, 1000);
        assert!(FieldInfo::by_name("tiny_cap").is_none());
    }

    #[test]
    fn set_clamps_into_the_range() {
        let mut p = DEFAULT_POLICY;
        assert!(p.set(Key::DecayMs, 0));
        assert_eq!(p.decay_ms, 1);
        assert!(p.set(Key::MadviseBatch, u64::MAX));
        assert_eq!(p.madvise_batch, 4096);
    }
}
