//! The module catalog: a component's weights grouped into the modules an experimenter knocks
//! out, randomizes or scales.
//!
//! A module is a weight name without its `.weight` / `.bias` suffix
//! (`down_blocks.0.resnets.0.conv1`), so a convolution's kernel and bias go together, as do a
//! norm's scale and shift. Stable Diffusion 1.5's UNet has 391 of them. Modules are listed in
//! the order data flows through the network (the UNet's `conv_in` first, `conv_out` last;
//! within a block `resnets.0`, `attentions.0`, `resnets.1`..., then the sampler) rather than in
//! the alphabetical order of checkpoint files, so that "the first and the last module" mean
//! what a reader of the architecture expects. The catalog reads names and shapes only: it can
//! be built from a loaded [`WeightStore`] or from a safetensors header without reading the
//! weights.

use std::collections::BTreeMap;
use std::path::Path;

use super::header::read_header_shapes;
use super::names::{module_of, network_order, segments};
use crate::engine::error::{EngineError, Result};
use crate::engine::model::Component;
use crate::engine::weights::WeightStore;

/// One tensor of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The full checkpoint name (`down_blocks.0.resnets.0.conv1.weight`).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of values in the tensor.
    pub fn num_params(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A module: the tensors that share a name up to `.weight` / `.bias`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The module's name (`down_blocks.0.resnets.0.conv1`).
    pub name: String,
    /// Its tensors, weight before bias.
    pub tensors: Vec<TensorInfo>,
}

impl ModuleInfo {
    /// Number of values in all its tensors.
    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(TensorInfo::num_params).sum()
    }

    /// The tensors' shapes as `[320, 4, 3, 3] [320]`.
    pub fn shapes_label(&self) -> String {
        let shapes: Vec<String> = self
            .tensors
            .iter()
            .map(|t| format!("{:?}", t.shape))
            .collect();
        shapes.join(" ")
    }
}

/// A named group of modules in the catalog's tree (`down_blocks.0`, `down_blocks.0.resnets.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleGroup {
    /// The group's full path; empty for the root.
    pub path: String,
    /// What is directly inside it, in network order.
    pub entries: Vec<GroupEntry>,
    /// Modules in the group and all its subgroups.
    pub num_modules: usize,
    /// Parameters in the group and all its subgroups.
    pub num_params: usize,
}

/// One entry of a [`ModuleGroup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEntry {
    /// A module, by index into [`ModuleCatalog::modules`].
    Module(usize),
    /// A group of modules.
    Group(ModuleGroup),
}

impl ModuleGroup {
    fn new(path: String) -> Self {
        Self {
            path,
            entries: Vec::new(),
            num_modules: 0,
            num_params: 0,
        }
    }

    /// The groups directly inside this one.
    pub fn groups(&self) -> impl Iterator<Item = &ModuleGroup> {
        self.entries.iter().filter_map(|e| match e {
            GroupEntry::Group(g) => Some(g),
            GroupEntry::Module(_) => None,
        })
    }

    /// The modules directly inside this one, as indices into [`ModuleCatalog::modules`].
    pub fn modules(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries.iter().filter_map(|e| match e {
            GroupEntry::Module(i) => Some(*i),
            GroupEntry::Group(_) => None,
        })
    }
}

/// Every editable module of one component, in network order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleCatalog {
    /// The component the modules belong to.
    pub component: Component,
    /// The modules, in the order data flows through them.
    pub modules: Vec<ModuleInfo>,
}

impl ModuleCatalog {
    /// Groups floating-point tensors, given by name and shape, into modules.
    pub fn from_shapes(
        component: Component,
        tensors: impl IntoIterator<Item = (String, Vec<usize>)>,
    ) -> Self {
        let mut by_module: BTreeMap<String, Vec<TensorInfo>> = BTreeMap::new();
        for (name, shape) in tensors {
            by_module
                .entry(module_of(&name).to_string())
                .or_default()
                .push(TensorInfo { name, shape });
        }
        let mut modules: Vec<ModuleInfo> = by_module
            .into_iter()
            .map(|(name, mut tensors)| {
                tensors.sort_by_key(|t| (!t.name.ends_with(".weight"), t.name.clone()));
                ModuleInfo { name, tensors }
            })
            .collect();
        modules.sort_by(|a, b| network_order(&a.name, &b.name));
        Self { component, modules }
    }

    /// The catalog of a loaded component (its floating-point tensors).
    pub fn from_store(component: Component, store: &WeightStore) -> Self {
        let tensors = store.names().filter_map(|name| {
            let tensor = store.get(name)?;
            tensor
                .dtype()
                .is_float()
                .then(|| (name.to_string(), tensor.dims().to_vec()))
        });
        Self::from_shapes(component, tensors)
    }

    /// The catalog of a safetensors file, read from its header alone.
    pub fn from_safetensors_header(component: Component, path: &Path) -> Result<Self> {
        Ok(Self::from_shapes(component, read_header_shapes(path)?))
    }

    /// The module of that exact name.
    pub fn get(&self, name: &str) -> Option<&ModuleInfo> {
        self.modules.iter().find(|m| m.name == name)
    }

    /// The modules a name selects: the module of that name, or every module of the group of
    /// that name (`down_blocks.0` selects all 43 modules of SD 1.5's first down block).
    pub fn select(&self, name: &str) -> Result<Vec<&ModuleInfo>> {
        if let Some(module) = self.get(name) {
            return Ok(vec![module]);
        }
        let prefix = format!("{name}.");
        let group: Vec<&ModuleInfo> = self
            .modules
            .iter()
            .filter(|m| m.name.starts_with(&prefix))
            .collect();
        if group.is_empty() {
            return Err(EngineError::InvalidRequest(format!(
                "no module or group {name} in the {}; `interconcept modules --component {}` \
                 lists them",
                self.component.name(),
                self.component.name()
            )));
        }
        Ok(group)
    }

    /// Total parameters of the component.
    pub fn num_params(&self) -> usize {
        self.modules.iter().map(ModuleInfo::num_params).sum()
    }

    /// The modules as a tree of groups: blocks, then resnets / attentions / samplers, down to
    /// the groups that hold modules directly.
    pub fn tree(&self) -> ModuleGroup {
        let mut root = ModuleGroup::new(String::new());
        for (index, module) in self.modules.iter().enumerate() {
            let segments = segments(&module.name);
            let groups = &segments[..segments.len() - 1];
            root.insert(groups, index, module.num_params());
        }
        root
    }
}

impl ModuleGroup {
    /// Adds a module below this group, inside the nested groups named by `groups`.
    fn insert(&mut self, groups: &[&str], index: usize, params: usize) {
        self.num_modules += 1;
        self.num_params += params;
        let Some((first, rest)) = groups.split_first() else {
            self.entries.push(GroupEntry::Module(index));
            return;
        };
        let path = if self.path.is_empty() {
            first.to_string()
        } else {
            format!("{}.{first}", self.path)
        };
        // Modules come in network order, so a group's modules are contiguous: the group, if
        // it exists, is the last entry.
        if let Some(GroupEntry::Group(last)) = self.entries.last_mut()
            && last.path == path
        {
            last.insert(rest, index, params);
            return;
        }
        let mut group = ModuleGroup::new(path);
        group.insert(rest, index, params);
        self.entries.push(GroupEntry::Group(group));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(catalog: &ModuleCatalog) -> Vec<&str> {
        catalog.modules.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn modules_pair_weights_and_biases_in_network_order() {
        let tensors = [
            "conv_out.weight",
            "up_blocks.0.resnets.0.conv1.weight",
            "down_blocks.0.downsamplers.0.conv.weight",
            "down_blocks.0.attentions.0.proj_in.weight",
            "down_blocks.0.resnets.1.conv1.weight",
            "down_blocks.0.resnets.0.conv1.bias",
            "down_blocks.0.resnets.0.conv1.weight",
            "down_blocks.0.resnets.0.norm1.weight",
            "down_blocks.0.resnets.0.time_emb_proj.weight",
            "down_blocks.10.resnets.0.conv1.weight",
            "down_blocks.2.resnets.0.conv1.weight",
            "mid_block.resnets.0.conv1.weight",
            "time_embedding.linear_2.weight",
            "time_embedding.linear_1.weight",
            "conv_in.weight",
            "conv_in.bias",
        ];
        let catalog = ModuleCatalog::from_shapes(
            Component::Unet,
            tensors.iter().map(|n| (n.to_string(), vec![2, 3])),
        );
        assert_eq!(
            names(&catalog),
            vec![
                "conv_in",
                "time_embedding.linear_1",
                "time_embedding.linear_2",
                "down_blocks.0.resnets.0.norm1",
                "down_blocks.0.resnets.0.conv1",
                "down_blocks.0.resnets.0.time_emb_proj",
                "down_blocks.0.attentions.0.proj_in",
                "down_blocks.0.resnets.1.conv1",
                "down_blocks.0.downsamplers.0.conv",
                "down_blocks.2.resnets.0.conv1",
                "down_blocks.10.resnets.0.conv1",
                "mid_block.resnets.0.conv1",
                "up_blocks.0.resnets.0.conv1",
                "conv_out",
            ]
        );
        let conv1 = catalog.get("down_blocks.0.resnets.0.conv1").unwrap();
        assert_eq!(
            conv1.tensors[0].name,
            "down_blocks.0.resnets.0.conv1.weight"
        );
        assert_eq!(conv1.num_params(), 12);
        assert_eq!(conv1.shapes_label(), "[2, 3] [2, 3]");
        assert_eq!(catalog.num_params(), 16 * 6);
    }

    #[test]
    fn groups_select_their_modules_and_unknown_names_say_where_to_look() {
        let catalog = ModuleCatalog::from_shapes(
            Component::Unet,
            [
                "down_blocks.0.resnets.0.conv1.weight",
                "down_blocks.0.resnets.0.conv2.weight",
                "down_blocks.1.resnets.0.conv1.weight",
            ]
            .iter()
            .map(|n| (n.to_string(), vec![1])),
        );
        assert_eq!(catalog.select("down_blocks.0").unwrap().len(), 2);
        assert_eq!(
            catalog.select("down_blocks.1.resnets.0.conv1").unwrap()[0].name,
            "down_blocks.1.resnets.0.conv1"
        );
        // A prefix that is not a whole segment selects nothing.
        let err = catalog.select("down_blocks.0.resnets.0.conv").unwrap_err();
        assert!(err.to_string().contains("interconcept modules"), "{err}");
    }

    #[test]
    fn tree_counts_modules_and_parameters_per_group() {
        let catalog = ModuleCatalog::from_shapes(
            Component::Unet,
            [
                ("conv_in.weight", 10),
                ("down_blocks.0.resnets.0.conv1.weight", 3),
                ("down_blocks.0.resnets.0.conv2.weight", 4),
                ("down_blocks.0.attentions.0.proj_in.weight", 5),
            ]
            .iter()
            .map(|(n, len)| (n.to_string(), vec![*len])),
        );
        let root = catalog.tree();
        assert_eq!((root.num_modules, root.num_params), (4, 22));
        assert_eq!(root.modules().collect::<Vec<_>>(), vec![0]);
        assert_eq!(root.entries[0], GroupEntry::Module(0));
        let block = root.groups().next().unwrap();
        assert_eq!(block.path, "down_blocks.0");
        assert_eq!((block.num_modules, block.num_params), (3, 12));
        let paths: Vec<&str> = block.groups().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["down_blocks.0.resnets.0", "down_blocks.0.attentions.0"]
        );
    }
}
