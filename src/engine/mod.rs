//! The diffusion engine: tokenizer, text encoder, UNet, VAE and scheduler, and the loop that
//! turns a prompt into a picture. Nothing in here knows about egui.

pub mod checkpoint;
pub mod config;
pub mod cpu_unet;
pub mod device;
pub mod diffusers;
pub mod error;
pub mod hub;
pub mod ldm_keys;
pub mod meter;
pub mod model;
pub mod noise;
pub mod npy;
pub mod pipeline;
pub mod preview;
pub mod scheduler;
pub mod scoring;
pub mod single_file;
pub mod source;
pub mod space;
pub mod surgery;
pub mod taesd;
pub mod text_encoder;
pub mod tokenizer;
pub mod vae_tiling;
pub mod variant;
pub mod weights;

pub use error::{EngineError, Result};
