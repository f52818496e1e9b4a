//! Site ids: what names an allocation site, and what kind of name it is.

use core::panic::Location;

/// Tag bit: the low bits are the address of a `&'static Location`.
const TAG_LOCATION: usize = 1 << (usize::BITS - 1);
/// Tag bit: the low bits are a sampled return address (one call in
/// 2^[`sample_shift`](crate::SiteTable::sample_shift) was recorded).
const TAG_SAMPLED: usize = 1 << (usize::BITS - 2);
const TAGS: usize = TAG_LOCATION | TAG_SAMPLED;
/// The id of the catch-all bucket (both tags: no real id has them).
const OTHER: usize = TAGS;

/// What a [`SiteId`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// A Rust call site: a `&'static core::panic::Location`
    /// (file:line:column), captured with `#[track_caller]`. Exact: every
    /// allocation through the capture API is recorded.
    Location,
    /// A machine return address (C `hak_alloc_cs`), every call recorded.
    Code,
    /// A machine return address recorded by `malloc` sampling: each record
    /// stands for 2^`sample_shift` calls.
    SampledCode,
    /// The catch-all bucket of sites that found no free slot.
    Other,
}

/// An allocation site: a tagged `usize`.
///
/// User-space addresses on the 64-bit targets hakmem supports never have
/// the top two bits set, so those bits say what the rest is (see
/// [`SiteKind`]). The value 0 is no site; it is counted in the "other"
/// bucket.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct SiteId(usize);

impl SiteId {
    /// The catch-all "other" site.
    pub const OTHER: SiteId = SiteId(OTHER);

    /// The site of a Rust caller's `Location`.
    #[inline]
    pub fn location(loc: &'static Location<'static>) -> SiteId {
        SiteId(loc as *const Location<'static> as usize | TAG_LOCATION)
    }

    /// The site of the caller of the `#[track_caller]` function this is
    /// called from (or of this call itself when called from a plain
    /// function).
    #[track_caller]
    #[inline]
    pub fn caller() -> SiteId {
        SiteId::location(Location::caller())
    }

    /// A return address whose every allocation is recorded (C's
    /// `hak_alloc_cs`: `__builtin_return_address(0)`).
    #[inline]
    pub const fn code(return_address: usize) -> SiteId {
        SiteId(return_address & !TAGS)
    }

    /// A return address recorded by sampling `malloc` (one call in
    /// 2^`sample_shift`).
    #[inline]
    pub const fn sampled(return_address: usize) -> SiteId {
        let a = return_address & !TAGS;
        if a == 0 {
            SiteId(0)
        } else {
            SiteId(a | TAG_SAMPLED)
        }
    }

    /// What this id names.
    #[inline]
    pub const fn kind(self) -> SiteKind {
        match self.0 & TAGS {
            TAG_LOCATION => SiteKind::Location,
            TAG_SAMPLED => SiteKind::SampledCode,
            0 => SiteKind::Code,
            _ => SiteKind::Other,
        }
    }

    /// The address part: the return address, or the `Location`'s address.
    #[inline]
    pub const fn addr(self) -> usize {
        self.0 & !TAGS
    }

    /// The `Location` of a [`SiteKind::Location`] id.
    #[inline]
    pub fn as_location(self) -> Option<&'static Location<'static>> {
        if self.kind() == SiteKind::Location && self.addr() != 0 {
            // SAFETY: ids of kind `Location` are only made by
            // `SiteId::location` (the tag cannot be set through `code`,
            // `sampled` or `from_bits`'s contract), from a
            // `&'static Location`.
            Some(unsafe { &*(self.addr() as *const Location<'static>) })
        } else {
            None
        }
    }

    /// The tagged value (the table's key).
    #[inline]
    pub const fn to_bits(self) -> usize {
        self.0
    }

    /// Rebuilds an id from [`to_bits`](Self::to_bits).
    ///
    /// # Safety
    ///
    /// `bits` must come from `to_bits` of a `SiteId` (a value with the
    /// location tag must be the tagged address of a `&'static Location`).
    #[inline]
    pub const unsafe fn from_bits(bits: usize) -> SiteId {
        SiteId(bits)
    }
}

impl core::fmt::Debug for SiteId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.kind() {
            SiteKind::Location => match self.as_location() {
                Some(l) => write!(f, "SiteId({}:{}:{})", l.file(), l.line(), l.column()),
                None => write!(f, "SiteId(location 0)"),
            },
            SiteKind::Code => write!(f, "SiteId(code {:#x})", self.addr()),
            SiteKind::SampledCode => write!(f, "SiteId(sampled {:#x})", self.addr()),
            SiteKind::Other => write!(f, "SiteId(other)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        let here = SiteId::caller();
        assert_eq!(here.kind(), SiteKind::Location);
        let loc = here.as_location().unwrap();
        assert_eq!(loc.file(), file!());
        assert_eq!(loc.line(), line!() - 4);

        let c = SiteId::code(0x5555_1234);
        assert_eq!(c.kind(), SiteKind::Code);
        assert_eq!(c.addr(), 0x5555_1234);
        assert!(c.as_location().is_none());

        let s = SiteId::sampled(0x5555_1234);
        assert_eq!(s.kind(), SiteKind::SampledCode);
        assert_eq!(s.addr(), 0x5555_1234);
        assert_ne!(s, c);

        assert_eq!(SiteId::OTHER.kind(), SiteKind::Other);
        // A code address cannot forge a location or the other bucket.
        assert_eq!(SiteId::code(usize::MAX).kind(), SiteKind::Code);
        assert_eq!(SiteId::sampled(usize::MAX).kind(), SiteKind::SampledCode);
        // SAFETY: bits of a real id.
        assert_eq!(unsafe { SiteId::from_bits(here.to_bits()) }, here);
    }

    #[test]
    fn distinct_lines_are_distinct_sites() {
        let a = SiteId::caller();
        let b = SiteId::caller();
        assert_ne!(a, b);
        let mut v = [SiteId::OTHER; 2];
        for s in v.iter_mut() {
            *s = SiteId::caller();
        }
        assert_eq!(v[0], v[1], "one line, one site");
    }
}
