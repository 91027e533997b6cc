//! Mosaics of made-up pictures: tiles keep their pixels, labels ink their band, the record
//! parses back from the PNG.

use super::*;
use crate::engine::model::ModelId;
use crate::engine::pipeline::SamplingParams;
use crate::engine::scheduler::SamplerKind;

fn picture(seed: u8, width: usize, height: usize) -> Picture {
    let rgb = (0..width * height * 3)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(17))
        })
        .collect();
    Picture {
        width,
        height,
        rgb,
        non_finite: false,
    }
}

fn recipe(seed: u64) -> Recipe {
    Recipe::for_prompt(
        ModelId {
            name: "test".into(),
            weights_hash: "00".into(),
            variant: None,
        },
        "a sneaker",
        seed,
        SamplingParams {
            num_steps: 4,
            guidance_scale: 4.0,
            sampler: SamplerKind::Ddim,
            width: 8,
            height: 6,
        },
    )
}

fn mosaic(labels: &[&str], style: MosaicStyle) -> Mosaic {
    Mosaic {
        title: "a plane through \"a sneaker\"".into(),
        columns: 3,
        column_labels: vec!["-1".into(), "0".into(), "1".into()],
        row_labels: vec!["1".into(), "-1".into()],
        corner_label: "v\\u".into(),
        tiles: labels
            .iter()
            .enumerate()
            .map(|(i, label)| MosaicTile {
                picture: picture(i as u8, 8, 6),
                label: label.to_string(),
                recipe: recipe(i as u64),
            })
            .collect(),
        style,
    }
}

#[test]
fn tiles_keep_their_pixels_at_any_zoom() {
    for zoom in [1, 3] {
        let style = MosaicStyle {
            zoom,
            ..MosaicStyle::default()
        };
        let m = mosaic(&["a", "b", "c", "d", "e"], style);
        let (canvas, record) = m.render().unwrap();
        assert_eq!((record.rows, record.columns, record.tiles.len()), (2, 3, 5));
        for (tile, made) in record.tiles.iter().zip(&m.tiles) {
            assert_eq!(
                tile_pixels(&canvas.rgb, canvas.width, tile, zoom),
                made.picture.rgb,
                "tile {},{} at zoom {zoom}",
                tile.row,
                tile.column
            );
            assert!(tile.x + tile.width * zoom <= canvas.width);
            assert!(tile.y + tile.height * zoom <= canvas.height);
        }
    }
}

#[test]
fn labels_ink_their_band_and_leave_the_tiles_alone() {
    for place in [LabelPlace::Under, LabelPlace::Over] {
        let style = MosaicStyle {
            labels: place,
            ..MosaicStyle::default()
        };
        // The last label, the same in both, keeps the layouts equal.
        let (plain, plain_record) = mosaic(&["", "", "", "", "-1.5"], style).render().unwrap();
        let (labelled, record) = mosaic(&["-1.5", "0", "", "", "-1.5"], style)
            .render()
            .unwrap();
        assert_eq!(
            (plain.width, plain.height),
            (labelled.width, labelled.height)
        );
        let places = |r: &MosaicRecord| r.tiles.iter().map(|t| (t.x, t.y)).collect::<Vec<_>>();
        assert_eq!(places(&plain_record), places(&record));

        // The band under (or over) the first tile changes; the tiles do not.
        let tile = &record.tiles[0];
        let band_y = match place {
            LabelPlace::Over => tile.y - 13..tile.y,
            _ => tile.y + tile.height..tile.y + tile.height + 13,
        };
        let differs = band_y.clone().any(|y| {
            (0..plain.width).any(|x| {
                let i = (y * plain.width + x) * 3;
                plain.rgb[i..i + 3] != labelled.rgb[i..i + 3]
            })
        });
        assert!(differs, "{place:?}: label band unchanged");
        for t in &record.tiles {
            assert_eq!(
                tile_pixels(&plain.rgb, plain.width, t, 1),
                tile_pixels(&labelled.rgb, labelled.width, t, 1)
            );
        }
    }
}

#[test]
fn the_record_parses_back_from_the_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mosaic.png");
    let m = mosaic(&["0", "1", "2", "3"], MosaicStyle::default());
    let written = m.write(&path).unwrap();
    let json = recipe::read_png_json(&path).unwrap();
    assert!(MosaicRecord::is_mosaic_json(&json));
    let record = MosaicRecord::from_json(&json).unwrap();
    assert_eq!(record, written);
    assert_eq!(record.title, m.title);
    assert_eq!(record.tiles[3].recipe, recipe(3));
    assert_eq!(record.tile("1,0").unwrap().label, "3");
    assert_eq!(record.tile("2").unwrap().label, "2");
    assert!(record.tile("5,5").is_err());
    assert!(record.tile("x").is_err());

    let (width, _, rgb) = recipe::read_png_rgb(&path).unwrap();
    assert_eq!(
        tile_pixels(&rgb, width, &record.tiles[1], 1),
        m.tiles[1].picture.rgb
    );

    // A single picture's recipe is not a mosaic.
    assert!(!MosaicRecord::is_mosaic_json(&recipe(1).to_json()));
}
