//! How much of a concept a picture holds: the extension point behind the navigator's island
//! maps and the alien-mind plots.
//!
//! A [`ConceptScorer`] names its concepts (its labels), says which of them a prompt asks for,
//! and gives each picture a probability per label. The models this project trains declare the
//! concept meter they were trained with (`"concept_meter"` in `interconcept.json`), and
//! [`scorer_for`] loads it. Stable Diffusion models declare none: a CLIP image-text scorer (an
//! image tower plus the model's own text encoder) is the scorer they would take, implemented
//! as another `ConceptScorer` returned from [`scorer_for`].

use std::path::PathBuf;

use candle_core::{Device, Tensor};

use super::meter::{ConceptMeter, MeterError};
use super::model::DiffusionModel;
use super::pipeline::Picture;

/// The concept meter shipped with the program, trained on Fashion-MNIST.
pub const FASHION_MNIST_METER: &str = "fashion-mnist";

/// The folder of the concept meter that ships with the program.
pub fn embedded_meter_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/meter"))
}

/// Scores pictures for a fixed set of concepts.
pub trait ConceptScorer: Send {
    /// The concepts, in score order.
    fn labels(&self) -> &[String];

    /// The concept a prompt names, if it names one: the longest label found in it as whole
    /// words (`"a red t-shirt"` is a t-shirt, not a shirt).
    fn label_of(&self, prompt: &str) -> Option<usize> {
        label_in(self.labels(), prompt)
    }

    /// One probability per label for each picture.
    fn scores(&self, pictures: &[Picture]) -> Result<Vec<Vec<f32>>, MeterError>;
}

/// The label a prompt names, if it names one: the longest of `labels` found in it as whole
/// words (`"a red t-shirt"` is a t-shirt, not a shirt).
pub fn label_in(labels: &[String], prompt: &str) -> Option<usize> {
    let prompt = format!(" {} ", normalise(prompt));
    labels
        .iter()
        .enumerate()
        .filter(|(_, label)| prompt.contains(&format!(" {} ", normalise(label))))
        .max_by_key(|(_, label)| label.len())
        .map(|(i, _)| i)
}

/// Lower case, with everything but letters, digits and hyphens turned into single spaces.
fn normalise(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl ConceptScorer for ConceptMeter {
    fn labels(&self) -> &[String] {
        self.class_names()
    }

    fn scores(&self, pictures: &[Picture]) -> Result<Vec<Vec<f32>>, MeterError> {
        if pictures.is_empty() {
            return Ok(Vec::new());
        }
        let tensor = pictures_to_tensor(pictures, self.device())?;
        Ok(self.probabilities(&tensor)?.to_vec2::<f32>()?)
    }
}

/// Pictures as a tensor `[B, 3, H, W]` in [0, 1]; all must have the first one's size.
pub fn pictures_to_tensor(pictures: &[Picture], device: &Device) -> Result<Tensor, MeterError> {
    let Some(first) = pictures.first() else {
        return Err(MeterError::Input("no pictures".into()));
    };
    let (w, h) = (first.width, first.height);
    let mut data = Vec::with_capacity(pictures.len() * 3 * w * h);
    for p in pictures {
        if (p.width, p.height) != (w, h) || p.rgb.len() != w * h * 3 {
            return Err(MeterError::Input(format!(
                "pictures of different sizes: {}x{} and {}x{}",
                w, h, p.width, p.height
            )));
        }
        for c in 0..3 {
            data.extend((0..w * h).map(|i| f32::from(p.rgb[i * 3 + c]) / 255.0));
        }
    }
    Ok(Tensor::from_vec(data, (pictures.len(), 3, h, w), device)?)
}

/// The scorer a model declares, loaded on the CPU (scoring is cheap next to generating); `None`
/// when it declares none or its meter cannot be loaded (logged: scores are an extra, never a
/// reason to refuse a model).
pub fn scorer_for(model: &DiffusionModel) -> Option<Box<dyn ConceptScorer>> {
    let name = model.concept_meter.as_deref()?;
    if name != FASHION_MNIST_METER {
        tracing::warn!("unknown concept meter {name:?}; pictures will not be scored");
        return None;
    }
    match ConceptMeter::load(&embedded_meter_dir()) {
        Ok(meter) => Some(Box::new(meter)),
        Err(error) => {
            tracing::warn!("concept meter not loaded; pictures will not be scored: {error}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Labels(Vec<String>);

    impl ConceptScorer for Labels {
        fn labels(&self) -> &[String] {
            &self.0
        }
        fn scores(&self, _: &[Picture]) -> Result<Vec<Vec<f32>>, MeterError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_prompt_names_its_longest_label() {
        let labels = Labels(
            ["t-shirt", "shirt", "ankle boot", "bag"]
                .map(String::from)
                .to_vec(),
        );
        assert_eq!(labels.label_of("a red T-shirt"), Some(0));
        assert_eq!(labels.label_of("a shirt"), Some(1));
        assert_eq!(labels.label_of("A green ankle boot!"), Some(2));
        assert_eq!(labels.label_of("a handbag"), None);
        assert_eq!(labels.label_of(""), None);
    }
}
