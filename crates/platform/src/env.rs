//! The process environment, read in place (`getenv(3)` and `environ`):
//! nothing is copied, nothing allocated.
//!
//! The strings belong to the environment: they stay valid only while no
//! thread changes it (`setenv`, `putenv`, `unsetenv`, `clearenv`, Rust's
//! `std::env::set_var`), hence the `unsafe` functions and their
//! caller-chosen lifetime.

use core::ffi::{c_char, CStr};

extern "C" {
    static environ: *const *const c_char;
}

/// The value of the variable `name`, if it is set (`getenv`).
///
/// # Safety
/// No thread may change the environment during `'a`.
pub unsafe fn get<'a>(name: &CStr) -> Option<&'a [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer to
    // a NUL-terminated string in the environment, which per the contract
    // nobody changes during 'a.
    unsafe {
        let v = libc::getenv(name.as_ptr());
        (!v.is_null()).then(|| CStr::from_ptr::<'a>(v).to_bytes())
    }
}

/// Every `NAME=value` entry of the environment, in order.
///
/// # Safety
/// No thread may change the environment during `'a` (the iterator walks
/// the `environ` array in place).
pub unsafe fn entries<'a>() -> Entries<'a> {
    Entries {
        // SAFETY: reading the `environ` pointer itself; per the contract
        // nobody replaces it during 'a.
        next: unsafe { environ },
        _life: core::marker::PhantomData,
    }
}

/// The iterator of [`entries`].
#[derive(Debug)]
pub struct Entries<'a> {
    next: *const *const c_char,
    _life: core::marker::PhantomData<&'a [u8]>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: `environ` (and so `next`) is null or points into a
        // null-terminated array of pointers to NUL-terminated strings, which
        // nobody changes during 'a (the contract of `entries`); we never step
        // past the terminating null.
        unsafe {
            let p = *self.next;
            if p.is_null() {
                self.next = core::ptr::null();
                return None;
            }
            self.next = self.next.add(1);
            Some(CStr::from_ptr::<'a>(p).to_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_std_sees() {
        // SAFETY: the tests of this crate never change the environment.
        unsafe {
            let path = get(c"PATH").map(|v| v.to_vec());
            assert_eq!(
                path,
                std::env::var_os("PATH").map(|v| v.into_encoded_bytes())
            );
            assert!(get(c"HAKMEM_PLATFORM_SURELY_UNSET").is_none());
            let n = entries().count();
            assert_eq!(n, std::env::vars_os().count());
            assert!(entries().any(|e| e.starts_with(b"PATH=")) == path.is_some());
        }
    }
}
