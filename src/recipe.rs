//! Recipes: everything that determines a picture, as versioned JSON.
//!
//! A recipe travels with every picture the program makes (inside the PNG as a text chunk, and
//! beside it when asked), so that any picture can be made again, byte for byte, on the same
//! build and machine.

use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::engine::model::ModelId;
use crate::engine::pipeline::{Picture, SamplingParams};
use crate::engine::space::{ConceptPoint, NoisePoint};
use crate::engine::surgery::WeightEdit;

/// The schema version this build writes and reads.
pub const RECIPE_VERSION: u32 = 1;

/// The PNG text chunk keyword under which recipes are stored.
pub const PNG_KEYWORD: &str = "interconcept-recipe";

/// Everything that determines one picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Schema version.
    pub version: u32,
    /// The program version that made the picture.
    pub program_version: String,
    /// The model, by name and weight hash.
    pub model: ModelId,
    /// The prompt (empty: unconditional). When `point` is set the point decides the
    /// conditioning and this holds the prompt it is anchored at, for people to read.
    pub prompt: String,
    /// Where in concept space the picture was made; `None` is the prompt's own point. (Boxed,
    /// like `noise`, to keep recipes small where they travel in events.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<Box<ConceptPoint>>,
    /// Where in initial-noise space the picture started; `None` is the noise of `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<Box<NoisePoint>>,
    /// Seed of the initial noise and of any per-step noise.
    pub seed: u64,
    /// Steps, guidance, sampler and size.
    pub sampling: SamplingParams,
    /// Set when the model produced NaN or infinity and the picture is a marker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_finite: bool,
    /// When the initial latent came from a `.npy` file rather than the seed: BLAKE3 of its
    /// values (see `engine::npy::NpyArray::hash`). The seed still drives any per-step noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_hash: Option<String>,
    /// Edits to the model's weights (knockouts, noise...), applied in order to the loaded
    /// weights before the picture is made. A recipe with edits is refused by builds that
    /// predate them (unknown field) rather than silently made without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<WeightEdit>,
}

impl Recipe {
    /// A recipe for a prompt's own point, with the running program's version.
    pub fn for_prompt(
        model: ModelId,
        prompt: impl Into<String>,
        seed: u64,
        sampling: SamplingParams,
    ) -> Self {
        Self {
            version: RECIPE_VERSION,
            program_version: env!("CARGO_PKG_VERSION").to_string(),
            model,
            prompt: prompt.into(),
            point: None,
            noise: None,
            seed,
            sampling,
            non_finite: false,
            noise_hash: None,
            edits: Vec::new(),
        }
    }

    /// Parses a recipe, refusing versions this build does not know.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).context("recipe is not valid JSON")?;
        let version = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .context("recipe has no numeric \"version\" field")?;
        if version > u64::from(RECIPE_VERSION) {
            bail!(
                "recipe version {version} is newer than this program understands \
                 ({RECIPE_VERSION}); update interconcept"
            );
        }
        serde_json::from_value(value).context("recipe does not match the schema")
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Writes a picture as PNG with a JSON text chunk, atomically (temporary file, then rename).
pub fn write_png(path: &Path, picture: &Picture, json: &str) -> anyhow::Result<()> {
    write_png_rgb(path, picture.width, picture.height, &picture.rgb, json)
}

/// Writes RGB8 pixels as PNG with a JSON text chunk, atomically.
pub fn write_png_rgb(
    path: &Path,
    width: usize,
    height: usize,
    rgb: &[u8],
    json: &str,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(temporary_name(name));
    let result = (|| -> anyhow::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.add_itxt_chunk(PNG_KEYWORD.to_string(), json.to_string())?;
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// A name for a temporary file beside `name` that no other writer picks: shards on several
/// machines (where every container's process id may be 1) write into one shared folder.
pub fn temporary_name(name: &std::ffi::OsStr) -> String {
    format!(
        ".{}.tmp-{}-{:016x}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u64>()
    )
}

/// Reads a PNG's pixels as RGB8: `(width, height, rgb)`. Only 8-bit RGB and RGBA files (alpha
/// dropped) are read, which covers every picture the program writes.
pub fn read_png_rgb(path: &Path) -> anyhow::Result<(usize, usize, Vec<u8>)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{} is not a PNG", path.display()))?;
    let size = reader
        .output_buffer_size()
        .with_context(|| format!("{} is too large", path.display()))?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .with_context(|| format!("cannot decode {}", path.display()))?;
    let (width, height) = (info.width as usize, info.height as usize);
    buf.truncate(info.buffer_size());
    let rgb = match (info.color_type, info.bit_depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => buf,
        (png::ColorType::Rgba, png::BitDepth::Eight) => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        (colour, depth) => bail!(
            "{} is {colour:?} at {depth:?}; only 8-bit RGB or RGBA is read",
            path.display()
        ),
    };
    Ok((width, height, rgb))
}

/// Reads the recipe JSON stored in a PNG made by the program.
pub fn read_png_json(path: &Path) -> anyhow::Result<String> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    png_json(std::io::BufReader::new(file)).with_context(|| path.display().to_string())
}

/// Reads the recipe JSON stored in the bytes of a PNG made by the program (a file dropped on
/// the window arrives as bytes).
pub fn png_json_from_bytes(bytes: &[u8]) -> anyhow::Result<String> {
    png_json(std::io::Cursor::new(bytes))
}

/// Whether bytes start like a PNG file.
pub fn looks_like_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

fn png_json(input: impl std::io::BufRead + std::io::Seek) -> anyhow::Result<String> {
    let reader = png::Decoder::new(input).read_info().context("not a PNG")?;
    let info = reader.info();
    for chunk in &info.utf8_text {
        if chunk.keyword == PNG_KEYWORD {
            return chunk.get_text().context("recipe chunk is not valid text");
        }
    }
    for chunk in &info.uncompressed_latin1_text {
        if chunk.keyword == PNG_KEYWORD {
            return Ok(chunk.text.clone());
        }
    }
    bail!("the PNG holds no interconcept recipe")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::scheduler::SamplerKind;

    fn picture() -> Picture {
        Picture {
            width: 2,
            height: 2,
            rgb: (0..12).collect(),
            non_finite: false,
        }
    }

    fn recipe() -> Recipe {
        let model = ModelId {
            name: "embedded".into(),
            weights_hash: "00ff".into(),
            variant: None,
        };
        let sampling = SamplingParams {
            num_steps: 3,
            guidance_scale: 4.0,
            sampler: SamplerKind::Ddim,
            width: 2,
            height: 2,
        };
        Recipe::for_prompt(model, "../../etc/passwd", 7, sampling)
    }

    /// Names in `dir` that look like this module's temporary files.
    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("the folder lists")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn a_png_round_trips_its_pixels_and_recipe_and_a_prompt_stays_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        write_png(&path, &picture(), &recipe().to_json()).unwrap();
        let (w, h, rgb) = read_png_rgb(&path).unwrap();
        assert_eq!((w, h, rgb), (2, 2, picture().rgb));
        let read = Recipe::from_json(&read_png_json(&path).unwrap()).unwrap();
        assert_eq!(read, recipe());
        assert_eq!(read.prompt, "../../etc/passwd");
        assert_eq!(
            png_json_from_bytes(&std::fs::read(&path).unwrap()).unwrap(),
            recipe().to_json()
        );
        // Nothing was written where the prompt points.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        std::fs::write(&path, vec![7; 100_000]).unwrap();
        write_png(&path, &picture(), "{}").unwrap();
        assert_eq!(read_png_rgb(&path).unwrap().2, picture().rgb);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_says_where() {
        let dir = tempfile::tempdir().unwrap();

        // A file where the folder should be fails for every user, root included.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let error = write_png(&blocker.join("p.png"), &picture(), "{}").unwrap_err();
        assert!(format!("{error:#}").contains("cannot write"), "{error:#}");

        // A read-only folder: the old picture stays whole and no temporary is left behind.
        // Root ignores permission bits, so the check is skipped where a probe file can still
        // be created in the read-only folder (as in containers that run tests as root).
        #[cfg(unix)]
        read_only_folder(dir.path());
    }

    #[cfg(unix)]
    fn read_only_folder(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let folder = dir.join("locked");
        std::fs::create_dir(&folder).expect("test file system");
        let path = folder.join("p.png");
        std::fs::write(&path, b"old").expect("test file system");
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555))
            .expect("test file system");
        let probe = folder.join("probe");
        if std::fs::write(&probe, b"").is_ok() {
            eprintln!("skipped the read-only folder check: this user (root?) writes anyway");
            let _ = std::fs::remove_file(&probe);
        } else {
            let error = write_png(&path, &picture(), "{}")
                .expect_err("a read-only folder refuses the write");
            let text = format!("{error:#}");
            assert!(
                text.contains("cannot write") && text.contains("p.png"),
                "{text}"
            );
            assert_eq!(std::fs::read(&path).expect("test file system"), b"old");
            assert!(leftovers(&folder).is_empty());
        }
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))
            .expect("test file system");
    }

    #[test]
    fn versions_are_checked_before_the_schema() {
        let mut value: serde_json::Value = serde_json::from_str(&recipe().to_json()).unwrap();
        value["version"] = (RECIPE_VERSION + 1).into();
        value["a_field_of_the_future"] = 1.into();
        let error = Recipe::from_json(&value.to_string()).unwrap_err();
        assert!(format!("{error:#}").contains("newer"), "{error:#}");

        value["version"] = RECIPE_VERSION.into();
        let error = Recipe::from_json(&value.to_string()).unwrap_err();
        assert!(
            format!("{error:#}").contains("a_field_of_the_future"),
            "{error:#}"
        );
        value["version"] = u64::MAX.into();
        assert!(Recipe::from_json(&value.to_string()).is_err());
        assert!(Recipe::from_json("").is_err());
        assert!(Recipe::from_json("null").is_err());
    }
}
