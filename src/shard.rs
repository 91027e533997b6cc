//! Shards: one grid split across machines, each computing its share of the tiles into a shared
//! folder, then put together by `interconcept merge`.
//!
//! Shard `K/N` owns tile `i` (counted from 0, row by row) when `i % N == K - 1`, so shards get
//! the same number of tiles give or take one, spread across the grid rather than in bands
//! (neighbouring tiles cost about the same; a band of heavy tiles would make one shard late).
//!
//! Every shard writes the same [`ShardLayout`] (`layout.json`: title, columns, labels, look,
//! and each tile's file name and full recipe), so a folder says what it should hold whatever
//! shards have run. Each tile is a PNG with its recipe inside. A tile whose PNG already holds
//! the expected recipe and decodes to a picture of the expected size is kept; anything else
//! there (another grid's tile, a truncated file) is made again. `merge` puts the tiles into the
//! mosaic the unsharded command writes, and names every tile that is missing.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::engine::pipeline::Picture;
use crate::mosaic::{LabelPlace, Mosaic, MosaicStyle, MosaicTile};
use crate::recipe::{self, Recipe};

/// The layout file every shard writes into the output folder.
pub const LAYOUT_FILE: &str = "layout.json";

/// What the `kind` field of a layout file says.
pub const LAYOUT_KIND: &str = "interconcept-shard-layout";

/// The layout schema version this build writes and reads.
pub const LAYOUT_VERSION: u32 = 1;

/// The most shards a grid may be split into.
pub const MAX_SHARDS: usize = 100_000;

/// One share of a grid: shard `index` of `count`, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, from 1 to `count`.
    pub index: usize,
    /// How many shards there are.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("--shard {text:?}: expected K/N with 1 <= K <= N <= {MAX_SHARDS}, such as 2/8")
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Whether this shard makes tile `tile` (counted from 0, row by row).
    pub fn owns(&self, tile: usize) -> bool {
        tile % self.count == self.index - 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `--shard` and `--out-dir`, shared by the commands that make grids.
#[derive(Debug, Clone, Args)]
pub struct ShardArgs {
    /// Make only shard K of N: the tiles i (from 0, row by row) with i % N == K - 1, each as a
    /// PNG with its recipe, into --out-dir; `interconcept merge` then writes the mosaic.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// The folder that sharded runs share: tiles, and the layout they belong to.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

impl ShardArgs {
    /// The shard and its folder, when sharded; refuses a shard without a folder.
    pub fn sharded(&self) -> Result<Option<(Shard, &Path)>> {
        match (self.shard, &self.out_dir) {
            (Some(shard), Some(dir)) => Ok(Some((shard, dir.as_path()))),
            (Some(_), None) => bail!("--shard needs --out-dir DIR, the folder the shards share"),
            (None, Some(_)) => {
                bail!("--out-dir goes with --shard K/N (--shard 1/1 makes every tile in one run)")
            }
            (None, None) => Ok(None),
        }
    }
}

/// One tile of a layout file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardTile {
    /// The PNG's name in the folder (a plain file name).
    pub file: String,
    /// The label drawn with the tile.
    pub label: String,
    /// What makes the tile (`non_finite` is always false here; the PNG's recipe says).
    pub recipe: Recipe,
}

/// `layout.json`: everything `merge` needs to draw the unsharded command's mosaic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardLayout {
    /// Always [`LAYOUT_KIND`].
    pub kind: String,
    /// Schema version.
    pub version: u32,
    /// The mosaic's title.
    pub title: String,
    /// Tiles per row.
    pub columns: usize,
    /// Labels above the columns.
    pub column_labels: Vec<String>,
    /// Labels left of the rows.
    pub row_labels: Vec<String>,
    /// The label where row and column labels meet.
    pub corner_label: String,
    /// Pixels between tiles.
    pub gap: usize,
    /// Mosaic pixels per picture pixel.
    pub zoom: usize,
    /// Where tile labels go.
    pub labels: LabelPlace,
    /// The tiles, row by row.
    pub tiles: Vec<ShardTile>,
}

impl ShardLayout {
    /// A layout with the given look; tiles are added by the caller.
    pub fn new(title: String, columns: usize, style: &MosaicStyle) -> Self {
        Self {
            kind: LAYOUT_KIND.into(),
            version: LAYOUT_VERSION,
            title,
            columns,
            column_labels: Vec::new(),
            row_labels: Vec::new(),
            corner_label: String::new(),
            gap: style.gap,
            zoom: style.zoom,
            labels: style.labels,
            tiles: Vec::new(),
        }
    }

    /// The mosaic's look.
    pub fn style(&self) -> MosaicStyle {
        MosaicStyle {
            gap: self.gap,
            zoom: self.zoom,
            labels: self.labels,
        }
    }

    /// Parses a layout file, refusing versions this build does not know and file names that
    /// would leave the folder.
    pub fn from_json(text: &str) -> Result<Self> {
        let layout: Self = serde_json::from_str(text).context("not a shard layout")?;
        if layout.kind != LAYOUT_KIND {
            bail!("not a shard layout (kind {:?})", layout.kind);
        }
        if layout.version > LAYOUT_VERSION {
            bail!(
                "layout version {} is newer than this program understands ({LAYOUT_VERSION}); \
                 update interconcept",
                layout.version
            );
        }
        if layout.columns == 0 || layout.tiles.is_empty() {
            bail!("the layout has no tiles or no columns");
        }
        for tile in &layout.tiles {
            check_file_name(&tile.file)?;
        }
        Ok(layout)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the layout into `dir` (made if needed), unless the same layout is there already.
    /// A folder that holds another grid's layout is refused: its tiles would be mixed up.
    pub fn write_into(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(LAYOUT_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            match Self::from_json(&text) {
                Ok(found) if found == *self => return Ok(()),
                Ok(_) => bail!(
                    "{} describes another grid; give each grid its own --out-dir",
                    path.display()
                ),
                // A damaged layout (an interrupted write elsewhere) is replaced.
                Err(_) => {}
            }
        }
        write_atomic(&path, (self.to_json() + "\n").as_bytes())
    }
}

/// Refuses a tile file name that is not a plain name inside the folder.
fn check_file_name(name: &str) -> Result<()> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(n)), None) if n == name && !name.contains(['/', '\\']) => Ok(()),
        _ => bail!("tile file {name:?} is not a plain file name"),
    }
}

/// Writes bytes to a temporary file beside `path`, then renames it into place, so a reader
/// sees the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(recipe::temporary_name(name));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Whether two recipes make the same picture: equal but for `non_finite`, which only the
/// making finds out.
pub fn same_picture(a: &Recipe, b: &Recipe) -> bool {
    let mut a = a.clone();
    a.non_finite = b.non_finite;
    a == *b
}

/// The tile at `path` if an earlier run made it from `expected`: its picture and the recipe in
/// the file. `None` when the file is missing, unreadable, of another recipe or another size.
pub fn existing_tile(path: &Path, expected: &Recipe) -> Option<(Picture, Recipe)> {
    let json = recipe::read_png_json(path).ok()?;
    let found = Recipe::from_json(&json).ok()?;
    if !same_picture(&found, expected) {
        return None;
    }
    let (width, height, rgb) = recipe::read_png_rgb(path).ok()?;
    let fits = width == expected.sampling.width
        && height == expected.sampling.height
        && rgb.len() == width * height * 3;
    fits.then(|| {
        let picture = Picture {
            width,
            height,
            rgb,
            non_finite: found.non_finite,
        };
        (picture, found)
    })
}

/// `interconcept merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The folder the shards wrote (with its layout.json).
    pub dir: PathBuf,
    /// Output PNG: the mosaic, with every tile's recipe inside.
    #[arg(long)]
    pub out: PathBuf,
}

/// Reads a folder's layout.
pub fn read_layout(dir: &Path) -> Result<ShardLayout> {
    let path = dir.join(LAYOUT_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}; is {} a folder that sharded runs wrote?",
            path.display(),
            dir.display()
        )
    })?;
    ShardLayout::from_json(&text).with_context(|| format!("in {}", path.display()))
}

/// Runs `interconcept merge`: the mosaic from a folder of tiles, or an error that names every
/// tile missing (or not matching the layout).
pub fn merge(args: &MergeArgs) -> Result<()> {
    crate::cli::check_output(&args.out)?;
    let layout = read_layout(&args.dir)?;
    let (mut tiles, mut missing, mut wrong) = (Vec::new(), Vec::new(), Vec::new());
    for tile in &layout.tiles {
        let path = args.dir.join(&tile.file);
        if !path.is_file() {
            missing.push(tile.file.as_str());
            continue;
        }
        match existing_tile(&path, &tile.recipe) {
            Some((picture, recipe)) => tiles.push(MosaicTile {
                picture,
                label: tile.label.clone(),
                recipe,
            }),
            None => wrong.push(tile.file.as_str()),
        }
    }
    if !missing.is_empty() || !wrong.is_empty() {
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!(
                "{} of {} tiles missing: {}",
                missing.len(),
                layout.tiles.len(),
                missing.join(", ")
            ));
        }
        if !wrong.is_empty() {
            problems.push(format!(
                "{} not made from the layout's recipe (damaged or from another grid): {}",
                wrong.len(),
                wrong.join(", ")
            ));
        }
        bail!(
            "cannot merge {}: {}; run the shards that make them again",
            args.dir.display(),
            problems.join("; ")
        );
    }
    let broken = tiles.iter().filter(|t| t.picture.non_finite).count();
    if broken > 0 {
        eprintln!("warning: {broken} tiles came out NaN or infinite and are markers");
    }
    let mosaic = Mosaic {
        title: layout.title.clone(),
        columns: layout.columns,
        column_labels: layout.column_labels.clone(),
        row_labels: layout.row_labels.clone(),
        corner_label: layout.corner_label.clone(),
        tiles,
        style: layout.style(),
    };
    let record = mosaic.write(&args.out)?;
    println!(
        "{} tiles from {}; mosaic {}",
        record.tiles.len(),
        args.dir.display(),
        args.out.display()
    );
    Ok(())
}

/// How a shard's run went, for its closing line.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardReport {
    /// Tiles this shard owns.
    pub owned: usize,
    /// Tiles it made now.
    pub made: usize,
    /// Tiles that came out NaN or infinite.
    pub broken: usize,
}

impl ShardReport {
    /// The closing line.
    pub fn line(&self, shard: Shard, total: usize, dir: &Path) -> String {
        format!(
            "shard {shard}: {} of {total} tiles ({} made, {} already there{}) in {}; \
             `interconcept merge {}` once every shard has run",
            self.owned,
            self.made,
            self.owned - self.made,
            if self.broken > 0 {
                format!(", {} broken by NaN or infinity", self.broken)
            } else {
                String::new()
            },
            dir.display(),
            dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_tiles_round_robin() {
        let shard: Shard = "2/3".parse().unwrap();
        assert_eq!(shard, Shard { index: 2, count: 3 });
        let owned: Vec<usize> = (0..8).filter(|&i| shard.owns(i)).collect();
        assert_eq!(owned, vec![1, 4, 7]);

        // Every tile belongs to exactly one shard.
        for i in 0..20 {
            let owners = (1..=3)
                .filter(|&k| Shard { index: k, count: 3 }.owns(i))
                .count();
            assert_eq!(owners, 1, "tile {i}");
        }
        for bad in [
            "0/3",
            "4/3",
            "x",
            "1/0",
            "1",
            "1/x",
            "/3",
            "-1/3",
            "1/1000001",
        ] {
            let error = bad.parse::<Shard>().unwrap_err();
            assert!(error.contains("K/N"), "{bad}: {error}");
        }
    }

    #[test]
    fn layout_file_names_stay_inside_the_folder() {
        assert!(check_file_name("tile-0-1.png").is_ok());
        for bad in [
            "../x.png",
            "/etc/passwd",
            "a/b.png",
            "..",
            ".",
            "",
            "a\\b.png",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
