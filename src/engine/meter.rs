//! The concept meter: a small convolutional classifier, trained on Fashion-MNIST, that tells
//! how much of each garment class a generated picture holds. It owns the network, its
//! checkpoint format (`meter.safetensors` + `config.json`) and the rules that turn a picture
//! from the diffusion model into the classifier's input.
//!
//! Input rules. Pictures are `[B, C, S, S]` in [0, 1] with C = 3 (RGB, possibly tinted) or
//! C = 1 (grey). Colour is dropped by taking the maximum over channels, which undoes the
//! data set's tints exactly (every tint has a largest component of 1.0). Then:
//! - S = 28: a raw Fashion-MNIST image, used as is;
//! - S = 32·k (k ≥ 1): a picture in the diffusion model's layout (the 28-pixel garment padded
//!   by 2 pixels of background); it is averaged down by k to 32 and centre-cropped to 28;
//! - any other size, or a non-square picture, is rejected with [`MeterError::Input`]: guessing
//!   where the garment sits would make scores silently wrong.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module as _, VarBuilder};
use serde::{Deserialize, Serialize};

use layers::{Conv3x3, max_pool_2x2_nhwc};

mod layers;

/// File name of the weights inside a meter directory.
pub const WEIGHTS_FILE: &str = "meter.safetensors";

/// File name of the configuration inside a meter directory.
pub const CONFIG_FILE: &str = "config.json";

/// Side of the classifier's input in pixels.
pub const INPUT_SIDE: usize = 28;

/// Side of a picture in the diffusion model's layout.
pub const PICTURE_SIDE: usize = 32;

/// Errors of loading and running the meter.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// A file of the meter directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },

    /// `config.json` is not valid.
    #[error("invalid meter config: {message} in {}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// The weights do not fit the configuration.
    #[error("invalid meter weights: {source} in {}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// The error candle reported.
        source: candle_core::Error,
    },

    /// A configuration describes no network that can be built.
    #[error("invalid meter config: {0}")]
    BadConfig(String),

    /// Pictures given to the meter break the input rules of this module.
    #[error("meter input: {0}")]
    Input(String),

    /// A class index beyond the meter's classes.
    #[error("class {class} out of range for a meter of {num_classes} classes")]
    ClassOutOfRange {
        /// The class asked for.
        class: usize,
        /// Number of classes the meter knows.
        num_classes: usize,
    },

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Architecture and normalisation of a meter, stored as `config.json` beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeterConfig {
    /// Names of the classes, in output order.
    pub class_names: Vec<String>,
    /// Channels of the first 3x3 convolution.
    pub conv1_channels: usize,
    /// Channels of the second 3x3 convolution.
    pub conv2_channels: usize,
    /// Width of the hidden fully connected layer.
    pub hidden_size: usize,
    /// Grey level subtracted before the network (the training set's mean pixel).
    pub pixel_mean: f32,
    /// Grey level spread divided out before the network (the training set's pixel std).
    pub pixel_std: f32,
    /// Accuracy on the test split measured after training, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f32>,
}

impl MeterConfig {
    /// The default architecture for the given classes, normalised with Fashion-MNIST's
    /// pixel statistics.
    pub fn new(class_names: Vec<String>) -> Self {
        Self {
            class_names,
            conv1_channels: 32,
            conv2_channels: 64,
            hidden_size: 128,
            pixel_mean: 0.286,
            pixel_std: 0.353,
            test_accuracy: None,
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Checks that the numbers describe a network that can be built.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_classes() < 2 {
            return Err(format!(
                "{} class names, need at least 2",
                self.num_classes()
            ));
        }
        if self.conv1_channels == 0 || self.conv2_channels == 0 || self.hidden_size == 0 {
            return Err("layer sizes must be positive".to_owned());
        }
        if !(self.pixel_std.is_finite() && self.pixel_std > 0.0 && self.pixel_mean.is_finite()) {
            return Err(format!(
                "pixel_mean {} / pixel_std {} must be finite with a positive std",
                self.pixel_mean, self.pixel_std
            ));
        }
        Ok(())
    }

    /// Name and shape of every parameter, as stored in `meter.safetensors`.
    pub fn parameter_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (c1, c2, hidden) = (self.conv1_channels, self.conv2_channels, self.hidden_size);
        let flat = c2 * (INPUT_SIDE / 4) * (INPUT_SIDE / 4);
        vec![
            ("conv1.weight", vec![c1, 1, 3, 3]),
            ("conv1.bias", vec![c1]),
            ("conv2.weight", vec![c2, c1, 3, 3]),
            ("conv2.bias", vec![c2]),
            ("fc1.weight", vec![hidden, flat]),
            ("fc1.bias", vec![hidden]),
            ("fc2.weight", vec![self.num_classes(), hidden]),
            ("fc2.bias", vec![self.num_classes()]),
        ]
    }
}

/// The concept meter: a Fashion-MNIST classifier whose class probabilities say how much of
/// each garment a picture holds. Network: 3x3 convolution → 2x2 max pool → relu, twice, then
/// a hidden linear layer with relu and the class logits.
#[derive(Clone, Debug)]
pub struct ConceptMeter {
    conv1: Conv3x3,
    conv2: Conv3x3,
    fc1: Linear,
    fc2: Linear,
    config: MeterConfig,
    device: Device,
}

impl ConceptMeter {
    /// Builds the network from `vb` (a checkpoint, or a `VarMap` when training).
    pub fn new(config: MeterConfig, vb: VarBuilder<'_>) -> Result<Self, MeterError> {
        config.validate().map_err(MeterError::BadConfig)?;
        let (c1, c2) = (config.conv1_channels, config.conv2_channels);
        let flat = c2 * (INPUT_SIDE / 4) * (INPUT_SIDE / 4);
        Ok(Self {
            conv1: Conv3x3::new(1, c1, vb.pp("conv1"))?,
            conv2: Conv3x3::new(c1, c2, vb.pp("conv2"))?,
            fc1: candle_nn::linear(flat, config.hidden_size, vb.pp("fc1"))?,
            fc2: candle_nn::linear(config.hidden_size, config.num_classes(), vb.pp("fc2"))?,
            device: vb.device().clone(),
            config,
        })
    }

    /// Loads `dir/config.json` and `dir/meter.safetensors` onto the CPU.
    pub fn load(dir: &Path) -> Result<Self, MeterError> {
        Self::load_on(dir, &Device::Cpu)
    }

    /// Loads `dir/config.json` and `dir/meter.safetensors` onto `device`.
    pub fn load_on(dir: &Path, device: &Device) -> Result<Self, MeterError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|source| MeterError::Io {
            path: config_path.clone(),
            source,
        })?;
        let config: MeterConfig = serde_json::from_str(&text).map_err(|e| MeterError::Config {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| MeterError::Config {
            path: config_path,
            message,
        })?;

        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights_path).map_err(|source| MeterError::Io {
            path: weights_path.clone(),
            source,
        })?;
        let weights_error = |source| MeterError::Weights {
            path: weights_path.clone(),
            source,
        };
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)
            .map_err(weights_error)?;
        match Self::new(config, vb) {
            Err(MeterError::Candle(source)) => Err(weights_error(source)),
            other => other,
        }
    }

    /// The configuration the meter was built with.
    pub fn config(&self) -> &MeterConfig {
        &self.config
    }

    /// Names of the classes, in output order.
    pub fn class_names(&self) -> &[String] {
        &self.config.class_names
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.config.num_classes()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Turns pictures into the classifier's grey input `[B, 1, 28, 28]` in [0, 1], following
    /// the input rules in the module documentation.
    pub fn grey_from_pictures(&self, pictures: &Tensor) -> Result<Tensor, MeterError> {
        let &[batch, channels, height, width] = pictures.dims() else {
            return Err(MeterError::Input(format!(
                "pictures must be [B, C, H, W], got shape {:?}",
                pictures.dims()
            )));
        };
        if channels != 1 && channels != 3 {
            return Err(MeterError::Input(format!(
                "pictures must have 1 or 3 channels, got {channels}"
            )));
        }
        if height != width || !(height == INPUT_SIDE || height % PICTURE_SIDE == 0) {
            return Err(MeterError::Input(format!(
                "pictures must be square with side 28 or a multiple of 32, got {height}x{width}"
            )));
        }

        if batch == 0 {
            let shape = (0, 1, INPUT_SIDE, INPUT_SIDE);
            return Ok(Tensor::zeros(shape, DType::F32, &self.device)?);
        }

        // Maximum over channels undoes the tint; clamping tames overshooting generations.
        let xs = pictures.to_device(&self.device)?.to_dtype(DType::F32)?;
        let grey = xs.max_keepdim(1)?.clamp(0f32, 1f32)?;
        if height == INPUT_SIDE {
            return Ok(grey);
        }

        // Average down to 32 pixels, then drop the 2-pixel frame of background.
        let factor = height / PICTURE_SIDE;
        let grey = if factor > 1 {
            grey.avg_pool2d(factor)?
        } else {
            grey
        };
        let pad = (PICTURE_SIDE - INPUT_SIDE) / 2;
        Ok(grey
            .narrow(2, pad, INPUT_SIDE)?
            .narrow(3, pad, INPUT_SIDE)?
            .contiguous()?)
    }

    /// Class logits `[B, classes]` of grey images `[B, 1, 28, 28]` in [0, 1]; the training
    /// loop calls this directly.
    pub fn logits_from_grey(&self, grey: &Tensor) -> Result<Tensor, MeterError> {
        if !matches!(grey.dims(), &[_, 1, INPUT_SIDE, INPUT_SIDE]) {
            return Err(MeterError::Input(format!(
                "grey images must be [B, 1, 28, 28], got shape {:?}",
                grey.dims()
            )));
        }
        let std = f64::from(self.config.pixel_std);
        let xs = grey.affine(1.0 / std, -f64::from(self.config.pixel_mean) / std)?;

        // Channels-last throughout (see `layers`), back to channels-first before flattening
        // so that fc1 sees the usual [C, H, W] order. Pooling before the relu is the same
        // function and quarters the relu's work.
        let batch = xs.dim(0)?;
        let xs = xs.reshape((batch, INPUT_SIDE, INPUT_SIDE, 1))?;
        let xs = max_pool_2x2_nhwc(&self.conv1.forward_nhwc(&xs)?)?.relu()?;
        let xs = max_pool_2x2_nhwc(&self.conv2.forward_nhwc(&xs)?)?.relu()?;
        let xs = xs.permute((0, 3, 1, 2))?;
        let xs = self.fc1.forward(&xs.flatten_from(1)?)?.relu()?;
        Ok(self.fc2.forward(&xs)?)
    }

    /// Class probabilities `[B, classes]` of pictures `[B, C, S, S]` in [0, 1].
    pub fn probabilities(&self, pictures: &Tensor) -> Result<Tensor, MeterError> {
        let grey = self.grey_from_pictures(pictures)?;
        if grey.dim(0)? == 0 {
            // candle cannot reduce over an empty batch.
            return Ok(Tensor::zeros(
                (0, self.num_classes()),
                DType::F32,
                &self.device,
            )?);
        }
        let logits = self.logits_from_grey(&grey)?;
        Ok(candle_nn::ops::softmax_last_dim(&logits)?)
    }

    /// The most likely class of each picture and its probability.
    pub fn classify(&self, pictures: &Tensor) -> Result<Vec<(usize, f32)>, MeterError> {
        let rows = self.probabilities(pictures)?.to_vec2::<f32>()?;
        Ok(rows
            .iter()
            .map(|row| {
                row.iter()
                    .copied()
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |best, (i, p)| if p > best.1 { (i, p) } else { best },
                    )
            })
            .collect())
    }

    /// How much of `class` each picture holds: the probability the meter gives it.
    pub fn score(&self, pictures: &Tensor, class: usize) -> Result<Vec<f32>, MeterError> {
        if class >= self.num_classes() {
            return Err(MeterError::ClassOutOfRange {
                class,
                num_classes: self.num_classes(),
            });
        }
        let probabilities = self.probabilities(pictures)?;
        Ok(probabilities
            .narrow(1, class, 1)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
}

#[cfg(test)]
mod tests;
