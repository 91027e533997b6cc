//! Tests of loading and batching, on tiny data sets the tests write themselves.

use rand::SeedableRng as _;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::idx::write_idx_gz;
use super::*;

/// Writes a split of `labels.len()` images whose pixels are a pattern of their index.
fn write_tiny_split(dir: &Path, prefix: &str, labels: &[u8]) -> anyhow::Result<Vec<u8>> {
    let n = labels.len();
    let images: Vec<u8> = (0..n * IMAGE_LEN)
        .map(|i| ((i * 37 + i / IMAGE_LEN * 11) % 256) as u8)
        .collect();
    write_idx_gz(
        &dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
        &[n, IMAGE_SIDE, IMAGE_SIDE],
        &images,
    )?;
    write_idx_gz(
        &dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
        &[n],
        labels,
    )?;
    Ok(images)
}

fn tiny_data_set() -> anyhow::Result<FashionMnist> {
    let labels: Vec<u8> = (0..12).map(|i| i % 10).collect();
    let images: Vec<u8> = (0..labels.len() * IMAGE_LEN)
        .map(|i| ((i * 37 + i / IMAGE_LEN * 11) % 256) as u8)
        .collect();
    Ok(FashionMnist::from_parts(Split::Train, images, labels)?)
}

#[test]
fn a_written_split_loads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let labels = [3, 1, 4, 1, 5];
    let images = write_tiny_split(dir.path(), "t10k", &labels)?;
    let data = FashionMnist::load(dir.path(), Split::Test)?;
    assert_eq!(data.len(), 5);
    assert_eq!(data.labels(), labels);
    assert_eq!(data.image(2), Some(&images[2 * IMAGE_LEN..3 * IMAGE_LEN]));
    assert_eq!(data.image(5), None);
    assert_eq!(data.truncated(2).len(), 2);
    Ok(())
}

#[test]
fn mismatched_or_missing_files_are_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_split(dir.path(), "train", &[1, 2, 3])?;
    write_idx_gz(
        &dir.path().join("train-labels-idx1-ubyte.gz"),
        &[2],
        &[1, 2],
    )?;
    let message = FashionMnist::load(dir.path(), Split::Train)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("train-labels-idx1-ubyte.gz"), "{message}");

    let message = FashionMnist::load(dir.path(), Split::Test)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("t10k-images-idx3-ubyte.gz"), "{message}");

    let missing = dir.path().join("nowhere");
    let message = FashionMnist::load(&missing, Split::Train)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("apt-get install dataset-fashion-mnist"),
        "{message}"
    );
    assert!(message.contains("nowhere"), "{message}");
    Ok(())
}

#[test]
fn bad_labels_are_rejected() {
    let result = FashionMnist::from_parts(Split::Train, vec![0; IMAGE_LEN], vec![10]);
    assert!(result.is_err());
    let result = FashionMnist::from_parts(Split::Train, vec![0; IMAGE_LEN + 1], vec![1]);
    assert!(result.is_err());
}

#[test]
fn diffusion_batch_is_tinted_grey_in_range() -> anyhow::Result<()> {
    let data = tiny_data_set()?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let indices = [0, 5, 11, 3, 3, 8, 2, 9];
    let (pictures, captions) = data.diffusion_batch(&indices, &mut rng, &Device::Cpu)?;
    assert_eq!(pictures.dims(), [8, 3, PICTURE_SIDE, PICTURE_SIDE]);
    assert_eq!(captions.len(), 8);
    for (&index, text) in indices.iter().zip(&captions) {
        let class = data.label(index).unwrap_or_default();
        assert!(
            text.ends_with(CLASS_NAMES[class]),
            "{text:?} for class {class}"
        );
    }

    // Every value lies in [-1, 1], and the padding is background (-1).
    let min = pictures.min_all()?.to_scalar::<f32>()?;
    let max = pictures.max_all()?.to_scalar::<f32>()?;
    assert!(
        (-1.0..=1.0).contains(&min) && (-1.0..=1.0).contains(&max),
        "{min} {max}"
    );
    let border = pictures.narrow(2, 0, 2)?.max_all()?.to_scalar::<f32>()?;
    assert_eq!(border, -1.0);

    // The max over channels of the centre is the grey image itself.
    let grey_of_tinted = pictures
        .max_keepdim(1)?
        .narrow(2, 2, 28)?
        .narrow(3, 2, 28)?;
    let (grey, _) = data.grey_batch(&indices, &Device::Cpu)?;
    let difference = (grey_of_tinted - grey.affine(2.0, -1.0)?)?
        .abs()?
        .max_all()?;
    assert!(difference.to_scalar::<f32>()? < 1e-6);

    // Some pictures are actually coloured: channels differ.
    let spread = (pictures.max_keepdim(1)? - pictures.min_keepdim(1)?)?.max_all()?;
    assert!(spread.to_scalar::<f32>()? > 0.1);
    Ok(())
}

#[test]
fn captions_follow_the_batch_config() -> anyhow::Result<()> {
    let mut data = tiny_data_set()?;
    let indices: Vec<usize> = (0..12).cycle().take(400).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let (_, captions) = data.diffusion_batch(&indices, &mut rng, &Device::Cpu)?;
    let coloured = |captions: &[String]| {
        captions
            .iter()
            .filter(|c| Colour::ALL.iter().any(|k| c.contains(k.name())))
            .count()
    };
    let share = coloured(&captions) as f64 / captions.len() as f64;
    assert!(
        (0.6..0.8).contains(&share),
        "{share} of captions name a colour"
    );

    data.batch_config.colour_word_probability = 0.0;
    let (_, captions) = data.diffusion_batch(&indices, &mut rng, &Device::Cpu)?;
    assert_eq!(coloured(&captions), 0);
    assert!(data.diffusion_batch(&[12], &mut rng, &Device::Cpu).is_err());
    Ok(())
}

#[test]
fn the_installed_data_set_loads_when_present() -> anyhow::Result<()> {
    let dir = Path::new(DEFAULT_DIR);
    if !dir.is_dir() {
        eprintln!("skipping: {DEFAULT_DIR} is not installed");
        return Ok(());
    }
    let test = FashionMnist::load(dir, Split::Test)?;
    assert_eq!(test.len(), 10_000);
    let mut counts = [0usize; NUM_CLASSES];
    for &label in test.labels() {
        counts[usize::from(label)] += 1;
    }
    assert_eq!(counts, [1000; NUM_CLASSES]);
    Ok(())
}
