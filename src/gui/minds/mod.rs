//! The alien-minds tab's parts, kept apart so that all but the drawing is plain data tested
//! without a window:
//!
//! - [`controls`]: ticked modules and global sliders, to weight edits and back.
//! - [`tiles`]: the tiles of a grid, what came back and what is missing.
//! - [`sequence`]: a slider stepped through its values, with the concept meter's curve.
//! - [`sweep`]: each module knocked out or randomized in turn.
//! - [`settings`]: what the tab remembers between runs.
//! - [`tree_ui`] and [`runs_ui`]: the `_ui` functions that draw them.

pub mod controls;
pub mod runs_ui;
pub mod sequence;
pub mod settings;
pub mod sweep;
pub mod tiles;
pub mod tree_ui;

pub use controls::{EditKind, MindControls, ModuleEdit, Slider};
pub use sequence::{SequenceRun, SequenceSpec};
pub use sweep::{SweepRun, SweepSpec};
pub use tiles::{Concept, RunStatus, TileResult, TileSet};
