//! Models named `ORG/NAME`: the Hugging Face cache first, a download through `hf-hub` when the
//! cache lacks them.
//!
//! The cache layout is the one `huggingface_hub` writes, so models fetched with Python tools are
//! found too: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`; inside it `models--ORG--NAME/refs/main` holds the revision whose
//! files are in `models--ORG--NAME/snapshots/<revision>/`. A snapshot is used when it has every
//! file a diffusers Stable Diffusion needs. Downloads go into the same cache; the configs come
//! first, so a repository this program cannot run is refused before gigabytes of weights.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;

use super::error::{EngineError, Result};

/// Files every diffusers Stable Diffusion repository has.
pub const REQUIRED_FILES: [&str; 7] = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "unet/config.json",
    "vae/config.json",
];

/// Files read when present.
pub const OPTIONAL_FILES: [&str; 2] = [
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
];

/// Weight files, without their `.safetensors` / `.fp16.safetensors` ending.
pub const WEIGHT_STEMS: [&str; 3] = [
    "text_encoder/model",
    "unet/diffusion_pytorch_model",
    "vae/diffusion_pytorch_model",
];

/// How to reach the hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Download what the cache lacks.
    pub allow_download: bool,
    /// Show a progress bar per file.
    pub progress: bool,
    /// The cache (the `hub` folder); the environment decides when `None`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            allow_download: true,
            progress: true,
            cache_dir: None,
        }
    }
}

impl HubOptions {
    /// The defaults, with downloads off when `HF_HUB_OFFLINE` is set (as the Python tools do).
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        Self {
            allow_download: !offline,
            ..Self::default()
        }
    }
}

/// The Hugging Face cache folder the environment names.
pub fn hub_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HF_HUB_CACHE") {
        return Some(dir);
    }
    let home = var("HF_HOME")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("huggingface")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/huggingface")))?;
    Some(home.join("hub"))
}

/// `models--ORG--NAME`.
pub fn repo_folder_name(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// `ORG/NAME` when `dir` is a snapshot folder of the cache.
pub fn repo_of_snapshot(dir: &Path) -> Option<String> {
    let snapshots = dir.parent()?;
    if snapshots.file_name()? != "snapshots" {
        return None;
    }
    let folder = snapshots.parent()?.file_name()?.to_str()?;
    let (org, name) = folder.strip_prefix("models--")?.split_once("--")?;
    Some(format!("{org}/{name}"))
}

/// What a snapshot lacks, as file names; empty when it is complete.
fn missing_files(snapshot: &Path) -> Vec<String> {
    let mut missing: Vec<String> = REQUIRED_FILES
        .iter()
        .filter(|f| !snapshot.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    for stem in WEIGHT_STEMS {
        let full = format!("{stem}.safetensors");
        let half = format!("{stem}.fp16.safetensors");
        if !snapshot.join(&full).is_file() && !snapshot.join(&half).is_file() {
            missing.push(format!("{full} (or {half})"));
        }
    }
    missing
}

/// The cached snapshot of `repo`, or why there is none.
pub fn cached_snapshot(cache: &Path, repo: &str) -> std::result::Result<PathBuf, String> {
    let folder = cache.join(repo_folder_name(repo));
    if !folder.is_dir() {
        return Err(format!("{} does not exist", folder.display()));
    }
    let refs_main = folder.join("refs/main");
    let revision = match std::fs::read_to_string(&refs_main) {
        Ok(text) => text.trim().to_string(),
        Err(_) => {
            // Without refs/main a lone snapshot is still unambiguous.
            let mut snapshots: Vec<_> = std::fs::read_dir(folder.join("snapshots"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            match (snapshots.pop(), snapshots.is_empty()) {
                (Some(only), true) => only.to_string_lossy().into_owned(),
                _ => return Err(format!("{} does not exist", refs_main.display())),
            }
        }
    };
    let snapshot = folder.join("snapshots").join(&revision);
    if !snapshot.is_dir() {
        return Err(format!(
            "refs/main names revision {revision}, but {} does not exist",
            snapshot.display()
        ));
    }
    let missing = missing_files(&snapshot);
    if !missing.is_empty() {
        return Err(format!(
            "snapshot {} lacks {}",
            snapshot.display(),
            missing.join(", ")
        ));
    }
    Ok(snapshot)
}

/// A local diffusers folder for `repo`: the cached snapshot, else a fresh download.
pub fn resolve(repo: &str, options: &HubOptions) -> Result<PathBuf> {
    let hub_error = |message: String| EngineError::Hub {
        repo: repo.to_string(),
        message,
    };
    let cache = options
        .cache_dir
        .clone()
        .or_else(hub_cache_dir)
        .ok_or_else(|| hub_error("no Hugging Face cache: set HF_HOME (or HOME)".to_string()))?;
    let not_cached = match cached_snapshot(&cache, repo) {
        Ok(snapshot) => {
            tracing::info!(repo, snapshot = %snapshot.display(), "model found in the Hugging Face cache");
            return Ok(snapshot);
        }
        Err(why) => why,
    };
    let looked_for = format!(
        "looked in {} for refs/main and snapshots/<revision>/ holding {} and the weights {} \
         (or their .fp16 variants): {not_cached}",
        cache.join(repo_folder_name(repo)).display(),
        REQUIRED_FILES.join(", "),
        WEIGHT_STEMS.map(|s| format!("{s}.safetensors")).join(", "),
    );
    if !options.allow_download {
        return Err(hub_error(format!(
            "not in the Hugging Face cache ({looked_for}), and downloads are off (HF_HUB_OFFLINE)"
        )));
    }
    tracing::info!(repo, cache = %cache.display(), "downloading from the Hugging Face hub");
    download(repo, &cache, options).map_err(|e| match e {
        DownloadError::Refused(e) => e,
        DownloadError::Failed(why) => hub_error(format!(
            "not in the Hugging Face cache ({looked_for}), and the download failed: {why}. \
             Point HF_HOME at a cache that holds it, or fetch it where the hub is reachable \
             (huggingface-cli download {repo}) and copy the cache here"
        )),
    })
}

/// How a download ends when it does not finish.
enum DownloadError {
    /// The hub could not be reached or lacks a file.
    Failed(String),
    /// The configs arrived and name a model this program cannot run.
    Refused(EngineError),
}

fn download(
    repo: &str,
    cache: &Path,
    options: &HubOptions,
) -> std::result::Result<PathBuf, DownloadError> {
    let failed = |e: &dyn std::fmt::Display| DownloadError::Failed(e.to_string());
    let mut builder = ApiBuilder::new()
        .with_cache_dir(cache.to_path_buf())
        .with_progress(options.progress);
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| failed(&e))?;
    let hub_repo = api.model(repo.to_string());
    let listing: Vec<String> = hub_repo
        .info()
        .map_err(|e| failed(&e))?
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .collect();
    let has = |f: &str| listing.iter().any(|l| l == f);

    // Configs first: refuse before the weights if the model cannot run here.
    let mut snapshot = None;
    for file in REQUIRED_FILES {
        if !has(file) {
            return Err(DownloadError::Failed(format!(
                "the repository has no {file}: not a diffusers Stable Diffusion"
            )));
        }
        let path = hub_repo
            .get(file)
            .map_err(|e| failed(&format!("{file}: {e}")))?;
        if file == "model_index.json" {
            snapshot = path.parent().map(Path::to_path_buf);
        }
    }
    for file in OPTIONAL_FILES.into_iter().filter(|f| has(f)) {
        hub_repo
            .get(file)
            .map_err(|e| failed(&format!("{file}: {e}")))?;
    }
    let snapshot = snapshot.ok_or_else(|| failed(&"model_index.json has no folder"))?;
    super::diffusers::read_configs(&snapshot).map_err(DownloadError::Refused)?;

    for stem in WEIGHT_STEMS {
        let full = format!("{stem}.safetensors");
        let half = format!("{stem}.fp16.safetensors");
        let file = if has(&full) {
            full
        } else if has(&half) {
            half
        } else {
            return Err(DownloadError::Failed(format!(
                "the repository has no {full} (only pickled weights?)"
            )));
        };
        hub_repo
            .get(&file)
            .map_err(|e| failed(&format!("{file}: {e}")))?;
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_folders_name_their_repo() {
        let dir = Path::new("/c/hub/models--stabilityai--sd-turbo/snapshots/abc123");
        assert_eq!(
            repo_of_snapshot(dir).as_deref(),
            Some("stabilityai/sd-turbo")
        );
        assert_eq!(repo_of_snapshot(Path::new("/models/sd-turbo")), None);
        assert_eq!(repo_folder_name("org/name"), "models--org--name");
    }
}
