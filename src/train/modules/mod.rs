//! Trainable versions of Stable Diffusion's three networks, the `unet`, the `vae` and the
//! `text_encoder`, for training the embedded model.
//!
//! candle-transformers' own modules cannot be trained: their softmax and layer norm are custom
//! ops without a backward pass. The modules here take the same configuration structs, create
//! exactly the same tensor names and shapes (so a `VarMap` trained here saves to safetensors
//! that candle-transformers loads at inference) and compute the same function, but only with
//! ops candle can differentiate. Each module's documentation lists the quirks of
//! candle-transformers it reproduces.
//!
//! They compute in the dtype of their tensors and are meant for F32 training: unlike
//! candle-transformers they do not upcast half-precision attention and norms to F32. Flash and
//! sliced attention are not offered.

mod attention;
mod clip;
mod layers;
mod resnet;
mod unet;
mod unet_blocks;
mod vae;

#[cfg(test)]
mod test_support;

pub use clip::TrainTextEncoder;
pub use unet::{TrainUNet, UNET_BLOCK_RESNET_GROUPS};
pub use vae::TrainVae;

/// A configuration or input the trainable modules cannot work with. It reaches callers
/// wrapped in a `candle_core::Error`.
#[derive(Debug, thiserror::Error)]
pub enum ModuleConfigError {
    /// A group norm whose channel count is not a multiple of its group count.
    #[error(
        "group norm {name} has {num_channels} channels, not divisible into {num_groups} groups"
    )]
    GroupNorm {
        /// Tensor path of the norm, such as `down_blocks.1.resnets.0.norm1`.
        name: String,
        /// Channels it normalises.
        num_channels: usize,
        /// Groups it was asked to use.
        num_groups: usize,
    },

    /// A UNet timestep tensor that does not hold one timestep per sample.
    #[error("unet timestep has shape {shape:?}, expected [{batch}] (one timestep per sample)")]
    TimestepShape {
        /// Batch size of the latents.
        batch: usize,
        /// Shape of the timestep tensor given.
        shape: Vec<usize>,
    },

    /// Any other unusable configuration.
    #[error("invalid {module} configuration: {reason}")]
    Invalid {
        /// `unet`, `vae` or `text_encoder`.
        module: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
