//! hakmem's policy learner (ACE: adaptive control engine).
//!
//! Pure, deterministic building blocks, `no_std` and allocation-free:
//!
//! * [`p2::P2`]: the P² streaming quantile estimator (latency P99 without
//!   storing samples);
//! * [`bandit`]: the [`bandit::Selector`] trait with
//!   [`Ucb1`](bandit::Ucb1) (the default) and
//!   [`EloSoftmax`](bandit::EloSoftmax);
//! * [`knob`]: the knobs, their discrete levels and the one mapping from
//!   levels to a [`FrozenPolicy`](hakmem_policy_rcu::FrozenPolicy)
//!   ([`knob::apply`]);
//! * [`reward`]: the measured [`reward::Window`] and the reward
//!   (documented weights, memory budget);
//! * [`safety`]: hysteresis (8%, 3 windows in a row), probation with
//!   rollback, cooldown;
//! * [`lifecycle`]: LEARN → FROZEN → CANARY and the phase-change detector
//!   ([`signature`]: L1 distance of size histograms);
//! * [`learner::Learner`]: all of it over a set of knobs: windows in,
//!   policies out;
//! * [`rng::Rng`] (xorshift64*) and [`math`] (`sqrt`, `ln`, `exp` for
//!   `no_std`).
//!
//! With the `std` feature, `driver` runs a learner on a background
//! thread (its tests run in every `cargo test`).
#![cfg_attr(not(any(test, feature = "std")), no_std)]

pub mod bandit;
pub mod config;
#[cfg(any(test, feature = "std"))]
pub mod driver;
pub mod knob;
pub mod learner;
pub mod lifecycle;
pub mod math;
pub mod p2;
pub mod reward;
pub mod rng;
pub mod safety;
pub mod signature;

pub use bandit::{Selector, SelectorKind};
pub use learner::{Event, Learner, LearnerConfig, Step};
pub use lifecycle::{Phase, Transition};
pub use reward::{Weights, Window};
