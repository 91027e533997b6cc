//! interconcept: explore what a text-to-image diffusion model can imagine.
//!
//! The crate is split the way the program is: `engine` runs diffusion models and knows no GUI,
//! `train` makes the embedded model, `worker` owns the engine on a background thread, `gui` draws
//! and talks to the worker, `cli` runs the same engine headless (with `surgery_cli` and `sweep`
//! for the alien-minds experiments), `recipe` makes every picture reproducible, `navigator`
//! lays out grids across concept space and `mosaic` draws them.

pub mod bench;
pub mod cli;
pub mod cli_navigator;
pub mod engine;
pub mod gui;
pub mod mosaic;
pub mod navigator;
pub mod recipe;
pub mod shard;
pub mod surgery_cli;
pub mod sweep;
pub mod train;
pub mod worker;
