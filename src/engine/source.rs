//! Where a model comes from: what a `--model` argument names, and what is refused.
//!
//! Users keep Stable Diffusion three ways: a diffusers folder (their own, or a snapshot in the
//! Hugging Face cache, named `ORG/NAME`), or one checkpoint file as A1111 and ComfyUI keep them.
//! Checkpoints are only read from safetensors files: `.ckpt`, `.pt`, `.pth` and `.bin` files
//! are Python pickles, and unpickling one runs whatever code it carries, so they are refused
//! without being opened, with a way to convert them.

use std::path::{Path, PathBuf};

use super::error::{EngineError, Result};
use super::hub::{self, HubOptions};

/// Extensions of pickled checkpoints.
pub const PICKLE_EXTENSIONS: [&str; 5] = ["ckpt", "pt", "pth", "bin", "pkl"];

/// A model, as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder in diffusers' layout.
    Folder(PathBuf),
    /// A `.safetensors` checkpoint in the original Stable Diffusion layout.
    SingleFile(PathBuf),
    /// A Hugging Face repository, `ORG/NAME`: the local cache, else a download.
    Hub(String),
}

impl ModelSource {
    /// Reads a `--model` argument: an existing folder or file, else a hub id.
    pub fn parse(arg: &str) -> Result<Self> {
        let path = Path::new(arg);
        if path.is_dir() {
            return Ok(Self::Folder(path.to_path_buf()));
        }
        if path.is_file() {
            check_single_file(path)?;
            return Ok(Self::SingleFile(path.to_path_buf()));
        }
        if is_repo_id(arg) {
            return Ok(Self::Hub(arg.to_string()));
        }
        Err(EngineError::file(
            "model not found: expected a diffusers folder, a .safetensors checkpoint or a \
             Hugging Face id ORG/NAME",
            path,
        ))
    }

    /// A local path to load: the folder or file itself, or the hub repository's snapshot in
    /// the cache, downloaded first if needed and allowed.
    pub fn local_path(&self, options: &HubOptions) -> Result<PathBuf> {
        match self {
            Self::Folder(p) | Self::SingleFile(p) => Ok(p.clone()),
            Self::Hub(repo) => hub::resolve(repo, options),
        }
    }
}

/// Whether `arg` looks like `ORG/NAME` (and is not a relative path that merely does not exist).
pub fn is_repo_id(arg: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '-'])
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match arg.split_once('/') {
        Some((org, name)) => part_ok(org) && part_ok(name) && !name.ends_with(".safetensors"),
        None => false,
    }
}

/// Checks that a file is one this program reads: a `.safetensors` checkpoint.
pub fn check_single_file(path: &Path) -> Result<()> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if PICKLE_EXTENSIONS.contains(&ext.as_str()) {
        return Err(pickle_refusal(path));
    }
    if ext != "safetensors" {
        return Err(EngineError::file(
            "not a model: expected a diffusers folder or a .safetensors checkpoint",
            path,
        ));
    }
    Ok(())
}

/// The error for a pickled checkpoint: why it is refused and how to convert it.
pub fn pickle_refusal(path: &Path) -> EngineError {
    let stem = path
        .file_stem()
        .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    let file = path.file_name().map_or_else(
        || "model.ckpt".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    EngineError::file(
        format!(
            "refusing to open a pickled checkpoint: unpickling can run arbitrary code hidden in \
             the file, so this program only reads .safetensors. Convert it once, on a file you \
             trust, with Python (pip install torch safetensors): python -c \"import torch, \
             safetensors.torch as st; sd = torch.load('{file}', map_location='cpu', \
             weights_only=True); sd = sd.get('state_dict', sd); st.save_file({{k: v.contiguous() \
             for k, v in sd.items() if isinstance(v, torch.Tensor)}}, '{stem}.safetensors')\" \
             (weights_only=True makes torch refuse code), then pass {stem}.safetensors"
        ),
        path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_read_as_the_user_means_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            ModelSource::parse(d.to_str().unwrap()).unwrap(),
            ModelSource::Folder(d.to_path_buf())
        );
        assert_eq!(
            ModelSource::parse("stabilityai/sd-turbo").unwrap(),
            ModelSource::Hub("stabilityai/sd-turbo".into())
        );
        assert!(!is_repo_id("./models/x"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("model.safetensors"));

        let ckpt = d.join("v1-5-pruned.ckpt");
        std::fs::write(&ckpt, b"PK\x03\x04 pretend pickle").unwrap();
        let err = ModelSource::parse(ckpt.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("arbitrary code") && err.contains("v1-5-pruned.safetensors"),
            "{err}"
        );
        assert!(err.contains("v1-5-pruned.ckpt"), "{err}");

        let other = d.join("notes.txt");
        std::fs::write(&other, b"hello").unwrap();
        assert!(ModelSource::parse(other.to_str().unwrap()).is_err());
        let missing = d.join("nothing/here");
        let err = ModelSource::parse(missing.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("model not found"), "{err}");
    }
}
