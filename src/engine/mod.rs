//! The diffusion engine: tokenizer, text encoder, UNet, VAE and scheduler, and the loop that
//! turns a prompt into a picture. Nothing in here knows about egui.

pub mod config;
pub mod error;
pub mod meter;
pub mod model;
pub mod noise;
pub mod pipeline;
pub mod preview;
pub mod scheduler;
pub mod space;
pub mod surgery;
pub mod tokenizer;
pub mod weights;

pub use error::{EngineError, Result};
