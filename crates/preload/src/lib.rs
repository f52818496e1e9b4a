//! libhakmem.so (work in progress)
