//! The Fashion-MNIST data set as this program uses it: loading the gzipped IDX files of the
//! Debian package `dataset-fashion-mnist`, and turning its grey 28x28 garments into tinted,
//! captioned 32x32 pictures for diffusion training (and into grey batches for the meter).

mod caption;
mod idx;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::Rng;

pub use caption::{CLASS_NAMES, Colour, NUM_CLASSES, caption, class_prompt};
pub use idx::{IdxArray, parse_idx, read_idx_gz};

/// Where the Debian package `dataset-fashion-mnist` installs the data set.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Side of a Fashion-MNIST image in pixels.
pub const IMAGE_SIDE: usize = 28;

/// Side of a picture for the diffusion model: the image padded by 2 pixels of background.
pub const PICTURE_SIDE: usize = 32;

/// Background pixels added on each side of an image to make a picture.
const PICTURE_PAD: usize = (PICTURE_SIDE - IMAGE_SIDE) / 2;

/// Pixels in one Fashion-MNIST image.
const IMAGE_LEN: usize = IMAGE_SIDE * IMAGE_SIDE;

/// Errors of loading and batching the data set.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The data set directory or one of its files is not there.
    #[error(
        "Fashion-MNIST not found (install it with `apt-get install dataset-fashion-mnist`): \
         no such file or directory {}",
        path.display()
    )]
    Missing {
        /// The directory or file that is missing.
        path: PathBuf,
    },

    /// A file could not be read or decompressed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },

    /// A file is not the IDX array it should be.
    #[error("{message} in {}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// Images and labels given to [`FashionMnist::from_parts`] do not match.
    #[error("{0}")]
    Parts(String),

    /// A batch asked for an image the data set does not have.
    #[error("image index {index} out of range for a data set of {len} images")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// Number of images in the data set.
        len: usize,
    },

    /// Building a tensor failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Which half of the data set: 60 000 training or 10 000 test images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training split (`train-*` files).
    Train,
    /// The test split (`t10k-*` files).
    Test,
}

impl Split {
    /// File name prefix of the split.
    fn prefix(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Test => "t10k",
        }
    }
}

/// Probabilities used by [`FashionMnist::diffusion_batch`].
#[derive(Clone, Debug, PartialEq)]
pub struct DiffusionBatchConfig {
    /// Probability that a picture stays white (untinted); the other colours share the rest
    /// equally.
    pub white_probability: f64,
    /// Probability that the caption names the colour ("a red coat") rather than only the class
    /// ("a coat").
    pub colour_word_probability: f64,
}

impl Default for DiffusionBatchConfig {
    fn default() -> Self {
        Self {
            white_probability: 0.2,
            colour_word_probability: 0.7,
        }
    }
}

/// One split of Fashion-MNIST held in memory as bytes.
#[derive(Clone, Debug)]
pub struct FashionMnist {
    split: Split,
    images: Vec<u8>,
    labels: Vec<u8>,
    /// How [`Self::diffusion_batch`] tints and captions.
    pub batch_config: DiffusionBatchConfig,
}

impl FashionMnist {
    /// Loads one split from `dir` (normally [`DEFAULT_DIR`]), validating both files.
    pub fn load(dir: &Path, split: Split) -> Result<Self, DatasetError> {
        if !dir.is_dir() {
            return Err(DatasetError::Missing {
                path: dir.to_owned(),
            });
        }
        let prefix = split.prefix();
        let images_path = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
        let labels_path = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
        for path in [&images_path, &labels_path] {
            if !path.is_file() {
                return Err(DatasetError::Missing { path: path.clone() });
            }
        }

        // Check shapes here so that errors name the file at fault.
        let images = read_idx_gz(&images_path)?;
        if images.dims.len() != 3 || images.dims[1..] != [IMAGE_SIDE, IMAGE_SIDE] {
            return Err(DatasetError::Format {
                path: images_path,
                message: format!("images have shape {:?}, expected [N, 28, 28]", images.dims),
            });
        }
        let labels = read_idx_gz(&labels_path)?;
        if labels.dims != [images.dims[0]] {
            return Err(DatasetError::Format {
                path: labels_path,
                message: format!(
                    "labels have shape {:?}, expected [{}] to match the images",
                    labels.dims, images.dims[0]
                ),
            });
        }
        if let Some(bad) = labels.data.iter().find(|&&l| usize::from(l) >= NUM_CLASSES) {
            return Err(DatasetError::Format {
                path: labels_path,
                message: format!("label {bad} is not a class (0..=9)"),
            });
        }
        Ok(Self::new_unchecked(split, images.data, labels.data))
    }

    /// Builds a data set from raw bytes: `images` holds `labels.len()` images of 28x28 bytes.
    pub fn from_parts(
        split: Split,
        images: Vec<u8>,
        labels: Vec<u8>,
    ) -> Result<Self, DatasetError> {
        if images.len() != labels.len() * IMAGE_LEN {
            return Err(DatasetError::Parts(format!(
                "{} image bytes do not make {} images of 28x28",
                images.len(),
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| usize::from(l) >= NUM_CLASSES) {
            return Err(DatasetError::Parts(format!(
                "label {bad} is not a class (0..=9)"
            )));
        }
        Ok(Self::new_unchecked(split, images, labels))
    }

    fn new_unchecked(split: Split, images: Vec<u8>, labels: Vec<u8>) -> Self {
        Self {
            split,
            images,
            labels,
            batch_config: DiffusionBatchConfig::default(),
        }
    }

    /// A copy holding only the first `len` images (all of them if there are fewer).
    pub fn truncated(&self, len: usize) -> Self {
        let len = len.min(self.len());
        Self {
            images: self.images[..len * IMAGE_LEN].to_vec(),
            labels: self.labels[..len].to_vec(),
            ..self.clone()
        }
    }

    /// Which split this is.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 28x28 grey bytes of image `index` (0 is background), row-major.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        self.images.get(index * IMAGE_LEN..(index + 1) * IMAGE_LEN)
    }

    /// The class of image `index`.
    pub fn label(&self, index: usize) -> Option<usize> {
        self.labels.get(index).map(|&l| usize::from(l))
    }

    /// All labels, in image order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    fn checked_image(&self, index: usize) -> Result<&[u8], DatasetError> {
        self.image(index).ok_or(DatasetError::IndexOutOfRange {
            index,
            len: self.len(),
        })
    }

    /// Grey images `[B, 1, 28, 28]` in [0, 1] and their labels `[B]` (u32).
    pub fn grey_batch(
        &self,
        indices: &[usize],
        device: &Device,
    ) -> Result<(Tensor, Tensor), DatasetError> {
        let mut pixels = Vec::with_capacity(indices.len() * IMAGE_LEN);
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            pixels.extend(
                self.checked_image(index)?
                    .iter()
                    .map(|&v| f32::from(v) / 255.0),
            );
            labels.push(u32::from(self.labels[index]));
        }
        let images = Tensor::from_vec(pixels, (indices.len(), 1, IMAGE_SIDE, IMAGE_SIDE), device)?;
        let labels = Tensor::from_vec(labels, indices.len(), device)?;
        Ok((images, labels))
    }

    /// Tinted pictures `[B, 3, 32, 32]` in [0, 1]: image `indices[i]` multiplied by
    /// `tints[i]` and padded by 2 pixels of (black) background.
    pub fn pictures(
        &self,
        indices: &[usize],
        tints: &[Colour],
        device: &Device,
    ) -> Result<Tensor, DatasetError> {
        if tints.len() != indices.len() {
            return Err(DatasetError::Parts(format!(
                "{} tints for {} pictures",
                tints.len(),
                indices.len()
            )));
        }
        let plane = PICTURE_SIDE * PICTURE_SIDE;
        let mut pixels = vec![0f32; indices.len() * 3 * plane];
        for ((&index, tint), picture) in indices
            .iter()
            .zip(tints)
            .zip(pixels.chunks_exact_mut(3 * plane))
        {
            let image = self.checked_image(index)?;
            for (channel, gain) in picture.chunks_exact_mut(plane).zip(tint.rgb()) {
                for (y, row) in image.chunks_exact(IMAGE_SIDE).enumerate() {
                    let start = (y + PICTURE_PAD) * PICTURE_SIDE + PICTURE_PAD;
                    for (out, &v) in channel[start..start + IMAGE_SIDE].iter_mut().zip(row) {
                        *out = f32::from(v) / 255.0 * gain;
                    }
                }
            }
        }
        let shape = (indices.len(), 3, PICTURE_SIDE, PICTURE_SIDE);
        Ok(Tensor::from_vec(pixels, shape, device)?)
    }

    /// Draws a tint as [`Self::batch_config`] says: white with `white_probability`, otherwise
    /// one of the other colours, uniformly.
    pub fn sample_tint(&self, rng: &mut impl Rng) -> Colour {
        if rng.random::<f64>() < self.batch_config.white_probability {
            return Colour::White;
        }
        let colours = &Colour::ALL[..Colour::ALL.len() - 1];
        colours[rng.random_range(0..colours.len())]
    }

    /// A diffusion training batch: pictures `[B, 3, 32, 32]` in [-1, 1], each tinted by a
    /// random palette colour, and captions that name the colour with probability
    /// `batch_config.colour_word_probability` and otherwise only the class. Caption dropout
    /// (empty captions) is the caller's business.
    pub fn diffusion_batch(
        &self,
        indices: &[usize],
        rng: &mut impl Rng,
        device: &Device,
    ) -> Result<(Tensor, Vec<String>), DatasetError> {
        let mut tints = Vec::with_capacity(indices.len());
        let mut captions = Vec::with_capacity(indices.len());
        for &index in indices {
            let class = self.label(index).ok_or(DatasetError::IndexOutOfRange {
                index,
                len: self.len(),
            })?;
            let tint = self.sample_tint(rng);
            let named = rng.random::<f64>() < self.batch_config.colour_word_probability;
            captions.push(caption(class, named.then_some(tint)));
            tints.push(tint);
        }
        let pictures = self.pictures(indices, &tints, device)?.affine(2.0, -1.0)?;
        Ok((pictures, captions))
    }
}

#[cfg(test)]
mod tests;
