//! Weights kept in memory once, shared with candle's modules, and editable in place.
//!
//! A [`WeightStore`] holds one component's tensors (the UNet's, the VAE's...) as candle `Var`s.
//! It hands candle-transformers' modules views of those same buffers through a `VarBuilder`
//! backend, so an edit written into a `Var` is seen by the module at once, with no reloading.
//! The first edit of a tensor keeps a copy of the original, and undo writes it back bit for bit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::VarBuilder;

use super::error::{EngineError, Result};
use super::surgery::Stats;

/// Maps a tensor's name in the store to its name in the file it came from, when they differ
/// (single-file checkpoints), so that errors quote what the user can find in the file.
pub type CheckpointNames = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// One component's weights, by checkpoint name.
pub struct WeightStore {
    /// The component's name ("unet", "vae", "text_encoder"...).
    component: String,
    /// Where the weights came from, for error messages.
    source: PathBuf,
    vars: Arc<BTreeMap<String, Var>>,
    /// Copies of the tensors as loaded, for those that have been edited.
    originals: HashMap<String, Tensor>,
    /// Mean and standard deviation of tensors as loaded, once surgery has needed them: they
    /// never change, and recounting them over SD's 860 million UNet weights at every move of
    /// a noise slider cost more than drawing the noise.
    loaded_stats: HashMap<String, Stats>,
    /// Names in the source file, when they differ from the store's.
    checkpoint_names: Option<CheckpointNames>,
    /// This store among all stores of the process, and how many edits it has seen: together
    /// they name the weights as they are now (see [`WeightStore::version`]).
    id: u64,
    edits: u64,
    /// The edit count at each tensor's latest edit or undo.
    last_edit: HashMap<String, u64>,
}

/// The weights of one store between two edits: equal versions hold equal values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreVersion {
    store: u64,
    edits: u64,
}

impl WeightStore {
    /// Reads a safetensors file, converting every floating tensor to `dtype`.
    pub fn load(component: &str, path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| EngineError::file(format!("cannot read weights: {e}"), path))?;
        Self::from_safetensors_bytes(component, path, &bytes, dtype, device)
    }

    /// Parses safetensors bytes; `path` is only used in error messages.
    pub fn from_safetensors_bytes(
        component: &str,
        path: &Path,
        bytes: &[u8],
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let tensors = candle_core::safetensors::load_buffer(bytes, device)
            .map_err(|e| EngineError::file(format!("not a valid safetensors file ({e})"), path))?;
        Self::from_tensors(component, path, tensors, dtype)
    }

    /// Takes ownership of already loaded tensors.
    pub fn from_tensors(
        component: &str,
        source: &Path,
        tensors: HashMap<String, Tensor>,
        dtype: DType,
    ) -> Result<Self> {
        let mut vars = BTreeMap::new();
        for (name, tensor) in tensors {
            let tensor = if tensor.dtype().is_float() {
                tensor.to_dtype(dtype)
            } else {
                Ok(tensor)
            };
            let var = tensor
                .and_then(|t| Var::from_tensor(&t))
                .map_err(|e| EngineError::file(format!("tensor {name}: {e}"), source))?;
            vars.insert(name, var);
        }
        Ok(Self {
            component: component.to_string(),
            source: source.to_path_buf(),
            vars: Arc::new(vars),
            originals: HashMap::new(),
            loaded_stats: HashMap::new(),
            checkpoint_names: None,
            id: {
                static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
            edits: 0,
            last_edit: HashMap::new(),
        })
    }

    /// Tells the store how its names are spelled in the source file, for error messages.
    pub fn with_checkpoint_names(mut self, names: CheckpointNames) -> Self {
        self.checkpoint_names = Some(names);
        self
    }

    /// The component's name.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Where the weights were read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// A `VarBuilder` whose tensors share storage with this store.
    ///
    /// Asking it for a tensor that is absent, or present with another shape, is an error that
    /// names the tensor and the file.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        let backend = StoreBackend {
            vars: Arc::clone(&self.vars),
            source: self.source.clone(),
            checkpoint_names: self.checkpoint_names.clone(),
        };
        VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    /// The current value of a tensor (a view of the live weights).
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.vars.get(name).map(|v| v.as_tensor().detach())
    }

    /// The tensor as it was loaded, before any edit.
    pub fn original(&self, name: &str) -> Option<Tensor> {
        self.originals.get(name).cloned().or_else(|| self.get(name))
    }

    /// Total number of values in the store.
    pub fn num_values(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Names of the tensors that currently differ from the loaded weights.
    pub fn edited(&self) -> impl Iterator<Item = &str> {
        self.originals.keys().map(String::as_str)
    }

    /// The statistics of a tensor as loaded, computed by `compute` the first time they are
    /// asked for and remembered after that.
    pub fn loaded_stats(
        &mut self,
        name: &str,
        compute: impl FnOnce(&Tensor) -> candle_core::Result<Stats>,
    ) -> Result<Stats> {
        if let Some(stats) = self.loaded_stats.get(name) {
            return Ok(*stats);
        }
        let original = self.original(name).ok_or_else(|| self.missing(name))?;
        let stats = compute(&original).map_err(|source| EngineError::Candle {
            stage: "edit weights",
            source,
        })?;
        self.loaded_stats.insert(name.to_string(), stats);
        Ok(stats)
    }

    /// The weights as they are now: it changes with every edit and undo, so whatever was
    /// computed from the weights at one version (a copy, a packing) still holds at the same.
    pub fn version(&self) -> StoreVersion {
        StoreVersion {
            store: self.id,
            edits: self.edits,
        }
    }

    /// Whether tensor `name` may differ from what it was at `version` (always, for another
    /// store's version).
    pub fn changed_since(&self, version: StoreVersion, name: &str) -> bool {
        version.store != self.id || self.last_edit.get(name).is_some_and(|&e| e > version.edits)
    }

    /// Counts an edit or undo of `name`.
    fn count_edit(&mut self, name: &str) {
        self.edits += 1;
        self.last_edit.insert(name.to_string(), self.edits);
    }

    /// Overwrites a tensor in place, keeping the original for [`WeightStore::restore`].
    pub fn set(&mut self, name: &str, value: &Tensor) -> Result<()> {
        self.count_edit(name);
        let var = self.var(name)?.clone();
        if var.shape() != value.shape() {
            return Err(EngineError::TensorShape {
                name: name.to_string(),
                found: value.dims().to_vec(),
                expected: var.dims().to_vec(),
                path: self.source.clone(),
            });
        }
        self.keep_original(name, &var)?;
        let value = value
            .to_dtype(var.dtype())
            .and_then(|v| v.contiguous())
            .map_err(|source| EngineError::Candle {
                stage: "edit",
                source,
            })?;
        var.set(&value).map_err(|source| EngineError::Candle {
            stage: "edit",
            source,
        })
    }

    /// Rewrites a tensor where it lies: `write(original, live)` computes the new value from the
    /// loaded one into the live tensor, or returns `false` without writing when it cannot (the
    /// caller then uses [`WeightStore::set`]). The original is kept for restore either way.
    pub fn rewrite(
        &mut self,
        name: &str,
        write: impl FnOnce(&Tensor, &Tensor) -> candle_core::Result<bool>,
    ) -> Result<bool> {
        self.count_edit(name);
        let var = self.var(name)?.clone();
        let original = self.keep_original(name, &var)?;
        write(&original, var.as_tensor()).map_err(|source| EngineError::Candle {
            stage: "edit",
            source,
        })
    }

    fn var(&self, name: &str) -> Result<&Var> {
        self.vars.get(name).ok_or_else(|| self.missing(name))
    }

    /// The error for a tensor this store does not hold.
    pub fn missing(&self, name: &str) -> EngineError {
        EngineError::MissingTensor {
            name: name.to_string(),
            path: self.source.clone(),
        }
    }

    /// Copies a tensor's loaded value aside before its first edit; returns that copy.
    fn keep_original(&mut self, name: &str, var: &Var) -> Result<Tensor> {
        if let Some(original) = self.originals.get(name) {
            return Ok(original.clone());
        }
        let copy = var
            .as_tensor()
            .copy()
            .and_then(|t| t.detach().contiguous())
            .map_err(|source| EngineError::Candle {
                stage: "edit",
                source,
            })?;
        self.originals.insert(name.to_string(), copy.clone());
        Ok(copy)
    }

    /// Writes a tensor's original value back; returns whether it had been edited.
    pub fn restore(&mut self, name: &str) -> Result<bool> {
        let vars = Arc::clone(&self.vars);
        let (Some(original), Some(var)) = (self.originals.remove(name), vars.get(name)) else {
            return Ok(false);
        };
        self.count_edit(name);
        var.set(&original).map_err(|source| EngineError::Candle {
            stage: "undo edit",
            source,
        })?;
        Ok(true)
    }

    /// Undoes every edit.
    pub fn restore_all(&mut self) -> Result<()> {
        let names: Vec<String> = self.originals.keys().cloned().collect();
        for name in names {
            self.restore(&name)?;
        }
        Ok(())
    }
}

/// The `VarBuilder` backend over a store's `Var`s.
struct StoreBackend {
    vars: Arc<BTreeMap<String, Var>>,
    source: PathBuf,
    checkpoint_names: Option<CheckpointNames>,
}

impl StoreBackend {
    /// `name`, followed by its spelling in the file when that differs.
    fn describe(&self, name: &str) -> String {
        match self.checkpoint_names.as_ref().and_then(|f| f(name)) {
            Some(original) if original != name => format!("{name} ({original} in the file)"),
            _ => name.to_string(),
        }
    }

    fn lookup(&self, name: &str) -> candle_core::Result<&Var> {
        self.vars.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "tensor {} is missing from {}",
                self.describe(name),
                self.source.display()
            ))
        })
    }
}

impl candle_nn::var_builder::SimpleBackend for StoreBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let var = self.lookup(name)?;
        if var.shape() != &shape {
            return Err(candle_core::Error::Msg(format!(
                "tensor {} has shape {:?}, expected {:?} in {}",
                self.describe(name),
                var.dims(),
                shape.dims(),
                self.source.display()
            )));
        }
        self.get_unchecked(name, dtype, device)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        // A detached view shares the Var's buffer, so later edits reach the module; a dtype or
        // device change would copy, which is why the store is loaded in the compute dtype.
        let tensor = self.lookup(name)?.as_tensor().detach();
        tensor.to_dtype(dtype)?.to_device(device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::Module;

    fn store() -> WeightStore {
        let dev = Device::Cpu;
        let mut tensors = HashMap::new();
        tensors.insert(
            "lin.weight".to_string(),
            Tensor::new(&[[1f32, 2.], [3., 4.]], &dev).unwrap(),
        );
        tensors.insert(
            "lin.bias".to_string(),
            Tensor::new(&[0.5f32, -0.5], &dev).unwrap(),
        );
        WeightStore::from_tensors("test", Path::new("test.safetensors"), tensors, DType::F32)
            .unwrap()
    }

    #[test]
    fn edits_reach_a_built_module_and_undo_restores_bits() {
        let mut store = store();
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let lin = candle_nn::linear(2, 2, vb.pp("lin")).unwrap();
        let x = Tensor::new(&[[1f32, 1.]], &Device::Cpu).unwrap();
        let before = lin.forward(&x).unwrap().to_vec2::<f32>().unwrap();

        let zeros = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        store.set("lin.weight", &zeros).unwrap();
        let knocked = lin.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(knocked, vec![vec![0.5, -0.5]]);
        assert_eq!(store.edited().count(), 1);

        assert!(store.restore("lin.weight").unwrap());
        let after = lin.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(before, after);
        assert_eq!(store.edited().count(), 0);
    }

    #[test]
    fn missing_and_misshapen_tensors_name_themselves() {
        let store = store();
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let err = candle_nn::linear(2, 3, vb.pp("lin"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lin.weight") && err.contains("[2, 2]"),
            "{err}"
        );
        let err = candle_nn::linear(2, 2, vb.pp("other"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("other.weight is missing from test.safetensors"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_bytes_give_a_file_error() {
        let err = WeightStore::from_safetensors_bytes(
            "unet",
            Path::new("unet/diffusion_pytorch_model.safetensors"),
            b"not a safetensors file",
            DType::F32,
            &Device::Cpu,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("unet/diffusion_pytorch_model.safetensors"),
            "{err}"
        );
    }
}
