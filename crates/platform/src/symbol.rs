//! Naming code addresses through the dynamic loader (`dladdr(3)`).
//!
//! `dladdr` takes the loader's lock: call it at report time, never inside
//! `malloc`. It does not allocate in glibc.

use core::ffi::{c_char, CStr};

/// What the loader knows about an address.
#[derive(Debug, Clone, Copy)]
pub struct SymbolInfo<'a> {
    /// Path of the object (executable or shared library) holding the
    /// address, if the loader has one.
    pub object: Option<&'a [u8]>,
    /// The object's load address (0 if unknown).
    pub object_base: usize,
    /// The nearest exported symbol at or below the address, if any.
    pub symbol: Option<&'a [u8]>,
    /// That symbol's address (0 if there is no symbol).
    pub symbol_addr: usize,
}

/// Looks `addr` up in the loader's tables; `None` if no loaded object
/// contains it.
///
/// # Safety
/// The names point into the loader's tables of the object containing
/// `addr`: the caller picks `'a` no longer than that object stays loaded
/// (no `dlclose` of it, on any thread, while the names are used).
pub unsafe fn dladdr<'a>(addr: usize) -> Option<SymbolInfo<'a>> {
    let mut info = libc::Dl_info {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr accepts any address (it only compares it with the
    // loader's tables) and writes only into `info`, a valid Dl_info.
    if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0 {
        return None;
    }
    let name = |p: *const c_char| {
        // SAFETY: a non-null name dladdr returned is NUL-terminated and
        // lives as long as its object stays loaded, which the caller
        // promises for 'a.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr::<'a>(p) }.to_bytes())
    };
    Some(SymbolInfo {
        object: name(info.dli_fname),
        object_base: info.dli_fbase as usize,
        symbol: name(info.dli_sname),
        symbol_addr: info.dli_saddr as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libc_write() {
        let addr = libc::write as *const () as usize + 4;
        // SAFETY: libc stays loaded for the whole test process.
        let info = unsafe { dladdr(addr) }.expect("libc is loaded");
        assert!(info.object.is_some_and(|o| !o.is_empty()));
        assert!(info.object_base != 0 && info.object_base <= addr);
        // glibc may export it under an alias (`__write`).
        assert!(info.symbol.is_some_and(|n| n.ends_with(b"write")));
        assert_eq!(addr - info.symbol_addr, 4);
    }

    #[test]
    fn unmapped_addresses_are_unknown() {
        // SAFETY: nothing is borrowed from a lookup that finds nothing.
        assert!(unsafe { dladdr(16) }.is_none());
    }
}
