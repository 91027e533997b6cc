//! interconcept: explore what a text-to-image diffusion model can imagine.
//!
//! The crate is split the way the program is: `engine` runs diffusion models and knows no GUI,
//! `train` makes the embedded model, `worker` owns the engine on a background thread, `gui` draws
//! and talks to the worker, `cli` runs the same engine headless.

pub mod engine;
pub mod train;
pub mod gui;
