//! The diffusion engine: tokenizer, text encoder, UNet, VAE and scheduler, and the loop that
//! turns a prompt into a picture. Nothing in here knows about egui.

pub mod meter;
