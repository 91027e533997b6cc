//! Tests of the meter training loop on a few hundred images: the loss goes down, runs are
//! reproducible, and the written checkpoint loads back.

use super::*;
use crate::train::fashion_mnist::{DEFAULT_DIR, NUM_CLASSES};

/// A few hundred training images: real ones when the data set is installed, otherwise
/// synthetic ones where class k is a bright bar at a class-specific row.
fn small_training_set(len: usize) -> anyhow::Result<FashionMnist> {
    if Path::new(DEFAULT_DIR).is_dir() {
        return Ok(FashionMnist::load(Path::new(DEFAULT_DIR), Split::Train)?.truncated(len));
    }
    eprintln!("{DEFAULT_DIR} is not installed: training on synthetic bars");
    let labels: Vec<u8> = (0..len).map(|i| (i % NUM_CLASSES) as u8).collect();
    let mut images = vec![0u8; len * 28 * 28];
    for (image, &label) in images.chunks_exact_mut(28 * 28).zip(&labels) {
        let row = 4 + 2 * usize::from(label);
        image[row * 28 + 4..row * 28 + 24].fill(230);
    }
    Ok(FashionMnist::from_parts(Split::Train, images, labels)?)
}

fn short_run() -> MeterTrainConfig {
    MeterTrainConfig {
        epochs: 10,
        max_steps: Some(40),
        batch_size: 32,
        ..MeterTrainConfig::default()
    }
}

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len() as f32
}

#[test]
fn a_short_run_lowers_the_loss() -> anyhow::Result<()> {
    let train = small_training_set(384)?;
    let fitted = fit_meter(&train, &short_run(), &Device::Cpu)?;
    let losses = &fitted.loss_history;
    assert_eq!(losses.len(), 40);
    let (first, last) = (mean(&losses[..5]), mean(&losses[35..]));
    assert!(
        first > 1.5,
        "an untrained meter should be near chance, loss {first}"
    );
    assert!(last < 0.7 * first, "loss went from {first} to {last}");
    Ok(())
}

#[test]
fn runs_with_the_same_seed_agree() -> anyhow::Result<()> {
    let train = small_training_set(64)?;
    let cfg = MeterTrainConfig {
        max_steps: Some(3),
        ..short_run()
    };
    let a = fit_meter(&train, &cfg, &Device::Cpu)?.loss_history;
    let b = fit_meter(&train, &cfg, &Device::Cpu)?.loss_history;
    assert_eq!(a, b);
    let c = fit_meter(&train, &MeterTrainConfig { seed: 1, ..cfg }, &Device::Cpu)?;
    assert_ne!(a, c.loss_history);
    Ok(())
}

#[test]
fn augmentation_dims_and_shifts_but_keeps_labels() -> anyhow::Result<()> {
    let train = small_training_set(16)?;
    let cfg = MeterTrainConfig {
        augment_probability: 1.0,
        ..MeterTrainConfig::default()
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let indices: Vec<usize> = (0..16).collect();
    let (grey, labels) = augmented_batch(&train, &indices, &cfg, &mut rng, &Device::Cpu)?;
    assert_eq!(grey.dims(), [16, 1, 28, 28]);
    let expected: Vec<u32> = train.labels().iter().map(|&l| u32::from(l)).collect();
    assert_eq!(labels.to_vec1::<u32>()?, expected);
    let (plain, _) = train.grey_batch(&indices, &Device::Cpu)?;
    let max = grey.max_all()?.to_scalar::<f32>()?;
    assert!(max <= 1.0 && grey.min_all()?.to_scalar::<f32>()? >= 0.0);
    let total_ratio = (grey.sum_all()? / plain.sum_all()?)?.to_scalar::<f32>()?;
    assert!((0.5..=1.0).contains(&total_ratio), "{total_ratio}");
    assert!((grey - plain)?.abs()?.max_all()?.to_scalar::<f32>()? > 0.1);
    Ok(())
}

#[test]
fn a_saved_checkpoint_loads_back() -> anyhow::Result<()> {
    let train = small_training_set(64)?;
    let cfg = MeterTrainConfig {
        max_steps: Some(2),
        ..short_run()
    };
    let fitted = fit_meter(&train, &cfg, &Device::Cpu)?;
    let dir = tempfile::tempdir()?;
    save_meter(&fitted.varmap, fitted.meter.config(), dir.path())?;
    let names: Vec<String> = std::fs::read_dir(dir.path())?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    assert_eq!(names.len(), 2, "{names:?}");
    let loaded = ConceptMeter::load(dir.path())?;
    let a = evaluate_meter(&fitted.meter, &train)?;
    let b = evaluate_meter(&loaded, &train)?;
    assert_eq!(a, b);
    assert_eq!(loaded.class_names()[9], "ankle boot");
    Ok(())
}
